//! `irqlab bench …`: measurements reported side by side from one run, never compared against
//! fixed times. One module per benchmark; the helpers they share live here.

mod boot;
mod compare;
mod irq;
mod napi;
mod napi_svg;
mod posted;
mod trace;

use clap::Subcommand;
use irqlab::config::VmConfig;
use irqlab::machine::{self, RunOptions, RunReport};
use irqlab::outcome::{code, Outcome};
use irqlab::stats::Mark;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Boot time (process start to guest exit), PIO exit round trip against a bare KVM_RUN
    /// loop, and the VMM's own memory.
    Boot(boot::BootArgs),
    /// Interrupt delivery: PIT and MSI paths in both irqchip models at several rates.
    Irq(irq::IrqArgs),
    /// Tracing overhead: off vs ring vs lockstep, same experiments, one run.
    Trace(trace::TraceArgs),
    /// Posted-interrupt notification vs one MSI per event, by rate and vCPU count.
    Posted(posted::PostedArgs),
    /// Receive livelock: interrupt per packet vs NAPI vs posted on the NIC ring, by rate.
    Napi(napi::NapiArgs),
    /// The same guest under irqlab and under QEMU microvm (PVH entry), side by side.
    Compare(compare::CompareArgs),
}

pub fn bench(cmd: BenchCommand) -> u8 {
    let result = match cmd {
        BenchCommand::Boot(a) => boot::boot(&a),
        BenchCommand::Irq(a) => irq::irq(&a),
        BenchCommand::Trace(a) => trace::trace_overhead(&a),
        BenchCommand::Posted(a) => posted::posted(&a),
        BenchCommand::Napi(a) => napi::napi(&a),
        BenchCommand::Compare(a) => compare::compare(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("irqlab: bench: {e:#}");
            code::INTERNAL
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The `pct`-th percentile (0–100) of `v`: the nearest rank, the definition the guest's cost
/// table uses too ([`irqlab_abi::stats::nearest_rank`]). NaN for no samples.
fn percentile(v: &mut [f64], pct: u32) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    irqlab_abi::stats::nearest_rank(v.len(), pct).map_or(f64::NAN, |i| v[i])
}

/// Runs `cfg` with its console captured, not printed, whatever the guest's verdict: the
/// report and the console as text.
fn captured_run(cfg: &VmConfig) -> anyhow::Result<(RunReport, String)> {
    let report = machine::run(
        cfg,
        &RunOptions {
            capture_console: true,
            ..Default::default()
        },
    )?;
    let console = String::from_utf8_lossy(&report.console).into_owned();
    Ok((report, console))
}

fn quiet_run(cfg: &VmConfig) -> anyhow::Result<RunReport> {
    quiet_run_with(cfg, irqlab::sandbox::SandboxScope::Off)
}

/// [`quiet_run`] with the run's own threads under the seccomp sandbox or not (this thread
/// stays unconfined either way: it runs more guests).
fn quiet_run_with(
    cfg: &VmConfig,
    sandbox: irqlab::sandbox::SandboxScope,
) -> anyhow::Result<RunReport> {
    let report = machine::run(
        cfg,
        &RunOptions {
            capture_console: true,
            sandbox,
            ..Default::default()
        },
    )?;
    if report.outcome != (Outcome::GuestExit { status: 0 }) {
        anyhow::bail!(
            "guest run `{}` ended with {:?}:\n{}",
            cfg.cmdline,
            report.outcome,
            String::from_utf8_lossy(&report.console)
        );
    }
    Ok(report)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The guest's result line `name` (tag, detail).
fn result<'a>(console: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    console.lines().find_map(|l| {
        let (tag, rest) = l.split_once(' ')?;
        let detail = rest.strip_prefix(name)?.strip_prefix(": ")?;
        matches!(tag, "PASS" | "FAIL" | "SKIP").then_some((tag, detail))
    })
}

/// The number right before `suffix` in `text` (e.g. "measured 999.1 Hz").
fn number_before(text: &str, suffix: &str) -> Option<f64> {
    let end = text.find(suffix)?;
    text[..end]
        .split(' ')
        .rev()
        .find(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// The rate a guest result line reports: "…, measured 998.4 Hz (…)" (timer) or
/// "…, 999.9 Hz measured" (msi); NaN if there is none.
fn measured_hz(detail: &str) -> f64 {
    number_before(detail, " Hz measured")
        .or_else(|| {
            detail
                .split("measured ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

fn window(console: &str, name: &str, marks: &[Mark]) -> Option<(u64, irqlab::stats::ExitCounts)> {
    let n = console.lines().find_map(|l| {
        l.strip_prefix(&format!("BENCH {name} window_interrupts="))?
            .trim()
            .parse()
            .ok()
    })?;
    let (d, _) = windows(marks).into_iter().next()?;
    Some((n, d))
}

/// Every window the guest bracketed with its marks 1 (start) and 2 (end), in order (a guest
/// that measures several runs writes one pair per run): the userspace exits strictly between
/// the two marks and the host time from one to the other. An end without a start is ignored.
fn windows(marks: &[Mark]) -> Vec<(irqlab::stats::ExitCounts, std::time::Duration)> {
    let mut out = Vec::new();
    let mut start: Option<&Mark> = None;
    for m in marks {
        match (m.value, start) {
            (1, _) => start = Some(m),
            (2, Some(s)) => {
                let mut d = m.exits.since(&s.exits);
                d.pio = d.pio.saturating_sub(1); // the end mark's own exit
                out.push((d, m.at.saturating_duration_since(s.at)));
                start = None;
            }
            _ => {}
        }
    }
    out
}
