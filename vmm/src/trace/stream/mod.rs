//! The trace writer: correlates guest records with host injections on a bounded window and
//! writes `interrupts.jsonl` and `trace.json` as the run goes, keeping only aggregates for
//! the end-of-run summary.
//!
//! **Thread and cadence.** [`WriterThread`] (`trace-writer`) wakes every
//! [`super::DRAIN_PERIOD`], takes what the producers appended since (VMM events, doorbell
//! samples, exits, and the records the event loop drained from the guest ring — see
//! [`super::Tracer::take_pending`]) and advances the [`Engine`]. At the end of the run
//! [`super::output::write_all`] stops it; it takes the rest, finishes every record and
//! returns the [`Aggregates`].
//!
//! **Window.** Host events are stamped before they are appended (a thread can be preempted in
//! between) and records reach the writer up to a drain period after the handler ran, so the
//! engine works [`SETTLE`] behind the present: events stamped before `now − SETTLE` are
//! settled in timestamp order (each injection paired with the latest raise of its source and
//! pin), and records whose handler entry is before that horizon are matched, in entry order,
//! exactly as described in [`super::output`]. A record waits (up to [`EXPIRE`]) when its match
//! depends on data not yet settled: in lockstep mode its doorbell sample, and when two or
//! more injections are candidates, the next record of its vector. An injection still
//! unmatched [`EXPIRE`] behind the horizon is finalized: written to `trace.json` and counted
//! as unhandled — unless a later interrupt of its vector is matched, which then counts it as
//! merged, as if it had stayed a candidate. Memory is therefore bounded by the event rate
//! times `SETTLE + EXPIRE` (about 1.25 s of events), whatever the length of the run.
//!
//! **Outputs.** `interrupts.jsonl` gets one line per record as it is matched; `trace.json` is
//! a Chrome Trace Event array opened with `{"traceEvents":[` when the run starts, events
//! appended as they are finalized (order does not matter to the viewers), closed at the end.
//! An output path that exists and is not a regular file (a FIFO a reader drains after the
//! run, `/dev/null`) is written to an unlinked spool file in the trace directory instead and
//! copied into the path at the end: a reader that does not read during the run neither stalls
//! tracing nor costs records.

use super::hist::LatencyHist;
use super::output::{Interrupt, ATTRIBUTED_STATS};
use super::svg::SourceLatencies;
use super::{
    ExitRecord, HostEvent, Pending, Sample, Source, TraceIoError, TraceMode, Tracer, TscOffset,
};
use crate::kvm_stats::StatDesc;
use irqlab_abi::trace::{Record, KIND_IPI, KIND_LAPIC_TIMER};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// How far behind the present the writer correlates (see the module documentation).
pub const SETTLE: Duration = Duration::from_millis(250);
/// How long behind the settle horizon an unmatched injection (or a record waiting for data)
/// is kept before it is finalized.
pub const EXPIRE: Duration = Duration::from_secs(1);

const BUF: usize = 64 << 10;

/// One output file of the writer.
pub(crate) enum OutFile {
    /// Written in place.
    Direct(BufWriter<File>),
    /// `path` is not a regular file: spooled, copied into it at the end.
    Spooled {
        spool: BufWriter<File>,
        path: PathBuf,
    },
    /// In memory (tests).
    #[cfg(test)]
    Memory(Vec<u8>),
}

impl OutFile {
    fn create(path: &Path) -> io::Result<OutFile> {
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => Ok(OutFile::Spooled {
                spool: BufWriter::with_capacity(BUF, spool_file(path)?),
                path: path.to_owned(),
            }),
            _ => Ok(OutFile::Direct(BufWriter::with_capacity(
                BUF,
                File::create(path)?,
            ))),
        }
    }

    /// Flushes; a spooled file is copied into its path (which is opened only now).
    fn finish(self) -> io::Result<()> {
        match self {
            OutFile::Direct(mut w) => w.flush(),
            OutFile::Spooled { spool, path } => {
                let mut f = spool.into_inner().map_err(|e| e.into_error())?;
                f.rewind()?;
                let mut out = File::create(&path)?;
                io::copy(&mut f, &mut out)?;
                out.flush()
            }
            #[cfg(test)]
            OutFile::Memory(_) => Ok(()),
        }
    }
}

