//! `irqlab bench trace`: tracing off vs ring vs lockstep on the same experiments.

use super::{measured_hz, median, quiet_run, result};
use crate::cli::args::whole;
use clap::Args;
use irqlab::config::VmConfig;

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Rounds per mode (modes alternate within each round; 1-100).
    #[arg(long, default_value_t = 3, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u32>(s, 1, 100, ""))]
    rounds: u32,
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

pub(super) fn trace_overhead(a: &TraceArgs) -> anyhow::Result<()> {
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
