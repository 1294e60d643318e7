//! `irqlab run`.

use clap::Args;
use irqlab::config::{IrqchipMode, Overrides, VmConfig};
use irqlab::machine::{self, RunOptions};
use irqlab::outcome::code;
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
    irqchip: Option<IrqchipArg>,
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
    trace_mode: Option<TraceModeArg>,
    /// Boot protocol: auto (bzImage or Linux note → linux, irqlab note → native, PVH note →
    /// pvh, Multiboot header → multiboot), native, pvh, multiboot, linux.
    #[arg(long, value_enum)]
    boot: Option<BootArg>,
    /// Initial ramdisk for a Linux kernel.
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Print the guest memory the guest touched (for `irqlab bench boot`).
    #[arg(long, hide = true)]
    report_memory: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum BootArg {
    Auto,
    Native,
    Pvh,
    Multiboot,
    Linux,
}

impl From<BootArg> for irqlab::config::BootProtocol {
    fn from(b: BootArg) -> Self {
        match b {
            BootArg::Auto => Self::Auto,
            BootArg::Native => Self::Native,
            BootArg::Pvh => Self::Pvh,
            BootArg::Multiboot => Self::Multiboot,
            BootArg::Linux => Self::Linux,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TraceModeArg {
    Ring,
    Lockstep,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum IrqchipArg {
    Split,
    Kernel,
}

/// Loads the config and applies the flags.
pub fn load_config(args: &RunArgs) -> Result<VmConfig, irqlab::config::ConfigError> {
    let mut cfg = match &args.config {
        Some(path) => VmConfig::from_file(path)?,
        None => VmConfig::default(),
    };
    cfg.apply(&Overrides {
        kernel: args.kernel.clone(),
        cmdline: args.cmdline.clone(),
        mem_mib: args.mem_mib,
        vcpus: args.vcpus,
        irqchip: args.irqchip.map(|i| match i {
            IrqchipArg::Split => IrqchipMode::Split,
            IrqchipArg::Kernel => IrqchipMode::Kernel,
        }),
        timeout_secs: args.timeout,
        serial_log: args.serial_log.clone(),
        trace_dir: args.trace.clone(),
        initrd: args.initrd.clone(),
        boot: args.boot.map(Into::into),
        trace_mode: args.trace_mode.map(|m| match m {
            TraceModeArg::Ring => irqlab::trace::TraceMode::Ring,
            TraceModeArg::Lockstep => irqlab::trace::TraceMode::Lockstep,
        }),
    })?;
    Ok(cfg)
}

pub fn run(args: RunArgs) -> u8 {
    let cfg = match load_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("irqlab: {e}");
            return code::CONFIG;
        }
    };
    let opts = RunOptions {
        console_stdout: true,
        capture_console: false,
        handle_signals: true,
        feed_stdin: true,
    };
    // Restored when this function returns, whatever the outcome.
    let _raw = irqlab::stdin::RawMode::enable_if_tty();
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
            if let Some(line) = report.outcome.explain() {
                eprintln!("irqlab: {line}");
            }
            report.outcome.exit_code()
        }
        Err(e) => {
            eprintln!("irqlab: {e}");
            e.exit_code()
        }
    }
}
