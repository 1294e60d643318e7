//! Correlation: pairing the injections the host made with the deliveries the guest recorded.
//!
//! Host side: each settled injection waits in the queue of its vector (an MSI's vector is in
//! its data) or, for `KVM_IRQ_LINE`, of its line (the vector is learned from the first record
//! that follows one with an otherwise unclaimed vector), paired with the latest raise of its
//! source and pin. Guest side: records wait in handler-entry order, and are indexed per vector
//! too, for "the next interrupt of this vector". Matching a record touches only its vector's
//! queue and the line queues (one per line source, however many events), so the work per
//! event does not grow with the number of events held — nothing here is quadratic at the
//! writer's event cap.
//!
//! The rule (see [`crate::trace::output`]): of the injections of the record's vector that no
//! earlier handler took and that began before its entry, the latest is the one delivered and
//! the older ones merged into it.

use crate::trace::Source;
use irqlab_abi::trace::Record;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// A settled injection not yet matched.
#[derive(Debug, Clone)]
pub(super) struct Injection {
    /// Who.
    pub(super) source: Source,
    /// IO-APIC pin, if any.
    pub(super) pin: Option<u8>,
    /// Host TSC before the ioctl.
    pub(super) call: u64,
    /// Host TSC after it.
    pub(super) ret: u64,
    /// The latest raise of its source and pin at or before `call`.
    pub(super) raise: Option<u64>,
    /// Settle order (ties in `call`).
    id: u64,
}

/// Unmatched injections of one vector (MSIs) or one line (`KVM_IRQ_LINE`, vector learned
/// from the guest), in `(call, id)` order; and those that expired, by source. (Ordered maps
/// here and below: node allocations only, so no large buffer is ever reallocated — which a
/// seccomp allowlist without `mremap` would also refuse.)
#[derive(Debug, Default)]
struct Queue {
    inj: BTreeMap<(u64, u64), Injection>,
    expired: BTreeMap<Source, u64>,
}

impl Queue {
    fn insert(&mut self, i: Injection) {
        self.inj.insert((i.call, i.id), i);
    }

    fn front(&self) -> Option<&Injection> {
        self.inj.first_key_value().map(|(_, i)| i)
    }

    fn pop_front(&mut self) -> Option<Injection> {
        self.inj.pop_first().map(|(_, i)| i)
    }

    /// Those that began at or before `limit`, oldest first.
    fn up_to(&self, limit: u64) -> impl Iterator<Item = &Injection> {
        self.inj.range(..=(limit, u64::MAX)).map(|(_, i)| i)
    }

    /// Whether an injection began in `(after, until]`.
    fn any_in(&self, after: u64, until: u64) -> bool {
        after < until
            && self
                .inj
                .range((after + 1, 0)..=(until, u64::MAX))
                .next()
                .is_some()
    }
}

/// Where a candidate waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Vector,
    Line(usize),
}

/// What matching one record decided.
pub(super) enum Pairing {
    /// The record is gone (already matched).
    Gone,
    /// Its match depends on data not yet settled: try again later.
    Wait,
    /// Matched (or known to have no injection): it left the correlator.
    Done(Delivery),
}

/// A record with the injections it took.
pub(super) struct Delivery {
    /// Guest TSC after the EOI, on the host timeline.
    pub(super) eoi: u64,
    /// The record.
    pub(super) record: Record,
    /// The injections that left their queue with it, oldest first (the matched one and those
    /// merged into it).
    pub(super) taken: Vec<Injection>,
    /// The injection delivered, if any.
    pub(super) matched: Option<Injection>,
    /// Injections merged into it (taken ones and those that expired while pending).
    pub(super) merged: u32,
}

