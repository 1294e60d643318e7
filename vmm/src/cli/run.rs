//! `irqlab run`.

use clap::Args;
use irqlab::config::{ConfigError, ConfigLayer, IrqchipMode, Sourced, TraceLayer, VmConfig};
use irqlab::entry::BootProtocol;
use irqlab::machine::{self, RunOptions};
use irqlab::outcome::{code, Outcome};
use irqlab::stop::Session;
use irqlab::trace::TraceMode;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Experiment config (TOML). Without it the built-in guest runs its self-test.
    config: Option<PathBuf>,
    /// Kernel image (ELF64); "builtin" for the embedded irqlab guest.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    cmdline: Option<String>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "N")]
    mem_mib: Option<u64>,
    /// Number of vCPUs (1-8).
    #[arg(long, value_name = "N")]
    vcpus: Option<u8>,
    /// Interrupt controller model.
    #[arg(long, value_enum)]
    irqchip: Option<IrqchipMode>,
    /// Wall-clock watchdog in seconds (0 = off).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Also write the guest console to this file.
    #[arg(long, value_name = "PATH")]
    serial_log: Option<PathBuf>,
    /// Trace every interrupt into this directory (interrupts.jsonl, exits.jsonl,
    /// summary.json, trace.json, latency.svg).
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
    /// How exits are attributed to interrupts: ring (no extra exits) or lockstep (one
    /// doorbell exit per interrupt, exact per-interrupt KVM statistics).
    #[arg(long, value_enum, value_name = "MODE")]
    trace_mode: Option<TraceMode>,
    /// Boot protocol: auto (bzImage or Linux note → linux, irqlab note → native, PVH note →
    /// pvh, Multiboot header → multiboot), native, pvh, multiboot, linux.
    #[arg(long, value_enum)]
    boot: Option<BootProtocol>,
    /// Initial ramdisk for a Linux kernel.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// The pc-testdev-compatible test device (kvm-unit-tests' harness: ports 0xe0-0xe4,
    /// IRQ lines at 0x2000-0x2017, memory-like MMIO at 0xff000000). Default: on for
    /// kvm-unit-tests kernels only.
    #[arg(long, value_enum, value_name = "on|off")]
    testdev: Option<OnOff>,
    /// x2APIC mode in CPUID (default on where KVM supports it); off gives an xAPIC-only CPU
    /// (kvm-unit-tests' `xapic` entry).
    #[arg(long, value_enum, value_name = "on|off")]
    x2apic: Option<OnOff>,
    /// Run without the seccomp sandbox (for debugging; config key `seccomp = false`).
    #[arg(long)]
    no_seccomp: bool,
    /// Print the guest memory the guest touched (for `irqlab bench boot`).
    #[arg(long, hide = true)]
    report_memory: bool,
}

/// `--testdev` and `--x2apic`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum OnOff {
    On,
    Off,
}

impl RunArgs {
    /// The flags as a config layer, each value's origin its flag.
    fn layer(&self) -> ConfigLayer {
        let on = |o: Option<OnOff>, flag| o.map(|o| Sourced::flag(matches!(o, OnOff::On), flag));
        let trace = TraceLayer {
            dir: self.trace.clone().map(|d| Sourced::flag(d, "--trace")),
            mode: self.trace_mode.map(|m| Sourced::flag(m, "--trace-mode")),
            ..TraceLayer::default()
        };
        ConfigLayer {
            kernel: self.kernel.clone().map(|k| Sourced::flag(k, "--kernel")),
            cmdline: self.cmdline.clone().map(|c| Sourced::flag(c, "--cmdline")),
            mem_mib: self
                .mem_mib
                .map(|m| Sourced::flag(i64::try_from(m).unwrap_or(i64::MAX), "--mem-mib")),
            vcpus: self.vcpus.map(|v| Sourced::flag(i64::from(v), "--vcpus")),
            irqchip: self.irqchip.map(|i| Sourced::flag(i, "--irqchip")),
            timeout_secs: self.timeout.map(|t| Sourced::flag(t, "--timeout")),
            serial_log: self
                .serial_log
                .clone()
                .map(|s| Sourced::flag(s, "--serial-log")),
            trace: (trace != TraceLayer::default()).then_some(trace),
            boot: self.boot.map(|b| Sourced::flag(b, "--boot")),
            initrd: self.initrd.clone().map(|i| Sourced::flag(i, "--initrd")),
            testdev: on(self.testdev, "--testdev"),
            x2apic: on(self.x2apic, "--x2apic"),
            seccomp: self
                .no_seccomp
                .then(|| Sourced::flag(false, "--no-seccomp")),
            ..ConfigLayer::default()
        }
    }
}

