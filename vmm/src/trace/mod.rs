//! End-to-end interrupt tracing: what each interrupt cost, from the device that raised it to
//! the guest handler's EOI.
//!
//! Three sources meet here:
//! * **VMM events** with host TSC timestamps: a device raising its line ([`TracedLine`]),
//!   the IO-APIC's routing decision and each `KVM_SIGNAL_MSI`/`KVM_IRQ_LINE` call and return
//!   ([`TracedSink`]), and every userspace exit (written to `exits.jsonl` as it happens, up
//!   to `exits_max_records`).
//! * **Guest records** from the trace ring in guest memory (`irqlab_abi::trace`): vector,
//!   CPU, TSC at handler entry and after the EOI. No exit per record; the event loop drains
//!   the ring every 20 ms and once more at the end.
//! * **KVM statistics** per vCPU (`KVM_GET_STATS_FD`), sampled at every doorbell in
//!   `lockstep` mode (the guest rings it after each EOI), so each counter delta belongs to
//!   exactly one interrupt. The doorbell's own exit is subtracted (`exits` and `io_exits` − 1).
//!
//! Clocks: the guest TSC is the host TSC plus the offset KVM applies. Each vCPU thread reads
//! `IA32_TSC` with `KVM_GET_MSRS` between two host `rdtsc`s before it first enters the guest;
//! the midpoint gives the offset and half the bracket its uncertainty. Host events are
//! stamped with the host `rdtsc` directly, so everything lives on one timeline, reported in
//! microseconds from the first event at the `tsc_khz` KVM reports. The check
//! `raise ≤ inject ≤ entry` is applied to every record and violations are counted in
//! `summary.json`, never hidden.
//!
//! Memory does not grow with the run: producers append to small pending buffers (capped;
//! what does not fit is counted in `dropped_events` / `lost_records`), and the `trace-writer`
//! thread ([`stream`]) takes them every [`DRAIN_PERIOD`], correlates on a bounded window
//! behind the present and writes `interrupts.jsonl` and `trace.json` as the run goes. The
//! end-of-run summary, table and `latency.svg` come from streaming aggregates
//! ([`hist::LatencyHist`], bucket counts).

pub mod hist;
pub mod model;
pub mod output;
pub mod ring;
pub mod stream;
pub mod summarize;
pub mod svg;
pub mod table;

mod drain;
mod probe;

pub use drain::{TraceDrain, DRAIN_PERIOD};
pub use probe::{TracedLine, TracedSink};

use crate::kvm_stats::StatDesc;
use irqlab_devices::{MsiMessage, MsiOutcome};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// How per-interrupt costs are attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TraceMode {
    /// Records only: no extra exits; KVM statistics as run totals.
    #[default]
    Ring,
    /// One doorbell exit per interrupt; KVM statistic deltas per interrupt.
    Lockstep,
}

impl TraceMode {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            TraceMode::Ring => "ring",
            TraceMode::Lockstep => "lockstep",
        }
    }
}

/// What to trace and where to write it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// Output directory (created if missing).
    pub dir: PathBuf,
    /// Attribution mode.
    pub mode: TraceMode,
    /// Records in the guest ring.
    pub ring_records: u32,
    /// Most lines in `exits.jsonl` (and exit instants in `trace.json`); later exits are
    /// counted (`dropped_exit_records`), not written. 0: no limit.
    pub exits_max_records: u64,
}

impl TraceConfig {
    /// Tracing into `dir` in `mode`, everything else at its default.
    pub fn new(dir: PathBuf, mode: TraceMode) -> TraceConfig {
        TraceConfig {
            dir,
            mode,
            ring_records: DEFAULT_RING_RECORDS,
            exits_max_records: DEFAULT_EXITS_MAX_RECORDS,
        }
    }
}

/// Most VMM events waiting for the trace writer (~18 MiB); more are counted as dropped. The
/// writer takes them every [`DRAIN_PERIOD`], so this is only reached if it stalls.
pub const MAX_PENDING_HOST_EVENTS: usize = 256 << 10;
/// Most lockstep samples waiting for the trace writer.
pub const MAX_PENDING_SAMPLES: usize = 16 << 10;
/// Most exits waiting for the trace writer's `trace.json` instants.
pub const MAX_PENDING_EXITS: usize = 64 << 10;

