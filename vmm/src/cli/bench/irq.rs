//! `irqlab bench irq`: PIT and MSI delivery in both irqchip models at several rates.

use super::{captured_run, measured_hz, number_before, result, window};
use crate::cli::args::seconds;
use clap::Args;
use irqlab::config::{IrqchipMode, VmConfig};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct IrqArgs {
    /// Seconds of guest time per case (0.01-600).
    #[arg(long, default_value_t = 0.5, allow_hyphen_values = true,
          value_parser = |s: &str| seconds(s, 0.01, 600.0, "0.01"))]
    seconds: f64,
}

pub(super) fn irq(a: &IrqArgs) -> anyhow::Result<()> {
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
                let (r, console) = captured_run(&cfg)?;
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
