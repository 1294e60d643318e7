//! The engine: the stages of the trace pipeline driven on the bounded window described in
//! [`super`] — host events settled in timestamp order and handed to the [correlator]
//! (`correlate`), guest records matched in entry order as soon as what they depend on has
//! settled, each matched record written to `interrupts.jsonl` and `trace.json` and counted in
//! the [`Aggregates`].
//!
//! [correlator]: super::correlate

use super::aggregate::Aggregates;
use super::chrome::Chrome;
use super::correlate::{Correlator, Injection, Pairing};
use super::jsonl::Sink;
use super::lockstep::Deltas;
use super::spool::Outputs;
use super::{EXPIRE, SETTLE};
use crate::kvm_stats::StatDesc;
use crate::trace::model::Interrupt;
use crate::trace::{ExitRecord, HostEvent, Pending, Source, TraceMode, Tracer, TscOffset};
use irqlab_abi::trace::{
    KIND_IPI, KIND_LAPIC_TIMER, KIND_NAPI_POLL, KIND_PREEMPT_TICK, KIND_SOFTIRQ,
};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::Duration;

/// The correlator and its outputs (see the module documentation).
pub struct Engine {
    tsc_khz: u64,
    base: u64,
    mode: TraceMode,
    settle: u64,
    expire: u64,
    offsets: HashMap<u8, i64>,
    /// Events not yet settled, by (timestamp, raise before inject, arrival): kept ordered as
    /// they arrive (node allocations only — no large buffer is ever reallocated).
    unsettled: BTreeMap<(u64, u8, u64), HostEvent>,
    arrivals: u64,
    corr: Correlator,
    deltas: Deltas,
    interrupts: Sink,
    chrome: Chrome,
    /// What the summary is made of.
    pub agg: Aggregates,
}

fn event_key(e: &HostEvent) -> (u64, u8) {
    match e {
        HostEvent::Raise { tsc, .. } => (*tsc, 0),
        HostEvent::Inject { call, .. } => (*call, 1),
    }
}

impl Engine {
    /// An engine writing `outputs`, timestamps relative to host TSC `base`.
    pub fn new(tsc_khz: u64, base: u64, mode: TraceMode, outputs: Outputs) -> Engine {
        let tsc_khz = tsc_khz.max(1);
        let cycles = |d: Duration| (d.as_micros() as u64).saturating_mul(tsc_khz) / 1000;
        Engine {
            tsc_khz,
            base,
            mode,
            settle: cycles(SETTLE),
            expire: cycles(EXPIRE),
            offsets: HashMap::new(),
            unsettled: BTreeMap::new(),
            arrivals: 0,
            corr: Correlator::default(),
            deltas: Deltas::default(),
            interrupts: Sink::new(outputs.interrupts),
            chrome: Chrome::new(outputs.chrome),
            agg: Aggregates::default(),
        }
    }

    fn us(&self, tsc: u64) -> f64 {
        (tsc as f64 - self.base as f64) * 1000.0 / self.tsc_khz as f64
    }

    /// Takes the new data (emptying `p`'s buffers, keeping their allocations).
    pub fn feed(
        &mut self,
        p: &mut Pending,
        offsets: &[TscOffset],
        names: &[StatDesc],
        starts: &[(u8, Vec<u64>)],
    ) {
        for o in offsets {
            self.offsets.insert(o.vcpu, o.offset);
            self.agg.slack = self.agg.slack.max(o.uncertainty);
        }
        self.deltas.layout(names);
        self.deltas.baseline(starts, &mut self.agg);
        for e in p.host.drain(..) {
            let (t, kind) = event_key(&e);
            self.unsettled.insert((t, kind, self.arrivals), e);
            self.arrivals += 1;
        }
        for e in p.exits.drain(..) {
            self.exit_instant(&e);
        }
        p.samples.sort_by_key(|s| s.tsc);
        for s in p.samples.drain(..) {
            self.deltas.sample(s, &mut self.agg);
        }
        for r in p.records.drain(..) {
            let off = self.offsets.get(&r.cpu).copied().unwrap_or(0);
            let entry = (r.tsc_entry as i64).wrapping_sub(off) as u64;
            let eoi = (r.tsc_eoi as i64).wrapping_sub(off) as u64;
            self.corr.record(entry, eoi, r);
        }
    }

    fn exit_instant(&mut self, e: &ExitRecord) {
        let ts = self.us(e.tsc);
        self.chrome.exit(e, ts, self.tsc_khz);
    }

    fn settle(&mut self, e: HostEvent) {
        match e {
            HostEvent::Raise { source, pin, tsc } => self.corr.raise(source, pin, tsc),
            HostEvent::Inject {
                source,
                pin,
                msi,
                call,
                ret,
                ..
            } => {
                let vector = msi.map(|m| m.data as u8);
                self.agg.source(source.name()).injected += 1;
                self.chrome.device_tid(&source);
                self.corr.inject(source, pin, vector, call, ret);
            }
        }
    }

    /// The raise and inject instants of an injection on its device's track.
    fn injection_instants(&mut self, i: &Injection) {
        let (raise, call) = (self.us(i.raise.unwrap_or(i.call)), self.us(i.call));
        self.chrome.injection(&i.source, raise, call);
    }

