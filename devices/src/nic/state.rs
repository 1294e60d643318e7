//! The NIC's state machine, free of threads and clocks: registers, the RX ring, the packet
//! schedule and the interrupt condition with its ITR timer. Every entry point takes the time
//! ([`Now`]) and guest memory as arguments, so the tests drive it deterministically; the
//! device shell ([`super::Nic`]) feeds it the host's clocks and runs the worker thread.

use crate::msi_source::DmaWriter;
use crate::posted::PostOutcome;
use crate::MsiOutcome;
use irqlab_abi::nic::{self as reg, free_descriptors, valid_ring_size};

/// Packets generated per [`Core::step`] at most (the lock is released between batches).
pub(crate) const BATCH: u32 = 64;

const NS_PER_SEC: u64 = 1_000_000_000;

/// A moment, on the two clocks the device uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic nanoseconds (any fixed origin).
    pub ns: u64,
    /// Host TSC (written into descriptors, latched by `HOST_TSC_LO`).
    pub tsc: u64,
}

/// The per-run counters (the registers `SENT` … `SUPPRESSED`; all wrap at 2^32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    /// Packets generated.
    pub sent: u32,
    /// Written into the ring.
    pub delivered: u32,
    /// Dropped (ring full, no ring, or the descriptor write failed).
    pub dropped: u32,
    /// Dropped because the descriptor is not guest RAM.
    pub dma_errors: u32,
    /// Generated more than one period behind schedule.
    pub late: u32,
    /// Interrupts raised (MSIs sent, vectors posted).
    pub irqs: u32,
    /// Assertions the ITR timer held back.
    pub irq_held: u32,
    /// Interrupts that failed.
    pub irq_failed: u32,
    /// Posted mode: notifications sent.
    pub notified: u32,
    /// Posted mode: posts with SN set.
    pub suppressed: u32,
}

/// What became of one interrupt the shell delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqResult {
    /// An MSI, with its outcome.
    Msi(MsiOutcome),
    /// A post, with its outcome.
    Posted(PostOutcome),
    /// Posted mode, but PID is not a usable descriptor.
    NoDescriptor,
}

impl NicCounters {
    /// Counts what became of an interrupt.
    pub fn record(&mut self, r: IrqResult) {
        let counter = match r {
            IrqResult::Msi(MsiOutcome::Delivered) | IrqResult::Posted(PostOutcome::Coalesced) => {
                return
            }
            IrqResult::Posted(PostOutcome::Notified) => &mut self.notified,
            IrqResult::Posted(PostOutcome::Suppressed) => &mut self.suppressed,
            IrqResult::Msi(_) | IrqResult::Posted(PostOutcome::Failed(_)) => &mut self.irq_failed,
            IrqResult::NoDescriptor => &mut self.irq_failed,
        };
        *counter = counter.wrapping_add(1);
    }
}

/// The interrupt condition `ICR & IMS != 0`, and what was done about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Irq {
    /// False, or not yet seen true.
    Idle,
    /// True, and its one interrupt was raised.
    Asserted,
    /// True, and the ITR timer holds its interrupt until `last + ITR`.
    Held,
}

/// What a register access or a step asks of the shell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Raise one interrupt now.
    pub fire: bool,
    /// The worker's deadlines changed (a run started or stopped, an interrupt is held).
    pub wake: bool,
}

impl std::ops::BitOrAssign for Effect {
    fn bitor_assign(&mut self, o: Effect) {
        self.fire |= o.fire;
        self.wake |= o.wake;
    }
}

/// A run in progress.
#[derive(Clone, Copy, Debug)]
struct Run {
    start_ns: u64,
    /// The next packet's number.
    next: u32,
}

/// Registers, ring and interrupt state of one NIC.
#[derive(Debug)]
pub struct Core {
    ring_base: u64,
    ring_size: u32,
    head: u32,
    tail: u32,
    pkt_len: u32,
    icr: u32,
    ims: u32,
    itr_us: u32,
    irq: Irq,
    last_irq_ns: Option<u64>,
    mode: u32,
    msi_addr: u64,
    msi_data: u32,
    rate: u32,
    pid: u64,
    count: u32,
    tsc_latch: u64,
    run: Option<Run>,
    counters: NicCounters,
    ignored_writes: u64,
}

