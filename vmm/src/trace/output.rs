//! Turns what a traced run collected into its outputs: `interrupts.jsonl`, `summary.json`,
//! `trace.json` (Chrome Trace Event format) and `latency.svg`, plus the table on stdout.
//!
//! Matching: guest records are put on the host timeline (guest TSC − offset) and taken in
//! entry order. A record of vector `v` is matched to the latest not yet matched injection of
//! `v` whose `KVM_SIGNAL_MSI`/`KVM_IRQ_LINE` call began before the handler entry (allowing the
//! offset's uncertainty); older unmatched ones arrived while the vector was still pending in
//! IRR and are counted as `merged` into it. The guest takes the entry timestamp in the IDT
//! entry path, a few instructions after the CPU accepted the interrupt, so an injection that
//! lands between acceptance and that timestamp (and would be misattributed) is rare. An
//! injection is paired with the latest raise of the same source (and pin) before it.

use super::{Collected, HostEvent, Source, TraceMode, Tracer};
use irqlab_abi::trace::{Record, KIND_IPI, KIND_LAPIC_TIMER};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

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
    /// VMM events and lockstep samples not kept because a cap was reached.
    pub dropped_events: u64,
    /// Records where `raise ≤ inject ≤ entry` does not hold.
    pub order_violations: u64,
    /// Share of records where it holds.
    pub order_ok_ratio: f64,
    /// Userspace exits (exits.jsonl lines).
    pub userspace_exits: u64,
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
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// A latency for a table: "–" when unknown.
fn us(v: Option<f64>) -> String {
    v.map_or("\u{2013}".to_string(), |v| format!("{v:.1}"))
}

struct Injection {
    source: Source,
    pin: Option<u8>,
    vector: Option<u8>,
    call: u64,
    ret: u64,
    raise: Option<u64>,
    matched: bool,
}

/// Correlates and writes every output; returns the summary (also printed by the caller).
pub fn write_all(tracer: &Tracer) -> std::io::Result<Summary> {
    let c = tracer.take();
    let (interrupts, summary, injections) = correlate(&c, tracer.tsc_khz, tracer.config.mode);
    let dir = tracer.dir();
    let mut w = BufWriter::new(File::create(dir.join("interrupts.jsonl"))?);
    for i in &interrupts {
        writeln!(
            w,
            "{}",
            serde_json::to_string(i).map_err(std::io::Error::other)?
        )?;
    }
    w.flush()?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?,
    )?;
    write_chrome(
        dir,
        &interrupts,
        &injections,
        &c.exit_records,
        tracer.tsc_khz,
        base_tsc(&c),
    )?;
    write_svg(dir, &interrupts)?;
    Ok(summary)
}

/// Time zero of every output: when tracing started.
fn base_tsc(c: &Collected) -> u64 {
    c.t0
}

fn offset_for(c: &Collected, cpu: u8) -> i64 {
    c.offsets
        .iter()
        .find(|o| o.vcpu == cpu)
        .map_or(0, |o| o.offset)
}

