//! The outputs of a traced run: `interrupts.jsonl` and `trace.json` (Chrome Trace Event
//! format), written as the run goes by the trace writer ([`super::stream`]), and at the end
//! `summary.json` and `latency.svg` from its aggregates, plus the table on stdout.
//!
//! Matching: guest records are put on the host timeline (guest TSC − offset) and taken in
//! entry order. A record of vector `v` is matched to the latest not yet matched injection of
//! `v` whose `KVM_SIGNAL_MSI`/`KVM_IRQ_LINE` call began before the handler entry (allowing the
//! offset's uncertainty); older unmatched ones arrived while the vector was still pending in
//! IRR and are counted as `merged` into it. The guest takes the entry timestamp in the IDT
//! entry path, a few instructions after the CPU accepted the interrupt, so an injection that
//! lands between acceptance and that timestamp (and would be misattributed) is rare. An
//! injection is paired with the latest raise of the same source (and pin) before it. The
//! writer does this on a bounded window behind the present (see [`super::stream`]).
//!
//! Percentiles in `summary.json` and the table come from a log-linear histogram per source
//! (within 0.4 % + 0.5 ns of the exact order statistic; the maximum is exact — see
//! [`super::hist`]).

use super::stream::Aggregates;
use super::{lock, TraceMode, Tracer};
use crate::stats::FailureCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// KVM statistics attributed per interrupt (those the kernel has).
pub const ATTRIBUTED_STATS: &[&str] = &[
    "exits",
    "io_exits",
    "mmio_exits",
    "irq_exits",
    "halt_exits",
    "irq_window_exits",
    "irq_injections",
    "insn_emulation",
    "halt_wakeup",
    "signal_exits",
];

/// One delivered interrupt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interrupt {
    /// Guest record sequence number.
    pub seq: u64,
    /// `pit`, `uart`, `msi:source0`, `lapic-timer`, `ipi`, `in-kernel`, …
    pub source: String,
    /// IO-APIC pin / GSI.
    pub pin: Option<u8>,
    /// Vector.
    pub vector: u8,
    /// vCPU that handled it.
    pub cpu: u8,
    /// Device raised its line (µs on the trace axis).
    pub raise_us: Option<f64>,
    /// Injection ioctl called.
    pub inject_us: Option<f64>,
    /// Injection ioctl returned.
    pub inject_ret_us: Option<f64>,
    /// Guest handler entry.
    pub entry_us: f64,
    /// Guest EOI.
    pub eoi_us: f64,
    /// entry − raise (or entry − inject when nothing raised).
    pub latency_us: Option<f64>,
    /// Injections merged into this interrupt (vector still pending).
    pub merged: u32,
    /// KVM statistic deltas attributed to this interrupt (lockstep only; the doorbell's own
    /// exit subtracted).
    pub exits: BTreeMap<String, i64>,
}

/// Per-source numbers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceSummary {
    /// Interrupts handled.
    pub count: u64,
    /// Injections (device side).
    pub injected: u64,
    /// Injections merged into another interrupt.
    pub merged: u64,
    /// Injections no handler took (pending when the guest stopped, or lost).
    pub unhandled: u64,
    /// Latency percentiles (µs); `None` (JSON null, "–" in tables) when no interrupt of the
    /// source has a known latency — never 0.
    pub latency_p50_us: Option<f64>,
    /// p90.
    pub latency_p90_us: Option<f64>,
    /// p99.
    pub latency_p99_us: Option<f64>,
    /// Maximum.
    pub latency_max_us: Option<f64>,
    /// Mean handler time entry → EOI (µs); `None` without handled interrupts.
    pub handler_mean_us: Option<f64>,
    /// Mean KVM statistic deltas per interrupt (lockstep) or the run's totals split in
    /// proportion to the interrupt count (ring: an estimate).
    pub exits_per_interrupt: BTreeMap<String, f64>,
    /// The vectors its interrupts arrived at (what `irqlab trace diff` pairs sources of two
    /// traces by when their names differ, e.g. `pit` and KVM's `in-kernel:0x30`).
    #[serde(default)]
    pub vectors: Vec<u8>,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// `ring` or `lockstep`.
    pub mode: String,
    /// TSC frequency used for the time axis.
    pub tsc_khz: u64,
    /// Per source.
    pub sources: BTreeMap<String, SourceSummary>,
    /// Interrupt records.
    pub records: u64,
    /// Records lost (ring lapped, or the VMM's record cap reached).
    pub lost_records: u64,
    /// VMM events, lockstep samples and `trace.json` exit instants not kept because the trace
    /// writer fell behind (a pending buffer was full).
    pub dropped_events: u64,
    /// Records where `raise ≤ inject ≤ entry` does not hold.
    pub order_violations: u64,
    /// Share of records where it holds.
    pub order_ok_ratio: f64,
    /// Userspace exits (exits.jsonl lines, plus `dropped_exit_records`).
    pub userspace_exits: u64,
    /// Exits not written to exits.jsonl (nor trace.json) because `exits_max_records` lines
    /// had been.
    #[serde(default)]
    pub dropped_exit_records: u64,
    /// The cap on exits.jsonl lines (0: none).
    #[serde(default)]
    pub exits_max_records: u64,
    /// KVM statistics over the run, summed over vCPUs (end − start).
    pub kvm_totals: BTreeMap<String, u64>,
    /// Sum of the per-interrupt deltas (lockstep).
    pub kvm_attributed: BTreeMap<String, i64>,
    /// Doorbell exits (lockstep: one per record).
    pub doorbell_exits: u64,
    /// KVM statistics after each vCPU's last doorbell (the guest's activity once it stopped
    /// taking interrupts: reporting, exiting). In lockstep mode
    /// `kvm_totals = kvm_attributed + doorbell_exits (for "exits") + kvm_after_last_doorbell`.
    pub kvm_after_last_doorbell: BTreeMap<String, u64>,
    /// Largest TSC offset uncertainty (cycles).
    pub tsc_offset_uncertainty: u64,
    /// Failed KVM interrupt calls and ignored IO-APIC accesses over the run (zeros in a
    /// summary written before they were recorded).
    #[serde(default)]
    pub failures: FailureCounts,
}

