//! The experiments' driver of the NIC-like ring device (`docs/nic.md`, `irqlab_abi::nic`):
//! its registers, one static RX ring, and the descriptor handshake. `run=napi` and
//! `run=softirq` build their receive paths on it.

use crate::apic::LAPIC;
use crate::cpu;
use core::cell::UnsafeCell;
use irqlab_abi::layout::NIC_BASE;
use irqlab_abi::nic::{self as reg, RxDesc};

/// The NIC's interrupt vector (priority class 4, below the timers).
pub const NIC_VECTOR: u8 = crate::vectors::NIC;
/// Descriptors in the ring.
pub const RING: usize = 256;

#[repr(C, align(4096))]
struct Ring(UnsafeCell<[RxDesc; RING]>);
// SAFETY: the device writes descriptors it owns; the guest touches each only after seeing DD,
// on the boot CPU, from the one context that holds it (handler or poll loop).
unsafe impl Sync for Ring {}
static RX: Ring = Ring(UnsafeCell::new(
    [RxDesc {
        status: 0,
        length: 0,
        seq: 0,
        reserved: 0,
        tsc: 0,
        run_ns: 0,
    }; RING],
));

pub fn rd(off: u64) -> u32 {
    // SAFETY: the NIC's MMIO window (uncached, identity-mapped); reads have device side
    // effects only where the ABI says (ICR, HOST_TSC_LO).
    unsafe { core::ptr::read_volatile((NIC_BASE + off) as *const u32) }
}

pub fn wr(off: u64, v: u32) {
    // SAFETY: the NIC's MMIO window.
    unsafe { core::ptr::write_volatile((NIC_BASE + off) as *mut u32, v) }
}

fn desc(i: usize) -> *mut RxDesc {
    // SAFETY: the index is reduced modulo RING: inside the ring.
    unsafe { (RX.0.get() as *mut RxDesc).add(i % RING) }
}

/// Whether descriptor `i` is done (a volatile read: the device writes the status last).
pub fn done(i: usize) -> bool {
    // SAFETY: inside the ring.
    unsafe { core::ptr::read_volatile(&raw const (*desc(i)).status) & reg::STATUS_DD != 0 }
}

/// Takes descriptor `i` (seen done): its host TSC; clears its status for the next lap.
pub fn take(i: usize) -> u64 {
    let d = desc(i);
    // SAFETY: inside the ring; the device does not write it again until it is returned.
    unsafe {
        let tsc = core::ptr::read_volatile(&raw const (*d).tsc);
        core::ptr::write_volatile(&raw mut (*d).status, 0);
        tsc
    }
}

/// Guest TSC minus host TSC (the tightest of 8 samples; `irqlab_abi::nic`).
pub fn measure_offset() -> u64 {
    let mut best = (u64::MAX, 0u64);
    for _ in 0..8 {
        let t0 = cpu::rdtsc_ordered();
        let lo = u64::from(rd(reg::HOST_TSC_LO));
        let hi = u64::from(rd(reg::HOST_TSC_HI));
        let t1 = cpu::rdtsc_ordered();
        let width = t1.wrapping_sub(t0);
        if width < best.0 {
            best = (width, (t0 / 2 + t1 / 2).wrapping_sub((hi << 32) | lo));
        }
    }
    best.1
}

/// Clears every descriptor's status (before a run: the device owns none yet).
pub fn clear_ring() {
    for i in 0..RING {
        // SAFETY: inside the ring; the device owns no descriptor until the ring is set up.
        unsafe { core::ptr::write_volatile(&raw mut (*desc(i)).status, 0) };
    }
}

/// Sets the device up for a run: the ring (all of it given to the device), no throttling,
/// direct MSIs to this CPU at [`NIC_VECTOR`] or posts into `posted_pid`, `rate` packets/s (0:
/// back to back), `count` packets, every cause enabled. Returns the guest-minus-host TSC
/// offset for the descriptors' timestamps.
pub fn program(posted_pid: Option<u64>, rate: u64, count: u64) -> u64 {
    let base = RX.0.get() as u64;
    wr(reg::RING_LO, base as u32);
    wr(reg::RING_HI, (base >> 32) as u32);
    wr(reg::RING_SIZE, RING as u32);
    wr(reg::TAIL, reg::tail_for(0, RING as u32));
    wr(reg::ITR_US, 0);
    match posted_pid {
        Some(pid) => {
            wr(reg::MODE, reg::MODE_POSTED);
            wr(reg::PID_LO, pid as u32);
            wr(reg::PID_HI, (pid >> 32) as u32);
        }
        None => wr(reg::MODE, reg::MODE_DIRECT),
    }
    let msg = irqlab_x86::msi::Msi::fixed(LAPIC.id(), NIC_VECTOR);
    wr(reg::MSI_ADDR_LO, msg.address() as u32);
    wr(reg::MSI_ADDR_HI, (msg.address() >> 32) as u32);
    wr(reg::MSI_DATA, msg.data());
    wr(reg::RATE, rate as u32);
    wr(reg::COUNT, count as u32);
    let _ = rd(reg::ICR);
    wr(reg::IMS, reg::ICR_ALL);
    measure_offset()
}

/// Returns every descriptor before `next` to the device.
pub fn give_back(next: usize) {
    wr(reg::TAIL, reg::tail_for(next as u32, RING as u32));
}

/// Whether the device is generating packets.
pub fn busy() -> bool {
    rd(reg::CONTROL) & reg::STATUS_BUSY != 0
}

/// Whether a device answers at [`NIC_BASE`].
pub fn present() -> bool {
    rd(reg::ID) == reg::ID_VALUE
}
