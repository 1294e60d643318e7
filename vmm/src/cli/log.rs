//! Diagnostics on stderr with `-v` (info), `-vv` (debug) or `-vvv` (trace): how the machine
//! was put together and torn down. Off by default. Each line reads `irqlab[level]: …`, so it
//! never looks like the one `irqlab: …` line that reports a run's outcome.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && metadata.target().starts_with("irqlab")
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        // One write per line, so lines from threads do not interleave; a closed stderr is
        // not an error worth more than the line.
        let line = format!("irqlab[{level}]: {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// The level `-v` repeated `verbosity` times turns on.
pub fn level(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::Off,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the stderr logger at the level for `verbosity` (once; later calls only change
/// the level).
pub fn init(verbosity: u8) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level(verbosity));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_adds_a_level() {
        assert_eq!(level(0), LevelFilter::Off);
        assert_eq!(level(1), LevelFilter::Info);
        assert_eq!(level(2), LevelFilter::Debug);
        assert_eq!(level(3), LevelFilter::Trace);
        assert_eq!(level(200), LevelFilter::Trace);
    }
}