impl Default for Core {
    fn default() -> Self {
        Core {
            ring_base: 0,
            ring_size: 0,
            head: 0,
            tail: 0,
            pkt_len: reg::PKT_LEN_DEFAULT,
            icr: 0,
            ims: 0,
            itr_us: 0,
            irq: Irq::Idle,
            last_irq_ns: None,
            mode: reg::MODE_DIRECT,
            msi_addr: 0,
            msi_data: 0,
            rate: 0,
            pid: 0,
            count: 0,
            tsc_latch: 0,
            run: None,
            counters: NicCounters::default(),
            ignored_writes: 0,
        }
    }
}

fn set_lo(v: &mut u64, lo: u32) {
    *v = (*v & !0xffff_ffff) | u64::from(lo);
}

fn set_hi(v: &mut u64, hi: u32) {
    *v = (*v & 0xffff_ffff) | (u64::from(hi) << 32);
}

impl Core {
    /// A run is in progress.
    pub fn busy(&self) -> bool {
        self.run.is_some()
    }

    /// The counters of the current or last run.
    pub fn counters(&self) -> NicCounters {
        self.counters
    }

    /// Counts what became of an interrupt the shell delivered.
    pub fn record(&mut self, r: IrqResult) {
        self.counters.record(r);
    }

    /// Writes ignored: read-only or unknown register, invalid value, config while busy, bad
    /// width or alignment (the shell counts the last two).
    pub fn ignored_writes(&self) -> u64 {
        self.ignored_writes
    }

    /// Counts a write the shell refused.
    pub fn ignore_write(&mut self) {
        self.ignored_writes += 1;
    }

    /// Posted mode, and the descriptor address.
    pub fn posted(&self) -> Option<u64> {
        (self.mode == reg::MODE_POSTED).then_some(self.pid)
    }

    /// The MSI address/data pair (direct mode).
    pub fn msi(&self) -> (u64, u32) {
        (self.msi_addr, self.msi_data)
    }

    /// When packet `seq` of the current run is due (monotonic ns).
    fn due(&self, run: &Run, seq: u32) -> u64 {
        match self.rate {
            0 => run.start_ns,
            r => run
                .start_ns
                .saturating_add(u64::from(seq) * NS_PER_SEC / u64::from(r)),
        }
    }

