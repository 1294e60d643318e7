//! The irqlab guest's result lines: one format, written by the guest and read by the VMM's
//! benchmarks and the integration tests.
//!
//! | line | meaning |
//! |------|---------|
//! | `PASS name: detail` | a check passed |
//! | `FAIL name: detail` | a check failed |
//! | `SKIP name: detail` | a check cannot run on this host; the detail says why |
//! | `SUMMARY passed=P failed=F skipped=S` | the counts, once, at the end |
//! | `COST name: iters=N min=A median=B p99=C cycles (median D ns)` | one row of the cost table |
//!
//! A check's name has no `:` or space; its detail is free text to the end of the line. The
//! guest writes lines with the [`Check`], [`Summary`] and [`Cost`] `Display` impls, and a
//! reader gets them back with [`Line::parse`]; everything else on the console is prose.
//!
//! Numbers are written by [`Dec`], not libcore's integer `Display`: the prebuilt libcore the
//! guest links is compiled with SSE2, and its decimal formatting of large integers uses SSE
//! instructions, which end in KVM emulation failures on kvm-pvm hosts.

use core::fmt;

/// A u64 printed in decimal without libcore's integer formatting (see the module docs). No
/// width or fill: libcore's padding code uses SSE too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec(pub u64);

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut v = self.0;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        f.write_str(core::str::from_utf8(&buf[i..]).map_err(|_| fmt::Error)?)
    }
}

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It worked.
    Pass,
    /// It did not.
    Fail,
    /// It cannot run on this host.
    Skip,
}

impl Status {
    /// The line's tag.
    pub const fn tag(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }

    fn from_tag(tag: &str) -> Option<Status> {
        Some(match tag {
            "PASS" => Status::Pass,
            "FAIL" => Status::Fail,
            "SKIP" => Status::Skip,
            _ => return None,
        })
    }
}

/// One check's result line; `D` is the detail (`fmt::Arguments` in the guest, `&str` when
/// parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check<'a, D> {
    /// The outcome.
    pub status: Status,
    /// The check's name.
    pub name: &'a str,
    /// Free text.
    pub detail: D,
}

impl<D: fmt::Display> fmt::Display for Check<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.tag(), self.name, self.detail)
    }
}

/// The closing counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
    /// Checks skipped.
    pub skipped: u32,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SUMMARY passed={} failed={} skipped={}",
            Dec(self.passed.into()),
            Dec(self.failed.into()),
            Dec(self.skipped.into())
        )
    }
}

/// One row of the cost table: TSC cycles per round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost<'a> {
    /// The row's name.
    pub name: &'a str,
    /// Round trips measured.
    pub iters: u64,
    /// Fastest round trip, in cycles.
    pub min: u64,
    /// Median, in cycles ([`crate::stats::nearest_rank`]).
    pub median: u64,
    /// 99th percentile, in cycles.
    pub p99: u64,
    /// The median in nanoseconds (from the TSC frequency; 0 if unknown).
    pub median_ns: u64,
}

impl fmt::Display for Cost<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "COST {}: iters={} min={} median={} p99={} cycles (median {} ns)",
            self.name,
            Dec(self.iters),
            Dec(self.min),
            Dec(self.median),
            Dec(self.p99),
            Dec(self.median_ns)
        )
    }
}

/// A parsed result line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// `PASS|FAIL|SKIP name: detail`.
    Check(Check<'a, &'a str>),
    /// `SUMMARY …`.
    Summary(Summary),
    /// `COST name: …`.
    Cost(Cost<'a>),
}

impl<'a> Line<'a> {
    /// The result `line` holds (without its line break), or `None` for prose.
    pub fn parse(line: &'a str) -> Option<Line<'a>> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (tag, rest) = line.split_once(' ')?;
        if tag == "SUMMARY" {
            let mut it = rest.split(' ');
            let mut field = |key: &str| it.next()?.strip_prefix(key)?.parse().ok();
            let s = Summary {
                passed: field("passed=")?,
                failed: field("failed=")?,
                skipped: field("skipped=")?,
            };
            return it.next().is_none().then_some(Line::Summary(s));
        }
        let (name, detail) = rest.split_once(": ")?;
        if name.is_empty() || name.contains(' ') {
            return None;
        }
        if tag == "COST" {
            return parse_cost(name, detail).map(Line::Cost);
        }
        let status = Status::from_tag(tag)?;
        Some(Line::Check(Check {
            status,
            name,
            detail,
        }))
    }
}

fn parse_cost<'a>(name: &'a str, rest: &str) -> Option<Cost<'a>> {
    let (fields, ns) = rest.split_once(" cycles (median ")?;
    let mut it = fields.split(' ');
    let mut field = |key: &str| it.next()?.strip_prefix(key)?.parse().ok();
    let cost = Cost {
        name,
        iters: field("iters=")?,
        min: field("min=")?,
        median: field("median=")?,
        p99: field("p99=")?,
        median_ns: ns.strip_suffix(" ns)")?.parse().ok()?,
    };
    it.next().is_none().then_some(cost)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_round_trips() {
        let check = Check {
            status: Status::Fail,
            name: "int80-abi",
            detail: "rax=0x1 (want 0x2): see docs",
        };
        let summary = Summary {
            passed: 24,
            failed: 3,
            skipped: 2,
        };
        let cost = Cost {
            name: "syscall-sysret",
            iters: 10000,
            min: 120,
            median: 130,
            p99: 400,
            median_ns: 43,
        };
        let lines = [
            (check.to_string(), Line::Check(check)),
            (summary.to_string(), Line::Summary(summary)),
            (cost.to_string(), Line::Cost(cost)),
        ];
        for (text, want) in &lines {
            assert_eq!(Line::parse(text).as_ref(), Some(want), "{text}");
        }
        assert_eq!(lines[0].0, "FAIL int80-abi: rax=0x1 (want 0x2): see docs");
        assert_eq!(lines[1].0, "SUMMARY passed=24 failed=3 skipped=2");
        assert_eq!(
            lines[2].0,
            "COST syscall-sysret: iters=10000 min=120 median=130 p99=400 cycles (median 43 ns)"
        );
    }

    #[test]
    fn decimals_are_exact_at_the_edges() {
        for v in [0, 7, 10, 4_294_967_295, u64::MAX] {
            assert_eq!(Dec(v).to_string(), v.to_string());
        }
    }

    #[test]
    fn prose_is_not_a_result() {
        for line in [
            "",
            "PASS",
            "PASS: no name",
            "PASS two words: x",
            "SUMMARY passed=1 failed=2",
            "SUMMARY passed=1 failed=2 skipped=x",
            "SUMMARY: 302 tests, 1 unexpected failures",
            "COST table: TSC cycles per round trip (tsc 2000000 kHz, host svm)",
            "irqlab guest: booting",
            "PASSED x: y",
        ] {
            assert_eq!(Line::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_carriage_return_is_not_part_of_the_detail() {
        let Some(Line::Check(c)) = Line::parse("SKIP tsc-deadline: no CPUID bit\r") else {
            panic!("not a check");
        };
        assert_eq!(
            (c.status, c.name, c.detail),
            (Status::Skip, "tsc-deadline", "no CPUID bit")
        );
    }
}
