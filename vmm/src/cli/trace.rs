//! `irqlab trace summarize DIR` and `irqlab trace diff DIR_A DIR_B`.

use clap::Subcommand;
use irqlab::outcome::code;
use irqlab::trace::summarize;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TraceCommand {
    /// Per source: count, latency p50/p90/p99/max, exits per interrupt.
    Summarize {
        /// A directory written by `irqlab run --trace`.
        dir: PathBuf,
    },
    /// Two traces side by side (e.g. split vs kernel irqchip).
    Diff {
        /// First trace directory.
        a: PathBuf,
        /// Second trace directory.
        b: PathBuf,
    },
}

pub fn trace(cmd: TraceCommand) -> u8 {
    let result = match &cmd {
        TraceCommand::Summarize { dir } => summarize::summarize(dir),
        TraceCommand::Diff { a, b } => summarize::diff(a, b),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("irqlab: {e}");
            code::CONFIG
        }
    }
}