/// Both sides of the correlation, each indexed per vector.
pub(super) struct Correlator {
    /// The latest raise of each source and pin.
    last_raise: HashMap<(Source, Option<u8>), u64>,
    /// Injections by vector (all 256).
    vectors: Vec<Queue>,
    /// Injections by line source, in order of first injection.
    lines: Vec<(Source, Queue)>,
    /// Index into `lines`.
    line_index: HashMap<Source, usize>,
    /// Vectors an MSI was seen at (a line never learns one of them).
    claimed: [bool; 256],
    /// The vector each line source was learned at.
    line_vectors: HashMap<Source, u8>,
    next_id: u64,
    /// Records not yet matched, by (entry, seq): (eoi, record).
    records: BTreeMap<(u64, u64), (u64, Record)>,
    /// Their keys, per vector.
    by_vector: Vec<BTreeSet<(u64, u64)>>,
}

impl Default for Correlator {
    fn default() -> Self {
        Correlator {
            last_raise: HashMap::new(),
            vectors: (0..256).map(|_| Queue::default()).collect(),
            lines: Vec::new(),
            line_index: HashMap::new(),
            claimed: [false; 256],
            line_vectors: HashMap::new(),
            next_id: 0,
            records: BTreeMap::new(),
            by_vector: vec![BTreeSet::new(); 256],
        }
    }
}

impl Correlator {
    /// A settled raise of `source` (and `pin`) at host TSC `tsc`.
    pub(super) fn raise(&mut self, source: Source, pin: Option<u8>, tsc: u64) {
        self.last_raise.insert((source, pin), tsc);
    }

    /// A settled injection: at `vector` for an MSI, on its line otherwise.
    pub(super) fn inject(
        &mut self,
        source: Source,
        pin: Option<u8>,
        vector: Option<u8>,
        call: u64,
        ret: u64,
    ) {
        let raise = self
            .last_raise
            .get(&(source.clone(), pin))
            .copied()
            .filter(|r| *r <= call);
        let inj = Injection {
            source,
            pin,
            call,
            ret,
            raise,
            id: self.next_id,
        };
        self.next_id += 1;
        match vector {
            Some(v) => {
                self.claimed[usize::from(v)] = true;
                self.vectors[usize::from(v)].insert(inj);
            }
            None => {
                let k = match self.line_index.get(&inj.source) {
                    Some(&k) => k,
                    None => {
                        self.lines.push((inj.source.clone(), Queue::default()));
                        self.line_index
                            .insert(inj.source.clone(), self.lines.len() - 1);
                        self.lines.len() - 1
                    }
                };
                self.lines[k].1.insert(inj);
            }
        }
    }

    /// A guest record, its handler entry and EOI on the host timeline.
    pub(super) fn record(&mut self, entry: u64, eoi: u64, r: Record) {
        self.records.insert((entry, r.seq), (eoi, r));
        self.by_vector[usize::from(r.vector)].insert((entry, r.seq));
    }

    /// The earliest record not yet matched: (entry, seq).
    pub(super) fn first_record(&self) -> Option<(u64, u64)> {
        self.records.first_key_value().map(|(k, _)| *k)
    }

