//! Register map and descriptor layout of irqlab's NIC-like receive ring device (an MMIO window
//! of [`WINDOW`] bytes at [`crate::layout::NIC_BASE`], present in every VM). Prose, diagrams
//! and driver pseudocode: `docs/nic.md`.
//!
//! A VMM thread "receives" packets at a programmed rate and writes one [`RxDesc`] per packet
//! into an RX descriptor ring in guest memory, e1000 style: the device owns the descriptors
//! from [`HEAD`] up to but not including [`TAIL`] and never writes any other one; a packet
//! that finds no free descriptor is dropped and counted ([`DROPPED`]), so
//! `SENT == DELIVERED + DROPPED` always. New packets set cause bits in [`ICR`]; enabled causes
//! ([`IMS`]/[`IMC`]) raise one MSI (or, in [`MODE_POSTED`], one post into a posted-interrupt
//! descriptor) per assertion, no more often than every [`ITR_US`] microseconds.
//!
//! Registers are 32 bits, little-endian, at 4-byte-aligned offsets. An 8-byte access at an
//! 8-byte-aligned offset acts as two 4-byte accesses, low register first (so one 8-byte read
//! of [`HOST_TSC_LO`] returns the whole latched TSC, one 8-byte write of [`RING_LO`] sets the
//! whole base). Any other access (other width, misaligned, unknown offset) reads 0 and is
//! ignored when written.
//!
//! | offset | register    | access | meaning |
//! |--------|-------------|--------|---------|
//! | 0x00   | ID          | RO     | [`ID_VALUE`] (`"NIC0"`) |
//! | 0x04   | CONTROL     | RW     | write [`CTRL_START`]/[`CTRL_STOP`]; reads [`STATUS_BUSY`] |
//! | 0x08   | RING_LO     | RW*    | ring base bits 31:0 (bits 4:0 ignored: [`DESC_SIZE`]-aligned) |
//! | 0x0c   | RING_HI     | RW*    | ring base bits 63:32 |
//! | 0x10   | RING_SIZE   | RW*    | descriptors: 0 (no ring) or a power of two in [`RING_MIN`]..=[`RING_MAX`] |
//! | 0x14   | HEAD        | RO     | next descriptor the device fills |
//! | 0x18   | TAIL        | RW     | the device may fill `[HEAD, TAIL)` (indices modulo RING_SIZE) |
//! | 0x1c   | PKT_LEN     | RW*    | length written into each descriptor, 1..=[`PKT_LEN_MAX`] (reset [`PKT_LEN_DEFAULT`]) |
//! | 0x20   | ICR         | RC/W1C | interrupt causes ([`ICR_RX`], [`ICR_RXO`]); a read returns and clears them |
//! | 0x24   | ICS         | WO     | write 1s: set those causes (as if the events happened) |
//! | 0x28   | IMS         | RW     | read: the enabled causes; write 1s: enable those causes |
//! | 0x2c   | IMC         | WO     | write 1s: disable those causes |
//! | 0x30   | ITR_US      | RW     | minimum µs between two interrupts, 0 = off, clamped to [`ITR_MAX_US`] |
//! | 0x34   | MODE        | RW*    | [`MODE_DIRECT`] (an MSI) or [`MODE_POSTED`] (a post into PID) |
//! | 0x38   | MSI_ADDR_LO | RW*    | MSI address bits 31:0 |
//! | 0x3c   | MSI_ADDR_HI | RW*    | MSI address bits 63:32 |
//! | 0x40   | MSI_DATA    | RW*    | MSI data (posted mode: bits 7:0 are the vector posted) |
//! | 0x44   | RATE        | RW*    | packets per second (0: back to back) |
//! | 0x48   | PID_LO      | RW*    | posted mode: the posted-interrupt descriptor's address, bits 31:0 |
//! | 0x4c   | PID_HI      | RW*    | bits 63:32 |
//! | 0x50   | COUNT       | RW*    | packets in a run |
//! | 0x58   | HOST_TSC_LO | RO     | a read latches the host TSC and returns bits 31:0 |
//! | 0x5c   | HOST_TSC_HI | RO     | bits 63:32 of the value the last HOST_TSC_LO read latched |
//! | 0x60   | SENT        | RO     | packets generated this run |
//! | 0x64   | DELIVERED   | RO     | of those, written into the ring |
//! | 0x68   | DROPPED     | RO     | of those, dropped: no free descriptor, no ring, or the write failed |
//! | 0x6c   | DMA_ERRORS  | RO     | of the dropped, those whose descriptor is not guest RAM |
//! | 0x70   | LATE        | RO     | packets generated more than one period behind schedule |
//! | 0x74   | IRQS        | RO     | interrupts raised this run (MSIs sent, or vectors posted) |
//! | 0x78   | IRQ_HELD    | RO     | assertions the ITR timer held back to the interval's end |
//! | 0x7c   | IRQ_FAILED  | RO     | interrupts no local APIC accepted or the host failed to send |
//! | 0x80   | NOTIFIED    | RO     | posted mode: notifications sent (ON went 0 → 1) |
//! | 0x84   | SUPPRESSED  | RO     | posted mode: posts made while SN was set |
//!
//! RW*: configuration, ignored while a run is busy ([`STATUS_BUSY`]). A write of RING_LO,
//! RING_HI or RING_SIZE also resets HEAD and TAIL to 0 (no descriptor given to the device).
//! Invalid values are ignored, never clamped, except ITR_US: a RING_SIZE that is neither 0
//! nor a power of two in range, a TAIL ≥ RING_SIZE, a PKT_LEN of 0 or above
//! [`PKT_LEN_MAX`], an unknown MODE or CONTROL value. The counters (SENT … SUPPRESSED) are
//! per run: [`CTRL_START`] zeroes them; ICR, IMS, HEAD and TAIL carry over from run to run.
//!
//! **Interrupt condition** (e1000's ICR/IMS/IMC/ITR, with MSI edge semantics): the device
//! asserts while `ICR & IMS != 0` and raises exactly one interrupt per assertion — when the
//! condition becomes true (a new cause, an IMS write that enables a pending cause, an ICS
//! write). No further interrupt is raised while it stays true; it becomes false when ICR is
//! read (or the causes are W1C-cleared or masked with IMC). With ITR_US = `n` > 0, an
//! assertion less than `n` µs after the previous interrupt is held ([`IRQ_HELD`]) and fires at
//! `previous + n` if the condition is still true then (causes gathered meanwhile ride along);
//! if the guest cleared the causes in the meantime, nothing fires.
//!
//! **Timestamps**: [`RxDesc::tsc`] is the *host* TSC when the device wrote the descriptor.
//! irqlab never changes the vCPUs' TSC frequency, so guest TSC = host TSC + a constant
//! offset. Find it with [`HOST_TSC_LO`]: `t0 = rdtsc; h = read64(HOST_TSC_LO); t1 = rdtsc;
//! offset = (t0 + t1) / 2 - h`, accurate to `(t1 - t0) / 2` (take the tightest of several
//! samples). Then a packet written at `desc.tsc` was written at guest TSC `desc.tsc + offset`.

