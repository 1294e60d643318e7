//! A NIC-like receive ring device: a VMM thread "receives" packets at a programmed rate and
//! writes one descriptor per packet into an RX ring in guest memory, with e1000's interrupt
//! cause, mask and throttling registers, and MSI or posted delivery.
//!
//! The register map and descriptor layout are part of the guest ABI: [`irqlab_abi::nic`];
//! the design is in `docs/nic.md`. The state machine lives in [`state`] (no threads, no
//! clocks: the tests drive it with an injected time); this module is its shell: the bus
//! interface, the host clocks, the worker thread that generates packets at absolute deadlines
//! and fires held interrupts, and interrupt delivery through an [`MsiSink`] or a
//! posted-interrupt descriptor ([`crate::posted::post`]).
//!
//! # Example
//! ```
//! use irqlab_abi::nic as reg;
//! use irqlab_devices::msi_source::DmaWriter;
//! use irqlab_devices::nic::Nic;
//! use irqlab_devices::{BusDevice, MsiMessage, MsiOutcome, MsiSink};
//! use std::sync::Arc;
//!
//! struct Accept;
//! impl MsiSink for Accept {
//!     fn send(&self, _: MsiMessage) -> MsiOutcome { MsiOutcome::Delivered }
//! }
//! struct Ram;
//! impl DmaWriter for Ram {
//!     fn write_u32(&self, gpa: u64, _: u32) -> bool { gpa < 0x10000 }
//! }
//! let mut nic = Nic::new(Arc::new(Accept), Arc::new(Ram));
//! let w = |nic: &mut Nic, off, v: u32| nic.write(off, &v.to_le_bytes());
//! w(&mut nic, reg::RING_LO, 0x1000);
//! w(&mut nic, reg::RING_SIZE, 8);
//! w(&mut nic, reg::TAIL, reg::tail_for(0, 8)); // 7 descriptors for the device
//! w(&mut nic, reg::COUNT, 10);
//! w(&mut nic, reg::CONTROL, reg::CTRL_START);
//! nic.wait_idle();
//! let c = nic.counters();
//! assert_eq!((c.sent, c.delivered, c.dropped), (10, 7, 3));
//! ```

pub mod state;
#[cfg(test)]
mod tests;