/// An anonymous file next to `path` (`O_TMPFILE`, or created and unlinked at once): nothing is
/// left behind however the process ends.
fn spool_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir);
    if let Ok(f) = tmp {
        return Ok(f);
    }
    let name = format!(
        ".{}.spool-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    );
    let spool = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&spool)?;
    std::fs::remove_file(&spool)?;
    Ok(f)
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            OutFile::Direct(w) | OutFile::Spooled { spool: w, .. } => w.write(buf),
            #[cfg(test)]
            OutFile::Memory(v) => v.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            OutFile::Direct(w) | OutFile::Spooled { spool: w, .. } => w.write_all(buf),
            #[cfg(test)]
            OutFile::Memory(v) => v.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            OutFile::Direct(w) | OutFile::Spooled { spool: w, .. } => w.flush(),
            #[cfg(test)]
            OutFile::Memory(_) => Ok(()),
        }
    }
}

/// The writer's two streamed outputs, opened when tracing is set up.
pub struct Outputs {
    interrupts: OutFile,
    chrome: OutFile,
}

impl Outputs {
    /// Creates `DIR/interrupts.jsonl` and `DIR/trace.json` (or their spools).
    pub fn create(dir: &Path) -> Result<Outputs, TraceIoError> {
        let open = |name: &str| {
            let path = dir.join(name);
            OutFile::create(&path).map_err(|source| TraceIoError { path, source })
        };
        Ok(Outputs {
            interrupts: open("interrupts.jsonl")?,
            chrome: open("trace.json")?,
        })
    }

    #[cfg(test)]
    fn memory() -> Outputs {
        Outputs {
            interrupts: OutFile::Memory(Vec::new()),
            chrome: OutFile::Memory(Vec::new()),
        }
    }
}

/// A file written line by line that remembers its first error and then stops writing.
struct Sink {
    out: OutFile,
    error: Option<io::Error>,
}

impl Sink {
    fn line<T: Serialize>(&mut self, prefix: &[u8], value: &T) {
        if self.error.is_some() {
            return;
        }
        let r = self
            .out
            .write_all(prefix)
            .and_then(|()| serde_json::to_writer(&mut self.out, value).map_err(io::Error::other))
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e);
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        match self.error {
            Some(e) => Err(e),
            None => self.out.finish(),
        }
    }
}

/// One Chrome Trace Event (only the fields an event of its phase uses are written).
#[derive(Serialize)]
struct Ev<'a, A: Serialize> {
    ph: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bp: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<A>,
}

impl<'a> Ev<'a, ()> {
    fn new(ph: &'static str, pid: u32, name: &'a str) -> Self {
        Ev {
            ph,
            s: None,
            pid,
            tid: None,
            ts: None,
            dur: None,
            name,
            id: None,
            bp: None,
            cat: None,
            args: None,
        }
    }

    fn instant(pid: u32, tid: u64, ts: f64, name: &'a str) -> Self {
        Ev {
            s: Some("t"),
            tid: Some(tid),
            ts: Some(ts),
            ..Ev::new("i", pid, name)
        }
    }

    fn with<A: Serialize>(self, args: A) -> Ev<'a, A> {
        Ev {
            ph: self.ph,
            s: self.s,
            pid: self.pid,
            tid: self.tid,
            ts: self.ts,
            dur: self.dur,
            name: self.name,
            id: self.id,
            bp: self.bp,
            cat: self.cat,
            args: Some(args),
        }
    }
}

#[derive(Serialize)]
struct NameArgs<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct ExitArgs {
    addr: String,
    size: u8,
    write: bool,
    value: u64,
    vmm_ns: u64,
}

