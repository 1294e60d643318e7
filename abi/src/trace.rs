//! The interrupt trace ring: guest-side records of every interrupt the guest handled, written
//! into guest memory the VMM announced (`BootInfo::trace_ring_addr`/`trace_ring_size`) and
//! drained by the VMM — no exit per record.
//!
//! Layout: a [`RingHeader`] (64 bytes) followed by `capacity` [`Record`]s (32 bytes each).
//! The guest fills record `(seq - 1) % capacity` and writes its `seq` field **last** (a
//! release store); a reader that finds `seq` equal to the sequence it expects has a complete
//! record, one that finds a larger value has been lapped (the record is lost and counted).
//!
//! Timestamps are the guest TSC. The VMM maps them to host time with the TSC offset KVM
//! applies (`guest TSC = host TSC + offset`, read once with `KVM_GET_MSRS(IA32_TSC)` between
//! two host `rdtsc`s).
//!
//! In lockstep mode ([`MODE_LOCKSTEP`]) the guest also writes the record's `seq` to the
//! doorbell port [`DOORBELL_PORT`] (4 bytes) after each handler's EOI; the VMM samples KVM's
//! per-vCPU statistics there, so every counter delta belongs to exactly one interrupt (plus
//! the doorbell's own exit, which the VMM subtracts).

/// `"IRQT"` as a little-endian u32.
pub const RING_MAGIC: u32 = u32::from_le_bytes(*b"IRQT");
/// Tracing off (the ring exists but the guest records nothing).
pub const MODE_OFF: u32 = 0;
/// Records only.
pub const MODE_RING: u32 = 1;
/// Records plus a doorbell exit per interrupt.
pub const MODE_LOCKSTEP: u32 = 2;
/// Doorbell port (4 bytes wide).
pub const DOORBELL_PORT: u16 = 0x5f0;

/// `Record::kind`: an interrupt from a device (PIT, UART, MSI source, ...).
pub const KIND_DEVICE: u8 = 0;
/// `Record::kind`: the LAPIC timer.
pub const KIND_LAPIC_TIMER: u8 = 1;
/// `Record::kind`: an inter-processor interrupt.
pub const KIND_IPI: u8 = 2;
/// `Record::kind`: a timer tick that ended the running task's time slice, so the guest
/// switches tasks on its way back to user mode (`run=sched`, `run=signals`).
pub const KIND_PREEMPT_TICK: u8 = 3;
/// `Record::kind`: not an interrupt but one NAPI poll pass (`run=napi`): `tsc_entry` and
/// `tsc_eoi` bracket the pass, `vector` is [`WORK_VECTOR`]. In lockstep mode its doorbell
/// gives it the exits the pass caused, so a trace shows where polling's exits went.
pub const KIND_NAPI_POLL: u8 = 4;
/// `Record::kind`: one softirq-like bottom-half run at interrupt exit (`run=softirq`), like
/// [`KIND_NAPI_POLL`].
pub const KIND_SOFTIRQ: u8 = 5;
/// `Record::vector` of the work records ([`KIND_NAPI_POLL`], [`KIND_SOFTIRQ`]): vector 0 is
/// never injected, so the VMM pairs them with no injection.
pub const WORK_VECTOR: u8 = 0;

/// The ring header (written by the VMM, except `head` and `dropped`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RingHeader {
    /// [`RING_MAGIC`].
    pub magic: u32,
    /// 1.
    pub version: u32,
    /// Records in the ring.
    pub capacity: u32,
    /// `size_of::<Record>()`.
    pub record_size: u32,
    /// `MODE_*`.
    pub mode: u32,
    /// Zero.
    pub reserved0: u32,
    /// The last sequence number the guest used (0: none yet). Guest-written.
    pub head: u64,
    /// Zero.
    pub reserved: [u64; 4],
}

/// One handled interrupt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Record {
    /// Sequence number, 1-based; written last.
    pub seq: u64,
    /// Vector.
    pub vector: u8,
    /// CPU index (= APIC ID).
    pub cpu: u8,
    /// `KIND_*`.
    pub kind: u8,
    /// Zero.
    pub reserved: [u8; 5],
    /// Guest TSC at handler entry (first instruction of the common entry path's Rust code).
    pub tsc_entry: u64,
    /// Guest TSC right after the EOI write.
    pub tsc_eoi: u64,
}

const _: () = assert!(core::mem::size_of::<RingHeader>() == 64);
const _: () = assert!(core::mem::size_of::<Record>() == 32);

/// Bytes a ring of `capacity` records needs.
pub const fn ring_bytes(capacity: u32) -> u64 {
    core::mem::size_of::<RingHeader>() as u64 + capacity as u64 * 32
}

#[cfg(feature = "vm-memory")]
// SAFETY: plain-old-data, no padding (asserted sizes), every bit pattern valid.
unsafe impl vm_memory::ByteValued for RingHeader {}
#[cfg(feature = "vm-memory")]
// SAFETY: as above.
unsafe impl vm_memory::ByteValued for Record {}