    /// The worker's next deadline: the next packet's, or a held interrupt's (None: sleep
    /// until woken).
    pub fn next_deadline(&self) -> Option<u64> {
        let packet = self.run.as_ref().map(|r| self.due(r, r.next));
        let irq = (self.irq == Irq::Held).then(|| self.irq_ready_at());
        match (packet, irq) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn irq_ready_at(&self) -> u64 {
        match self.last_irq_ns {
            Some(last) if self.itr_us > 0 => last.saturating_add(u64::from(self.itr_us) * 1000),
            _ => 0,
        }
    }

    /// Re-evaluates the interrupt condition after any change of ICR, IMS, ITR or time.
    fn update(&mut self, now: Now) -> Effect {
        if self.icr & self.ims == 0 {
            self.irq = Irq::Idle;
            return Effect::default();
        }
        match self.irq {
            Irq::Asserted => Effect::default(),
            was => {
                if now.ns >= self.irq_ready_at() {
                    self.irq = Irq::Asserted;
                    self.last_irq_ns = Some(now.ns);
                    self.counters.irqs = self.counters.irqs.wrapping_add(1);
                    Effect {
                        fire: true,
                        wake: false,
                    }
                } else {
                    if was == Irq::Idle {
                        self.counters.irq_held = self.counters.irq_held.wrapping_add(1);
                    }
                    self.irq = Irq::Held;
                    Effect {
                        fire: false,
                        wake: true,
                    }
                }
            }
        }
    }

    /// The worker's turn: generates the packets due by `now` (at most [`BATCH`]), fires a
    /// held interrupt whose time has come. `more`: packets are still due.
    pub fn step(&mut self, now: Now, dma: &dyn DmaWriter) -> (Effect, bool) {
        for _ in 0..BATCH {
            match self.run {
                Some(r) if self.due(&r, r.next) <= now.ns => self.packet(now, dma),
                _ => break,
            }
        }
        let more = self
            .run
            .as_ref()
            .is_some_and(|r| self.due(r, r.next) <= now.ns);
        (self.update(now), more)
    }

    /// One packet arrives: into the descriptor at HEAD if the device owns one, else dropped.
    fn packet(&mut self, now: Now, dma: &dyn DmaWriter) {
        let Some(mut run) = self.run else { return };
        let seq = run.next;
        let late = self.rate > 0
            && now.ns.saturating_sub(self.due(&run, seq)) > NS_PER_SEC / u64::from(self.rate);
        let c = &mut self.counters;
        c.sent = c.sent.wrapping_add(1);
        if late {
            c.late = c.late.wrapping_add(1);
        }
        let written = free_descriptors(self.head, self.tail, self.ring_size) > 0 && {
            let desc = reg::RxDesc {
                status: reg::STATUS_DD,
                length: self.pkt_len,
                seq,
                reserved: 0,
                tsc: now.tsc,
                run_ns: now.ns.saturating_sub(run.start_ns),
            };
            let addr = self
                .ring_base
                .checked_add(u64::from(self.head) * reg::DESC_SIZE);
            let ok = addr.is_some_and(|a| write_desc(dma, a, &desc));
            if !ok {
                self.counters.dma_errors = self.counters.dma_errors.wrapping_add(1);
            }
            ok
        };
        let c = &mut self.counters;
        if written {
            self.head = (self.head + 1) & (self.ring_size - 1);
            c.delivered = c.delivered.wrapping_add(1);
            self.icr |= reg::ICR_RX;
        } else {
            c.dropped = c.dropped.wrapping_add(1);
            self.icr |= reg::ICR_RXO;
        }
        // A run exists only while `next < count`, so this cannot overflow.
        run.next = seq + 1;
        self.run = (run.next < self.count).then_some(run);
    }

    /// A 4-byte register read.
    pub fn read(&mut self, offset: u64, now: Now) -> u32 {
        let c = &self.counters;
        match offset {
            reg::ID => reg::ID_VALUE,
            reg::CONTROL => u32::from(self.busy()) * reg::STATUS_BUSY,
            reg::RING_LO => self.ring_base as u32,
            reg::RING_HI => (self.ring_base >> 32) as u32,
            reg::RING_SIZE => self.ring_size,
            reg::HEAD => self.head,
            reg::TAIL => self.tail,
            reg::PKT_LEN => self.pkt_len,
            reg::ICR => {
                let v = self.icr;
                self.icr = 0;
                // The condition can only become false: nothing to raise.
                self.update(now);
                v
            }
            reg::IMS => self.ims,
            reg::ITR_US => self.itr_us,
            reg::MODE => self.mode,
            reg::MSI_ADDR_LO => self.msi_addr as u32,
            reg::MSI_ADDR_HI => (self.msi_addr >> 32) as u32,
            reg::MSI_DATA => self.msi_data,
            reg::RATE => self.rate,
            reg::PID_LO => self.pid as u32,
            reg::PID_HI => (self.pid >> 32) as u32,
            reg::COUNT => self.count,
            reg::HOST_TSC_LO => {
                self.tsc_latch = now.tsc;
                now.tsc as u32
            }
            reg::HOST_TSC_HI => (self.tsc_latch >> 32) as u32,
            reg::SENT => c.sent,
            reg::DELIVERED => c.delivered,
            reg::DROPPED => c.dropped,
            reg::DMA_ERRORS => c.dma_errors,
            reg::LATE => c.late,
            reg::IRQS => c.irqs,
            reg::IRQ_HELD => c.irq_held,
            reg::IRQ_FAILED => c.irq_failed,
            reg::NOTIFIED => c.notified,
            reg::SUPPRESSED => c.suppressed,
            _ => 0,
        }
    }

    /// A 4-byte register write.
    pub fn write(&mut self, offset: u64, v: u32, now: Now) -> Effect {
        let config = matches!(
            offset,
            reg::RING_LO
                | reg::RING_HI
                | reg::RING_SIZE
                | reg::PKT_LEN
                | reg::MODE
                | reg::MSI_ADDR_LO
                | reg::MSI_ADDR_HI
                | reg::MSI_DATA
                | reg::RATE
                | reg::PID_LO
                | reg::PID_HI
                | reg::COUNT
        );
        if config && self.busy() {
            self.ignored_writes += 1;
            return Effect::default();
        }
        let causes = v & reg::ICR_ALL;
        match offset {
            reg::CONTROL if v == reg::CTRL_START => return self.start(now),
            reg::CONTROL if v == reg::CTRL_STOP => {
                let was = self.run.take().is_some();
                return Effect {
                    fire: false,
                    wake: was,
                };
            }
            reg::RING_LO => {
                set_lo(&mut self.ring_base, v & !(reg::DESC_SIZE as u32 - 1));
                self.reset_ring();
            }
            reg::RING_HI => {
                set_hi(&mut self.ring_base, v);
                self.reset_ring();
            }
            reg::RING_SIZE if valid_ring_size(v) => {
                self.ring_size = v;
                self.reset_ring();
            }
            reg::TAIL if v < self.ring_size => self.tail = v,
            reg::PKT_LEN if (1..=reg::PKT_LEN_MAX).contains(&v) => self.pkt_len = v,
            reg::ICR => {
                self.icr &= !causes;
                return self.update(now);
            }
            reg::ICS => {
                self.icr |= causes;
                return self.update(now);
            }
            reg::IMS => {
                self.ims |= causes;
                return self.update(now);
            }
            reg::IMC => {
                self.ims &= !causes;
                return self.update(now);
            }
            reg::ITR_US => {
                self.itr_us = v.min(reg::ITR_MAX_US);
                let mut e = self.update(now);
                // A held interrupt's deadline moved.
                e.wake |= self.irq == Irq::Held;
                return e;
            }
            reg::MODE if v == reg::MODE_DIRECT || v == reg::MODE_POSTED => self.mode = v,
            reg::MSI_ADDR_LO => set_lo(&mut self.msi_addr, v),
            reg::MSI_ADDR_HI => set_hi(&mut self.msi_addr, v),
            reg::MSI_DATA => self.msi_data = v,
            reg::RATE => self.rate = v,
            reg::PID_LO => set_lo(&mut self.pid, v),
            reg::PID_HI => set_hi(&mut self.pid, v),
            reg::COUNT => self.count = v,
            _ => self.ignored_writes += 1,
        }
        Effect::default()
    }

    fn reset_ring(&mut self) {
        self.head = 0;
        self.tail = 0;
    }

    fn start(&mut self, now: Now) -> Effect {
        if self.busy() {
            self.ignored_writes += 1;
            return Effect::default();
        }
        self.counters = NicCounters::default();
        self.run = (self.count > 0).then_some(Run {
            start_ns: now.ns,
            next: 0,
        });
        Effect {
            fire: false,
            wake: self.busy(),
        }
    }

    /// Ends the run (the worker could not be started).
    pub fn abort(&mut self) {
        self.run = None;
    }
}

/// Writes `d` at `addr`, status last; false (and no DD) if any field is not guest RAM.
fn write_desc(dma: &dyn DmaWriter, addr: u64, d: &reg::RxDesc) -> bool {
    let at = |off: u64| addr.checked_add(off);
    let w32 = |off, v| at(off).is_some_and(|a| dma.write_u32(a, v));
    let w64 = |off, v| at(off).is_some_and(|a| dma.write_u64(a, v));
    w32(reg::DESC_LENGTH, d.length)
        && w32(reg::DESC_SEQ, d.seq)
        && w32(reg::DESC_SEQ + 4, d.reserved)
        && w64(reg::DESC_TSC, d.tsc)
        && w64(reg::DESC_RUN_NS, d.run_ns)
        && w32(reg::DESC_STATUS, d.status)
}
