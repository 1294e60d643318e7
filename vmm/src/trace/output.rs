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

pub use super::model::ATTRIBUTED_STATS;
pub use super::model::{Interrupt, SourceSummary, Summary};
use super::stream::Aggregates;
pub use super::table::table;
use super::{lock, TraceMode, Tracer};
use crate::stats::FailureCounts;
use std::collections::BTreeMap;

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
                preempting: a.preempting,
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
