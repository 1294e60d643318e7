//! Self-test results: `PASS|FAIL|SKIP name: detail` lines and the closing `SUMMARY` line that
//! the integration tests read, in the format `irqlab_abi::results` defines (and parses).

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use irqlab_abi::results::{Check, Status, Summary};

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
    let (counter, status) = match outcome {
        Outcome::Pass => (&PASSED, Status::Pass),
        Outcome::Fail => (&FAILED, Status::Fail),
        Outcome::Skip => (&SKIPPED, Status::Skip),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    crate::println!(
        "{}",
        Check {
            status,
            name,
            detail
        }
    );
}

/// Records a check that passes when `ok` holds.
pub fn check(ok: bool, name: &str, detail: fmt::Arguments) {
    result(if ok { Outcome::Pass } else { Outcome::Fail }, name, detail);
}

/// Prints `SUMMARY passed=… failed=… skipped=…` and returns the guest status to exit with.
pub fn summary() -> u32 {
    let summary = Summary {
        passed: PASSED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
    };
    crate::println!("{summary}");
    if summary.failed == 0 {
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