/// Default ring size: 32 Ki records (1 MiB of guest memory).
pub const DEFAULT_RING_RECORDS: u32 = 32 * 1024;

/// Default cap on `exits.jsonl`: a million lines (~130 MB).
pub const DEFAULT_EXITS_MAX_RECORDS: u64 = 1_000_000;

/// Host TSC now.
pub fn host_tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions in user mode on x86-64 Linux.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Where an interrupt came from, as the VMM sees it (shared: an event's copy costs no
/// allocation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(pub Arc<str>);

impl Source {
    /// The source behind IO-APIC `pin` (= GSI).
    pub fn for_pin(pin: u8) -> Source {
        match pin {
            irqlab_abi::ports::PIT_GSI => Source("pit".into()),
            irqlab_abi::ports::COM1_GSI => Source("uart".into()),
            other => Source(format!("ioapic:pin{other}").into()),
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// A VMM-side event.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// A device drove its line active (or, for MSI devices, decided to send).
    Raise {
        /// Who.
        source: Source,
        /// IO-APIC pin, if any.
        pin: Option<u8>,
        /// Host TSC.
        tsc: u64,
    },
    /// An injection into KVM.
    Inject {
        /// Who.
        source: Source,
        /// IO-APIC pin, if any.
        pin: Option<u8>,
        /// The MSI (or, for `KVM_IRQ_LINE`, `None`).
        msi: Option<MsiMessage>,
        /// Host TSC before the ioctl.
        call: u64,
        /// Host TSC after it.
        ret: u64,
        /// What KVM said.
        outcome: MsiOutcome,
    },
}

/// One vCPU's KVM statistics before its first entry and after its last exit.
pub type StatSpan = (u8, Vec<u64>, Vec<u64>);

/// A sample of one vCPU's KVM statistics at a doorbell.
#[derive(Debug, Clone)]
pub struct Sample {
    /// vCPU.
    pub vcpu: u8,
    /// The record sequence number the guest rang with (low 32 bits).
    pub seq: u32,
    /// Host TSC.
    pub tsc: u64,
    /// Values, indexed as the descriptors say.
    pub values: Vec<u64>,
    /// irqlab's own userspace exit counters at the doorbell (all vCPUs).
    pub userspace: crate::stats::ExitCounts,
}

/// The TSC offset of one vCPU.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TscOffset {
    /// vCPU.
    pub vcpu: u8,
    /// guest TSC − host TSC.
    pub offset: i64,
    /// Half the width of the host `rdtsc` bracket around `KVM_GET_MSRS`.
    pub uncertainty: u64,
}

/// Collects everything a traced run produces, for the trace writer ([`stream`]).
pub struct Tracer {
    /// The configuration.
    pub config: TraceConfig,
    /// TSC frequency (kHz).
    pub tsc_khz: u64,
    host: Mutex<Vec<HostEvent>>,
    samples: Mutex<Vec<Sample>>,
    /// KVM statistics baseline and end per vCPU (for run totals).
    pub stat_totals: Mutex<Vec<StatSpan>>,
    stat_starts: Mutex<Vec<(u8, Vec<u64>)>>,
    stat_names: OnceLock<Vec<StatDesc>>,
    offsets: Mutex<Vec<TscOffset>>,
    exits: Mutex<Option<BufWriter<File>>>,
    exit_seq: AtomicU64,
    dropped_exits: AtomicU64,
    /// Exits written to exits.jsonl and waiting for their `trace.json` instants.
    chrome_exits: Mutex<Vec<ExitRecord>>,
    /// Host TSC when tracing started: time zero of every output.
    pub t0: u64,
    /// Events and samples not kept because a pending buffer was full.
    pub dropped: AtomicU64,
    /// The guest ring and the records drained from it, not yet taken by the writer.
    pub ring: Mutex<ring::RingReader>,
    /// `interrupts.jsonl` and `trace.json`, opened at set-up, until the writer takes them.
    outputs: Mutex<Option<stream::Outputs>>,
    /// The `trace-writer` thread, once started ([`TraceDrain`]).
    writer: Mutex<Option<stream::WriterThread>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends `item` to a pending buffer unless it holds `cap` items; counts it in `dropped`
/// otherwise.
fn push_capped<T>(m: &Mutex<Vec<T>>, item: T, cap: usize, dropped: &AtomicU64) {
    let mut v = lock(m);
    if v.len() < cap {
        v.push(item);
    } else {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Swaps the pending buffer for `spare` (emptied first, its allocation reused).
fn swap_out<T>(m: &Mutex<Vec<T>>, mut spare: Vec<T>) -> Vec<T> {
    spare.clear();
    std::mem::replace(&mut *lock(m), spare)
}

/// Tracing set-up errors (exit code 65: the directory is a user value).
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write trace output: {source}", path.display())]
pub struct TraceIoError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl Tracer {
    /// Creates the output directory, `exits.jsonl`, `interrupts.jsonl` and `trace.json`
    /// (see [`stream::Outputs`]); the ring lives at `ring_addr`.
    pub fn new(
        config: TraceConfig,
        tsc_khz: u64,
        ring: ring::RingReader,
    ) -> Result<Tracer, TraceIoError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| TraceIoError {
            path: config.dir.clone(),
            source,
        })?;
        let path = config.dir.join("exits.jsonl");
        let file = File::create(&path).map_err(|source| TraceIoError { path, source })?;
        let outputs = stream::Outputs::create(&config.dir)?;
        Ok(Tracer {
            config,
            tsc_khz: tsc_khz.max(1),
            host: Mutex::new(Vec::new()),
            samples: Mutex::new(Vec::new()),
            stat_totals: Mutex::new(Vec::new()),
            stat_starts: Mutex::new(Vec::new()),
            stat_names: OnceLock::new(),
            offsets: Mutex::new(Vec::new()),
            exits: Mutex::new(Some(BufWriter::new(file))),
            exit_seq: AtomicU64::new(0),
            dropped_exits: AtomicU64::new(0),
            chrome_exits: Mutex::new(Vec::new()),
            t0: host_tsc(),
            dropped: AtomicU64::new(0),
            ring: Mutex::new(ring),
            outputs: Mutex::new(Some(outputs)),
            writer: Mutex::new(None),
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Records a VMM event (while the writer's pending buffer has room; else counted).
    pub fn host_event(&self, e: HostEvent) {
        push_capped(&self.host, e, MAX_PENDING_HOST_EVENTS, &self.dropped);
    }

    /// Records a vCPU's TSC offset.
    pub fn tsc_offset(&self, o: TscOffset) {
        lock(&self.offsets).push(o);
    }

    /// Remembers the statistics layout (the first vCPU to open its stats sets it).
    pub fn stat_layout(&self, descs: &[StatDesc]) {
        let _ = self.stat_names.set(descs.to_vec());
    }

    /// Records a vCPU's KVM statistics before its first entry: the baseline of its first
    /// lockstep delta (the writer needs it during the run; [`Tracer::stat_totals`] has it
    /// only at the end).
    pub fn stat_start(&self, vcpu: u8, values: &[u64]) {
        if !values.is_empty() {
            lock(&self.stat_starts).push((vcpu, values.to_vec()));
        }
    }

    /// Records a doorbell sample.
    pub fn sample(&self, s: Sample) {
        push_capped(&self.samples, s, MAX_PENDING_SAMPLES, &self.dropped);
    }

    /// Writes one userspace exit to `exits.jsonl` (and queues its `trace.json` instant), or
    /// counts it once `exits_max_records` lines were written.
    pub fn exit(&self, rec: &ExitRecord) {
        let seq = self.exit_seq.fetch_add(1, Ordering::Relaxed);
        let cap = self.config.exits_max_records;
        if cap != 0 && seq >= cap {
            self.dropped_exits.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut w = lock(&self.exits);
        if let Some(w) = w.as_mut() {
            let line = ExitLine {
                seq,
                vcpu: rec.vcpu,
                reason: rec.reason,
                addr: rec.addr,
                size: rec.size,
                write: rec.write,
                value: rec.value,
                t_us: self.us(rec.tsc),
                vmm_ns: rec.vmm_cycles * 1_000_000 / self.tsc_khz,
            };
            if let Ok(json) = serde_json::to_string(&line) {
                let _ = writeln!(w, "{json}");
            }
        }
        drop(w);
        push_capped(&self.chrome_exits, *rec, MAX_PENDING_EXITS, &self.dropped);
    }

    /// Host TSC as microseconds since tracing started.
    pub fn us(&self, tsc: u64) -> f64 {
        (tsc as f64 - self.t0 as f64) * 1000.0 / self.tsc_khz as f64
    }

    /// Flushes `exits.jsonl` (the event loop calls this every drain tick).
    pub fn flush(&self) {
        if let Some(w) = lock(&self.exits).as_mut() {
            let _ = w.flush();
        }
    }

    /// Userspace exits seen, and how many of them were not written (the cap).
    pub fn exit_counts(&self) -> (u64, u64) {
        (
            self.exit_seq.load(Ordering::Relaxed),
            self.dropped_exits.load(Ordering::Relaxed),
        )
    }

    /// KVM statistic names, once a vCPU opened its statistics.
    pub fn stat_names(&self) -> &[StatDesc] {
        self.stat_names.get().map_or(&[], Vec::as_slice)
    }

    /// The TSC offsets measured so far.
    pub fn offsets(&self) -> Vec<TscOffset> {
        lock(&self.offsets).clone()
    }

    /// The statistics baselines recorded so far.
    pub fn stat_starts(&self) -> Vec<(u8, Vec<u64>)> {
        lock(&self.stat_starts).clone()
    }

    /// Takes what the producers collected since the last call (each buffer swapped for the
    /// matching `spare`, whose allocation is reused).
    pub fn take_pending(&self, spare: Pending) -> Pending {
        Pending {
            host: swap_out(&self.host, spare.host),
            samples: swap_out(&self.samples, spare.samples),
            exits: swap_out(&self.chrome_exits, spare.exits),
            records: lock(&self.ring).take(spare.records),
        }
    }

    /// The output files, for the writer (once).
    fn take_outputs(&self) -> Option<stream::Outputs> {
        lock(&self.outputs).take()
    }
}

/// What the producers collected since the writer last looked.
#[derive(Debug, Default)]
pub struct Pending {
    /// VMM events.
    pub host: Vec<HostEvent>,
    /// Doorbell samples.
    pub samples: Vec<Sample>,
    /// Userspace exits (for `trace.json`).
    pub exits: Vec<ExitRecord>,
    /// Guest records.
    pub records: Vec<irqlab_abi::trace::Record>,
}

/// One userspace exit, as the vCPU loop saw it.
#[derive(Debug, Clone, Copy)]
pub struct ExitRecord {
    /// vCPU.
    pub vcpu: u8,
    /// `pio`, `mmio`, `ioapic_eoi`, `hlt`, `intr`, ...
    pub reason: &'static str,
    /// Port or guest-physical address (or the EOI vector).
    pub addr: u64,
    /// Access size in bytes.
    pub size: u8,
    /// Direction: true for writes (out / MMIO write).
    pub write: bool,
    /// The value written or returned (little-endian, up to 8 bytes).
    pub value: u64,
    /// Host TSC when `KVM_RUN` returned.
    pub tsc: u64,
    /// TSC cycles spent in the VMM before re-entering.
    pub vmm_cycles: u64,
}

#[derive(Serialize)]
struct ExitLine {
    seq: u64,
    vcpu: u8,
    reason: &'static str,
    addr: u64,
    size: u8,
    write: bool,
    value: u64,
    t_us: f64,
    vmm_ns: u64,
}
