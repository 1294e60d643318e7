//! The `run=` list: which experiments the guest runs, comma-separated, parsed once into a bit
//! set (every instruction counts on hosts that emulate them: looking each name up in the
//! string cost ~2,500 emulated instructions per boot).

use crate::cmdline::Cmdline;

/// The experiments `run=` names, as a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runs(pub u16);

impl Runs {
    /// `selftest`: one PASS/FAIL/SKIP line per mechanism.
    pub const SELFTEST: u16 = 1 << 0;
    /// `cost`: the cost table.
    pub const COST: u16 = 1 << 1;
    /// `pio-loop`: writes to the benchmark port, then exit.
    pub const PIO_LOOP: u16 = 1 << 2;
    /// `timer`: periodic timer interrupts.
    pub const TIMER: u16 = 1 << 3;
    /// `msi`: the MSI source.
    pub const MSI: u16 = 1 << 4;
    /// `echo`: interrupt-driven COM1 echo.
    pub const ECHO: u16 = 1 << 5;
    /// `affinity`: interrupts routed to the APs.
    pub const AFFINITY: u16 = 1 << 6;
    /// `posted`: posted interrupts.
    pub const POSTED: u16 = 1 << 7;
    /// `sched`: a timer-driven preemptive scheduler of ring-3 tasks.
    pub const SCHED: u16 = 1 << 8;
    /// `signals`: signals delivered on the return to user mode.
    pub const SIGNALS: u16 = 1 << 9;
    /// `napi`: the NIC-like ring device, interrupt per packet against NAPI polling and
    /// posted mode.
    pub const NAPI: u16 = 1 << 10;
    /// `nesting`: interrupt priority classes, nesting, TPR masking, a reentrancy hazard.
    pub const NESTING: u16 = 1 << 11;
    /// `softirq`: top and bottom halves (softirqs at interrupt exit, ksoftirqd past a limit).
    pub const SOFTIRQ: u16 = 1 << 12;
    /// The experiments that need `experiments::init` (devices, interrupt handlers).
    pub const EXPERIMENTS: u16 = Self::TIMER
        | Self::MSI
        | Self::ECHO
        | Self::AFFINITY
        | Self::POSTED
        | Self::SCHED
        | Self::SIGNALS
        | Self::NAPI
        | Self::NESTING
        | Self::SOFTIRQ;
    /// The list when the command line has no `run=` word.
    pub const DEFAULT: &'static str = "selftest";

    /// Parses a comma-separated list of names. `none` and empty names add nothing; every
    /// other name the guest does not know is passed to `unknown` and ignored.
    pub fn parse(list: &str, mut unknown: impl FnMut(&str)) -> Runs {
        let mut set = 0;
        for name in list.split(',') {
            set |= match name {
                "selftest" => Self::SELFTEST,
                "cost" => Self::COST,
                "pio-loop" => Self::PIO_LOOP,
                "timer" => Self::TIMER,
                "msi" => Self::MSI,
                "echo" => Self::ECHO,
                "affinity" => Self::AFFINITY,
                "posted" => Self::POSTED,
                "sched" => Self::SCHED,
                "signals" => Self::SIGNALS,
                "napi" => Self::NAPI,
                "nesting" => Self::NESTING,
                "softirq" => Self::SOFTIRQ,
                "none" | "" => 0,
                other => {
                    unknown(other);
                    0
                }
            };
        }
        Runs(set)
    }

    /// The command line's last `run=` list, or [`DEFAULT`](Self::DEFAULT) without one.
    pub fn from_cmdline(cmdline: &Cmdline<'_>, unknown: impl FnMut(&str)) -> Runs {
        Runs::parse(cmdline.get("run").unwrap_or(Self::DEFAULT), unknown)
    }

