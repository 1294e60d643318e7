//! The kernel command line: `key=value` words separated by spaces, and why a boot info was
//! rejected.

use irqlab_abi::boot_info::Invalid;

/// `key=value` words separated by single spaces; a bare word is a flag.
///
/// Lookups scan the text each time (no allocation, nothing to set up); the last word for a
/// key wins, so a later `iters=` overrides an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmdline<'a> {
    /// The text as the VMM passed it.
    pub raw: &'a str,
}

impl<'a> Cmdline<'a> {
    /// A command line over `raw`.
    pub const fn new(raw: &'a str) -> Cmdline<'a> {
        Cmdline { raw }
    }

    /// A command line over the bytes the boot info points at (without the NUL); text that
    /// is not UTF-8 counts as an empty command line.
    pub fn from_bytes(bytes: &'a [u8]) -> Cmdline<'a> {
        Cmdline::new(core::str::from_utf8(bytes).unwrap_or(""))
    }

    /// The value of the last `key=value` word for `key` (the text after its first `=`,
    /// possibly empty).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.raw
            .rsplit(' ')
            .filter_map(|w| w.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// A numeric (decimal) value, or `default` when absent or malformed (empty, not a
    /// number, negative, or above `u64::MAX`).
    pub fn get_u64(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// [`get_u64`](Self::get_u64) limited to `min..=max`; the default is limited too. If
    /// `min > max`, `max` wins (no panic in the guest).
    pub fn get_u64_clamped(&self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        self.get_u64(key, default).max(min).min(max)
    }
}

/// Why the boot info was rejected, in words (the guest prints no `Debug`: its numbers would
/// go through `core::fmt`).
pub fn describe(why: Invalid) -> &'static str {
    match why {
        Invalid::Magic(_) => "bad magic",
        Invalid::Version(_) => "unsupported version",
        Invalid::Size(_) => "structure too small",
        Invalid::MemMap(_) => "memory map too long",
        Invalid::Cmdline(_) => "command line too long",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: Cmdline<'static> =
        Cmdline::new("run=selftest,cost iters=200 quiet timer=lapic hz= crash=status:7");

    #[test]
    fn words_are_found_by_exact_key() {
        assert_eq!(LINE.get("run"), Some("selftest,cost"));
        assert_eq!(LINE.get("iters"), Some("200"));
        assert_eq!(LINE.get("timer"), Some("lapic"));
        assert_eq!(LINE.get("crash"), Some("status:7"));
        // An empty value is present, a bare word (flag) has no value.
        assert_eq!(LINE.get("hz"), Some(""));
        assert_eq!(LINE.get("quiet"), None);
        // Keys match whole: no prefixes, suffixes or case folding.
        assert_eq!(LINE.get("iter"), None);
        assert_eq!(LINE.get("ters"), None);
        assert_eq!(LINE.get("ITERS"), None);
        assert_eq!(LINE.get(""), None);
    }

    #[test]
    fn missing_words_and_empty_lines() {
        let empty = Cmdline::new("");
        assert_eq!(empty.get("run"), None);
        assert_eq!(empty.get_u64("iters", 10_000), 10_000);
        assert_eq!(LINE.get("count"), None);
        assert_eq!(LINE.get_u64("count", 1000), 1000);
        // Extra spaces make empty words, which are skipped.
        let spaced = Cmdline::new("  a=1   b=2  ");
        assert_eq!(spaced.get("a"), Some("1"));
        assert_eq!(spaced.get_u64("b", 0), 2);
        // Only spaces separate words.
        let tabbed = Cmdline::new("a=1\tb=2");
        assert_eq!(tabbed.get("a"), Some("1\tb=2"));
        assert_eq!(tabbed.get("b"), None);
    }

    #[test]
    fn the_last_duplicate_wins() {
        let line = Cmdline::new("iters=100 run=cost iters=300 iters=200");
        assert_eq!(line.get("iters"), Some("200"));
        assert_eq!(line.get_u64("iters", 0), 200);
        // A malformed last value does not fall back to an earlier one.
        let line = Cmdline::new("iters=100 iters=lots");
        assert_eq!(line.get_u64("iters", 7), 7);
    }

    #[test]
    fn values_keep_everything_after_the_first_equals_sign() {
        let line = Cmdline::new("a=b=c d==");
        assert_eq!(line.get("a"), Some("b=c"));
        assert_eq!(line.get("d"), Some("="));
        assert_eq!(line.get("b"), None);
    }

    #[test]
    fn garbage_numbers_fall_back_to_the_default() {
        for value in [
            "",
            "abc",
            "12abc",
            "-1",
            "1.5",
            "0x10",
            " 5",
            "1_000",
            "18446744073709551616",
        ] {
            let raw = format!("n={value}");
            assert_eq!(Cmdline::new(&raw).get_u64("n", 42), 42, "n={value:?}");
        }
        for (value, n) in [
            ("0", 0),
            ("007", 7),
            ("+5", 5),
            ("18446744073709551615", u64::MAX),
        ] {
            let raw = format!("n={value}");
            assert_eq!(Cmdline::new(&raw).get_u64("n", 42), n, "n={value:?}");
        }
    }

    #[test]
    fn clamping_limits_values_and_defaults() {
        let at =
            |raw: &str, default| Cmdline::new(raw).get_u64_clamped("iters", default, 100, 20_000);
        assert_eq!(at("iters=200", 10_000), 200);
        assert_eq!(at("iters=100", 10_000), 100);
        assert_eq!(at("iters=20000", 10_000), 20_000);
        assert_eq!(at("iters=99", 10_000), 100);
        assert_eq!(at("iters=0", 10_000), 100);
        assert_eq!(at("iters=20001", 10_000), 20_000);
        assert_eq!(at("iters=18446744073709551615", 10_000), 20_000);
        assert_eq!(at("", 10_000), 10_000);
        assert_eq!(at("iters=junk", 10_000), 10_000);
        assert_eq!(at("", 5), 100, "the default is clamped too");
        assert_eq!(at("", 50_000), 20_000, "the default is clamped too");
        // An empty range does not panic: the maximum wins.
        assert_eq!(Cmdline::new("n=5").get_u64_clamped("n", 0, 10, 3), 3);
        // Saturating into a u32.
        let max = u64::from(u32::MAX);
        assert_eq!(
            Cmdline::new("count=4294967296").get_u64_clamped("count", 1000, 0, max),
            max
        );
        assert_eq!(
            Cmdline::new("count=5").get_u64_clamped("count", 1000, 0, max),
            5
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_empty_line() {
        assert_eq!(Cmdline::from_bytes(b"run=none").get("run"), Some("none"));
        assert_eq!(Cmdline::from_bytes(b"run=none \xff").raw, "");
        assert_eq!(Cmdline::from_bytes(b"").raw, "");
    }

    #[test]
    fn every_rejection_has_words() {
        assert_eq!(describe(Invalid::Magic(0)), "bad magic");
        assert_eq!(describe(Invalid::Version(9)), "unsupported version");
        assert_eq!(describe(Invalid::Size(8)), "structure too small");
        assert_eq!(describe(Invalid::MemMap(1000)), "memory map too long");
        assert_eq!(describe(Invalid::Cmdline(5000)), "command line too long");
    }
}
