//! Register map of irqlab's MSI source device (an MMIO window of [`WINDOW`] bytes at
//! [`crate::layout::MSI_SOURCE_BASE`]). All registers are 32 bits wide and little-endian.
//!
//! The guest programs an MSI address/data pair, a count and a rate, then writes
//! [`CTRL_START`] to [`CONTROL`]. A VMM thread raises the MSIs (as a NIC's DMA engine would)
//! and counts them; the guest compares [`SENT`] with the interrupts its handler saw.
//!
//! | offset | register   | access | meaning |
//! |--------|------------|--------|---------|
//! | 0x00   | ID         | RO     | [`ID_VALUE`] |
//! | 0x04   | ADDR_LO    | RW     | MSI address bits 31:0 |
//! | 0x08   | ADDR_HI    | RW     | MSI address bits 63:32 |
//! | 0x0c   | DATA       | RW     | MSI data |
//! | 0x10   | COUNT      | RW     | MSIs to raise |
//! | 0x14   | RATE_HZ    | RW     | MSIs per second (0: back to back) |
//! | 0x18   | CONTROL    | RW     | write [`CTRL_START`]/[`CTRL_STOP`]; reads [`STATUS_BUSY`] |
//! | 0x1c   | SENT       | RO     | MSIs raised in the current/last run |
//! | 0x20   | DELIVERED  | RO     | of those, accepted by a local APIC |
//! | 0x24   | UNDELIVERED | RO    | of those, accepted by no local APIC |
//! | 0x28   | FAILED     | RO     | of those, the host could not send |
//! | 0x2c   | LATE       | RO     | sent more than one period behind schedule |
//! | 0x30   | WB_ADDR_LO | RW     | event-counter write-back address bits 31:0 |
//! | 0x34   | WB_ADDR_HI | RW     | event-counter write-back address bits 63:32 |
//! | 0x38   | MODE       | RW     | [`MODE_DIRECT`] (one MSI per event) or [`MODE_POSTED`] |
//! | 0x3c   | PID_LO     | RW     | posted mode: guest-physical address of the target vCPU's posted-interrupt descriptor, bits 31:0 |
//! | 0x40   | PID_HI     | RW     | bits 63:32 |
//! | 0x44   | NOTIFIED   | RO     | posted mode: notifications sent (ON went 0 → 1) |
//! | 0x48   | SUPPRESSED | RO     | posted mode: events posted while SN was set |
//!
//! Posted mode (`docs/posted-interrupts.md`): for each event the device writes its counter
//! back, sets the PIR bit of DATA's vector in the descriptor, and sends one notification (NV to
//! NDST from the descriptor) only when ON goes from 0 to 1 and SN is clear.
//!
//! Event counter write-back: when WB_ADDR is non-zero and 4-byte aligned, the device writes
//! the number of events raised so far (a little-endian u32, 1 for the first) to that
//! guest-physical address *before* it sends each MSI, the way a NIC writes its descriptor
//! ring index back. Interrupts can merge (an MSI arriving while the previous one still waits
//! in the LAPIC's IRR is lost to software); events cannot: a handler that reads the counter
//! and processes everything since its last read accounts for every event without a single
//! VM exit.
//!
//! Writes to ADDR/DATA/COUNT/RATE while a run is busy are ignored.

/// Bytes of the MMIO window.
pub const WINDOW: u64 = 0x1000;
/// ID register.
pub const ID: u64 = 0x00;
/// `"MSIS"` as a little-endian u32.
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"MSIS");
/// MSI address, low half.
pub const ADDR_LO: u64 = 0x04;
/// MSI address, high half.
pub const ADDR_HI: u64 = 0x08;
/// MSI data.
pub const DATA: u64 = 0x0c;
/// Number of MSIs per run.
pub const COUNT: u64 = 0x10;
/// Rate in Hz (0 = as fast as possible).
pub const RATE_HZ: u64 = 0x14;
/// Control/status.
pub const CONTROL: u64 = 0x18;
/// MSIs raised.
pub const SENT: u64 = 0x1c;
/// MSIs a local APIC accepted.
pub const DELIVERED: u64 = 0x20;
/// MSIs no local APIC accepted (`KVM_SIGNAL_MSI` returned 0: no destination matched).
/// A fixed MSI merged into an interrupt already pending in IRR is *not* counted here —
/// KVM reports it delivered; only the guest's handler count shows it.
pub const UNDELIVERED: u64 = 0x24;
/// MSIs the host failed to send.
pub const FAILED: u64 = 0x28;
/// MSIs sent later than one period behind schedule.
pub const LATE: u64 = 0x2c;
/// Write-back address, low half.
pub const WB_ADDR_LO: u64 = 0x30;
/// Write-back address, high half.
pub const WB_ADDR_HI: u64 = 0x34;
/// Delivery mode.
pub const MODE: u64 = 0x38;
/// Posted-interrupt descriptor address, low half.
pub const PID_LO: u64 = 0x3c;
/// Posted-interrupt descriptor address, high half.
pub const PID_HI: u64 = 0x40;
/// Notifications sent (posted mode).
pub const NOTIFIED: u64 = 0x44;
/// Events posted with SN set (posted mode).
pub const SUPPRESSED: u64 = 0x48;
/// MODE: one MSI per event.
pub const MODE_DIRECT: u32 = 0;
/// MODE: post into the descriptor, notify on ON's 0 → 1 edge.
pub const MODE_POSTED: u32 = 1;
/// CONTROL write: start a run with the programmed registers.
pub const CTRL_START: u32 = 1;
/// CONTROL write: stop the current run.
pub const CTRL_STOP: u32 = 2;
/// CONTROL read bit: a run is in progress.
pub const STATUS_BUSY: u32 = 1;
