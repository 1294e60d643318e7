//! Guest side of interrupt tracing: one record per handled interrupt in the ring the VMM
//! announced in the boot info (`irqlab_abi::trace`), and in lockstep mode a doorbell write
//! after each EOI.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use irqlab_abi::trace::{self as abi, Record, RingHeader};

static BASE: AtomicU64 = AtomicU64::new(0);
/// Non-zero while tracing: the IDT entry path then reads the TSC first thing.
pub static STUB_TIMESTAMPS: AtomicU8 = AtomicU8::new(0);
static CAPACITY: AtomicU64 = AtomicU64::new(0);
static MODE: AtomicU32 = AtomicU32::new(abi::MODE_OFF);

/// Picks up the ring from the boot info (tracing stays off if there is none or its header
/// is not one this kernel understands).
pub fn init(ring_addr: u64, ring_size: u64) {
    if ring_addr == 0 || ring_size < abi::ring_bytes(1) {
        return;
    }
    // SAFETY: the VMM put the header at `ring_addr` (identity-mapped RAM it reserved in the
    // memory map); a volatile read of plain data.
    let h: RingHeader = unsafe { core::ptr::read_volatile(ring_addr as *const RingHeader) };
    if h.magic != abi::RING_MAGIC
        || h.record_size as usize != core::mem::size_of::<Record>()
        || abi::ring_bytes(h.capacity) > ring_size
        || h.capacity == 0
    {
        return;
    }
    BASE.store(ring_addr, Ordering::Relaxed);
    CAPACITY.store(h.capacity.into(), Ordering::Relaxed);
    MODE.store(h.mode, Ordering::Release);
    STUB_TIMESTAMPS.store(u8::from(h.mode != abi::MODE_OFF), Ordering::Release);
}

/// Whether interrupts are being recorded.
#[inline]
pub fn enabled() -> bool {
    MODE.load(Ordering::Relaxed) != abi::MODE_OFF
}

/// Records one interrupt; in lockstep mode rings the doorbell.
pub fn record(vector: u8, cpu: u8, kind: u8, tsc_entry: u64, tsc_eoi: u64) {
    let base = BASE.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `head` is an 8-byte-aligned u64 inside the header, shared only through atomics.
    let head =
        unsafe { &*((base + core::mem::offset_of!(RingHeader, head) as u64) as *const AtomicU64) };
    let seq = head.fetch_add(1, Ordering::Relaxed) + 1;
    let slot = (seq - 1) % CAPACITY.load(Ordering::Relaxed);
    let rec = (base + core::mem::size_of::<RingHeader>() as u64 + slot * 32) as *mut Record;
    // SAFETY: `rec` is inside the ring the header describes; only this CPU writes this slot
    // for this sequence number. The body goes first, `seq` last with release ordering.
    unsafe {
        core::ptr::write_volatile(&raw mut (*rec).vector, vector);
        core::ptr::write_volatile(&raw mut (*rec).cpu, cpu);
        core::ptr::write_volatile(&raw mut (*rec).kind, kind);
        core::ptr::write_volatile(&raw mut (*rec).tsc_entry, tsc_entry);
        core::ptr::write_volatile(&raw mut (*rec).tsc_eoi, tsc_eoi);
        (*(&raw const (*rec).seq as *const AtomicU64)).store(seq, Ordering::Release);
    }
    if MODE.load(Ordering::Relaxed) == abi::MODE_LOCKSTEP {
        // SAFETY: the doorbell port only makes the VMM sample its counters.
        unsafe { crate::port::outl(abi::DOORBELL_PORT, seq as u32) };
    }
}