/// Bytes of the MMIO window.
pub const WINDOW: u64 = 0x1000;

/// ID register (RO).
pub const ID: u64 = 0x00;
/// `"NIC0"` as a little-endian u32 (an absent device reads all ones).
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"NIC0");
/// Control/status: write [`CTRL_START`] or [`CTRL_STOP`]; read [`STATUS_BUSY`].
pub const CONTROL: u64 = 0x04;
/// Ring base, bits 31:0 (bits 4:0 ignored). Config; resets HEAD and TAIL.
pub const RING_LO: u64 = 0x08;
/// Ring base, bits 63:32. Config; resets HEAD and TAIL.
pub const RING_HI: u64 = 0x0c;
/// Ring size in descriptors: 0 or a power of two in [`RING_MIN`]..=[`RING_MAX`] (other
/// values ignored). Config; resets HEAD and TAIL.
pub const RING_SIZE: u64 = 0x10;
/// Head (RO): index of the next descriptor the device will fill.
pub const HEAD: u64 = 0x14;
/// Tail (RW, also while busy): the device may fill descriptors `HEAD, HEAD+1, …, TAIL-1`
/// (modulo RING_SIZE); `HEAD == TAIL` means none. Values ≥ RING_SIZE are ignored. A driver
/// that has processed everything before index `next` writes [`tail_for`]`(next, size)`.
pub const TAIL: u64 = 0x18;
/// Length written into each descriptor's [`RxDesc::length`]. Config.
pub const PKT_LEN: u64 = 0x1c;
/// Interrupt cause register: a read returns the causes and clears them; a write clears the
/// causes whose bits are 1.
pub const ICR: u64 = 0x20;
/// Interrupt cause set (WO, reads 0): sets the causes whose bits are 1.
pub const ICS: u64 = 0x24;
/// Interrupt mask set: reads the enabled causes; a write enables the causes whose bits are 1.
pub const IMS: u64 = 0x28;
/// Interrupt mask clear (WO, reads 0): disables the causes whose bits are 1.
pub const IMC: u64 = 0x2c;
/// Interrupt throttling: minimum microseconds between two interrupts (0 = no limit);
/// clamped to [`ITR_MAX_US`]. Writable while busy.
pub const ITR_US: u64 = 0x30;
/// Delivery mode: [`MODE_DIRECT`] or [`MODE_POSTED`] (other values ignored). Config.
pub const MODE: u64 = 0x34;
/// MSI address, bits 31:0. Config.
pub const MSI_ADDR_LO: u64 = 0x38;
/// MSI address, bits 63:32. Config.
pub const MSI_ADDR_HI: u64 = 0x3c;
/// MSI data; in posted mode bits 7:0 are the vector posted. Config.
pub const MSI_DATA: u64 = 0x40;
/// Packets per second; 0 = back to back. Packet `i` of a run is due `i / RATE` s after
/// [`CTRL_START`] (absolute deadlines: a late packet does not delay the next). Config.
pub const RATE: u64 = 0x44;
/// Posted mode: guest-physical address of the posted-interrupt descriptor, bits 31:0
/// (64-byte aligned, in RAM: `BootInfo::posted_desc_addr + cpu * posted_desc_stride`). Config.
pub const PID_LO: u64 = 0x48;
/// Posted-interrupt descriptor address, bits 63:32. Config.
pub const PID_HI: u64 = 0x4c;
/// Packets in a run. Config.
pub const COUNT: u64 = 0x50;
/// Host TSC (RO): a read latches the host's TSC and returns bits 31:0.
pub const HOST_TSC_LO: u64 = 0x58;
/// Host TSC (RO): bits 63:32 of the value latched by the last [`HOST_TSC_LO`] read.
pub const HOST_TSC_HI: u64 = 0x5c;
/// Packets generated in this run (RO).
pub const SENT: u64 = 0x60;
/// Packets written into the ring (RO).
pub const DELIVERED: u64 = 0x64;
/// Packets dropped (RO): no free descriptor (ring full), RING_SIZE 0, or a descriptor write
/// that failed. `SENT == DELIVERED + DROPPED`.
pub const DROPPED: u64 = 0x68;
/// Dropped packets whose descriptor address is not guest RAM (RO; included in DROPPED).
pub const DMA_ERRORS: u64 = 0x6c;
/// Packets generated more than one period after their deadline (RO).
pub const LATE: u64 = 0x70;
/// Interrupts raised (RO): MSIs sent, or (posted mode) vectors posted.
pub const IRQS: u64 = 0x74;
/// Assertions the ITR timer held back (RO).
pub const IRQ_HELD: u64 = 0x78;
/// Interrupts that failed (RO): no local APIC accepted the MSI, the host could not send it,
/// or (posted mode) PID is not a usable descriptor.
pub const IRQ_FAILED: u64 = 0x7c;
/// Posted mode: notifications sent, ON went 0 → 1 (RO).
pub const NOTIFIED: u64 = 0x80;
/// Posted mode: vectors posted while SN was set, without a notification (RO).
pub const SUPPRESSED: u64 = 0x84;

