//! End-to-end interrupt tracing: what each interrupt cost, from the device that raised it to
//! the guest handler's EOI.
//!
//! Three sources meet here:
//! * **VMM events** with host TSC timestamps: a device raising its line ([`TracedLine`]),
//!   the IO-APIC's routing decision and each `KVM_SIGNAL_MSI`/`KVM_IRQ_LINE` call and return
//!   ([`TracedSink`]), and every userspace exit (written to `exits.jsonl` as it happens).
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

pub mod output;
pub mod ring;
pub mod summarize;
pub mod svg;

use crate::kvm_stats::StatDesc;
use irqlab_devices::ioapic::PinRoute;
use irqlab_devices::{IrqLine, MsiMessage, MsiOutcome, MsiSink};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How per-interrupt costs are attributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
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
}

/// Most VMM events kept (a long run at a high interrupt rate stops collecting, visibly).
pub const MAX_HOST_EVENTS: usize = 8 << 20;
/// Most lockstep samples kept.
pub const MAX_SAMPLES: usize = 256 << 10;

/// Exits kept in memory for the Chrome trace (exits.jsonl has all of them).
pub const MAX_KEPT_EXITS: usize = 1 << 20;

/// Default ring size: 32 Ki records (1 MiB of guest memory).
pub const DEFAULT_RING_RECORDS: u32 = 32 * 1024;

/// Host TSC now.
pub fn host_tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions in user mode on x86-64 Linux.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Where an interrupt came from, as the VMM sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Source(pub String);

impl Source {
    /// The source behind IO-APIC `pin` (= GSI).
    pub fn for_pin(pin: u8) -> Source {
        match pin {
            irqlab_abi::ports::PIT_GSI => Source("pit".into()),
            irqlab_abi::ports::COM1_GSI => Source("uart".into()),
            other => Source(format!("ioapic:pin{other}")),
        }
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

/// Collects everything a traced run produces.
pub struct Tracer {
    /// The configuration.
    pub config: TraceConfig,
    /// TSC frequency (kHz).
    pub tsc_khz: u64,
    host: Mutex<Vec<HostEvent>>,
    samples: Mutex<Vec<Sample>>,
    /// KVM statistics baseline and end per vCPU (for run totals).
    pub stat_totals: Mutex<Vec<StatSpan>>,
    stat_names: OnceLock<Vec<StatDesc>>,
    offsets: Mutex<Vec<TscOffset>>,
    exits: Mutex<Option<BufWriter<File>>>,
    exit_seq: AtomicU64,
    /// Exits kept for the Chrome trace (at most [`MAX_KEPT_EXITS`]).
    kept_exits: Mutex<Vec<ExitRecord>>,
    /// Host TSC when tracing started: time zero of every output.
    pub t0: u64,
    /// Events and samples not kept because a cap was reached.
    pub dropped: AtomicU64,
    /// Guest records drained from the ring so far.
    pub ring: Mutex<ring::RingReader>,
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
    /// Creates the output directory and `exits.jsonl`; the ring lives at `ring_addr`.
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
        Ok(Tracer {
            config,
            tsc_khz: tsc_khz.max(1),
            host: Mutex::new(Vec::new()),
            samples: Mutex::new(Vec::new()),
            stat_totals: Mutex::new(Vec::new()),
            stat_names: OnceLock::new(),
            offsets: Mutex::new(Vec::new()),
            exits: Mutex::new(Some(BufWriter::new(file))),
            exit_seq: AtomicU64::new(0),
            kept_exits: Mutex::new(Vec::new()),
            t0: host_tsc(),
            dropped: AtomicU64::new(0),
            ring: Mutex::new(ring),
        })
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Records a VMM event (at most [`MAX_HOST_EVENTS`]; later ones are counted).
    pub fn host_event(&self, e: HostEvent) {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
        if host.len() < MAX_HOST_EVENTS {
            host.push(e);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a vCPU's TSC offset.
    pub fn tsc_offset(&self, o: TscOffset) {
        self.offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(o);
    }

    /// Remembers the statistics layout (the first vCPU to open its stats sets it).
    pub fn stat_layout(&self, descs: &[StatDesc]) {
        let _ = self.stat_names.set(descs.to_vec());
    }

    /// Records a doorbell sample.
    pub fn sample(&self, s: Sample) {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s);
    }

    /// Writes one userspace exit to `exits.jsonl`.
    pub fn exit(&self, rec: &ExitRecord) {
        let seq = self.exit_seq.fetch_add(1, Ordering::Relaxed);
        let mut w = self.exits.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut kept = self.kept_exits.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < MAX_KEPT_EXITS {
            kept.push(*rec);
        }
    }

    /// Host TSC as microseconds since tracing started.
    pub fn us(&self, tsc: u64) -> f64 {
        (tsc as f64 - self.t0 as f64) * 1000.0 / self.tsc_khz as f64
    }

    /// Flushes `exits.jsonl` (the event loop calls this every drain tick).
    pub fn flush(&self) {
        if let Some(w) = self
            .exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = w.flush();
        }
    }

    /// Takes everything collected so far (for the outputs).
    pub fn take(&self) -> Collected {
        self.flush();
        let (records, lost_records) = {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut ring.records), ring.lost)
        };
        Collected {
            host: std::mem::take(&mut *self.host.lock().unwrap_or_else(|p| p.into_inner())),
            samples: std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner())),
            offsets: self
                .offsets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            stat_names: self.stat_names.get().cloned().unwrap_or_default(),
            stat_totals: std::mem::take(
                &mut *self.stat_totals.lock().unwrap_or_else(|p| p.into_inner()),
            ),
            records,
            lost_records,
            exits: self.exit_seq.load(Ordering::Relaxed),
            exit_records: std::mem::take(
                &mut *self.kept_exits.lock().unwrap_or_else(|p| p.into_inner()),
            ),
            t0: self.t0,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Everything a run collected, handed to [`output::write_all`].
pub struct Collected {
    /// VMM events.
    pub host: Vec<HostEvent>,
    /// Doorbell samples.
    pub samples: Vec<Sample>,
    /// TSC offsets.
    pub offsets: Vec<TscOffset>,
    /// KVM statistic names.
    pub stat_names: Vec<StatDesc>,
    /// Per-vCPU statistics at start and end.
    pub stat_totals: Vec<StatSpan>,
    /// Guest records.
    pub records: Vec<irqlab_abi::trace::Record>,
    /// Records the guest overwrote before the VMM read them.
    pub lost_records: u64,
    /// Userspace exits written to exits.jsonl.
    pub exits: u64,
    /// The exits kept in memory.
    pub exit_records: Vec<ExitRecord>,
    /// Time zero (host TSC).
    pub t0: u64,
    /// Events and samples not kept (caps reached).
    pub dropped: u64,
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

/// An [`IrqLine`] that records rising edges as raise events.
pub struct TracedLine {
    inner: Arc<dyn IrqLine>,
    tracer: Arc<Tracer>,
    source: Source,
    pin: Option<u8>,
    level: std::sync::atomic::AtomicBool,
    /// With the kernel irqchip the line *is* the injection (`KVM_IRQ_LINE`).
    injects: bool,
}

impl TracedLine {
    /// Wraps `inner`; `injects` when setting the line is itself the KVM call.
    pub fn new(
        inner: Arc<dyn IrqLine>,
        tracer: Arc<Tracer>,
        source: Source,
        pin: Option<u8>,
        injects: bool,
    ) -> Self {
        TracedLine {
            inner,
            tracer,
            source,
            pin,
            level: std::sync::atomic::AtomicBool::new(false),
            injects,
        }
    }
}

impl IrqLine for TracedLine {
    fn set_level(&self, level: bool) {
        let was = self.level.swap(level, Ordering::Relaxed);
        let rising = level && !was;
        if !rising {
            self.inner.set_level(level);
            return;
        }
        let call = host_tsc();
        self.tracer.host_event(HostEvent::Raise {
            source: self.source.clone(),
            pin: self.pin,
            tsc: call,
        });
        self.inner.set_level(level);
        if self.injects {
            self.tracer.host_event(HostEvent::Inject {
                source: self.source.clone(),
                pin: self.pin,
                msi: None,
                call,
                ret: host_tsc(),
                outcome: MsiOutcome::Delivered,
            });
        }
    }
}

/// An [`MsiSink`] that records every injection.
pub struct TracedSink {
    inner: Arc<dyn MsiSink>,
    tracer: Arc<Tracer>,
    /// Source of messages not coming from an IO-APIC pin.
    source: Source,
}

impl TracedSink {
    /// Wraps `inner`; messages sent without a pin are attributed to `source`.
    pub fn new(inner: Arc<dyn MsiSink>, tracer: Arc<Tracer>, source: Source) -> Self {
        TracedSink {
            inner,
            tracer,
            source,
        }
    }

