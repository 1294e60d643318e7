//! The NIC's state machine driven with an injected clock (deterministic: no assertion depends
//! on wall-clock time), and the device shell with its worker thread.

mod interrupts;
mod props;
mod ring;
mod shell;

use super::state::{Core, IrqResult, Now, BATCH};
use super::*;
use crate::posted::PostOutcome;
use crate::MsiOutcome;
use irqlab_abi::nic::{self as reg, tail_for, RxDesc};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// Guest RAM: 64 KiB at 0. Tracks which descriptors of the ring at [`RING`] the guest owns
/// (written with DD, not yet returned through TAIL) and counts device writes into them.
struct Ram {
    bytes: Mutex<Vec<u8>>,
    owned: Mutex<Vec<bool>>,
    violations: AtomicU32,
    writes: Mutex<Vec<u64>>,
}

const RAM: u64 = 0x10000;
const RING: u64 = 0x1000;

impl Ram {
    fn new() -> Ram {
        Ram {
            bytes: Mutex::new(vec![0; RAM as usize]),
            owned: Mutex::new(vec![false; reg::RING_MAX as usize]),
            violations: AtomicU32::new(0),
            writes: Mutex::new(Vec::new()),
        }
    }
    fn u32_at(&self, gpa: u64) -> u32 {
        let b = self.bytes.lock().unwrap();
        u32::from_le_bytes(b[gpa as usize..gpa as usize + 4].try_into().unwrap())
    }
    fn desc(&self, i: u32) -> RxDesc {
        let a = RING + u64::from(i) * reg::DESC_SIZE;
        let u64_at = |o| u64::from(self.u32_at(a + o)) | u64::from(self.u32_at(a + o + 4)) << 32;
        RxDesc {
            status: self.u32_at(a + reg::DESC_STATUS),
            length: self.u32_at(a + reg::DESC_LENGTH),
            seq: self.u32_at(a + reg::DESC_SEQ),
            reserved: self.u32_at(a + reg::DESC_SEQ + 4),
            tsc: u64_at(reg::DESC_TSC),
            run_ns: u64_at(reg::DESC_RUN_NS),
        }
    }
    /// The guest clears a descriptor's status (it processed it).
    fn clear_status(&self, i: u32) {
        let a = (RING + u64::from(i) * reg::DESC_SIZE) as usize;
        self.bytes.lock().unwrap()[a..a + 4].fill(0);
    }
}

impl DmaWriter for Ram {
    fn write_u32(&self, gpa: u64, value: u32) -> bool {
        if gpa.checked_add(4).is_none_or(|end| end > RAM) {
            return false;
        }
        self.writes.lock().unwrap().push(gpa);
        if gpa >= RING && gpa < RING + u64::from(reg::RING_MAX) * reg::DESC_SIZE {
            let i = ((gpa - RING) / reg::DESC_SIZE) as usize;
            let mut owned = self.owned.lock().unwrap();
            if owned[i] {
                self.violations.fetch_add(1, Ordering::SeqCst);
            }
            if (gpa - RING) % reg::DESC_SIZE == reg::DESC_STATUS && value & reg::STATUS_DD != 0 {
                owned[i] = true;
            }
        }
        let g = gpa as usize;
        self.bytes.lock().unwrap()[g..g + 4].copy_from_slice(&value.to_le_bytes());
        true
    }
}

fn at(ns: u64) -> Now {
    Now {
        ns,
        tsc: ns.wrapping_add(1000),
    }
}

/// The state machine, a RAM, and the times at which it asked for an interrupt.
struct Dev {
    core: Core,
    ram: Ram,
    fires: Vec<u64>,
}

impl Dev {
    fn new() -> Dev {
        Dev {
            core: Core::default(),
            ram: Ram::new(),
            fires: Vec::new(),
        }
    }
    /// A ring of `size` at [`RING`] with every descriptor but one given to the device.
    fn with_ring(size: u32) -> Dev {
        let mut d = Dev::new();
        d.w(reg::RING_LO, RING as u32, 0);
        d.w(reg::RING_SIZE, size, 0);
        d.w(reg::TAIL, tail_for(0, size), 0);
        d
    }
    fn w(&mut self, off: u64, v: u32, ns: u64) -> Effect {
        let e = self.core.write(off, v, at(ns));
        if e.fire {
            self.fires.push(ns);
        }
        e
    }
    fn r(&mut self, off: u64, ns: u64) -> u32 {
        self.core.read(off, at(ns))
    }
    /// The worker at `ns`: everything due, and a held interrupt if its time has come.
    fn step(&mut self, ns: u64) {
        loop {
            let (e, more) = self.core.step(at(ns), &self.ram);
            if e.fire {
                self.fires.push(ns);
            }
            if !more {
                break;
            }
        }
    }
    fn start(&mut self, count: u32, rate: u32, ns: u64) {
        self.w(reg::COUNT, count, ns);
        self.w(reg::RATE, rate, ns);
        self.w(reg::CONTROL, reg::CTRL_START, ns);
    }
    fn accounting(&mut self) -> (u32, u32, u32) {
        let c = self.core.counters();
        assert_eq!(c.sent, c.delivered.wrapping_add(c.dropped), "{c:?}");
        (c.sent, c.delivered, c.dropped)
    }
}