fn correlate(
    c: &Collected,
    tsc_khz: u64,
    mode: TraceMode,
) -> (Vec<Interrupt>, Summary, Vec<(Source, u64, u64)>) {
    let base = base_tsc(c);
    let us = |tsc: u64| (tsc as f64 - base as f64) * 1000.0 / tsc_khz as f64;
    let slack = c.offsets.iter().map(|o| o.uncertainty).max().unwrap_or(0);

    // Injections, each paired with the latest raise of its source before it.
    let mut last_raise: HashMap<(Source, Option<u8>), u64> = HashMap::new();
    let mut inj: Vec<Injection> = Vec::new();
    let mut events = c.host.clone();
    events.sort_by_key(|e| match e {
        HostEvent::Raise { tsc, .. } => (*tsc, 0),
        HostEvent::Inject { call, .. } => (*call, 1),
    });
    for e in &events {
        match e {
            HostEvent::Raise { source, pin, tsc } => {
                last_raise.insert((source.clone(), *pin), *tsc);
            }
            HostEvent::Inject {
                source,
                pin,
                msi,
                call,
                ret,
                ..
            } => inj.push(Injection {
                source: source.clone(),
                pin: *pin,
                vector: msi.map(|m| m.data as u8),
                call: *call,
                ret: *ret,
                raise: last_raise
                    .get(&(source.clone(), *pin))
                    .copied()
                    .filter(|r| r <= call),
                matched: false,
            }),
        }
    }
    // A `KVM_IRQ_LINE` injection has no vector of its own: learn it from the first guest
    // record that follows an injection of that source with an otherwise unclaimed vector.
    let claimed: std::collections::HashSet<u8> = inj.iter().filter_map(|i| i.vector).collect();

    let mut recs: Vec<(u64, u64, Record)> = c
        .records
        .iter()
        .map(|r| {
            let off = offset_for(c, r.cpu);
            (
                (r.tsc_entry as i64).wrapping_sub(off) as u64,
                (r.tsc_eoi as i64).wrapping_sub(off) as u64,
                *r,
            )
        })
        .collect();
    recs.sort_by_key(|(e, _, r)| (*e, r.seq));

    // Lockstep: per-interrupt deltas between consecutive samples of the same vCPU.
    let names: Vec<(String, usize)> = ATTRIBUTED_STATS
        .iter()
        .filter_map(|n| {
            c.stat_names
                .iter()
                .find(|d| d.name == *n)
                .map(|d| (n.to_string(), d.index))
        })
        .collect();
    let mut deltas: HashMap<u32, BTreeMap<String, i64>> = HashMap::new();
    let mut prev_user: Option<crate::stats::ExitCounts> = None;
    let mut prev: HashMap<u8, Vec<u64>> = c
        .stat_totals
        .iter()
        .map(|(v, start, _)| (*v, start.clone()))
        .collect();
    let mut samples = c.samples.clone();
    samples.sort_by_key(|s| s.tsc);
    for s in &samples {
        if let Some(p) = prev.get(&s.vcpu) {
            let mut d = BTreeMap::new();
            for (name, idx) in &names {
                let mut v = s.values.get(*idx).copied().unwrap_or(0) as i64
                    - p.get(*idx).copied().unwrap_or(0) as i64;
                if name == "exits" {
                    v -= 1; // the doorbell's own exit
                }
                d.insert(name.clone(), v);
            }
            if let Some(pu) = &prev_user {
                let u = s.userspace.since(pu);
                // The doorbell is one PIO exit of its own.
                d.insert("userspace_pio".into(), u.pio as i64 - 1);
                d.insert("userspace_mmio".into(), u.mmio as i64);
                d.insert("userspace_ioapic_eoi".into(), u.ioapic_eoi as i64);
                d.insert("userspace_other".into(), u.other as i64);
            }
            deltas.insert(s.seq, d);
        }
        prev_user = Some(s.userspace);
        prev.insert(s.vcpu, s.values.clone());
    }

    let mut interrupts = Vec::with_capacity(recs.len());
    let mut violations = 0u64;
    let mut line_vectors: HashMap<Source, u8> = HashMap::new();
    for (entry, eoi, r) in &recs {
        // Of the injections of this vector no earlier handler took and that began before
        // this entry, the latest is the one delivered; the older ones arrived while the
        // vector was still pending in IRR and merged into it.
        // Injections that began strictly before the entry first; only if there is none, one
        // within the TSC offset's uncertainty after it.
        let vector_ok = |i: &Injection, lv: &mut HashMap<Source, u8>| match i.vector {
            Some(v) => v == r.vector,
            None => {
                !claimed.contains(&r.vector)
                    && *lv.entry(i.source.clone()).or_insert(r.vector) == r.vector
            }
        };
        let mut cands: Vec<usize> = Vec::new();
        for limit in [*entry, entry.saturating_add(slack)] {
            for (k, i) in inj.iter().enumerate() {
                if !i.matched && i.call <= limit && vector_ok(i, &mut line_vectors) {
                    cands.push(k);
                }
            }
            if !cands.is_empty() {
                break;
            }
        }
        // The latest candidate is the one delivered, unless it arrived after the CPU had
        // already accepted this interrupt (between acceptance and the entry timestamp): then
        // it belongs to the next interrupt of this vector, which would otherwise have none.
        let next_entry = next_entry_of(&recs, r.seq, r.vector);
        let mut pick = cands.len().checked_sub(1);
        if cands.len() >= 2 {
            let next_has_own = inj.iter().any(|i| {
                !i.matched
                    && i.call > *entry
                    && next_entry.is_some_and(|n| i.call <= n)
                    && i.vector.is_none_or(|v| v == r.vector)
            });
            if !next_has_own && next_entry.is_some() {
                pick = Some(cands.len() - 2);
            }
        }
        let matched = pick.map(|p| cands[p]);
        let merged = pick.map_or(0, |p| p as u32);
        for &k in cands.iter().take(pick.map_or(0, |p| p + 1)) {
            inj[k].matched = true;
        }
        let (source, pin, raise, call, ret) = match matched.map(|k| &inj[k]) {
            Some(i) => (
                i.source.0.clone(),
                i.pin,
                i.raise,
                Some(i.call),
                Some(i.ret),
            ),
            None => (
                match r.kind {
                    KIND_LAPIC_TIMER => "lapic-timer".to_string(),
                    KIND_IPI => "ipi".to_string(),
                    _ => format!("in-kernel:{:#04x}", r.vector),
                },
                None,
                None,
                None,
                None,
            ),
        };
        let ordered = match (raise, call) {
            (Some(ra), Some(ca)) => ra <= ca && ca <= *entry,
            (None, Some(ca)) => ca <= *entry,
            _ => true,
        };
        if !ordered {
            violations += 1;
        }
        let start = raise.or(call);
        interrupts.push(Interrupt {
            seq: r.seq,
            source,
            pin,
            vector: r.vector,
            cpu: r.cpu,
            raise_us: raise.map(us),
            inject_us: call.map(us),
            inject_ret_us: ret.map(us),
            entry_us: us(*entry),
            eoi_us: us(*eoi),
            latency_us: start.map(|s| (*entry as f64 - s as f64) * 1000.0 / tsc_khz as f64),
            merged,
            exits: deltas.get(&(r.seq as u32)).cloned().unwrap_or_default(),
        });
    }

    // Run totals.
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (_, start, end) in &c.stat_totals {
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
        for (vcpu, start, end) in &c.stat_totals {
            let last = samples
                .iter()
                .rev()
                .find(|s| s.vcpu == *vcpu)
                .map_or(start, |s| &s.values);
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
    let mut attributed: BTreeMap<String, i64> = BTreeMap::new();
    for i in &interrupts {
        for (k, v) in &i.exits {
            *attributed.entry(k.clone()).or_default() += v;
        }
    }

    let mut by_source: BTreeMap<String, Vec<&Interrupt>> = BTreeMap::new();
    for i in &interrupts {
        by_source.entry(i.source.clone()).or_default().push(i);
    }
    let total_records = interrupts.len().max(1) as f64;
    let mut sources = BTreeMap::new();
    for (name, list) in &by_source {
        let mut lat: Vec<f64> = list.iter().filter_map(|i| i.latency_us).collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let mut epi = BTreeMap::new();
        match mode {
            TraceMode::Lockstep => {
                for (stat, _) in &names {
                    let sum: i64 = list.iter().filter_map(|i| i.exits.get(stat)).sum();
                    epi.insert(stat.clone(), sum as f64 / list.len() as f64);
                }
            }
            TraceMode::Ring => {
                for (stat, total) in &totals {
                    let share = list.len() as f64 / total_records;
                    epi.insert(stat.clone(), *total as f64 * share / list.len() as f64);
                }
            }
        }
        sources.insert(
            name.clone(),
            SourceSummary {
                count: list.len() as u64,
                injected: inj.iter().filter(|i| &i.source.0 == name).count() as u64,
                merged: list.iter().map(|i| u64::from(i.merged)).sum(),
                unhandled: inj
                    .iter()
                    .filter(|i| &i.source.0 == name && !i.matched)
                    .count() as u64,
                latency_p50_us: pct(&lat, 0.5),
                latency_p90_us: pct(&lat, 0.9),
                latency_p99_us: pct(&lat, 0.99),
                latency_max_us: lat.last().copied(),
                handler_mean_us: (!list.is_empty()).then(|| {
                    list.iter().map(|i| i.eoi_us - i.entry_us).sum::<f64>() / list.len() as f64
                }),
                exits_per_interrupt: epi,
            },
        );
    }
    // Sources that injected but whose interrupts never reached a handler still show up.
    for i in &inj {
        sources
            .entry(i.source.0.clone())
            .or_insert_with(|| SourceSummary {
                injected: inj.iter().filter(|j| j.source == i.source).count() as u64,
                ..Default::default()
            });
    }
    let n = interrupts.len() as u64;
    let summary = Summary {
        mode: mode.name().into(),
        tsc_khz,
        sources,
        records: n,
        lost_records: c.lost_records,
        dropped_events: c.dropped,
        order_violations: violations,
        order_ok_ratio: if n == 0 {
            1.0
        } else {
            (n - violations) as f64 / n as f64
        },
        userspace_exits: c.exits,
        kvm_totals: totals,
        kvm_attributed: attributed,
        doorbell_exits: if mode == TraceMode::Lockstep {
            c.samples.len() as u64
        } else {
            0
        },
        kvm_after_last_doorbell: tail,
        tsc_offset_uncertainty: slack,
    };
    let inj_points = inj
        .iter()
        .map(|i| (i.source.clone(), i.raise.unwrap_or(i.call), i.call))
        .collect();
    (interrupts, summary, inj_points)
}

/// Entry (host TSC) of the next record of `vector` after record `seq`.
fn next_entry_of(recs: &[(u64, u64, Record)], seq: u64, vector: u8) -> Option<u64> {
    let pos = recs.iter().position(|(_, _, r)| r.seq == seq)?;
    recs[pos + 1..]
        .iter()
        .find(|(_, _, r)| r.vector == vector)
        .map(|(e, _, _)| *e)
}

fn write_chrome(
    dir: &Path,
    interrupts: &[Interrupt],
    injections: &[(Source, u64, u64)],
    exits: &[super::ExitRecord],
    tsc_khz: u64,
    base: u64,
) -> std::io::Result<()> {
    let us = |tsc: u64| (tsc as f64 - base as f64) * 1000.0 / tsc_khz as f64;
    let mut ev = Vec::new();
    ev.push(json!({"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "vCPUs"}}));
    ev.push(json!({"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "devices"}}));
    let mut device_tids: BTreeMap<String, usize> = BTreeMap::new();
    for (s, _, _) in injections {
        let n = device_tids.len();
        device_tids.entry(s.0.clone()).or_insert(n + 1);
    }
    for (name, tid) in &device_tids {
        ev.push(
            json!({"ph": "M", "pid": 2, "tid": tid, "name": "thread_name", "args": {"name": name}}),
        );
    }
    for (s, raise, call) in injections {
        let tid = device_tids[&s.0];
        ev.push(
            json!({"ph": "i", "s": "t", "pid": 2, "tid": tid, "ts": us(*raise), "name": "raise"}),
        );
        ev.push(
            json!({"ph": "i", "s": "t", "pid": 2, "tid": tid, "ts": us(*call), "name": "inject"}),
        );
    }
    for e in exits {
        ev.push(json!({
            "ph": "i", "s": "t", "pid": 1, "tid": e.vcpu, "ts": us(e.tsc),
            "name": format!("exit {}", e.reason),
            "args": {"addr": format!("{:#x}", e.addr), "size": e.size, "write": e.write, "value": e.value,
                     "vmm_ns": e.vmm_cycles * 1_000_000 / tsc_khz.max(1)},
        }));
    }
    for i in interrupts {
        ev.push(json!({
            "ph": "X", "pid": 1, "tid": i.cpu, "ts": i.entry_us, "dur": (i.eoi_us - i.entry_us).max(0.0),
            "name": format!("{} vector {:#04x}", i.source, i.vector),
            "args": {"seq": i.seq, "latency_us": i.latency_us, "merged": i.merged, "exits": i.exits},
        }));
        if let (Some(start), Some(tid)) = (i.raise_us.or(i.inject_us), device_tids.get(&i.source)) {
            ev.push(json!({"ph": "s", "id": i.seq, "pid": 2, "tid": tid, "ts": start, "name": "delivery", "cat": "irq"}));
            ev.push(json!({"ph": "f", "bp": "e", "id": i.seq, "pid": 1, "tid": i.cpu, "ts": i.entry_us, "name": "delivery", "cat": "irq"}));
        }
    }
    let w = BufWriter::new(File::create(dir.join("trace.json"))?);
    serde_json::to_writer(w, &json!({"traceEvents": ev, "displayTimeUnit": "ns"}))
        .map_err(std::io::Error::other)
}

/// `latency.svg` (see [`super::svg`]): every interrupt counted under its source, those without
/// a latency as unknown.
fn write_svg(dir: &Path, interrupts: &[Interrupt]) -> std::io::Result<()> {
    let mut by: BTreeMap<String, super::svg::SourceLatencies> = BTreeMap::new();
    for i in interrupts {
        let e = by.entry(i.source.to_string()).or_default();
        match i.latency_us {
            Some(l) => e.known.push(l),
            None => e.unknown += 1,
        }
    }
    std::fs::write(dir.join("latency.svg"), super::svg::latency_svg(&by))
}

/// The stdout table for a summary.
pub fn table(s: &Summary) -> String {
    let mut out = format!(
        "trace ({} mode): {} interrupts, {} userspace exits, {} records lost, order raise<=inject<=entry held for {:.2}%\n",
        s.mode, s.records, s.userspace_exits, s.lost_records, s.order_ok_ratio * 100.0
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
    use crate::trace::{Collected, HostEvent, Source, TscOffset};
    use irqlab_devices::{MsiMessage, MsiOutcome};

    fn collected(records: Vec<Record>, host: Vec<HostEvent>) -> Collected {
        Collected {
            host,
            samples: Vec::new(),
            offsets: vec![TscOffset {
                vcpu: 0,
                offset: 1000,
                uncertainty: 5,
            }],
            stat_names: Vec::new(),
            stat_totals: Vec::new(),
            records,
            lost_records: 0,
            exits: 0,
            exit_records: Vec::new(),
            t0: 0,
            dropped: 0,
        }
    }

    fn inject(call: u64, vector: u8) -> HostEvent {
        HostEvent::Inject {
            source: Source("msi:source0".into()),
            pin: None,
            msi: Some(MsiMessage {
                address: 0xfee0_0000,
                data: vector.into(),
            }),
            call,
            ret: call.saturating_add(10),
            outcome: MsiOutcome::Delivered,
        }
    }

    fn rec(seq: u64, vector: u8, guest_entry: u64) -> Record {
        Record {
            seq,
            vector,
            tsc_entry: guest_entry,
            tsc_eoi: guest_entry + 50,
            ..Default::default()
        }
    }

    #[test]
    fn each_record_takes_the_latest_injection_before_it_and_counts_merges() {
        // Host times: injections at 100, 200, 210 (merged with 200), 400; guest = host + 1000.
        let c = collected(
            vec![rec(1, 0x40, 1150), rec(2, 0x40, 1250), rec(3, 0x40, 1450)],
            vec![
                inject(100, 0x40),
                inject(200, 0x40),
                inject(210, 0x40),
                inject(400, 0x40),
            ],
        );
        let (irqs, summary, _) = correlate(&c, 1000, TraceMode::Ring);
        let lat: Vec<f64> = irqs.iter().map(|i| i.latency_us.unwrap()).collect();
        assert_eq!(lat, vec![50.0, 40.0, 50.0]);
        assert_eq!(irqs[1].merged, 1);
        let s = &summary.sources["msi:source0"];
        assert_eq!((s.count, s.injected, s.merged, s.unhandled), (3, 4, 1, 0));
        assert_eq!(summary.order_violations, 0);
    }

    #[test]
    fn garbage_records_do_not_panic() {
        let records = (0..64)
            .map(|i| Record {
                seq: u64::MAX - i,
                vector: i as u8,
                cpu: 255,
                kind: 200,
                tsc_entry: u64::MAX - i * 7,
                tsc_eoi: i,
                ..Default::default()
            })
            .collect();
        let c = collected(records, vec![inject(u64::MAX, 3), inject(0, 0)]);
        let (irqs, _, _) = correlate(&c, 1, TraceMode::Lockstep);
        assert_eq!(irqs.len(), 64);
    }
}