#[derive(Serialize)]
struct SliceArgs<'a> {
    seq: u64,
    latency_us: Option<f64>,
    merged: u32,
    exits: &'a BTreeMap<String, i64>,
}

/// `trace.json`, streamed: a track per vCPU (pid 1) and per device (pid 2).
struct Chrome {
    sink: Sink,
    events: u64,
    device_tids: HashMap<Source, u64>,
}

impl Chrome {
    fn new(out: OutFile) -> Chrome {
        let mut c = Chrome {
            sink: Sink { out, error: None },
            events: 0,
            device_tids: HashMap::new(),
        };
        c.sink.raw(b"{\"traceEvents\":[\n");
        c.ev(&Ev::new("M", 1, "process_name").with(NameArgs { name: "vCPUs" }));
        c.ev(&Ev::new("M", 2, "process_name").with(NameArgs { name: "devices" }));
        c
    }

    fn ev<A: Serialize>(&mut self, e: &Ev<'_, A>) {
        let sep: &[u8] = if self.events == 0 { b"" } else { b"," };
        self.sink.line(sep, e);
        self.events += 1;
    }

    /// The device track of `source`, announced when first seen.
    fn device_tid(&mut self, source: &Source) -> u64 {
        if let Some(t) = self.device_tids.get(source) {
            return *t;
        }
        let tid = self.device_tids.len() as u64 + 1;
        self.device_tids.insert(source.clone(), tid);
        let e = Ev {
            tid: Some(tid),
            ..Ev::new("M", 2, "thread_name")
        }
        .with(NameArgs {
            name: source.name(),
        });
        self.ev(&e);
        tid
    }

    /// Closes the array and the document.
    fn end(&mut self) {
        self.sink.raw(b"],\"displayTimeUnit\":\"ns\"}\n");
    }
}