    fn traced(&self, source: Source, pin: Option<u8>, msg: MsiMessage) -> MsiOutcome {
        let call = host_tsc();
        if pin.is_none() {
            // An MSI device's "raise" is its decision to send.
            self.tracer.host_event(HostEvent::Raise {
                source: source.clone(),
                pin,
                tsc: call,
            });
        }
        let outcome = self.inner.send(msg);
        let ret = host_tsc();
        self.tracer.host_event(HostEvent::Inject {
            source,
            pin,
            msi: Some(msg),
            call,
            ret,
            outcome,
        });
        outcome
    }
}

impl MsiSink for TracedSink {
    fn send(&self, msg: MsiMessage) -> MsiOutcome {
        self.traced(self.source.clone(), None, msg)
    }

    fn send_from_pin(&self, pin: u8, msg: MsiMessage) -> MsiOutcome {
        self.traced(Source::for_pin(pin), Some(pin), msg)
    }

    fn routes_changed(&self, routes: &[PinRoute]) {
        self.inner.routes_changed(routes)
    }
}

/// Event-loop subscriber: drains the guest ring and flushes `exits.jsonl` every 20 ms.
pub struct TraceDrain {
    tracer: Arc<Tracer>,
    mem: crate::memory::GuestMemory,
    timer: vmm_sys_util::timerfd::TimerFd,
}

/// How often the ring is drained.
pub const DRAIN_PERIOD: std::time::Duration = std::time::Duration::from_millis(20);

impl TraceDrain {
    /// A drain for `tracer` reading `mem`.
    pub fn new(tracer: Arc<Tracer>, mem: crate::memory::GuestMemory) -> std::io::Result<Self> {
        let mut timer = vmm_sys_util::timerfd::TimerFd::new().map_err(std::io::Error::from)?;
        timer
            .reset(DRAIN_PERIOD, Some(DRAIN_PERIOD))
            .map_err(std::io::Error::from)?;
        Ok(TraceDrain { tracer, mem, timer })
    }
}

impl event_manager::MutEventSubscriber for TraceDrain {
    fn init(&mut self, ops: &mut event_manager::EventOps) {
        use std::os::fd::AsRawFd;
        let _ = ops.add(event_manager::Events::new_raw(
            self.timer.as_raw_fd(),
            event_manager::EventSet::IN,
        ));
    }

    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        let _ = self.timer.wait();
        self.tracer
            .ring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(&self.mem);
        self.tracer.flush();
    }
}
