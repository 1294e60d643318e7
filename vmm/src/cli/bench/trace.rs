//! `irqlab bench trace`: tracing off vs ring vs lockstep on the same experiments; with
//! `--rss`, the peak memory of `irqlab run --trace` at growing interrupt counts instead.

use super::{measured_hz, median, quiet_run, result, verdict};
use crate::cli::args::whole;
use clap::Args;
use irqlab::config::VmConfig;

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Rounds per mode (modes alternate within each round; 1-100).
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u32>(s, 1, 100, ""))]
    rounds: u32,
    /// Instead: peak RSS of `irqlab run --trace` (a child process each) at each of
    /// --rss-interrupts traced PIT interrupts, side by side.
    #[arg(long)]
    rss: bool,
    /// Interrupt counts for --rss (PIT ticks the guest waits for).
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000",
          value_parser = |s: &str| whole::<u64>(s, 2, 100_000_000, ""))]
    rss_interrupts: Vec<u64>,
    /// PIT rate for --rss, Hz (the guest waits up to twice the nominal time for its ticks; a
    /// host that delivers less than half the rate traces fewer interrupts than asked — 5 kHz
    /// completes on a slow nested host).
    #[arg(long, default_value_t = 5_000, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u64>(s, 100, 100_000, ""))]
    rss_hz: u64,
}

/// What one `--rss` run measured.
struct RssRun {
    peak: u64,
    records: u64,
    files: u64,
    wall: std::time::Duration,
    verdict: String,
}

/// Runs `irqlab run --trace` as a child on `ticks` PIT ticks at `hz`; its peak RSS from
/// `wait4`'s rusage (ru_maxrss: the child's own high-water mark, like VmHWM).
fn rss_run(ticks: u64, hz: u64, dir: &std::path::Path) -> anyhow::Result<RssRun> {
    use std::process::{Command, Stdio};
    let _ = std::fs::remove_dir_all(dir);
    let cmdline = format!("run=timer timer=pit hz={hz} ticks={ticks} tolerance=off");
    // The guest gives up after twice the nominal time; the watchdog only guards a hang.
    let timeout = ticks * 2 / hz + 120;
    let start = std::time::Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args(["run", "--cmdline", &cmdline, "--trace"])
        .arg(dir)
        .args(["--timeout", &timeout.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let mut status = 0;
    // SAFETY: rusage is plain data wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    anyhow::ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    let out = reader.join().unwrap_or_default();
    let summary = irqlab::trace::summarize::read(dir)
        .map_err(|e| anyhow::anyhow!("{e} (irqlab run exited with status {status:#x})"))?;
    let files = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let verdict = result(&out, "timer-pit").map_or("none".to_string(), |(tag, _)| tag.into());
    let _ = std::fs::remove_dir_all(dir);
    Ok(RssRun {
        peak: usage.ru_maxrss as u64 * 1024,
        records: summary.records,
        files,
        wall,
        verdict,
    })
}

/// `--rss`: peak RSS at each interrupt count, side by side.
fn rss(a: &TraceArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("irqlab-bench-rss-{}", std::process::id()));
    println!(
        "peak RSS of `irqlab run --trace` (ring mode; `run=timer timer=pit hz={}`, ticks = the interrupts asked; ru_maxrss of the child from wait4)",
        a.rss_hz
    );
    let mut runs = Vec::new();
    for &n in &a.rss_interrupts {
        runs.push(rss_run(n, a.rss_hz, &dir)?);
    }
    let row = |name: &str, f: &dyn Fn(&RssRun) -> String| {
        let cells: Vec<String> = runs.iter().map(|r| format!("{:>12}", f(r))).collect();
        println!("  {:<20}{}", name, cells.join(""));
    };
    let asked: Vec<String> = a
        .rss_interrupts
        .iter()
        .map(|n| format!("{n:>12}"))
        .collect();
    println!("  {:<20}{}", "interrupts asked", asked.join(""));
    row("interrupts traced", &|r| r.records.to_string());
    row("peak RSS MiB", &|r| {
        format!("{:.1}", r.peak as f64 / 1048576.0)
    });
    row("trace files MiB", &|r| {
        format!("{:.1}", r.files as f64 / 1048576.0)
    });
    row("wall s", &|r| format!("{:.1}", r.wall.as_secs_f64()));
    row("guest result", &|r| r.verdict.clone());
    let peaks: Vec<u64> = runs.iter().map(|r| r.peak).collect();
    let (lo, hi) = (
        peaks.iter().copied().min().unwrap_or(0),
        peaks.iter().copied().max().unwrap_or(0),
    );
    println!(
        "target: flat (largest peak within 16 MiB of the smallest) and <= 64 MiB: {}",
        verdict(hi <= 64 << 20 && hi - lo <= 16 << 20)
    );
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
        trace: mode.map(|mode| irqlab::trace::TraceConfig::new(dir.join(mode.name()), mode)),
        ..VmConfig::default()
    };
    let r = quiet_run(&cfg)?;
    let console = String::from_utf8_lossy(&r.console).into_owned();
    let (_, detail) = result(&console, result_name)
        .ok_or_else(|| anyhow::anyhow!("no {result_name} result:\n{console}"))?;
    let rate = measured_hz(detail);
    Ok((rate, r.exits.total(), r.trace))
}

pub(super) fn trace_overhead(a: &TraceArgs) -> anyhow::Result<()> {
    use irqlab::trace::TraceMode;
    if a.rss {
        return rss(a);
    }
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
                        if let (Some(p50), Some(p99)) = (src.latency_p50_us, src.latency_p99_us) {
                            lat[m].0.push(p50);
                            lat[m].1.push(p99);
                        }
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
