//! The aggregates of a traced run: everything `summary.json`, the table and `latency.svg`
//! are made of, counted as records are matched (per source: counts, a latency histogram,
//! svg buckets, exit sums) so that memory does not grow with the run.

use crate::trace::hist::LatencyHist;
use crate::trace::model::Interrupt;
use crate::trace::svg::SourceLatencies;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Per-source aggregates.
#[derive(Debug, Default, Clone)]
pub struct SourceAgg {
    /// Interrupts handled.
    pub count: u64,
    /// Of them, timer ticks that preempted a task.
    pub preempting: u64,
    /// Injections.
    pub injected: u64,
    /// Injections merged into an interrupt of this source.
    pub merged: u64,
    /// Injections never matched.
    pub unhandled: u64,
    /// Latencies (µs).
    pub latency: LatencyHist,
    /// `latency.svg` buckets.
    pub svg: SourceLatencies,
    /// Sum of entry → EOI (µs).
    pub handler_sum_us: f64,
    /// Sums of the lockstep deltas.
    pub exits_sum: BTreeMap<String, i64>,
    /// Vectors its interrupts arrived at.
    pub vectors: BTreeSet<u8>,
}

/// Everything the summary needs, counted as the run went.
#[derive(Debug, Default, Clone)]
pub struct Aggregates {
    /// By source name.
    pub sources: BTreeMap<String, SourceAgg>,
    /// Records matched and written.
    pub records: u64,
    /// Records where `raise ≤ inject ≤ entry` does not hold.
    pub violations: u64,
    /// Sum of the per-interrupt deltas.
    pub attributed: BTreeMap<String, i64>,
    /// Lockstep samples.
    pub doorbells: u64,
    /// Each vCPU's last statistics sample (its baseline if it rang no doorbell).
    pub last_values: HashMap<u8, Vec<u64>>,
    /// Largest TSC offset uncertainty (cycles).
    pub slack: u64,
    /// `trace.json` events written.
    pub chrome_events: u64,
}

impl Aggregates {
    /// The aggregates of source `name` (created empty when first seen).
    pub(super) fn source(&mut self, name: &str) -> &mut SourceAgg {
        if !self.sources.contains_key(name) {
            self.sources.insert(name.to_string(), SourceAgg::default());
        }
        self.sources.get_mut(name).expect("just inserted")
    }

    /// Counts a matched interrupt (`ordered`: `raise ≤ inject ≤ entry` held).
    pub(super) fn count(&mut self, i: &Interrupt, ordered: bool) {
        self.records += 1;
        if !ordered {
            self.violations += 1;
        }
        for (k, v) in &i.exits {
            *self.attributed.entry(k.clone()).or_default() += v;
        }
        let s = self.source(&i.source);
        s.count += 1;
        s.preempting += u64::from(i.preempt);
        s.merged += u64::from(i.merged);
        if let Some(l) = i.latency_us {
            s.latency.record(l);
        }
        s.svg.add(i.latency_us);
        s.handler_sum_us += i.eoi_us - i.entry_us;
        for (k, v) in &i.exits {
            *s.exits_sum.entry(k.clone()).or_default() += v;
        }
        s.vectors.insert(i.vector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn irq(source: &str, vector: u8, latency_us: Option<f64>, merged: u32) -> Interrupt {
        Interrupt {
            seq: 1,
            source: source.into(),
            pin: None,
            vector,
            cpu: 0,
            raise_us: None,
            inject_us: None,
            inject_ret_us: None,
            entry_us: 10.0,
            eoi_us: 12.5,
            latency_us,
            merged,
            exits: BTreeMap::from([("exits".to_string(), 2)]),
            preempt: false,
        }
    }

    #[test]
    fn interrupts_are_counted_per_source_and_in_total() {
        let mut a = Aggregates::default();
        a.count(&irq("pit", 0x30, Some(40.0), 0), true);
        a.count(&irq("pit", 0x31, None, 2), false);
        a.count(&irq("uart", 0x32, Some(3.0), 0), true);
        assert_eq!((a.records, a.violations), (3, 1));
        assert_eq!(a.attributed["exits"], 6);
        let pit = &a.sources["pit"];
        assert_eq!((pit.count, pit.merged, pit.injected), (2, 2, 0));
        assert_eq!((pit.svg.known(), pit.svg.unknown), (1, 1));
        assert_eq!(pit.latency.max(), Some(40.0));
        assert_eq!(pit.handler_sum_us, 5.0);
        assert_eq!(pit.exits_sum["exits"], 4);
        assert_eq!(pit.vectors, BTreeSet::from([0x30, 0x31]));
        a.source("new").unhandled += 1;
        assert_eq!(a.sources.len(), 3);
    }
}
