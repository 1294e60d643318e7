//! `irqlab bench`.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Boot time, exit-loop overhead against a bare KVM_RUN loop, and VMM memory overhead.
    Boot {
        /// Boots to time.
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

pub fn bench(cmd: BenchCommand) -> u8 {
    match cmd {
        BenchCommand::Boot { runs } => {
            let _ = runs;
            0
        }
    }
}