/// A latency for a table: "–" when unknown.
fn us(v: Option<f64>) -> String {
    v.map_or("\u{2013}".to_string(), |v| format!("{v:.1}"))
}

/// Stops the trace writer (which writes the rest of `interrupts.jsonl` and `trace.json`),
/// then writes `summary.json` (with the run's `failures`) and `latency.svg`; returns the
/// summary (also printed by the caller).
pub fn write_all(tracer: &Tracer, failures: FailureCounts) -> std::io::Result<Summary> {
    let writer = lock(&tracer.writer).take();
    let agg = match writer {
        Some(w) => w.finish()?,
        None => match tracer.take_outputs() {
            Some(outputs) => super::stream::finish_inline(tracer, outputs)?,
            None => return Err(std::io::Error::other("the trace was already written")),
        },
    };
    let summary = Summary {
        failures,
        ..summary(tracer, &agg)
    };
    let dir = tracer.dir();
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?,
    )?;
    let by: BTreeMap<String, super::svg::SourceLatencies> = agg
        .sources
        .iter()
        .filter(|(_, s)| s.count > 0)
        .map(|(n, s)| (n.clone(), s.svg.clone()))
        .collect();
    std::fs::write(dir.join("latency.svg"), super::svg::latency_svg(&by))?;
    Ok(summary)
}

/// The summary of a run from the writer's aggregates and the tracer's run totals.
fn summary(tracer: &Tracer, agg: &Aggregates) -> Summary {
    let mode = tracer.config.mode;
    let names: Vec<(String, usize)> = ATTRIBUTED_STATS
        .iter()
        .filter_map(|n| {
            tracer
                .stat_names()
                .iter()
                .find(|d| d.name == *n)
                .map(|d| (n.to_string(), d.index))
        })
        .collect();
    let stat_totals = lock(&tracer.stat_totals).clone();
    // Run totals.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (_, start, end) in &stat_totals {
        for (name, idx) in &names {
            let d = end
                .get(*idx)
                .copied()
                .unwrap_or(0)
                .saturating_sub(start.get(*idx).copied().unwrap_or(0));
            *totals.entry(name.clone()).or_default() += d;
        }
    }
    let mut tail: BTreeMap<String, u64> = BTreeMap::new();
    if mode == TraceMode::Lockstep {
        for (vcpu, start, end) in &stat_totals {
            let last = agg.last_values.get(vcpu).unwrap_or(start);
            for (name, idx) in &names {
                let d = end
                    .get(*idx)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(last.get(*idx).copied().unwrap_or(0));
                *tail.entry(name.clone()).or_default() += d;
            }
        }
    }
    let total_records = agg.records.max(1) as f64;
    let mut sources = BTreeMap::new();
    for (name, a) in &agg.sources {
        let mut epi = BTreeMap::new();
        if a.count > 0 {
            match mode {
                TraceMode::Lockstep => {
                    for (stat, _) in &names {
                        let sum = a.exits_sum.get(stat).copied().unwrap_or(0);
                        epi.insert(stat.clone(), sum as f64 / a.count as f64);
                    }
                }
                TraceMode::Ring => {
                    for (stat, total) in &totals {
                        let share = a.count as f64 / total_records;
                        epi.insert(stat.clone(), *total as f64 * share / a.count as f64);
                    }
                }
            }
        }
        sources.insert(
            name.clone(),
            SourceSummary {
                count: a.count,
                injected: a.injected,
                merged: a.merged,
                unhandled: a.unhandled,
                latency_p50_us: a.latency.percentile(0.5),
                latency_p90_us: a.latency.percentile(0.9),
                latency_p99_us: a.latency.percentile(0.99),
                latency_max_us: a.latency.max(),
                handler_mean_us: (a.count > 0).then(|| a.handler_sum_us / a.count as f64),
                exits_per_interrupt: epi,
                vectors: a.vectors.iter().copied().collect(),
            },
        );
    }
    let n = agg.records;
    let (exits, dropped_exits) = tracer.exit_counts();
    Summary {
        mode: mode.name().into(),
        tsc_khz: tracer.tsc_khz,
        sources,
        records: n,
        lost_records: lock(&tracer.ring).lost,
        dropped_events: tracer.dropped.load(std::sync::atomic::Ordering::Relaxed),
        order_violations: agg.violations,
        order_ok_ratio: if n == 0 {
            1.0
        } else {
            (n - agg.violations) as f64 / n as f64
        },
        userspace_exits: exits,
        dropped_exit_records: dropped_exits,
        exits_max_records: tracer.config.exits_max_records,
        kvm_totals: totals,
        kvm_attributed: agg.attributed.clone(),
        doorbell_exits: if mode == TraceMode::Lockstep {
            agg.doorbells
        } else {
            0
        },
        kvm_after_last_doorbell: tail,
        tsc_offset_uncertainty: agg.slack,
        failures: FailureCounts::default(),
    }
}

