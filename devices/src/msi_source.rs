//! A device that raises message-signalled interrupts from its own thread, as a NIC's DMA
//! engine would, so the guest can study MSI delivery without any exit on the interrupt path.
//!
//! The register map is part of the guest ABI: [`irqlab_abi::msi_source`]. The guest programs
//! an MSI address/data pair, a count and a rate and starts a run; a worker thread sends the
//! messages through an [`MsiSink`] at absolute deadlines (`start + i / rate`), so a late
//! message does not push the rest back, and counts what became of each one. The guest proves
//! that none was lost by comparing `SENT` with the interrupts its handler counted.
//!
//! # Example
//! ```
//! use irqlab_abi::msi_source as reg;
//! use irqlab_devices::msi_source::MsiSource;
//! use irqlab_devices::{BusDevice, MsiMessage, MsiOutcome, MsiSink};
//! use std::sync::Arc;
//!
//! struct Accept;
//! impl MsiSink for Accept {
//!     fn send(&self, _: MsiMessage) -> MsiOutcome { MsiOutcome::Delivered }
//! }
//! let mut dev = MsiSource::new(Arc::new(Accept));
//! dev.write(reg::ADDR_LO, &0xfee0_0000u32.to_le_bytes());
//! dev.write(reg::DATA, &0x40u32.to_le_bytes());
//! dev.write(reg::COUNT, &10u32.to_le_bytes());
//! dev.write(reg::CONTROL, &reg::CTRL_START.to_le_bytes());
//! dev.wait_idle();
//! let mut sent = [0u8; 4];
//! dev.read(reg::SENT, &mut sent);
//! assert_eq!(u32::from_le_bytes(sent), 10);
//! ```

use crate::posted::{post, DescriptorMemory, PostOutcome};
use crate::{le_value, BusDevice, MsiMessage, MsiOutcome, MsiSink};
use irqlab_abi::msi_source as reg;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters shared between the registers and the worker thread.
#[derive(Debug, Default)]
pub struct RunCounters {
    /// Messages sent.
    pub sent: AtomicU32,
    /// Accepted by a local APIC.
    pub delivered: AtomicU32,
    /// Accepted by no local APIC.
    pub undelivered: AtomicU32,
    /// The sink failed.
    pub failed: AtomicU32,
    /// Sent more than one period late.
    pub late: AtomicU32,
    /// Posted mode: notifications sent.
    pub notified: AtomicU32,
    /// Posted mode: events posted while SN was set.
    pub suppressed: AtomicU32,
    busy: AtomicBool,
    stop: AtomicBool,
}

/// Device access to guest memory (the VMM implements it on its guest memory).
pub trait DmaWriter: Send + Sync {
    /// Writes `value` little-endian at guest-physical `gpa`; false if no RAM is there.
    fn write_u32(&self, gpa: u64, value: u32) -> bool;
    /// Writes `value` little-endian at guest-physical `gpa`; false if no RAM is there. The
    /// default writes two halves, low first (the VMM stores all 8 bytes at once).
    fn write_u64(&self, gpa: u64, value: u64) -> bool {
        self.write_u32(gpa, value as u32)
            && gpa
                .checked_add(4)
                .is_some_and(|hi| self.write_u32(hi, (value >> 32) as u32))
    }
    /// The posted-interrupt descriptor at `gpa` (64-byte aligned, in RAM), as atomics.
    fn descriptor(&self, _gpa: u64) -> Option<Arc<dyn DescriptorMemory>> {
        None
    }
}

/// Observes each message the worker sends (the tracer hooks in here).
pub trait MsiObserver: Send + Sync {
    /// Message `seq` (0-based) was sent at `sent` and had `outcome`.
    fn sent(&self, seq: u32, msg: MsiMessage, sent: Instant, outcome: MsiOutcome);
}

/// The MSI source device.
pub struct MsiSource {
    address: u64,
    data: u32,
    count: u32,
    rate_hz: u32,
    write_back: u64,
    mode: u32,
    pid: u64,
    counters: Arc<RunCounters>,
    worker: Option<JoinHandle<()>>,
    sink: Arc<dyn MsiSink>,
    dma: Option<Arc<dyn DmaWriter>>,
    observer: Option<Arc<dyn MsiObserver>>,
    on_thread_start: Option<ThreadStart>,
    ignored_writes: u64,
}

