//! Lockstep attribution: the guest rings a doorbell after each EOI, and the KVM statistic
//! deltas since the vCPU's previous doorbell (less the doorbell's own exit) belong to the
//! record it rang for. The deltas wait here, by record sequence number, until that record is
//! matched — or are dropped once its record can no longer come.

use super::aggregate::Aggregates;
use crate::kvm_stats::StatDesc;
use crate::trace::model::ATTRIBUTED_STATS;
use crate::trace::Sample;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The deltas of the doorbells whose record was not matched yet.
#[derive(Default)]
pub(super) struct Deltas {
    /// The attributed statistics and their index in a sample.
    names: Vec<(String, usize)>,
    /// vCPUs whose baseline was taken.
    baselined: HashSet<u8>,
    /// irqlab's userspace exit counters at the previous doorbell.
    prev_user: Option<crate::stats::ExitCounts>,
    /// By record sequence number (low 32 bits): (sample TSC, deltas).
    deltas: HashMap<u32, (u64, BTreeMap<String, i64>)>,
    /// Their keys by sample TSC.
    order: BTreeSet<(u64, u32)>,
}

impl Deltas {
    /// Learns the statistics layout (once a vCPU opened its statistics).
    pub(super) fn layout(&mut self, names: &[StatDesc]) {
        if self.names.is_empty() && !names.is_empty() {
            self.names = ATTRIBUTED_STATS
                .iter()
                .filter_map(|n| {
                    names
                        .iter()
                        .find(|d| d.name == *n)
                        .map(|d| (n.to_string(), d.index))
                })
                .collect();
        }
    }

    /// Takes each vCPU's statistics before its first entry as its first baseline.
    pub(super) fn baseline(&mut self, starts: &[(u8, Vec<u64>)], agg: &mut Aggregates) {
        for (vcpu, values) in starts {
            if self.baselined.insert(*vcpu) {
                agg.last_values.insert(*vcpu, values.clone());
            }
        }
    }

    /// A doorbell sample: the statistic deltas since the vCPU's previous one belong to the
    /// record the guest rang for.
    pub(super) fn sample(&mut self, s: Sample, agg: &mut Aggregates) {
        agg.doorbells += 1;
        if let Some(p) = agg.last_values.get(&s.vcpu) {
            let mut d = BTreeMap::new();
            for (name, idx) in &self.names {
                let mut v = s.values.get(*idx).copied().unwrap_or(0) as i64
                    - p.get(*idx).copied().unwrap_or(0) as i64;
                if name == "exits" {
                    v -= 1; // the doorbell's own exit
                }
                d.insert(name.clone(), v);
            }
            if let Some(pu) = &self.prev_user {
                let u = s.userspace.since(pu);
                // The doorbell is one PIO exit of its own.
                d.insert("userspace_pio".into(), u.pio as i64 - 1);
                d.insert("userspace_mmio".into(), u.mmio as i64);
                d.insert("userspace_ioapic_eoi".into(), u.ioapic_eoi as i64);
                d.insert("userspace_other".into(), u.other as i64);
            }
            if let Some((old, _)) = self.deltas.insert(s.seq, (s.tsc, d)) {
                self.order.remove(&(old, s.seq));
            }
            self.order.insert((s.tsc, s.seq));
        }
        self.prev_user = Some(s.userspace);
        agg.last_values.insert(s.vcpu, s.values);
    }

    /// Whether the doorbell of record `seq` was sampled.
    pub(super) fn has(&self, seq: u32) -> bool {
        self.deltas.contains_key(&seq)
    }

    /// The deltas of record `seq` (empty without a sample).
    pub(super) fn take(&mut self, seq: u32) -> BTreeMap<String, i64> {
        match self.deltas.remove(&seq) {
            Some((tsc, d)) => {
                self.order.remove(&(tsc, seq));
                d
            }
            None => BTreeMap::new(),
        }
    }

    /// Drops the deltas sampled before `cut` (their record was lost: every record before
    /// `cut` has been matched).
    pub(super) fn expire_before(&mut self, cut: u64) {
        while let Some(&(tsc, seq)) = self.order.first() {
            if tsc >= cut {
                break;
            }
            self.order.pop_first();
            self.deltas.remove(&seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(vcpu: u8, seq: u32, tsc: u64, values: Vec<u64>, pio: u64) -> Sample {
        Sample {
            vcpu,
            seq,
            tsc,
            values,
            userspace: crate::stats::ExitCounts {
                pio,
                ..Default::default()
            },
        }
    }

    #[test]
    fn deltas_are_per_vcpu_less_the_doorbell_and_expire() {
        let mut d = Deltas::default();
        let mut agg = Aggregates::default();
        d.layout(&[
            StatDesc {
                name: "exits".into(),
                index: 1,
            },
            StatDesc {
                name: "not-attributed".into(),
                index: 0,
            },
        ]);
        d.baseline(&[(0, vec![0, 10])], &mut agg);
        d.baseline(&[(0, vec![0, 99])], &mut agg); // only the first baseline counts
        d.sample(sample(0, 1, 100, vec![0, 14], 1), &mut agg);
        d.sample(sample(0, 2, 200, vec![0, 16], 3), &mut agg);
        d.sample(sample(1, 3, 300, vec![0, 16], 4), &mut agg); // no baseline: no deltas
        assert_eq!(agg.doorbells, 3);
        assert!(d.has(1) && d.has(2) && !d.has(3));
        assert_eq!(d.take(1), BTreeMap::from([("exits".to_string(), 3)]));
        // The userspace counters are deltas since the previous doorbell of any vCPU.
        d.sample(sample(0, 4, 400, vec![0, 20], 6), &mut agg);
        let mut four = BTreeMap::from([("exits".to_string(), 3), ("userspace_pio".into(), 1)]);
        for k in ["userspace_mmio", "userspace_ioapic_eoi", "userspace_other"] {
            four.insert(k.to_string(), 0);
        }
        assert_eq!(d.take(4), four);
        d.expire_before(150);
        assert!(d.has(2));
        d.expire_before(201);
        assert!(!d.has(2));
        assert!(d.take(2).is_empty());
    }
}