    /// Whether any of the bits in `any_of` was asked for.
    pub fn has(self, any_of: u16) -> bool {
        self.0 & any_of != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `list`, collecting the unknown names.
    fn parse(list: &str) -> (Runs, Vec<String>) {
        let mut unknown = Vec::new();
        let runs = Runs::parse(list, |name| unknown.push(name.to_owned()));
        (runs, unknown)
    }

    #[test]
    fn every_name_has_its_own_bit() {
        let names = [
            ("selftest", Runs::SELFTEST),
            ("cost", Runs::COST),
            ("pio-loop", Runs::PIO_LOOP),
            ("timer", Runs::TIMER),
            ("msi", Runs::MSI),
            ("echo", Runs::ECHO),
            ("affinity", Runs::AFFINITY),
            ("posted", Runs::POSTED),
            ("sched", Runs::SCHED),
            ("signals", Runs::SIGNALS),
            ("napi", Runs::NAPI),
            ("nesting", Runs::NESTING),
            ("softirq", Runs::SOFTIRQ),
        ];
        let mut all = 0;
        for (name, bit) in names {
            assert_eq!(bit.count_ones(), 1, "{name}");
            assert_eq!(all & bit, 0, "{name} shares a bit");
            all |= bit;
            assert_eq!(parse(name), (Runs(bit), vec![]), "{name}");
        }
        let (runs, unknown) =
            parse("selftest,cost,pio-loop,timer,msi,echo,affinity,posted,sched,signals,napi,nesting,softirq");
        assert_eq!((runs, unknown), (Runs(all), vec![]));
        assert_eq!(all, 0x1fff);
    }

    #[test]
    fn lists_combine_and_repeat() {
        let (runs, unknown) = parse("selftest,cost");
        assert!(unknown.is_empty());
        assert_eq!(runs, Runs(Runs::SELFTEST | Runs::COST));
        assert!(runs.has(Runs::SELFTEST));
        assert!(runs.has(Runs::COST));
        assert!(!runs.has(Runs::PIO_LOOP));
        assert!(!runs.has(Runs::EXPERIMENTS));
        assert_eq!(parse("msi,msi,msi").0, Runs(Runs::MSI));
    }

    #[test]
    fn experiments_group_the_device_runs() {
        for name in [
            "timer", "msi", "echo", "affinity", "posted", "sched", "signals",
        ] {
            assert!(parse(name).0.has(Runs::EXPERIMENTS), "{name}");
        }
        for name in ["selftest", "cost", "pio-loop", "none"] {
            assert!(!parse(name).0.has(Runs::EXPERIMENTS), "{name}");
        }
    }

    #[test]
    fn none_and_empty_names_select_nothing() {
        for list in ["none", "", ",", "none,,none", ",none,"] {
            assert_eq!(parse(list), (Runs(0), vec![]), "{list:?}");
        }
        assert_eq!(parse("none,cost").0, Runs(Runs::COST));
    }

    #[test]
    fn unknown_names_are_reported_in_order_and_ignored() {
        let (runs, unknown) = parse("cost,bogus,timer,Cost,pio_loop, msi");
        assert_eq!(runs, Runs(Runs::COST | Runs::TIMER));
        assert_eq!(unknown, ["bogus", "Cost", "pio_loop", " msi"]);
        let (runs, unknown) = parse("nothing-known");
        assert_eq!(runs, Runs(0));
        assert_eq!(unknown, ["nothing-known"]);
    }

    #[test]
    fn the_command_line_defaults_to_selftest() {
        let runs = |raw| {
            let mut unknown = Vec::new();
            let runs = Runs::from_cmdline(&Cmdline::new(raw), |n: &str| unknown.push(n.to_owned()));
            (runs, unknown)
        };
        assert_eq!(runs(""), (Runs(Runs::SELFTEST), vec![]));
        assert_eq!(runs("iters=200 hz=5"), (Runs(Runs::SELFTEST), vec![]));
        assert_eq!(runs("run=cost iters=200"), (Runs(Runs::COST), vec![]));
        assert_eq!(runs("run=none"), (Runs(0), vec![]));
        // An empty list is not the default.
        assert_eq!(runs("run="), (Runs(0), vec![]));
        // The last run= word wins.
        assert_eq!(
            runs("run=timer run=msi,x"),
            (Runs(Runs::MSI), vec!["x".to_owned()])
        );
    }
}