/// The stdout table for a summary.
pub fn table(s: &Summary) -> String {
    let mut out = format!(
        "trace ({} mode): {} interrupts, {} userspace exits ({} exit records dropped past exits_max_records), {} records lost, order raise<=inject<=entry held for {:.2}%\n",
        s.mode,
        s.records,
        s.userspace_exits,
        s.dropped_exit_records,
        s.lost_records,
        s.order_ok_ratio * 100.0
    );
    out.push_str(&format!(
        "{:<16} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "source",
        "count",
        "injected",
        "merged",
        "p50 us",
        "p90 us",
        "p99 us",
        "max us",
        "exits per interrupt"
    ));
    for (name, v) in &s.sources {
        let exits: Vec<String> = v
            .exits_per_interrupt
            .iter()
            .filter(|(_, x)| x.abs() >= 0.005)
            .map(|(k, x)| format!("{k} {x:.2}"))
            .collect();
        out.push_str(&format!(
            "{:<16} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}  {}\n",
            name,
            v.count,
            v.injected,
            v.merged,
            us(v.latency_p50_us),
            us(v.latency_p90_us),
            us(v.latency_p99_us),
            us(v.latency_max_us),
            if exits.is_empty() {
                "-".to_string()
            } else {
                exits.join(", ")
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_summaries_without_the_new_fields_still_parse() {
        let text = r#"{"mode":"ring","tsc_khz":1000,"sources":{"pit":{"count":1,"injected":1,
            "merged":0,"unhandled":0,"latency_p50_us":1.0,"latency_p90_us":1.0,
            "latency_p99_us":1.0,"latency_max_us":1.0,"handler_mean_us":1.0,
            "exits_per_interrupt":{}}},"records":1,"lost_records":0,"dropped_events":0,
            "order_violations":0,"order_ok_ratio":1.0,"userspace_exits":0,"kvm_totals":{},
            "kvm_attributed":{},"doorbell_exits":0,"kvm_after_last_doorbell":{},
            "tsc_offset_uncertainty":0}"#;
        let s: Summary = serde_json::from_str(text).unwrap();
        assert_eq!(s.dropped_exit_records, 0);
        assert!(s.sources["pit"].vectors.is_empty());
        assert_eq!(s.failures, FailureCounts::default());
        assert!(table(&s).contains("0 exit records dropped"));
    }

    #[test]
    fn failures_are_written_and_read_back() {
        let text = r#"{"mode":"ring","tsc_khz":1000,"sources":{},"records":0,"lost_records":0,
            "dropped_events":0,"order_violations":0,"order_ok_ratio":1.0,"userspace_exits":0,
            "kvm_totals":{},"kvm_attributed":{},"doorbell_exits":0,
            "kvm_after_last_doorbell":{},"tsc_offset_uncertainty":0}"#;
        let mut s: Summary = serde_json::from_str(text).unwrap();
        s.failures = FailureCounts {
            routing_errors: 1,
            gsi_line_errors: 0,
            ioapic_bad_accesses: 42,
        };
        let json: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert_eq!(json["failures"]["ioapic_bad_accesses"], 42);
        assert_eq!(json["failures"]["routing_errors"], 1);
        assert_eq!(json["failures"]["gsi_line_errors"], 0);
        let back: Summary = serde_json::from_value(json).unwrap();
        assert_eq!(back.failures, s.failures);
    }
}