/// A settled injection not yet matched.
#[derive(Debug, Clone)]
struct Injection {
    source: Source,
    pin: Option<u8>,
    call: u64,
    ret: u64,
    raise: Option<u64>,
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

/// Per-source aggregates.
#[derive(Debug, Default, Clone)]
pub struct SourceAgg {
    /// Interrupts handled.
    pub count: u64,
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
    fn source(&mut self, name: &str) -> &mut SourceAgg {
        if !self.sources.contains_key(name) {
            self.sources.insert(name.to_string(), SourceAgg::default());
        }
        self.sources.get_mut(name).expect("just inserted")
    }
}

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
    last_raise: HashMap<(Source, Option<u8>), u64>,
    vec_q: Vec<Queue>,
    line_q: Vec<(Source, Queue)>,
    claimed: HashSet<u8>,
    line_vectors: HashMap<Source, u8>,
    next_id: u64,
    records: BTreeMap<(u64, u64), (u64, Record)>,
    by_vector: Vec<BTreeSet<(u64, u64)>>,
    names: Vec<(String, usize)>,
    baselined: HashSet<u8>,
    prev_user: Option<crate::stats::ExitCounts>,
    deltas: HashMap<u32, (u64, BTreeMap<String, i64>)>,
    delta_order: BTreeSet<(u64, u32)>,
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
            last_raise: HashMap::new(),
            vec_q: (0..256).map(|_| Queue::default()).collect(),
            line_q: Vec::new(),
            claimed: HashSet::new(),
            line_vectors: HashMap::new(),
            next_id: 0,
            records: BTreeMap::new(),
            by_vector: vec![BTreeSet::new(); 256],
            names: Vec::new(),
            baselined: HashSet::new(),
            prev_user: None,
            deltas: HashMap::new(),
            delta_order: BTreeSet::new(),
            interrupts: Sink {
                out: outputs.interrupts,
                error: None,
            },
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
        for (vcpu, values) in starts {
            if self.baselined.insert(*vcpu) {
                self.agg.last_values.insert(*vcpu, values.clone());
            }
        }
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
            self.sample(s);
        }
        for r in p.records.drain(..) {
            let off = self.offsets.get(&r.cpu).copied().unwrap_or(0);
            let entry = (r.tsc_entry as i64).wrapping_sub(off) as u64;
            let eoi = (r.tsc_eoi as i64).wrapping_sub(off) as u64;
            self.records.insert((entry, r.seq), (eoi, r));
            self.by_vector[usize::from(r.vector)].insert((entry, r.seq));
        }
    }

    fn exit_instant(&mut self, e: &ExitRecord) {
        let name = format!("exit {}", e.reason);
        let ev = Ev::instant(1, u64::from(e.vcpu), self.us(e.tsc), &name).with(ExitArgs {
            addr: format!("{:#x}", e.addr),
            size: e.size,
            write: e.write,
            value: e.value,
            vmm_ns: e.vmm_cycles * 1_000_000 / self.tsc_khz,
        });
        self.chrome.ev(&ev);
    }

    /// A doorbell sample: the statistic deltas since the vCPU's previous one belong to the
    /// record the guest rang for.
    fn sample(&mut self, s: Sample) {
        self.agg.doorbells += 1;
        if let Some(p) = self.agg.last_values.get(&s.vcpu) {
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
                self.delta_order.remove(&(old, s.seq));
            }
            self.delta_order.insert((s.tsc, s.seq));
        }
        self.prev_user = Some(s.userspace);
        self.agg.last_values.insert(s.vcpu, s.values);
    }

    fn settle(&mut self, e: HostEvent) {
        match e {
            HostEvent::Raise { source, pin, tsc } => {
                self.last_raise.insert((source, pin), tsc);
            }
            HostEvent::Inject {
                source,
                pin,
                msi,
                call,
                ret,
                ..
            } => {
                let vector = msi.map(|m| m.data as u8);
                let raise = self
                    .last_raise
                    .get(&(source.clone(), pin))
                    .copied()
                    .filter(|r| *r <= call);
                self.agg.source(source.name()).injected += 1;
                self.chrome.device_tid(&source);
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
                        self.claimed.insert(v);
                        self.vec_q[usize::from(v)].insert(inj);
                    }
                    None => {
                        let k = match self.line_q.iter().position(|(s, _)| *s == inj.source) {
                            Some(k) => k,
                            None => {
                                self.line_q.push((inj.source.clone(), Queue::default()));
                                self.line_q.len() - 1
                            }
                        };
                        self.line_q[k].1.insert(inj);
                    }
                }
            }
        }
    }

    /// The raise and inject instants of an injection on its device's track.
    fn injection_instants(&mut self, i: &Injection) {
        let tid = self.chrome.device_tid(&i.source);
        let (raise, call) = (self.us(i.raise.unwrap_or(i.call)), self.us(i.call));
        self.chrome.ev(&Ev::instant(2, tid, raise, "raise"));
        self.chrome.ev(&Ev::instant(2, tid, call, "inject"));
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
        while let Some((&(entry, seq), _)) = self.records.first_key_value() {
            if entry > limit {
                break;
            }
            let may_wait = !last && entry >= cut;
            if may_wait
                && self.mode == TraceMode::Lockstep
                && !self.deltas.contains_key(&(seq as u32))
            {
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
        let Some(&(eoi, r)) = self.records.get(&(entry, seq)) else {
            return true;
        };
        let v = r.vector;
        let slack = self.agg.slack;
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
                self.vec_q[usize::from(v)]
                    .up_to(lim)
                    .map(|i| (i.call, i.id, Which::Vector)),
            );
            for (k, (src, q)) in self.line_q.iter().enumerate() {
                let pending = q.front().is_some_and(|i| i.call <= lim);
                if !pending && q.expired.is_empty() {
                    continue;
                }
                // A `KVM_IRQ_LINE` injection has no vector of its own: learn it from the
                // first record that follows one with an otherwise unclaimed vector.
                if self.claimed.contains(&v)
                    || *self.line_vectors.entry(src.clone()).or_insert(v) != v
                {
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
        let next_entry = self.by_vector[usize::from(v)]
            .range((Bound::Excluded((entry, seq)), Bound::Unbounded))
            .next()
            .map(|k| k.0);
        let settled_next = next_entry.filter(|n| *n <= horizon);
        if cands.len() >= 2 && may_wait && settled_next.is_none() {
            return false;
        }
        let next = if horizon == u64::MAX {
            next_entry
        } else {
            settled_next
        };
        let mut pick = cands.len().checked_sub(1);
        if cands.len() >= 2 {
            let next_has_own = next.is_some_and(|n| {
                self.vec_q[usize::from(v)].any_in(entry, n)
                    || self.line_q.iter().any(|(_, q)| q.any_in(entry, n))
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
                Which::Vector => &mut self.vec_q[usize::from(v)],
                Which::Line(l) => &mut self.line_q[l].1,
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
        for i in &taken {
            self.injection_instants(i);
        }
        if matched.is_some() {
            // Injections that expired while pending would have been merged into this one.
            let mut absorb = std::mem::take(&mut self.vec_q[usize::from(v)].expired);
            for &k in &lines {
                absorb.append(&mut self.line_q[k].1.expired);
            }
            merged = merged.saturating_add(absorb.values().sum::<u64>() as u32);
        }
        self.records.remove(&(entry, seq));
        self.by_vector[usize::from(v)].remove(&(entry, seq));
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
            (Some(ra), Some(ca)) => ra <= ca && ca <= entry,
            (None, Some(ca)) => ca <= entry,
            _ => true,
        };
        let start = raise.or(call);
        let exits = match self.deltas.remove(&(r.seq as u32)) {
            Some((tsc, d)) => {
                self.delta_order.remove(&(tsc, r.seq as u32));
                d
            }
            None => BTreeMap::new(),
        };
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
        };
        self.emit(&irq, ordered, matched.as_ref().map(|i| &i.source));
        true
    }

    /// Writes a matched record and counts it.
    fn emit(&mut self, i: &Interrupt, ordered: bool, device: Option<&Source>) {
        self.interrupts.line(b"", i);
        let name = format!("{} vector {:#04x}", i.source, i.vector);
        let slice = Ev {
            tid: Some(u64::from(i.cpu)),
            ts: Some(i.entry_us),
            dur: Some((i.eoi_us - i.entry_us).max(0.0)),
            ..Ev::new("X", 1, &name)
        }
        .with(SliceArgs {
            seq: i.seq,
            latency_us: i.latency_us,
            merged: i.merged,
            exits: &i.exits,
        });
        self.chrome.ev(&slice);
        if let (Some(start), Some(dev)) = (i.raise_us.or(i.inject_us), device) {
            let tid = self.chrome.device_tid(dev);
            self.chrome.ev(&Ev {
                tid: Some(tid),
                ts: Some(start),
                id: Some(i.seq),
                cat: Some("irq"),
                ..Ev::new("s", 2, "delivery")
            });
            self.chrome.ev(&Ev {
                tid: Some(u64::from(i.cpu)),
                ts: Some(i.entry_us),
                id: Some(i.seq),
                bp: Some("e"),
                cat: Some("irq"),
                ..Ev::new("f", 1, "delivery")
            });
        }
        let agg = &mut self.agg;
        agg.records += 1;
        if !ordered {
            agg.violations += 1;
        }
        for (k, v) in &i.exits {
            *agg.attributed.entry(k.clone()).or_default() += v;
        }
        let s = agg.source(&i.source);
        s.count += 1;
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

    /// Finalizes unmatched injections that began before `cut` and lockstep deltas sampled
    /// before it (their record was lost: every record before `cut` has been matched).
    fn expire_before(&mut self, cut: u64) {
        let mut gone = Vec::new();
        for q in self
            .vec_q
            .iter_mut()
            .chain(self.line_q.iter_mut().map(|(_, q)| q))
        {
            while q.front().is_some_and(|i| i.call < cut) {
                let i = q.pop_front().expect("front exists");
                *q.expired.entry(i.source.clone()).or_default() += 1;
                gone.push(i);
            }
        }
        for i in &gone {
            self.injection_instants(i);
        }
        while let Some(&(tsc, seq)) = self.delta_order.first() {
            if tsc >= cut {
                break;
            }
            self.delta_order.pop_first();
            self.deltas.remove(&seq);
        }
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
        let mut left = Vec::new();
        for q in self
            .vec_q
            .iter_mut()
            .chain(self.line_q.iter_mut().map(|(_, q)| q))
        {
            while let Some(i) = q.pop_front() {
                *q.expired.entry(i.source.clone()).or_default() += 1;
                left.push(i);
            }
            for (s, n) in std::mem::take(&mut q.expired) {
                self.agg.source(s.name()).unhandled += n;
            }
        }
        for i in &left {
            self.injection_instants(i);
        }
    }
}

/// The `trace-writer` thread.
pub struct WriterThread {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: std::thread::JoinHandle<io::Result<Aggregates>>,
}

impl WriterThread {
    /// Starts it; it runs `on_start` first, then an [`Engine`] every drain period until
    /// [`WriterThread::finish`] (or until the tracer is gone).
    pub fn spawn(
        tracer: &Arc<Tracer>,
        outputs: Outputs,
        on_start: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> io::Result<WriterThread> {
        let weak: Weak<Tracer> = Arc::downgrade(tracer);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let (tsc_khz, t0, mode) = (tracer.tsc_khz, tracer.t0, tracer.config.mode);
        let handle = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || {
                if let Some(f) = on_start {
                    f();
                }
                let mut engine = Engine::new(tsc_khz, t0, mode, outputs);
                let mut spare = Pending::default();
                loop {
                    let stopping = {
                        let (m, cv) = &*flag;
                        let g = m.lock().unwrap_or_else(|p| p.into_inner());
                        let (g, _) = cv
                            .wait_timeout_while(g, super::DRAIN_PERIOD, |s| !*s)
                            .unwrap_or_else(|p| p.into_inner());
                        *g
                    };
                    let Some(t) = weak.upgrade() else {
                        return Err(io::Error::other("the run ended without writing its trace"));
                    };
                    if stopping {
                        return engine.finish(&t);
                    }
                    spare = engine.cycle(&t, Some(super::host_tsc()), spare);
                }
            })?;
        Ok(WriterThread { stop, handle })
    }

    /// Stops it after a last pass over everything collected; its aggregates.
    pub fn finish(self) -> io::Result<Aggregates> {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        self.handle
            .join()
            .map_err(|_| io::Error::other("the trace writer thread panicked"))?
    }
}

/// Runs an engine over `tracer` without a thread (nothing was streamed during the run).
pub(crate) fn finish_inline(tracer: &Tracer, outputs: Outputs) -> io::Result<Aggregates> {
    Engine::new(tracer.tsc_khz, tracer.t0, tracer.config.mode, outputs).finish(tracer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use irqlab_devices::{MsiMessage, MsiOutcome};

    const KHZ: u64 = 1000; // 1 cycle = 1 µs

    fn engine() -> Engine {
        let mut e = Engine::new(KHZ, 0, TraceMode::Ring, Outputs::memory());
        e.settle = 0;
        e.expire = 1_000_000;
        e
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

    fn line(call: u64, source: &str) -> HostEvent {
        HostEvent::Inject {
            source: Source(source.into()),
            pin: Some(2),
            msi: None,
            call,
            ret: call + 1,
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

    const OFFSETS: &[TscOffset] = &[TscOffset {
        vcpu: 0,
        offset: 1000,
        uncertainty: 5,
    }];

    fn lines(e: &Engine) -> Vec<Interrupt> {
        match &e.interrupts.out {
            OutFile::Memory(v) => std::str::from_utf8(v)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            _ => unreachable!(),
        }
    }

    /// Runs `host` and `records` through an engine fed in `chunks` pieces, advancing after
    /// each to the time of the newest item; returns what it wrote and its aggregates.
    fn run(
        host: &[HostEvent],
        records: &[Record],
        chunks: usize,
        settle: u64,
    ) -> (Vec<Interrupt>, Aggregates) {
        let mut e = engine();
        e.settle = settle;
        let mut items: Vec<(u64, Option<HostEvent>, Option<Record>)> = host
            .iter()
            .map(|h| (event_key(h).0, Some(h.clone()), None))
            .chain(
                records
                    .iter()
                    .map(|r| (r.tsc_eoi.saturating_sub(1000), None, Some(*r))),
            )
            .collect();
        items.sort_by_key(|i| i.0);
        let per = items.len().div_ceil(chunks.max(1)).max(1);
        for chunk in items.chunks(per) {
            let mut p = Pending::default();
            for (_, h, r) in chunk {
                p.host.extend(h.clone());
                p.records.extend(*r);
            }
            e.feed(&mut p, OFFSETS, &[], &[]);
            e.advance(Some(chunk.last().unwrap().0));
        }
        e.advance(None);
        let out = lines(&e);
        let agg = e.close().unwrap();
        (out, agg)
    }

    #[test]
    fn each_record_takes_the_latest_injection_before_it_and_counts_merges() {
        // Host times: injections at 100, 200, 210 (merged with 200), 400; guest = host + 1000.
        let host = [
            inject(100, 0x40),
            inject(200, 0x40),
            inject(210, 0x40),
            inject(400, 0x40),
        ];
        let recs = [rec(1, 0x40, 1150), rec(2, 0x40, 1250), rec(3, 0x40, 1450)];
        for chunks in [1, 3, 7] {
            let (irqs, agg) = run(&host, &recs, chunks, 0);
            let lat: Vec<f64> = irqs.iter().map(|i| i.latency_us.unwrap()).collect();
            assert_eq!(lat, vec![50.0, 40.0, 50.0], "{chunks} chunks");
            assert_eq!(irqs[1].merged, 1);
            let s = &agg.sources["msi:source0"];
            assert_eq!((s.count, s.injected, s.merged, s.unhandled), (3, 4, 1, 0));
            assert_eq!(agg.violations, 0);
        }
    }

    #[test]
    fn streaming_in_pieces_matches_one_pass_over_everything() {
        // A PIT-like line and MSIs on two vectors, with merges and late handlers.
        let mut host = Vec::new();
        let mut recs = Vec::new();
        let mut seq = 0;
        let mut t = 10_000u64;
        for k in 0..3000u64 {
            t += 37 + (k * 7919 % 113);
            host.push(line(t, "pit"));
            if k % 3 == 0 {
                host.push(inject(t + 5, 0x41));
            }
            if k % 5 != 4 {
                host.push(inject(t + 9, 0x42));
            }
            // The guest takes most of them; some merge (no record), entries 20-60 µs later.
            if k % 4 != 3 {
                seq += 1;
                recs.push(rec(seq, 0x30, t + 1000 + 20 + k % 41));
            }
            if k % 3 == 0 && k % 2 == 0 {
                seq += 1;
                recs.push(rec(seq, 0x41, t + 1000 + 25 + k % 13));
            }
            if k % 5 == 0 {
                seq += 1;
                recs.push(rec(seq, 0x42, t + 1000 + 30 + k % 17));
            }
        }
        let (one, a1) = run(&host, &recs, 1, 0);
        for (chunks, settle) in [(50, 400), (400, 2000), (3000, 300)] {
            let (many, a2) = run(&host, &recs, chunks, settle);
            let key = |v: &[Interrupt]| {
                let mut k: Vec<(u64, String, Option<u64>, u32)> = v
                    .iter()
                    .map(|i| {
                        (
                            i.seq,
                            i.source.clone(),
                            i.latency_us.map(|l| (l * 1000.0) as u64),
                            i.merged,
                        )
                    })
                    .collect();
                k.sort();
                k
            };
            assert_eq!(key(&one), key(&many), "{chunks} chunks, settle {settle}");
            for (name, s) in &a1.sources {
                let t = &a2.sources[name];
                assert_eq!(
                    (s.count, s.injected, s.merged, s.unhandled),
                    (t.count, t.injected, t.merged, t.unhandled),
                    "{name}"
                );
            }
        }
        let pit = &a1.sources["pit"];
        assert_eq!(pit.count + pit.merged + pit.unhandled, pit.injected);
        assert!(pit.vectors.contains(&0x30));
    }

    #[test]
    fn memory_stays_bounded_and_old_unmatched_injections_expire() {
        let mut e = engine();
        e.settle = 100;
        e.expire = 1000;
        // A source whose interrupts the guest never records, for a long time.
        for k in 0..100_000u64 {
            let mut p = Pending::default();
            p.host.push(inject(k * 10, 0x50));
            e.feed(&mut p, OFFSETS, &[], &[]);
            if k % 100 == 0 {
                e.advance(Some(k * 10));
                let held: usize = e.vec_q.iter().map(|q| q.inj.len()).sum();
                assert!(held <= 120, "{held} injections held");
            }
        }
        // Then one record of that vector: the expired ones count as merged into it.
        let mut p = Pending::default();
        p.records.push(rec(1, 0x50, 1000 + 999_995));
        e.feed(&mut p, OFFSETS, &[], &[]);
        e.advance(None);
        let agg = e.close().unwrap();
        let s = &agg.sources["msi:source0"];
        assert_eq!(s.count, 1);
        assert_eq!(s.injected, 100_000);
        assert_eq!(s.count + s.merged + s.unhandled, s.injected);
    }

    #[test]
    fn garbage_records_do_not_panic() {
        let records: Vec<Record> = (0..64)
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
        let mut e = Engine::new(1, 0, TraceMode::Lockstep, Outputs::memory());
        let mut p = Pending {
            host: vec![inject(u64::MAX, 3), inject(0, 0)],
            records,
            ..Default::default()
        };
        e.feed(&mut p, OFFSETS, &[], &[]);
        e.advance(Some(u64::MAX / 2));
        e.advance(Some(u64::MAX));
        e.advance(None);
        assert_eq!(lines(&e).len(), 64);
        e.close().unwrap();
    }

    #[test]
    fn the_chrome_trace_is_one_json_document() {
        let mut e = engine();
        let mut p = Pending {
            host: vec![inject(100, 0x40), line(120, "pit")],
            records: vec![rec(1, 0x40, 1150)],
            exits: vec![ExitRecord {
                vcpu: 0,
                reason: "pio",
                addr: 0x3f8,
                size: 1,
                write: true,
                value: 65,
                tsc: 130,
                vmm_cycles: 3,
            }],
            ..Default::default()
        };
        e.feed(&mut p, OFFSETS, &[], &[]);
        e.advance(None);
        e.finalize_unmatched();
        e.chrome.end();
        let OutFile::Memory(bytes) = &e.chrome.sink.out else {
            unreachable!()
        };
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let ph = |p: &str| evs.iter().filter(|e| e["ph"] == p).count();
        assert_eq!(ph("X"), 1);
        assert_eq!((ph("s"), ph("f")), (1, 1));
        // Two devices, each with a raise and an inject instant; one exit.
        assert_eq!(ph("i"), 5);
        assert!(evs
            .iter()
            .any(|e| e["name"] == "exit pio" && e["args"]["addr"] == "0x3f8"));
        assert_eq!(v["displayTimeUnit"], "ns");
        assert_eq!(e.agg.sources["pit"].unhandled, 1);
    }
}