    /// Matches record `(entry, seq)`, events up to `horizon` settled (`u64::MAX`: all of
    /// them), with TSC offset uncertainty `slack`; it may wait for data not yet settled if
    /// `may_wait`.
    pub(super) fn pair(
        &mut self,
        entry: u64,
        seq: u64,
        horizon: u64,
        slack: u64,
        may_wait: bool,
    ) -> Pairing {
        let Some(&(eoi, r)) = self.records.get(&(entry, seq)) else {
            return Pairing::Gone;
        };
        let v = r.vector;
        let vi = usize::from(v);
        // Of the injections of this vector no earlier handler took and that began before this
        // entry, the latest is the one delivered; the older ones arrived while the vector was
        // still pending in IRR and merged into it. Injections that began strictly before the
        // entry first; only if there is none, one within the TSC offset's uncertainty after.
        let mut cands: Vec<(u64, u64, Which)> = Vec::new();
        let mut lines: Vec<usize> = Vec::new();
        for lim in [entry, entry.saturating_add(slack)] {
            cands.clear();
            lines.clear();
            cands.extend(
                self.vectors[vi]
                    .up_to(lim)
                    .map(|i| (i.call, i.id, Which::Vector)),
            );
            for (k, (src, q)) in self.lines.iter().enumerate() {
                let pending = q.front().is_some_and(|i| i.call <= lim);
                if !pending && q.expired.is_empty() {
                    continue;
                }
                // A `KVM_IRQ_LINE` injection has no vector of its own: learn it from the
                // first record that follows one with an otherwise unclaimed vector.
                if self.claimed[vi] || *self.line_vectors.entry(src.clone()).or_insert(v) != v {
                    continue;
                }
                lines.push(k);
                cands.extend(q.up_to(lim).map(|i| (i.call, i.id, Which::Line(k))));
            }
            if !cands.is_empty() {
                break;
            }
        }
        cands.sort_by_key(|c| (c.0, c.1));
        // The latest candidate is the one delivered, unless it arrived after the CPU had
        // already accepted this interrupt (between acceptance and the entry timestamp): then
        // it belongs to the next interrupt of this vector, which would otherwise have none.
        // That needs the next record of the vector and the injections before it settled.
        let next_entry = self.by_vector[vi]
            .range((Bound::Excluded((entry, seq)), Bound::Unbounded))
            .next()
            .map(|k| k.0);
        let settled_next = next_entry.filter(|n| *n <= horizon);
        if cands.len() >= 2 && may_wait && settled_next.is_none() {
            return Pairing::Wait;
        }
        let next = if horizon == u64::MAX {
            next_entry
        } else {
            settled_next
        };
        let mut pick = cands.len().checked_sub(1);
        if cands.len() >= 2 {
            let next_has_own = next.is_some_and(|n| {
                self.vectors[vi].any_in(entry, n)
                    || self.lines.iter().any(|(_, q)| q.any_in(entry, n))
            });
            if !next_has_own && next.is_some() {
                pick = Some(cands.len() - 2);
            }
        }
        let mut merged = pick.map_or(0, |p| p as u32);
        let mut matched = None;
        let mut taken = Vec::new();
        for (k, &(_, id, which)) in cands.iter().take(pick.map_or(0, |p| p + 1)).enumerate() {
            let q = match which {
                Which::Vector => &mut self.vectors[vi],
                Which::Line(l) => &mut self.lines[l].1,
            };
            let i = q
                .pop_front()
                .expect("candidates are a prefix of their queue");
            debug_assert_eq!(i.id, id);
            if Some(k) == pick {
                matched = Some(i.clone());
            }
            taken.push(i);
        }
        if matched.is_some() {
            // Injections that expired while pending would have been merged into this one.
            let mut absorb = std::mem::take(&mut self.vectors[vi].expired);
            for &k in &lines {
                absorb.append(&mut self.lines[k].1.expired);
            }
            merged = merged.saturating_add(absorb.values().sum::<u64>() as u32);
        }
        self.records.remove(&(entry, seq));
        self.by_vector[vi].remove(&(entry, seq));
        Pairing::Done(Delivery {
            eoi,
            record: r,
            taken,
            matched,
            merged,
        })
    }

    fn queues(&mut self) -> impl Iterator<Item = &mut Queue> {
        self.vectors
            .iter_mut()
            .chain(self.lines.iter_mut().map(|(_, q)| q))
    }

    /// Expires the unmatched injections that began before `cut` (counted per source, to be
    /// merged into a later interrupt of their vector or finally counted as unhandled); returns
    /// them.
    pub(super) fn expire_before(&mut self, cut: u64) -> Vec<Injection> {
        let mut gone = Vec::new();
        for q in self.queues() {
            while q.front().is_some_and(|i| i.call < cut) {
                let i = q.pop_front().expect("front exists");
                *q.expired.entry(i.source.clone()).or_default() += 1;
                gone.push(i);
            }
        }
        gone
    }