/// Runs first on every worker thread the device starts (the VMM confines the thread there,
/// e.g. with a seccomp filter; the device itself stays free of host policy).
pub type ThreadStart = Arc<dyn Fn() + Send + Sync>;

impl MsiSource {
    /// A stopped device sending through `sink`.
    pub fn new(sink: Arc<dyn MsiSink>) -> Self {
        MsiSource {
            address: 0,
            data: 0,
            count: 0,
            rate_hz: 0,
            write_back: 0,
            mode: reg::MODE_DIRECT,
            pid: 0,
            counters: Arc::new(RunCounters::default()),
            worker: None,
            sink,
            dma: None,
            observer: None,
            on_thread_start: None,
            ignored_writes: 0,
        }
    }

    /// Runs `hook` first on every worker thread from now on.
    pub fn set_thread_start(&mut self, hook: ThreadStart) {
        self.on_thread_start = Some(hook);
    }

    /// Lets the device write its event counter into guest memory through `dma`.
    pub fn with_dma(mut self, dma: Arc<dyn DmaWriter>) -> Self {
        self.dma = Some(dma);
        self
    }

    /// Reports every message to `observer` as well.
    pub fn with_observer(mut self, observer: Arc<dyn MsiObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The counters of the current or last run.
    pub fn counters(&self) -> &RunCounters {
        &self.counters
    }

    /// Writes ignored (busy, read-only or unknown register, bad width).
    pub fn ignored_writes(&self) -> u64 {
        self.ignored_writes
    }

    fn busy(&self) -> bool {
        self.counters.busy.load(Ordering::Acquire)
    }

    /// Blocks until the current run (if any) has ended.
    pub fn wait_idle(&mut self) {
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }

    /// Stops the current run and waits for the worker (VM teardown).
    pub fn shutdown(&mut self) {
        self.counters.stop.store(true, Ordering::Release);
        self.wait_idle();
    }

    fn start(&mut self) {
        if self.busy() {
            self.ignored_writes += 1;
            return;
        }
        self.wait_idle();
        let counters = Arc::new(RunCounters::default());
        counters.busy.store(true, Ordering::Release);
        self.counters = counters.clone();
        let job = Job {
            msg: MsiMessage {
                address: self.address,
                data: self.data,
            },
            count: self.count,
            period: (self.rate_hz > 0)
                .then(|| Duration::from_nanos(1_000_000_000 / u64::from(self.rate_hz))),
            sink: self.sink.clone(),
            write_back: self
                .dma
                .clone()
                .filter(|_| self.write_back != 0 && self.write_back.is_multiple_of(4))
                .map(|dma| (dma, self.write_back)),
            posted: if self.mode == reg::MODE_POSTED {
                match self.dma.as_ref().and_then(|d| d.descriptor(self.pid)) {
                    Some(desc) => Some(desc),
                    None => {
                        // No descriptor there: the run fails every event, visibly.
                        counters.failed.store(self.count, Ordering::Release);
                        counters.busy.store(false, Ordering::Release);
                        return;
                    }
                }
            } else {
                None
            },
            observer: self.observer.clone(),
            counters,
        };
        let start = self.on_thread_start.clone();
        self.worker = std::thread::Builder::new()
            .name("msi-source".into())
            .spawn(move || {
                if let Some(start) = start {
                    start();
                }
                job.run()
            })
            .ok();
        if self.worker.is_none() {
            self.counters.busy.store(false, Ordering::Release);
        }
    }

    fn read_register(&self, offset: u64) -> Option<u32> {
        let c = &self.counters;
        Some(match offset {
            reg::ID => reg::ID_VALUE,
            reg::ADDR_LO => self.address as u32,
            reg::ADDR_HI => (self.address >> 32) as u32,
            reg::DATA => self.data,
            reg::COUNT => self.count,
            reg::RATE_HZ => self.rate_hz,
            reg::WB_ADDR_LO => self.write_back as u32,
            reg::WB_ADDR_HI => (self.write_back >> 32) as u32,
            reg::MODE => self.mode,
            reg::PID_LO => self.pid as u32,
            reg::PID_HI => (self.pid >> 32) as u32,
            reg::NOTIFIED => c.notified.load(Ordering::Acquire),
            reg::SUPPRESSED => c.suppressed.load(Ordering::Acquire),
            reg::CONTROL => u32::from(self.busy()) * reg::STATUS_BUSY,
            reg::SENT => c.sent.load(Ordering::Acquire),
            reg::DELIVERED => c.delivered.load(Ordering::Acquire),
            reg::UNDELIVERED => c.undelivered.load(Ordering::Acquire),
            reg::FAILED => c.failed.load(Ordering::Acquire),
            reg::LATE => c.late.load(Ordering::Acquire),
            _ => return None,
        })
    }
}

impl Drop for MsiSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl BusDevice for MsiSource {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() != 4 {
            return;
        }
        if let Some(v) = self.read_register(offset) {
            data.copy_from_slice(&v.to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(v) = le_value(data).filter(|_| data.len() == 4).map(|v| v as u32) else {
            self.ignored_writes += 1;
            return;
        };
        let config = matches!(
            offset,
            reg::ADDR_LO
                | reg::ADDR_HI
                | reg::DATA
                | reg::COUNT
                | reg::RATE_HZ
                | reg::WB_ADDR_LO
                | reg::WB_ADDR_HI
                | reg::MODE
                | reg::PID_LO
                | reg::PID_HI
        );
        if config && self.busy() {
            self.ignored_writes += 1;
            return;
        }
        match offset {
            reg::ADDR_LO => self.address = (self.address & !0xffff_ffff) | u64::from(v),
            reg::ADDR_HI => self.address = (self.address & 0xffff_ffff) | (u64::from(v) << 32),
            reg::DATA => self.data = v,
            reg::COUNT => self.count = v,
            reg::RATE_HZ => self.rate_hz = v,
            reg::WB_ADDR_LO => {
                self.write_back = (self.write_back & !0xffff_ffff) | u64::from(v);
            }
            reg::WB_ADDR_HI => {
                self.write_back = (self.write_back & 0xffff_ffff) | (u64::from(v) << 32);
            }
            reg::MODE if v == reg::MODE_DIRECT || v == reg::MODE_POSTED => self.mode = v,
            reg::PID_LO => self.pid = (self.pid & !0xffff_ffff) | u64::from(v),
            reg::PID_HI => self.pid = (self.pid & 0xffff_ffff) | (u64::from(v) << 32),
            reg::CONTROL if v == reg::CTRL_START => self.start(),
            reg::CONTROL if v == reg::CTRL_STOP => {
                self.counters.stop.store(true, Ordering::Release)
            }
            _ => self.ignored_writes += 1,
        }
    }
}

struct Job {
    msg: MsiMessage,
    count: u32,
    period: Option<Duration>,
    sink: Arc<dyn MsiSink>,
    write_back: Option<(Arc<dyn DmaWriter>, u64)>,
    posted: Option<Arc<dyn DescriptorMemory>>,
    observer: Option<Arc<dyn MsiObserver>>,
    counters: Arc<RunCounters>,
}

impl Job {
    fn run(self) {
        let c = &self.counters;
        let start = Instant::now();
        for seq in 0..self.count {
            if c.stop.load(Ordering::Acquire) {
                break;
            }
            if let Some(period) = self.period {
                let due = start + period * seq;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                } else if now - due > period {
                    c.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some((dma, gpa)) = &self.write_back {
                if !dma.write_u32(*gpa, seq + 1) {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            let sent = Instant::now();
            if let Some(desc) = &self.posted {
                // Coalesced posts are `sent - notified - suppressed - failed`.
                let counter = match post(desc.as_ref(), self.msg.data as u8, self.sink.as_ref()) {
                    PostOutcome::Notified => Some(&c.notified),
                    PostOutcome::Coalesced => None,
                    PostOutcome::Suppressed => Some(&c.suppressed),
                    PostOutcome::Failed(_) => Some(&c.failed),
                };
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                c.sent.fetch_add(1, Ordering::Release);
                continue;
            }
            let outcome = self.sink.send(self.msg);
            match outcome {
                MsiOutcome::Delivered => &c.delivered,
                MsiOutcome::Blocked => &c.undelivered,
                MsiOutcome::Failed(_) => &c.failed,
            }
            .fetch_add(1, Ordering::Relaxed);
            c.sent.fetch_add(1, Ordering::Release);
            if let Some(o) = &self.observer {
                o.sent(seq, self.msg, sent, outcome);
            }
        }
        c.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Sink {
        sent: Mutex<Vec<(MsiMessage, Instant)>>,
        outcome: Mutex<Option<MsiOutcome>>,
    }
    impl MsiSink for Sink {
        fn send(&self, msg: MsiMessage) -> MsiOutcome {
            self.sent.lock().unwrap().push((msg, Instant::now()));
            self.outcome
                .lock()
                .unwrap()
                .unwrap_or(MsiOutcome::Delivered)
        }
    }

    fn w(dev: &mut MsiSource, offset: u64, v: u32) {
        dev.write(offset, &v.to_le_bytes());
    }
    fn r(dev: &mut MsiSource, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        dev.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn programmed(count: u32, rate: u32) -> (Arc<Sink>, MsiSource) {
        let sink = Arc::new(Sink::default());
        let mut dev = MsiSource::new(sink.clone());
        w(&mut dev, reg::ADDR_LO, 0xfee0_1000);
        w(&mut dev, reg::DATA, 0x41);
        w(&mut dev, reg::COUNT, count);
        w(&mut dev, reg::RATE_HZ, rate);
        (sink, dev)
    }

    #[test]
    fn id_and_registers_read_back() {
        let (_, mut dev) = programmed(7, 1000);
        assert_eq!(r(&mut dev, reg::ID), reg::ID_VALUE);
        assert_eq!(r(&mut dev, reg::ADDR_LO), 0xfee0_1000);
        assert_eq!(r(&mut dev, reg::ADDR_HI), 0);
        assert_eq!(r(&mut dev, reg::DATA), 0x41);
        assert_eq!(r(&mut dev, reg::COUNT), 7);
        assert_eq!(r(&mut dev, reg::RATE_HZ), 1000);
        assert_eq!(r(&mut dev, reg::CONTROL), 0);
    }

    #[test]
    fn a_run_sends_count_messages_with_the_programmed_payload() {
        let (sink, mut dev) = programmed(25, 0);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        let sent = sink.sent.lock().unwrap();
        assert_eq!(sent.len(), 25);
        assert!(sent
            .iter()
            .all(|(m, _)| m.address == 0xfee0_1000 && m.data == 0x41));
        assert_eq!(r(&mut dev, reg::SENT), 25);
        assert_eq!(r(&mut dev, reg::DELIVERED), 25);
        assert_eq!(r(&mut dev, reg::CONTROL), 0);
    }

    #[test]
    fn the_thread_start_hook_runs_first_on_every_worker() {
        let (sink, mut dev) = programmed(3, 0);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let sent = sink.clone();
        dev.set_thread_start(Arc::new(move || {
            let name = std::thread::current().name().map(str::to_owned);
            log.lock()
                .unwrap()
                .push((name, sent.sent.lock().unwrap().len()));
        }));
        for _ in 0..2 {
            w(&mut dev, reg::CONTROL, reg::CTRL_START);
            dev.wait_idle();
        }
        // Once per run, on the worker, before its first message.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                (Some("msi-source".into()), 0),
                (Some("msi-source".into()), 3)
            ]
        );
    }

    #[test]
    fn rate_spaces_messages_by_the_period() {
        let (sink, mut dev) = programmed(5, 200);
        let t0 = Instant::now();
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        // 5 messages at 200 Hz: the last is due 4 periods = 20 ms after the first.
        assert!(t0.elapsed() >= Duration::from_millis(20));
        let sent = sink.sent.lock().unwrap();
        assert!(sent[4].1 - sent[0].1 >= Duration::from_millis(20));
    }

    #[test]
    fn coalesced_and_failed_outcomes_are_counted() {
        let (sink, mut dev) = programmed(3, 0);
        *sink.outcome.lock().unwrap() = Some(MsiOutcome::Blocked);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        assert_eq!(r(&mut dev, reg::UNDELIVERED), 3);
        *sink.outcome.lock().unwrap() = Some(MsiOutcome::Failed(22));
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        assert_eq!(r(&mut dev, reg::FAILED), 3);
        assert_eq!(r(&mut dev, reg::UNDELIVERED), 0, "counters are per run");
    }

    #[test]
    fn stop_ends_a_run_early_and_config_is_locked_while_busy() {
        let (sink, mut dev) = programmed(1000, 100);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        assert_eq!(r(&mut dev, reg::CONTROL), reg::STATUS_BUSY);
        w(&mut dev, reg::DATA, 0x99);
        assert_eq!(r(&mut dev, reg::DATA), 0x41);
        w(&mut dev, reg::CONTROL, reg::CTRL_STOP);
        dev.wait_idle();
        assert!(sink.sent.lock().unwrap().len() < 1000);
        assert!(dev.ignored_writes() >= 1);
    }

    #[derive(Default)]
    struct Ram(Mutex<Vec<(u64, u32)>>);
    impl DmaWriter for Ram {
        fn write_u32(&self, gpa: u64, value: u32) -> bool {
            self.0.lock().unwrap().push((gpa, value));
            gpa < 0x1000
        }
    }

    #[test]
    fn event_counter_is_written_back_before_each_msi() {
        let ram = Arc::new(Ram::default());
        let sink = Arc::new(Sink::default());
        let mut dev = MsiSource::new(sink.clone()).with_dma(ram.clone());
        w(&mut dev, reg::COUNT, 3);
        w(&mut dev, reg::WB_ADDR_LO, 0x800);
        assert_eq!(r(&mut dev, reg::WB_ADDR_LO), 0x800);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        assert_eq!(
            *ram.0.lock().unwrap(),
            vec![(0x800, 1), (0x800, 2), (0x800, 3)]
        );
        // Outside RAM: every write-back fails and is counted; misaligned: no write-back.
        w(&mut dev, reg::WB_ADDR_LO, 0x2000);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        assert_eq!(r(&mut dev, reg::FAILED), 3);
        w(&mut dev, reg::WB_ADDR_LO, 0x802);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        assert_eq!(ram.0.lock().unwrap().len(), 6);
    }

    struct PostedRam(Arc<crate::posted::Descriptor>);
    impl DmaWriter for PostedRam {
        fn write_u32(&self, _gpa: u64, _value: u32) -> bool {
            true
        }
        fn descriptor(&self, gpa: u64) -> Option<Arc<dyn DescriptorMemory>> {
            (gpa == 0x1000).then(|| self.0.clone() as Arc<dyn DescriptorMemory>)
        }
    }

    #[test]
    fn posted_mode_sets_pir_and_notifies_once_per_on_edge() {
        use irqlab_abi::posted as pd;
        let desc = Arc::new(crate::posted::Descriptor::new());
        desc.word(pd::CONTROL_WORD)
            .store(pd::control(0xeb, 0), Ordering::SeqCst);
        let sink = Arc::new(Sink::default());
        let mut dev = MsiSource::new(sink.clone()).with_dma(Arc::new(PostedRam(desc.clone())));
        w(&mut dev, reg::DATA, 0x41);
        w(&mut dev, reg::COUNT, 50);
        w(&mut dev, reg::MODE, reg::MODE_POSTED);
        w(&mut dev, reg::PID_LO, 0x1000);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        // Nobody consumed: ON stays set after the first post, so exactly one notification.
        assert_eq!(r(&mut dev, reg::SENT), 50);
        assert_eq!(r(&mut dev, reg::NOTIFIED), 1);
        let sent = sink.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.data, 0xeb);
        assert_ne!(desc.word(1).load(Ordering::SeqCst) & (1 << 1), 0);
        drop(sent);
        // A descriptor address with no RAM fails the whole run, visibly.
        w(&mut dev, reg::PID_LO, 0x2000);
        w(&mut dev, reg::CONTROL, reg::CTRL_START);
        dev.wait_idle();
        assert_eq!(r(&mut dev, reg::FAILED), 50);
    }

    #[test]
    fn bad_widths_and_offsets_are_ignored() {
        let (_, mut dev) = programmed(1, 0);
        dev.write(reg::COUNT, &[5]);
        dev.write(0x800, &1u32.to_le_bytes());
        let mut b = [0xaau8; 2];
        dev.read(reg::ID, &mut b);
        assert_eq!(b, [0xaa; 2]);
        assert_eq!(r(&mut dev, reg::COUNT), 1);
        assert_eq!(dev.ignored_writes(), 2);
    }
}