/// CONTROL write: start a run (ignored while busy): zero the counters, generate COUNT
/// packets at RATE.
pub const CTRL_START: u32 = 1;
/// CONTROL write: end the current run now (packets not yet generated are not counted).
pub const CTRL_STOP: u32 = 2;
/// CONTROL read bit: a run is in progress.
pub const STATUS_BUSY: u32 = 1;

/// Cause: one or more packets were written into the ring.
pub const ICR_RX: u32 = 1 << 0;
/// Cause: one or more packets were dropped (receiver overrun: no free descriptor).
pub const ICR_RXO: u32 = 1 << 1;
/// Every cause bit; other bits of ICR/ICS/IMS/IMC are ignored and read 0.
pub const ICR_ALL: u32 = ICR_RX | ICR_RXO;

/// MODE: one MSI (MSI_ADDR/MSI_DATA) per interrupt.
pub const MODE_DIRECT: u32 = 0;
/// MODE: set the PIR bit of MSI_DATA's vector in the descriptor at PID, notify on ON's
/// 0 → 1 edge (`docs/posted-interrupts.md`).
pub const MODE_POSTED: u32 = 1;

/// Smallest non-zero ring.
pub const RING_MIN: u32 = 2;
/// Largest ring (128 KiB of descriptors).
pub const RING_MAX: u32 = 4096;
/// Largest ITR_US; larger writes are clamped to it.
pub const ITR_MAX_US: u32 = 100_000;
/// PKT_LEN at reset.
pub const PKT_LEN_DEFAULT: u32 = 64;
/// Largest PKT_LEN.
pub const PKT_LEN_MAX: u32 = 65_535;

