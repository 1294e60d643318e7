//! `irqlab bench boot` and `irqlab bench irq`: measurements reported side by side from one
//! run, never compared against fixed times.

use clap::{Args, Subcommand};
use irqlab::config::{IrqchipMode, VmConfig};
use irqlab::machine::{self, RunOptions, RunReport};
use irqlab::outcome::{code, Outcome};
use irqlab::stats::Mark;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Boot time (process start to guest exit), PIO exit round trip against a bare KVM_RUN
    /// loop, and the VMM's own memory.
    Boot(BootArgs),
    /// Interrupt delivery: PIT and MSI paths in both irqchip models at several rates.
    Irq(IrqArgs),
    /// Tracing overhead: off vs ring vs lockstep, same experiments, one run.
    Trace(TraceArgs),
    /// Posted-interrupt notification vs one MSI per event, by rate and vCPU count.
    Posted(PostedArgs),
    /// The same guest under irqlab and under QEMU microvm (PVH entry), side by side.
    Compare(CompareArgs),
}

#[derive(Args, Debug)]
pub struct PostedArgs {
    /// Also plot notifications per event and latency against the offered rate (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Boots per VMM.
    #[arg(long, default_value_t = 10)]
    runs: u32,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// Guest command line of the experiment whose results are compared.
    #[arg(long, default_value = "run=selftest")]
    cmdline: String,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Rounds per mode (modes alternate within each round).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

#[derive(Args, Debug)]
pub struct BootArgs {
    /// Boots to time.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// PIO exits per round of the loop comparison.
    #[arg(long, default_value_t = 20_000)]
    exits: u64,
    /// Alternating rounds of the loop comparison.
    #[arg(long, default_value_t = 9)]
    rounds: u32,
}

#[derive(Args, Debug)]
pub struct IrqArgs {
    /// Seconds of guest time per case.
    #[arg(long, default_value_t = 0.5)]
    seconds: f64,
}

pub fn bench(cmd: BenchCommand) -> u8 {
    let result = match cmd {
        BenchCommand::Boot(a) => boot(&a),
        BenchCommand::Irq(a) => irq(&a),
        BenchCommand::Trace(a) => trace_overhead(&a),
        BenchCommand::Posted(a) => posted(&a),
        BenchCommand::Compare(a) => compare(&a),
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

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Spawns `irqlab run` once; returns (wall time, peak RSS bytes, guest bytes touched).
fn timed_boot() -> anyhow::Result<(Duration, u64, u64)> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let child = Command::new(exe)
        .args(["run", "--cmdline", "run=none", "--report-memory"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("piped");
    let mut status = 0;
    // SAFETY: rusage is plain data wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    anyhow::ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "irqlab run exited with status {status:#x}"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err)?;
    let touched = err
        .lines()
        .find_map(|l| l.strip_prefix("irqlab: memory: guest_touched_bytes="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no memory line from irqlab run: {err}"))?;
    Ok((wall, usage.ru_maxrss as u64 * 1024, touched))
}

fn quiet_run(cfg: &VmConfig) -> anyhow::Result<RunReport> {
    let report = machine::run(
        cfg,
        &RunOptions {
            capture_console: true,
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

fn boot(a: &BootArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.runs >= 1 && a.rounds >= 1 && a.exits >= 2,
        "runs, rounds >= 1, exits >= 2"
    );
    // Boot time and memory: separate processes, one warm-up boot first (page cache).
    timed_boot()?;
    let mut walls = Vec::new();
    let mut overheads = Vec::new();
    let mut rss_max = 0;
    for _ in 0..a.runs {
        let (wall, rss, touched) = timed_boot()?;
        walls.push(wall.as_secs_f64() * 1e3);
        overheads.push(rss.saturating_sub(touched) as f64 / (1 << 20) as f64);
        rss_max = rss_max.max(rss);
    }
    let med = median(&mut walls.clone());
    println!("boot (process start -> guest exit, {} runs)", a.runs);
    println!(
        "  median {med:.2} ms   min {:.2} ms   p90 {:.2} ms   target <= 20 ms: {}",
        walls.iter().cloned().fold(f64::INFINITY, f64::min),
        percentile(&mut walls, 0.9),
        verdict(med <= 20.0)
    );
    let oh = median(&mut overheads);
    println!(
        "  VMM memory: peak RSS {:.2} MiB, minus guest memory touched = {oh:.2} MiB (median)   target <= 5 MiB: {}",
        rss_max as f64 / (1 << 20) as f64,
        verdict(oh <= 5.0)
    );

    // PIO exit round trip: bare loop and irqlab, alternating, same process.
    let cfg = VmConfig {
        cmdline: format!("run=pio-loop iters={}", a.exits),
        ..VmConfig::default()
    };
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        // On its own thread, like irqlab's vCPU, so thread placement treats both alike.
        let exits = a.exits;
        let t = std::thread::spawn(move || irqlab::bench::bare_pio_exit(exits))
            .join()
            .map_err(|_| anyhow::anyhow!("bare loop thread panicked"))??;
        bare.push(t.as_secs_f64() * 1e6);
        let r = quiet_run(&cfg)?;
        let (count, span) = r.bench_writes;
        anyhow::ensure!(count == a.exits, "guest wrote the bench port {count} times");
        ours.push(span.as_secs_f64() * 1e6 / (count - 1) as f64);
    }
    let ratios: Vec<f64> = ours.iter().zip(&bare).map(|(o, b)| o / b).collect();
    let (mb, mo, mr) = (
        median(&mut bare),
        median(&mut ours),
        median(&mut ratios.clone()),
    );
    println!(
        "PIO exit round trip ({} rounds x {} exits, alternating)",
        a.rounds, a.exits
    );
    println!("  bare KVM_RUN loop  {mb:.2} us   irqlab vCPU loop  {mo:.2} us");
    println!(
        "  ratio irqlab/bare  {mr:.3} (median of per-round ratios; rounds: {})   target <= 1.10: {}",
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" "),
        verdict(mr <= 1.10)
    );
    Ok(())
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
    let start = marks.iter().find(|m| m.value == 1)?;
    let end = marks.iter().find(|m| m.value == 2)?;
    let mut d = end.exits.since(&start.exits);
    d.pio -= 1; // the end mark's own exit
    Some((n, d))
}

fn irq(a: &IrqArgs) -> anyhow::Result<()> {
    println!("interrupt delivery ({:.1} s of guest time per case; exits counted between the first and the last interrupt)", a.seconds);
    println!(
        "{:<6} {:<4} {:>7} {:>11} {:>9} {:>8} {:>8} {:>10} {:>9}  exits by reason in window",
        "irqchip",
        "path",
        "rate",
        "achieved/s",
        "achieved",
        "raised",
        "handled",
        "exits/irq",
        "missed",
    );
    for irqchip in [IrqchipMode::Split, IrqchipMode::Kernel] {
        for path in ["pit", "msi"] {
            for rate in [100u64, 1000, 10_000] {
                let n = ((rate as f64 * a.seconds) as u64).max(10);
                let cmdline = match path {
                    "pit" => format!("run=timer timer=pit hz={rate} ticks={n} tolerance=100"),
                    _ => format!("run=msi count={n} rate={rate}"),
                };
                let cfg = VmConfig {
                    cmdline,
                    irqchip,
                    timeout: Some(Duration::from_secs_f64(a.seconds * 4.0 + 10.0)),
                    ..VmConfig::default()
                };
                let r = machine::run(
                    &cfg,
                    &RunOptions {
                        capture_console: true,
                        ..Default::default()
                    },
                )?;
                let console = String::from_utf8_lossy(&r.console).into_owned();
                let name = if path == "pit" { "timer-pit" } else { "msi" };
                let Some((_, detail)) = result(&console, name) else {
                    anyhow::bail!(
                        "no {name} result from the guest ({:?}):\n{console}",
                        r.outcome
                    );
                };
                let achieved = measured_hz(detail);
                let (raised, handled, missed) = if path == "pit" {
                    let handled = detail
                        .split(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0u64);
                    match r.pit {
                        Some(t) => (t.ticks.to_string(), handled, t.missed.to_string()),
                        None => ("in-kernel".to_string(), handled, "-".to_string()),
                    }
                } else {
                    let events = detail
                        .split(' ')
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0u64);
                    let irqs = number_before(detail, " interrupts,").unwrap_or(0.0) as u64;
                    let merged = number_before(detail, " merged in IRR").unwrap_or(0.0) as u64;
                    (events.to_string(), irqs, format!("{merged} merged"))
                };
                let (per_irq, reasons) = match window(&console, name, &r.marks) {
                    Some((n, d)) if n > 0 => (
                        format!("{:.3}", d.total() as f64 / n as f64),
                        format!(
                            "pio {} mmio {} eoi {} other {} over {n} irqs",
                            d.pio, d.mmio, d.ioapic_eoi, d.other
                        ),
                    ),
                    _ => ("-".into(), "no window".into()),
                };
                println!(
                    "{:<6} {:<4} {:>7} {:>11.1} {:>8.1}% {:>8} {:>8} {:>10} {:>9}  {}",
                    irqchip.name(),
                    path,
                    rate,
                    achieved,
                    achieved / rate as f64 * 100.0,
                    raised,
                    handled,
                    per_irq,
                    missed,
                    reasons
                );
            }
        }
    }
    Ok(())
}

/// One traced (or untraced) run of `cmdline`: guest-measured rate, userspace exits, summary.
fn traced(
    cmdline: &str,
    result_name: &str,
    mode: Option<irqlab::trace::TraceMode>,
    dir: &std::path::Path,
) -> anyhow::Result<(f64, u64, Option<irqlab::trace::output::Summary>)> {
    let cfg = VmConfig {
        cmdline: cmdline.into(),
        trace: mode.map(|mode| irqlab::trace::TraceConfig {
            dir: dir.join(mode.name()),
            mode,
            ring_records: irqlab::trace::DEFAULT_RING_RECORDS,
        }),
        ..VmConfig::default()
    };
    let r = quiet_run(&cfg)?;
    let console = String::from_utf8_lossy(&r.console).into_owned();
    let (_, detail) = result(&console, result_name)
        .ok_or_else(|| anyhow::anyhow!("no {result_name} result:\n{console}"))?;
    let rate = measured_hz(detail);
    Ok((rate, r.exits.total(), r.trace))
}

fn trace_overhead(a: &TraceArgs) -> anyhow::Result<()> {
    use irqlab::trace::TraceMode;
    let dir = std::env::temp_dir().join(format!("irqlab-bench-trace-{}", std::process::id()));
    let modes = [None, Some(TraceMode::Ring), Some(TraceMode::Lockstep)];
    let cases = [
        (
            "MSI source at 20 kHz (more than the guest takes), 4000 events",
            "run=msi count=4000 rate=20000",
            "msi",
            "msi:source0",
        ),
        (
            "PIT at 1 kHz, 300 ticks",
            "run=timer timer=pit hz=1000 ticks=300 tolerance=100",
            "timer-pit",
            "pit",
        ),
    ];
    println!(
        "tracing overhead ({} rounds, modes alternating; medians)",
        a.rounds
    );
    for (title, cmdline, result_name, source) in cases {
        println!("{title}");
        println!(
            "  {:<9} {:>12} {:>9} {:>14} {:>9} {:>9} {:>8}",
            "mode", "interrupts/s", "vs off", "userspace exits", "+ exits", "p50 us", "p99 us"
        );
        let mut rates = vec![Vec::new(); 3];
        let mut exits = vec![Vec::new(); 3];
        let mut lat = vec![(Vec::new(), Vec::new()); 3];
        let mut records = vec![Vec::new(); 3];
        for _ in 0..a.rounds {
            for (m, mode) in modes.iter().enumerate() {
                let (rate, ex, summary) = traced(cmdline, result_name, *mode, &dir)?;
                rates[m].push(rate);
                exits[m].push(ex as f64);
                if let Some(s) = summary {
                    records[m].push(s.records as f64);
                    if let Some(src) = s.sources.get(source) {
                        lat[m].0.push(src.latency_p50_us);
                        lat[m].1.push(src.latency_p99_us);
                    }
                }
            }
        }
        let off_rate = median(&mut rates[0].clone());
        let off_exits = median(&mut exits[0].clone());
        for (m, name) in ["off", "ring", "lockstep"].iter().enumerate() {
            let rate = median(&mut rates[m]);
            let ex = median(&mut exits[m]);
            let (p50, p99) = if m == 0 {
                ("-".to_string(), "-".to_string())
            } else {
                (
                    format!("{:.1}", median(&mut lat[m].0)),
                    format!("{:.1}", median(&mut lat[m].1)),
                )
            };
            let added = if m == 0 {
                "-".to_string()
            } else {
                let recs = median(&mut records[m]);
                format!(
                    "{:+.0} ({:.2}/irq)",
                    ex - off_exits,
                    (ex - off_exits) / recs.max(1.0)
                )
            };
            println!(
                "  {:<9} {:>12.1} {:>8.1}% {:>14.0} {:>9} {:>9} {:>8}",
                name,
                rate,
                rate / off_rate * 100.0,
                ex,
                added,
                p50,
                p99
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("targets: ring >= 95% of off's interrupts/s and +0 exits; lockstep +1.00 exit per interrupt");
    Ok(())
}

/// A plot panel: title, the value plotted, the y-axis maximum.
type Panel = (&'static str, fn(&PostedRow) -> f64, f64);

/// One row of `irqlab bench posted`.
struct PostedRow {
    vcpus: u8,
    rate: u64,
    posted: bool,
    per_event: f64,
    p50: f64,
}

fn posted(a: &PostedArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let dir = std::env::temp_dir().join(format!("irqlab-bench-posted-{}", std::process::id()));
    println!("posted-interrupt notification vs direct MSIs (ring-mode trace: notification latency; per event: all KVM exits of the run / userspace exits between the guest's marks, KVM halt exits, KVM interrupt injections)");
    println!(
        "{:>5} {:>8} {:<7} {:>7} {:>9} {:>8} {:>10} {:>15} {:>8} {:>8} {:>9} {:>9}",
        "vcpus",
        "rate",
        "mode",
        "events",
        "processed",
        "MSIs",
        "MSIs/event",
        "exits/ev kvm/us",
        "halt/ev",
        "inj/ev",
        "p50 us",
        "p99 us"
    );
    for vcpus in [1u8, 2] {
        for rate in [1000u64, 10_000, 100_000, 0] {
            for mode in ["direct", "posted"] {
                let count = if rate == 0 {
                    20_000
                } else {
                    (rate / 2).clamp(1000, 20_000)
                };
                let cpu = vcpus - 1;
                let cfg = VmConfig {
                    cmdline: format!("run=posted mode={mode} count={count} rate={rate} cpu={cpu}"),
                    vcpus,
                    timeout: Some(Duration::from_secs(60)),
                    trace: Some(irqlab::trace::TraceConfig {
                        dir: dir.join(format!("{vcpus}-{rate}-{mode}")),
                        mode: irqlab::trace::TraceMode::Ring,
                        ring_records: irqlab::trace::DEFAULT_RING_RECORDS,
                    }),
                    ..VmConfig::default()
                };
                let r = quiet_run(&cfg)?;
                let console = String::from_utf8_lossy(&r.console).into_owned();
                let name = if mode == "direct" {
                    "posted-direct"
                } else {
                    "posted-notify"
                };
                let (_, d) = result(&console, name)
                    .ok_or_else(|| anyhow::anyhow!("no {name} result:\n{console}"))?;
                let first = |s: &str| {
                    s.split(' ')
                        .find(|w| !w.is_empty())
                        .and_then(|w| w.parse::<u64>().ok())
                };
                let processed = first(d).unwrap_or(0);
                let msis = d.split("; ").nth(1).and_then(first).unwrap_or(0);
                let user = window(&console, name, &r.marks).map_or(0, |(_, e)| e.total());
                // KVM's own counts (every exit, in-kernel ones too) over the whole run, by reason.
                let kvm = |stat: &str| {
                    r.trace
                        .as_ref()
                        .and_then(|t| t.kvm_totals.get(stat).copied())
                        .unwrap_or(0) as f64
                        / count as f64
                };
                let (p50, p99) = r
                    .trace
                    .as_ref()
                    .and_then(|t| t.sources.get("msi:source0"))
                    .map(|s| (s.latency_p50_us, s.latency_p99_us))
                    .unwrap_or((f64::NAN, f64::NAN));
                rows.push(PostedRow {
                    vcpus,
                    rate,
                    posted: mode == "posted",
                    per_event: msis as f64 / count as f64,
                    p50,
                });
                println!(
                    "{:>5} {:>8} {:<7} {:>7} {:>9} {:>8} {:>10.3} {:>15} {:>8.3} {:>8.3} {:>9.1} {:>9.1}",
                    vcpus,
                    if rate == 0 {
                        "max".to_string()
                    } else {
                        rate.to_string()
                    },
                    mode,
                    count,
                    processed,
                    msis,
                    msis as f64 / count as f64,
                    format!("{:.3}/{:.3}", kvm("exits"), user as f64 / count as f64),
                    kvm("halt_exits"),
                    kvm("irq_injections"),
                    p50,
                    p99
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("targets: at >= 100k events/s posted <= 0.1 MSIs/event and fewer exits/event than direct; at 1k posted p50 within 1.2x of direct; processed = events everywhere");
    if let Some(path) = &a.svg {
        std::fs::write(path, posted_svg(&rows))?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

/// Two panels (MSIs per event, notification latency p50) against the offered rate, one
/// line per mode and vCPU count. "max" is drawn at 10^6.
fn posted_svg(rows: &[PostedRow]) -> String {
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let x = |rate: u64| {
        let r = if rate == 0 { 1e6 } else { rate as f64 };
        pad + (r.log10() - 3.0) / 3.0 * (w - 2.0 * pad)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        2.0 * w
    );
    let panels: [Panel; 2] = [
        ("MSIs (notifications) per event", |r| r.per_event, 1.0),
        ("notification latency p50 (us)", |r| r.p50, 300.0),
    ];
    for (i, (title, value, ymax)) in panels.iter().enumerate() {
        let ox = i as f64 * w;
        let y = |v: f64| h - pad - (v.min(*ymax) / ymax) * (h - 2.0 * pad);
        s.push_str(&format!(
            "<text x=\"{}\" y=\"20\" font-size=\"13\">{title}</text>\n",
            ox + pad
        ));
        s.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/><line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" y2=\"{1}\" stroke=\"black\"/>\n",
            ox + pad, h - pad, ox + w - pad, pad
        ));
        for (label, rate) in [
            ("1k", 1000u64),
            ("10k", 10_000),
            ("100k", 100_000),
            ("max", 0),
        ] {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\">{label}</text>\n",
                ox + x(rate) - 8.0,
                h - pad + 15.0
            ));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">{ymax}</text><text x=\"{}\" y=\"{}\">0</text>\n",
            ox + 5.0,
            pad + 4.0,
            ox + 30.0,
            h - pad
        ));
        for (k, (vcpus, posted)) in [(1u8, false), (1, true), (2, false), (2, true)]
            .iter()
            .enumerate()
        {
            let color = ["#c0504d", "#4f81bd", "#e39c9a", "#95b3d7"][k];
            let pts: Vec<String> = rows
                .iter()
                .filter(|r| r.vcpus == *vcpus && r.posted == *posted && value(r).is_finite())
                .map(|r| format!("{:.1},{:.1}", ox + x(r.rate), y(value(r))))
                .collect();
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            ));
            s.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{} {} vCPU</text>\n",
                ox + w - pad - 90.0,
                pad + 14.0 * k as f64,
                if *posted { "posted" } else { "direct" },
                vcpus
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The guest's result lines ("PASS name", …) in order, for comparing two VMMs.
fn result_set(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| {
            let (tag, rest) = l.split_once(' ')?;
            let name = rest.split(':').next()?;
            matches!(tag, "PASS" | "FAIL" | "SKIP").then(|| format!("{tag} {name}"))
        })
        .collect()
}

fn timed(cmd: &mut Command) -> anyhow::Result<(Duration, i32, String)> {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output()?;
    Ok((
        start.elapsed(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.runs >= 1, "--runs must be at least 1");
    let dir = std::env::temp_dir().join(format!("irqlab-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let elf = dir.join("irqlab-guest.elf");
    std::fs::write(&elf, irqlab::BUILTIN_GUEST)?;
    let host = irqlab::host::detect_host_kind();
    let exe = std::env::current_exe()?;
    // QEMU has no way to tell the guest the host kind; the guest takes it from its command line.
    let qemu_cmdline = format!("{} host={}", a.cmdline, host.name());
    let qemu_args = |cmdline: &str| -> Vec<String> {
        [
            "-accel",
            "kvm",
            "-M",
            "microvm,x-option-roms=off,rtc=off",
            "-cpu",
            "host,-arch-capabilities",
            "-m",
            "64",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([elf.display().to_string(), "-append".into(), cmdline.into()])
        .collect()
    };
    if Command::new(&a.qemu).arg("--version").output().is_err() {
        anyhow::bail!(
            "{} not found: install QEMU (Debian: apt-get install qemu-system-x86)",
            a.qemu
        );
    }
    // Boot time: `run=none` boots, prints its banner and exits.
    let boot_only = format!("run=none host={}", host.name());
    let (mut ti, mut tq) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let (t, code, out) = timed(Command::new(&exe).args(["run", "--cmdline", "run=none"]))?;
        anyhow::ensure!(code == 0, "irqlab run exited {code}:\n{out}");
        ti.push(t.as_secs_f64() * 1e3);
        let (t, code, out) = timed(Command::new(&a.qemu).args(qemu_args(&boot_only)))?;
        // isa-debug-exit: QEMU exits with (status << 1) | 1.
        anyhow::ensure!(
            code == 1,
            "QEMU exited {code} (guest status {}):\n{out}",
            code >> 1
        );
        tq.push(t.as_secs_f64() * 1e3);
    }
    // The experiment, once under each.
    let (ei, code, out_i) = timed(Command::new(&exe).args(["run", "--cmdline", &a.cmdline]))?;
    anyhow::ensure!(code == 0, "irqlab run exited {code}:\n{out_i}");
    let (eq, code, out_q) = timed(Command::new(&a.qemu).args(qemu_args(&qemu_cmdline)))?;
    anyhow::ensure!(
        code == 1,
        "QEMU exited {code} (guest status {}):\n{out_q}",
        code >> 1
    );
    let (ri, rq) = (result_set(&out_i), result_set(&out_q));
    let _ = std::fs::remove_dir_all(&dir);
    let (mi, mq) = (median(&mut ti), median(&mut tq));
    println!(
        "same guest ELF: boot (`run=none`, process start to guest exit), {} runs each",
        a.runs
    );
    println!("  irqlab (native entry)          median {mi:8.2} ms");
    println!("  QEMU microvm -accel kvm (PVH)  median {mq:8.2} ms");
    println!(
        "  QEMU / irqlab                  {:.1}x   target >= 10x: {}",
        mq / mi,
        verdict(mq / mi >= 10.0)
    );
    println!(
        "experiment `{}`: irqlab {:.1} ms, QEMU {:.1} ms (wall, including boot)",
        a.cmdline,
        ei.as_secs_f64() * 1e3,
        eq.as_secs_f64() * 1e3
    );
    let same = ri == rq;
    println!(
        "  results: irqlab {} lines, QEMU {} lines, identical PASS/FAIL/SKIP per check: {}",
        ri.len(),
        rq.len(),
        if same { "yes" } else { "NO" }
    );
    if !same {
        for (x, y) in ri.iter().zip(rq.iter()).filter(|(x, y)| x != y) {
            println!("    irqlab: {x:<40} QEMU: {y}");
        }
        anyhow::bail!("the two VMMs disagree on the guest's results");
    }
    Ok(())
}
