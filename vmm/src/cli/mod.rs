//! Command-line parsing and dispatch. Every failure prints one line on stderr, prefixed with
//! `irqlab:`, and maps to a documented exit code (see `irqlab::outcome::code`).

mod bench;
mod check;
mod inspect;
mod run;
mod trace;

use clap::{Parser, Subcommand};
use irqlab::outcome::code;

const EXAMPLES: &str = "\
Examples:
  irqlab run                                  boot the built-in guest's self-test
  irqlab run configs/hello.toml               run an experiment config
  irqlab run configs/cost.toml --timeout 30   override a config value
  irqlab run --kernel my.elf --cmdline 'x=1'  boot your own ELF64 kernel
  irqlab check                                report what this host supports
  irqlab inspect vmlinux                      how irqlab would boot a kernel image
  irqlab bench boot                           boot time, exit-loop overhead, VMM memory
  irqlab bench irq                            PIT/MSI delivery, split vs kernel irqchip
  irqlab run configs/timer.toml --trace out   trace every interrupt into out/
  irqlab trace diff split/ kernel/            compare two traces per source

Exit codes: guest status 0-63 (0 = all passed); 64 usage, 65 config, 66 kernel image,
69 host, 70 internal, 71 triple fault, 72 KVM internal error, 73 guest stopped,
74 watchdog, 75 guest requested reboot, 130 SIGINT, 143 SIGTERM.";

/// irqlab: boot a guest kernel on KVM, drive interrupts into it, and see what each one cost.
#[derive(Parser, Debug)]
#[command(name = "irqlab", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a guest and run it until it exits.
    Run(run::RunArgs),
    /// Report the host's KVM capabilities.
    Check,
    /// Show how irqlab would load and enter a kernel image (format, notes, boot protocol).
    Inspect(inspect::InspectArgs),
    /// Measure boot time, exit-loop overhead, memory and interrupt delivery.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Look at traces written by `irqlab run --trace DIR`.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
}

/// Parses the command line, runs it, returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { code::USAGE } else { 0 };
        }
    };
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check => check::check(),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Bench(cmd) => bench::bench(cmd),
        Command::Trace(cmd) => trace::trace(cmd),
    }
}