/// Bytes of one descriptor (also the ring base's alignment).
pub const DESC_SIZE: u64 = 32;
/// Descriptor offset of [`RxDesc::status`] (u32).
pub const DESC_STATUS: u64 = 0x00;
/// Descriptor offset of [`RxDesc::length`] (u32).
pub const DESC_LENGTH: u64 = 0x04;
/// Descriptor offset of [`RxDesc::seq`] (u32).
pub const DESC_SEQ: u64 = 0x08;
/// Descriptor offset of [`RxDesc::tsc`] (u64).
pub const DESC_TSC: u64 = 0x10;
/// Descriptor offset of [`RxDesc::run_ns`] (u64).
pub const DESC_RUN_NS: u64 = 0x18;
/// Status bit: descriptor done — the device wrote this descriptor (set last, with release
/// ordering: a guest that sees it with acquire ordering sees the other fields).
pub const STATUS_DD: u32 = 1 << 0;

/// One RX descriptor as the device writes it (little-endian, [`DESC_SIZE`] bytes). The device
/// writes every field, `status` last; it never reads a descriptor. Clearing `status` when
/// returning a descriptor lets the driver test DD alone to find the next packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxDesc {
    /// [`STATUS_DD`]; read it with acquire ordering (a volatile read on x86).
    pub status: u32,
    /// The PKT_LEN register's value (no payload is written: the device models the ring only).
    pub length: u32,
    /// The packet's number in its run, from 0. Dropped packets take numbers too: a gap between
    /// consecutive descriptors is the number of packets dropped between them.
    pub seq: u32,
    /// Written 0.
    pub reserved: u32,
    /// Host TSC when the descriptor was written (module docs: converting to guest TSC).
    /// Packets written in one burst (back to back, or catching up after a late wake-up, at
    /// most 64) carry the burst's time.
    pub tsc: u64,
    /// Host nanoseconds (CLOCK_MONOTONIC) from [`CTRL_START`] to the write (same burst rule).
    pub run_ns: u64,
}

const _: () = {
    assert!(core::mem::size_of::<RxDesc>() == DESC_SIZE as usize);
    assert!(core::mem::offset_of!(RxDesc, status) == DESC_STATUS as usize);
    assert!(core::mem::offset_of!(RxDesc, length) == DESC_LENGTH as usize);
    assert!(core::mem::offset_of!(RxDesc, seq) == DESC_SEQ as usize);
    assert!(core::mem::offset_of!(RxDesc, tsc) == DESC_TSC as usize);
    assert!(core::mem::offset_of!(RxDesc, run_ns) == DESC_RUN_NS as usize);
    // 64-bit pairs can be accessed with one 8-byte access.
    assert!(RING_LO.is_multiple_of(8) && MSI_ADDR_LO.is_multiple_of(8));
    assert!(PID_LO.is_multiple_of(8) && HOST_TSC_LO.is_multiple_of(8) && SUPPRESSED < WINDOW);
};

/// Whether `size` is a RING_SIZE the device accepts.
pub const fn valid_ring_size(size: u32) -> bool {
    size == 0 || (size.is_power_of_two() && size >= RING_MIN && size <= RING_MAX)
}

/// Descriptors the device may fill: `(tail - head) mod size` (0 for no ring).
pub const fn free_descriptors(head: u32, tail: u32, size: u32) -> u32 {
    if size == 0 {
        0
    } else {
        tail.wrapping_sub(head) & (size - 1)
    }
}

/// The TAIL a driver writes once it has processed every descriptor before index `next`
/// (its next-to-clean): `next - 1` modulo `size`, e1000's one-slot gap, so that the device may
/// fill everything but the descriptor just before `next` (`HEAD == TAIL` means "none", so a
/// ring of `size` descriptors holds at most `size - 1` packets). At ring setup, `next = 0`:
/// TAIL = `size - 1`.
pub const fn tail_for(next: u32, size: u32) -> u32 {
    if size == 0 {
        0
    } else {
        next.wrapping_sub(1) & (size - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_arithmetic() {
        assert!(valid_ring_size(0) && valid_ring_size(2) && valid_ring_size(RING_MAX));
        for bad in [1, 3, 6, RING_MAX * 2, u32::MAX, 1 << 31] {
            assert!(!valid_ring_size(bad), "{bad}");
        }
        assert_eq!(tail_for(0, 8), 7);
        assert_eq!(free_descriptors(0, tail_for(0, 8), 8), 7);
        assert_eq!(free_descriptors(5, 5, 8), 0);
        assert_eq!(free_descriptors(6, 2, 8), 4);
        // Caught up (head == next): everything but one slot is free again.
        assert_eq!(free_descriptors(3, tail_for(3, 8), 8), 7);
        assert_eq!((free_descriptors(1, 2, 0), tail_for(4, 0)), (0, 0));
    }
}