/// The config file (if any) with the flags on top, validated.
pub fn load_config(args: &RunArgs) -> Result<VmConfig, ConfigError> {
    let file = match &args.config {
        Some(path) => ConfigLayer::from_file(path)?,
        None => ConfigLayer::default(),
    };
    file.then(args.layer()).validate()
}

/// `irqlab run`.
///
/// Signals: the stop signals — SIGHUP, SIGINT, SIGQUIT, SIGTERM — are blocked before anything
/// else, while the process has one thread, and stay blocked until it exits; they are only ever
/// read from a signalfd (see `irqlab::stop`), so whenever one arrives the process still prints
/// one `irqlab:` line naming it and exits with 128 + its number (129/130/131/143), the terminal
/// restored and the trace complete. The policy:
///
/// * during setup or the run: the run stops and the signal is the outcome;
/// * after the run ended another way (guest exit, fault, watchdog, setup error) but before the
///   outcome line is printed — e.g. while the trace is written: the signal still decides the
///   exit code (the user asked to stop; 130 is what a script expects after Ctrl-C), and the
///   line also names how the run had ended;
/// * after the outcome line: discarded when the process exits, so the exit code is always the
///   one the printed line explains;
/// * a second signal after a first changes nothing.
pub fn run(args: RunArgs) -> u8 {
    let session = match Session::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("irqlab: signalfd: {e}");
            return code::INTERNAL;
        }
    };
    let ending = run_in(&args);
    // The last look, after everything but the line: a signal that arrived since the run's own
    // last look (while the table was printed, or after a setup error).
    let late = ending.signal_after_end.or_else(|| session.take_pending());
    let (exit, line) = match late {
        Some(signo) if !ending.by_signal => {
            let stopped = Outcome::Signal(signo);
            let line = format!(
                "{} ({}: {})",
                stopped.explain().unwrap_or_default(),
                if ending.setup_failed {
                    "setup had failed"
                } else {
                    "the run had already ended"
                },
                ending
                    .line
                    .as_deref()
                    .unwrap_or("guest exited with status 0")
            );
            (stopped.exit_code(), Some(line))
        }
        _ => (ending.code, ending.line),
    };
    if let Some(line) = line {
        eprintln!("irqlab: {line}");
    }
    session.end();
    exit
}

/// How `irqlab run` ended, before the last look for a signal.
struct Ending {
    code: u8,
    line: Option<String>,
    by_signal: bool,
    setup_failed: bool,
    signal_after_end: Option<i32>,
}

impl Ending {
    fn error(code: u8, line: String) -> Ending {
        Ending {
            code,
            line: Some(line),
            by_signal: false,
            setup_failed: true,
            signal_after_end: None,
        }
    }
}

/// Loads the config, runs the machine, prints everything but the outcome line.
fn run_in(args: &RunArgs) -> Ending {
    let cfg = match load_config(args) {
        Ok(cfg) => cfg,
        Err(e) => return Ending::error(code::CONFIG, e.to_string()),
    };
    let opts = RunOptions {
        console_stdout: true,
        capture_console: false,
        handle_signals: true,
        feed_stdin: true,
        sandbox: irqlab::sandbox::SandboxScope::Process,
    };
    match machine::run(&cfg, &opts) {
        Ok(report) => {
            if args.report_memory {
                eprintln!(
                    "irqlab: memory: guest_touched_bytes={}",
                    report.guest_resident
                );
            }
            if let Some(summary) = &report.trace {
                print!("{}", irqlab::trace::output::table(summary));
            }
            if let Some(e) = &report.trace_error {
                eprintln!("irqlab: {e}");
            }
            if let Some(e) = &report.stop_error {
                eprintln!("irqlab: {e}");
            }
            if report.console_dropped > 0 {
                eprintln!(
                    "irqlab: console: {} bytes of guest output dropped: stdout was not being read (a stalled reader never holds up the guest)",
                    report.console_dropped
                );
            }
            for line in report.failures.describe() {
                eprintln!("irqlab: {line}");
            }
            Ending {
                code: report.outcome.exit_code(),
                line: report.outcome.explain(),
                by_signal: matches!(report.outcome, Outcome::Signal(_)),
                setup_failed: false,
                signal_after_end: report.signal_after_end,
            }
        }
        Err(e) => Ending::error(e.exit_code(), e.to_string()),
    }
}
