//! The data model of a trace that the writer and its readers share: one delivered
//! [`Interrupt`] (a line of `interrupts.jsonl`), and [`Summary`] (`summary.json`) with its
//! per-source [`SourceSummary`] — what `irqlab run` writes and `irqlab trace summarize` /
//! `diff` read back (fields added later default, so older summaries still parse).

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
    /// A timer tick that ended a task's time slice: the guest switched tasks on its way back
    /// to user mode (`run=sched`, `run=signals`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preempt: bool,
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
    /// Its interrupts that were timer ticks ending a task's time slice (the guest switched
    /// tasks on the way back to user mode).
    #[serde(default)]
    pub preempting: u64,
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