    /// Ends the run: every injection left, and the number never matched per source (those
    /// left and those that expired), in queue order.
    pub(super) fn finish(&mut self) -> (Vec<Injection>, Vec<(Source, u64)>) {
        let mut left = Vec::new();
        let mut unhandled = Vec::new();
        for q in self.queues() {
            while let Some(i) = q.pop_front() {
                *q.expired.entry(i.source.clone()).or_default() += 1;
                left.push(i);
            }
            unhandled.extend(std::mem::take(&mut q.expired));
        }
        (left, unhandled)
    }

    /// Injections held in the vector queues.
    #[cfg(test)]
    pub(super) fn held_by_vector(&self) -> usize {
        self.vectors.iter().map(|q| q.inj.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, vector: u8) -> Record {
        Record {
            seq,
            vector,
            ..Default::default()
        }
    }

    fn done(p: Pairing) -> Delivery {
        match p {
            Pairing::Done(d) => d,
            Pairing::Gone => panic!("gone"),
            Pairing::Wait => panic!("waits"),
        }
    }

    #[test]
    fn every_vector_pairs_with_its_own_injections_at_scale() {
        // 256 vectors × 400 rounds (> 100 000 injections held at once), every third round
        // with a second injection that merges; records interleaved across all vectors.
        const ROUNDS: u64 = 400;
        let src = Source("msi:many".into());
        let mut c = Correlator::default();
        let mut expect = Vec::new();
        let mut seq = 0;
        for r in 0..ROUNDS {
            for v in 0..=255u8 {
                let call = (r * 256 + u64::from(v)) * 10;
                c.raise(src.clone(), None, call);
                c.inject(src.clone(), None, Some(v), call, call + 1);
                if r % 3 == 0 {
                    c.inject(src.clone(), None, Some(v), call + 2, call + 3);
                }
                seq += 1;
                let entry = call + 5;
                c.record(entry, entry + 4, rec(seq, v));
                let latest = if r % 3 == 0 { call + 2 } else { call };
                expect.push((entry, seq, latest, u32::from(r % 3 == 0)));
            }
        }
        assert_eq!(
            c.held_by_vector() as u64,
            ROUNDS * 256 + ROUNDS.div_ceil(3) * 256
        );
        for (entry, seq, call, merged) in expect {
            assert_eq!(c.first_record(), Some((entry, seq)));
            let d = done(c.pair(entry, seq, u64::MAX, 0, false));
            let m = d.matched.expect("matched");
            assert_eq!((m.call, d.merged), (call, merged), "seq {seq}");
            assert_eq!(m.raise, Some(call - call % 10), "seq {seq}");
            assert_eq!(d.taken.len() as u32, merged + 1);
        }
        assert_eq!(c.first_record(), None);
        assert_eq!(c.held_by_vector(), 0);
        let (left, unhandled) = c.finish();
        assert!(left.is_empty() && unhandled.is_empty());
    }

    #[test]
    fn a_line_learns_its_vector_and_expired_injections_merge() {
        let pit = Source("pit".into());
        let mut c = Correlator::default();
        c.inject(pit.clone(), Some(2), None, 100, 101);
        c.inject(pit.clone(), Some(2), None, 200, 201);
        assert_eq!(c.expire_before(150).len(), 1);
        c.record(250, 260, rec(1, 0x30));
        let d = done(c.pair(250, 1, u64::MAX, 0, false));
        assert_eq!(d.matched.map(|m| m.call), Some(200));
        assert_eq!(d.merged, 1, "the expired one merged");
        // An MSI at another vector is not the line's.
        c.inject(pit.clone(), Some(2), None, 300, 301);
        c.inject(Source("msi:a".into()), None, Some(0x41), 310, 311);
        c.record(320, 330, rec(2, 0x41));
        let d = done(c.pair(320, 2, u64::MAX, 0, false));
        assert_eq!(d.matched.map(|m| m.call), Some(310));
        let (left, unhandled) = c.finish();
        assert_eq!(left.len(), 1);
        assert_eq!(unhandled, vec![(pit, 1)]);
    }
}