    /// Advances to `now` (host TSC), or to the end of the run with `None`: settles events,
    /// matches and writes records, expires what is too old.
    pub fn advance(&mut self, now: Option<u64>) {
        let last = now.is_none();
        let horizon = now.map_or(u64::MAX, |n| n.saturating_sub(self.settle));
        // Below `cut`, nothing waits any more (and unmatched injections expire).
        let cut = now.map_or(u64::MAX, |_| horizon.saturating_sub(self.expire));
        while let Some(e) = self.unsettled.first_entry() {
            if e.key().0 > horizon {
                break;
            }
            let e = e.remove();
            self.settle(e);
        }
        let limit = if last {
            u64::MAX
        } else {
            horizon.saturating_sub(self.agg.slack)
        };
        while let Some((entry, seq)) = self.corr.first_record() {
            if entry > limit {
                break;
            }
            let may_wait = !last && entry >= cut;
            if may_wait && self.mode == TraceMode::Lockstep && !self.deltas.has(seq as u32) {
                break;
            }
            if !self.record(entry, seq, horizon, may_wait) {
                break;
            }
        }
        if !last {
            self.expire_before(cut);
            self.interrupts.flush();
            self.chrome.sink.flush();
        }
    }

    /// Matches record `(entry, seq)` and writes it; `false` if it has to wait.
    fn record(&mut self, entry: u64, seq: u64, horizon: u64, may_wait: bool) -> bool {
        let d = match self
            .corr
            .pair(entry, seq, horizon, self.agg.slack, may_wait)
        {
            Pairing::Gone => return true,
            Pairing::Wait => return false,
            Pairing::Done(d) => d,
        };
        for i in &d.taken {
            self.injection_instants(i);
        }
        let (r, eoi, matched, merged) = (d.record, d.eoi, d.matched, d.merged);
        let (source, pin, raise, call, ret) = match &matched {
            Some(i) => (
                i.source.name().to_string(),
                i.pin,
                i.raise,
                Some(i.call),
                Some(i.ret),
            ),
            None => (
                match r.kind {
                    KIND_LAPIC_TIMER | KIND_PREEMPT_TICK => "lapic-timer".to_string(),
                    // Not interrupts: work the guest did outside its hard handlers.
                    KIND_NAPI_POLL => "napi-poll".to_string(),
                    KIND_SOFTIRQ => "softirq".to_string(),
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
            (Some(ra), Some(ca)) => ra <= ca && ca <= entry,
            (None, Some(ca)) => ca <= entry,
            _ => true,
        };
        let start = raise.or(call);
        let exits = self.deltas.take(r.seq as u32);
        let irq = Interrupt {
            seq: r.seq,
            source,
            pin,
            vector: r.vector,
            cpu: r.cpu,
            raise_us: raise.map(|t| self.us(t)),
            inject_us: call.map(|t| self.us(t)),
            inject_ret_us: ret.map(|t| self.us(t)),
            entry_us: self.us(entry),
            eoi_us: self.us(eoi),
            latency_us: start.map(|s| (entry as f64 - s as f64) * 1000.0 / self.tsc_khz as f64),
            merged,
            exits,
            preempt: r.kind == KIND_PREEMPT_TICK,
        };
        self.emit(&irq, ordered, matched.as_ref().map(|i| &i.source));
        true
    }

    /// Writes a matched record and counts it.
    fn emit(&mut self, i: &Interrupt, ordered: bool, device: Option<&Source>) {
        self.interrupts.line(b"", i);
        self.chrome.interrupt(i, device);
        self.agg.count(i, ordered);
    }

    /// Finalizes unmatched injections that began before `cut` and lockstep deltas sampled
    /// before it (their record was lost: every record before `cut` has been matched).
    fn expire_before(&mut self, cut: u64) {
        for i in &self.corr.expire_before(cut) {
            self.injection_instants(i);
        }
        self.deltas.expire_before(cut);
    }

    /// Takes what `tracer` collected and advances to `now` (`None`: the end).
    pub fn cycle(&mut self, tracer: &Tracer, now: Option<u64>, spare: Pending) -> Pending {
        let mut p = tracer.take_pending(spare);
        self.feed(
            &mut p,
            &tracer.offsets(),
            tracer.stat_names(),
            &tracer.stat_starts(),
        );
        self.advance(now);
        p
    }

    /// Ends the run: everything left is matched and written, the outputs closed. Returns the
    /// aggregates, or the first write error.
    pub fn finish(mut self, tracer: &Tracer) -> io::Result<Aggregates> {
        self.cycle(tracer, None, Pending::default());
        self.close()
    }

    fn close(mut self) -> io::Result<Aggregates> {
        self.finalize_unmatched();
        self.chrome.end();
        self.agg.chrome_events = self.chrome.events;
        let a = self.interrupts.finish();
        let b = self.chrome.sink.finish();
        a.and(b)?;
        Ok(self.agg)
    }

    /// Injections never matched: written, and counted as unhandled.
    fn finalize_unmatched(&mut self) {
        let (left, unhandled) = self.corr.finish();
        for (s, n) in unhandled {
            self.agg.source(s.name()).unhandled += n;
        }
        for i in &left {
            self.injection_instants(i);
        }
    }
}

#[cfg(test)]
mod tests;