use crate::msi_source::{DmaWriter, ThreadStart};
use crate::posted::{post, DescriptorMemory};
use crate::{le_value, BusDevice, MsiMessage, MsiSink};
use state::{Core, Effect};
pub use state::{IrqResult, NicCounters, Now};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The host TSC (the guest's runs at the same rate: `irqlab_abi::nic`, timestamps).
fn host_tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions in user mode on x86-64 Linux.
    unsafe {
        ::core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// How an interrupt leaves the device.
enum Delivery {
    Msi(MsiMessage),
    Posted(Arc<dyn DescriptorMemory>, u8),
    NoDescriptor,
}

/// The state the registers and the worker share.
struct Inner {
    core: Core,
    /// Interrupts decided and being delivered outside the lock.
    delivering: u32,
    /// The posted-interrupt descriptor last resolved, and its address.
    posted: Option<(u64, Arc<dyn DescriptorMemory>)>,
    shutdown: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the worker: new deadlines, or shutdown.
    wake: Condvar,
    /// Signalled when a run ends.
    idle: Condvar,
    sink: Arc<dyn MsiSink>,
    dma: Arc<dyn DmaWriter>,
    epoch: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Now {
        Now {
            ns: self.epoch.elapsed().as_nanos() as u64,
            tsc: host_tsc(),
        }
    }

    /// What an interrupt raised now would be (under the lock: reads the configuration).
    fn delivery(&self, inner: &mut Inner) -> Delivery {
        let (address, data) = inner.core.msi();
        let Some(pid) = inner.core.posted() else {
            return Delivery::Msi(MsiMessage { address, data });
        };
        match &inner.posted {
            Some((at, desc)) if *at == pid => Delivery::Posted(desc.clone(), data as u8),
            _ => match self.dma.descriptor(pid) {
                Some(desc) => {
                    inner.posted = Some((pid, desc.clone()));
                    Delivery::Posted(desc, data as u8)
                }
                None => Delivery::NoDescriptor,
            },
        }
    }

    /// Raises the interrupt (outside the lock: a `KVM_SIGNAL_MSI` takes microseconds).
    fn deliver(&self, d: Delivery) -> IrqResult {
        match d {
            Delivery::Msi(msg) => IrqResult::Msi(self.sink.send(msg)),
            Delivery::Posted(desc, vector) => {
                IrqResult::Posted(post(desc.as_ref(), vector, self.sink.as_ref()))
            }
            Delivery::NoDescriptor => IrqResult::NoDescriptor,
        }
    }

    /// Raises one interrupt and counts its outcome; returns the guard re-taken.
    fn fire<'a>(&'a self, mut g: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        let d = self.delivery(&mut g);
        g.delivering += 1;
        drop(g);
        let r = self.deliver(d);
        let mut g = self.lock();
        g.core.record(r);
        g.delivering -= 1;
        if g.delivering == 0 && !g.core.busy() {
            self.idle.notify_all();
        }
        g
    }

    /// The worker: generates packets at their deadlines and fires held interrupts, until
    /// shutdown. Sleeps on `wake` when there is nothing to do.
    fn work(&self) {
        let mut g = self.lock();
        while !g.shutdown {
            let now = self.now();
            let was_busy = g.core.busy();
            let (effect, more) = g.core.step(now, self.dma.as_ref());
            if was_busy && !g.core.busy() && !effect.fire {
                self.idle.notify_all();
            }
            if effect.fire {
                g = self.fire(g);
                continue;
            }
            if more {
                // Back to back: let the vCPUs at the registers between batches.
                drop(g);
                std::thread::yield_now();
                g = self.lock();
                continue;
            }
            g = match g.core.next_deadline() {
                None => self.wake.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(t) if t > now.ns => {
                    let d = Duration::from_nanos(t - now.ns);
                    self.wake
                        .wait_timeout(g, d)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                Some(_) => g,
            };
        }
    }
}

/// The NIC device.
pub struct Nic {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    on_thread_start: Option<ThreadStart>,
}

impl Nic {
    /// A stopped device with no ring, raising interrupts through `sink` and writing
    /// descriptors (and finding posted-interrupt descriptors) through `dma`.
    pub fn new(sink: Arc<dyn MsiSink>, dma: Arc<dyn DmaWriter>) -> Self {
        Nic {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    core: Core::default(),
                    delivering: 0,
                    posted: None,
                    shutdown: false,
                }),
                wake: Condvar::new(),
                idle: Condvar::new(),
                sink,
                dma,
                epoch: Instant::now(),
            }),
            worker: None,
            on_thread_start: None,
        }
    }

    /// Runs `hook` first on the worker thread (the VMM confines it there). The worker is
    /// started when the guest first starts a run or the ITR timer first holds an interrupt,
    /// and lives until [`Nic::shutdown`].
    pub fn set_thread_start(&mut self, hook: ThreadStart) {
        self.on_thread_start = Some(hook);
    }

    /// The counters of the current or last run.
    pub fn counters(&self) -> NicCounters {
        self.shared.lock().core.counters()
    }

    /// Writes ignored (see [`state::Core::ignored_writes`]).
    pub fn ignored_writes(&self) -> u64 {
        self.shared.lock().core.ignored_writes()
    }

    /// Blocks until no run is in progress and every interrupt decided so far has been
    /// delivered (an interrupt the ITR timer still holds is not waited for).
    pub fn wait_idle(&self) {
        let mut g = self.shared.lock();
        while (g.core.busy() || g.delivering > 0) && !g.shutdown {
            g = self
                .shared
                .idle
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Ends any run and joins the worker (VM teardown).
    pub fn shutdown(&mut self) {
        {
            let mut g = self.shared.lock();
            g.shutdown = true;
            g.core.abort();
        }
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }

    /// Acts on what a register access asked for.
    fn apply(&mut self, effect: Effect) {
        if effect.wake {
            self.ensure_worker();
            self.shared.wake.notify_all();
            // A STOP ended the run.
            self.shared.idle.notify_all();
        }
        if effect.fire {
            let g = self.shared.lock();
            drop(self.shared.fire(g));
        }
    }

    fn ensure_worker(&mut self) {
        if self.worker.is_some() {
            return;
        }
        if self.shared.lock().shutdown {
            // Torn down: the device stays inert.
            self.shared.lock().core.abort();
            return;
        }
        let shared = self.shared.clone();
        let start = self.on_thread_start.clone();
        self.worker = std::thread::Builder::new()
            .name("nic".into())
            .spawn(move || {
                if let Some(start) = start {
                    start();
                }
                shared.work();
            })
            .ok();
        if self.worker.is_none() {
            // No thread: the run cannot proceed; end it rather than leave it busy forever.
            let mut g = self.shared.lock();
            g.core.abort();
            g.core.ignore_write();
        }
    }

    fn read32(&mut self, offset: u64) -> u32 {
        let now = self.shared.now();
        self.shared.lock().core.read(offset, now)
    }

    fn write32(&mut self, offset: u64, v: u32) -> Effect {
        let now = self.shared.now();
        self.shared.lock().core.write(offset, v, now)
    }
}

impl Drop for Nic {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl BusDevice for Nic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match data.len() {
            4 if offset.is_multiple_of(4) => {
                data.copy_from_slice(&self.read32(offset).to_le_bytes());
            }
            8 if offset.is_multiple_of(8) => {
                let lo = self.read32(offset);
                let hi = self.read32(offset + 4);
                data.copy_from_slice(&(u64::from(lo) | (u64::from(hi) << 32)).to_le_bytes());
            }
            _ => {}
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(v) = le_value(data) else {
            self.shared.lock().core.ignore_write();
            return;
        };
        let effect = match data.len() {
            4 if offset.is_multiple_of(4) => self.write32(offset, v as u32),
            8 if offset.is_multiple_of(8) => {
                let mut e = self.write32(offset, v as u32);
                e |= self.write32(offset + 4, (v >> 32) as u32);
                e
            }
            _ => {
                self.shared.lock().core.ignore_write();
                return;
            }
        };
        self.apply(effect);
    }
}
