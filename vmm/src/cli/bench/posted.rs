//! `irqlab bench posted`: posted-interrupt notification vs one MSI per event.

use super::{number_before, quiet_run, result, window};
use clap::Args;
use irqlab::config::VmConfig;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct PostedArgs {
    /// Also plot notifications per event and latency against the offered rate (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
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

pub(super) fn posted(a: &PostedArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let dir = std::env::temp_dir().join(format!("irqlab-bench-posted-{}", std::process::id()));
    println!("posted-interrupt notification vs direct MSIs (ring-mode trace: notification latency; per event: all KVM exits of the run / userspace exits between the guest's marks, KVM halt exits, KVM interrupt injections)");
    println!(
        "{:>5} {:>8} {:<7} {:>7} {:>9} {:>9} {:>8} {:>10} {:>15} {:>8} {:>8} {:>9} {:>9}",
        "vcpus",
        "rate",
        "mode",
        "events",
        "processed",
        "events/s",
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
                    trace: Some(irqlab::trace::TraceConfig::new(
                        dir.join(format!("{vcpus}-{rate}-{mode}")),
                        irqlab::trace::TraceMode::Ring,
                    )),
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
                // The guest's measured event rate (not its vector dispatches per second).
                let events_per_s = number_before(d, " events/s").unwrap_or(f64::NAN);
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
                    .map(|s| {
                        (
                            s.latency_p50_us.unwrap_or(f64::NAN),
                            s.latency_p99_us.unwrap_or(f64::NAN),
                        )
                    })
                    .unwrap_or((f64::NAN, f64::NAN));
                rows.push(PostedRow {
                    vcpus,
                    rate,
                    posted: mode == "posted",
                    per_event: msis as f64 / count as f64,
                    p50,
                });
                println!(
                    "{:>5} {:>8} {:<7} {:>7} {:>9} {:>9.0} {:>8} {:>10.3} {:>15} {:>8.3} {:>8.3} {:>9.1} {:>9.1}",
                    vcpus,
                    if rate == 0 {
                        "max".to_string()
                    } else {
                        rate.to_string()
                    },
                    mode,
                    count,
                    processed,
                    events_per_s,
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
