//! Self-test results: `PASS|FAIL|SKIP name: detail` lines and the closing `SUMMARY` line that
//! the integration tests read.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static SKIPPED: AtomicU32 = AtomicU32::new(0);

/// One check's outcome.
pub enum Outcome {
    /// It worked.
    Pass,
    /// It did not.
    Fail,
    /// It cannot run on this host; the detail says why.
    Skip,
}

/// Records and prints one result.
pub fn result(outcome: Outcome, name: &str, detail: fmt::Arguments) {
    let tag = match outcome {
        Outcome::Pass => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            "PASS"
        }
        Outcome::Fail => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            "FAIL"
        }
        Outcome::Skip => {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            "SKIP"
        }
    };
    crate::println!("{tag} {name}: {detail}");
}

/// Records a check that passes when `ok` holds.
pub fn check(ok: bool, name: &str, detail: fmt::Arguments) {
    result(if ok { Outcome::Pass } else { Outcome::Fail }, name, detail);
}

/// Prints `SUMMARY passed=… failed=… skipped=…` and returns the guest status to exit with.
pub fn summary() -> u32 {
    let (p, f, s) = (
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        SKIPPED.load(Ordering::Relaxed),
    );
    use crate::fmt::Dec;
    crate::println!(
        "SUMMARY passed={} failed={} skipped={}",
        Dec(p.into()),
        Dec(f.into()),
        Dec(s.into())
    );
    if f == 0 {
        irqlab_abi::status::PASS
    } else {
        irqlab_abi::status::FAIL
    }
}

/// `pass!(name, fmt, args…)`.
#[macro_export]
macro_rules! pass {
    ($name:expr, $($arg:tt)*) => { $crate::report::result($crate::report::Outcome::Pass, $name, format_args!($($arg)*)) };
}
/// `fail!(name, fmt, args…)`.
#[macro_export]
macro_rules! fail {
    ($name:expr, $($arg:tt)*) => { $crate::report::result($crate::report::Outcome::Fail, $name, format_args!($($arg)*)) };
}
/// `skip!(name, fmt, args…)`.
#[macro_export]
macro_rules! skip {
    ($name:expr, $($arg:tt)*) => { $crate::report::result($crate::report::Outcome::Skip, $name, format_args!($($arg)*)) };
}
/// `check!(cond, name, fmt, args…)`.
#[macro_export]
macro_rules! check {
    ($ok:expr, $name:expr, $($arg:tt)*) => { $crate::report::check($ok, $name, format_args!($($arg)*)) };
}
