//! 82093AA I/O APIC: 24 input pins, each turned into an MSI message for the (in-kernel) local
//! APICs.
//!
//! The register window is indirect (82093AA datasheet §3.0): the guest writes a register
//! index to IOREGSEL and then reads or writes the 32-bit register through IOWIN.
//!
//! | offset | register | access |
//! |--------|----------|--------|
//! | 0x00   | IOREGSEL | R/W, bits 7:0 select the register |
//! | 0x10   | IOWIN    | R/W, 32-bit, the selected register |
//!
//! | index      | register | datasheet |
//! |------------|----------|-----------|
//! | 0x00       | IOAPICID  (bits 27:24) | §3.2.1 |
//! | 0x01       | IOAPICVER (max entry 23:16, version 7:0) | §3.2.2 |
//! | 0x02       | IOAPICARB (bits 27:24) | §3.2.3 |
//! | 0x10+2n    | redirection entry n, low dword  | §3.2.4 |
//! | 0x11+2n    | redirection entry n, high dword | §3.2.4 |
//!
//! An assertion leaves as an MSI (address/data pair, Intel SDM vol. 3 §11.11) through
//! [`MsiSink`]; with a split irqchip the VMM sends it with `KVM_SIGNAL_MSI`. Level-triggered
//! pins set Remote IRR and block further deliveries until the local APIC broadcasts the EOI
//! for their vector ([`IoApic::end_of_interrupt`], from `KVM_EXIT_IOAPIC_EOI`). If the line is
//! still asserted at that EOI the entry is delivered again — forgetting that is the lost
//! interrupt of Cloud Hypervisor issue #5260.
//!
//! Edges that arrive on a masked pin are dropped, as on the chip, and counted.
//!
//! # Example
//! ```
//! use irqlab_devices::ioapic::{IoApic, WINDOW};
//! use irqlab_devices::{BusDevice, MsiMessage, MsiOutcome, MsiSink};
//! use std::sync::{Arc, Mutex};
//!
//! #[derive(Default)]
//! struct Recorder(Mutex<Vec<MsiMessage>>);
//! impl MsiSink for Recorder {
//!     fn send(&self, msg: MsiMessage) -> MsiOutcome {
//!         self.0.lock().unwrap().push(msg);
//!         MsiOutcome::Delivered
//!     }
//! }
//!
//! let sink = Arc::new(Recorder::default());
//! let mut ioapic = IoApic::new(sink.clone());
//! // Pin 2 → vector 0x30, edge, physical destination APIC 1, unmasked.
//! ioapic.write(0x00, &[0x14]);
//! ioapic.write(0x10, &0x30u32.to_le_bytes());
//! ioapic.write(0x00, &[0x15]);
//! ioapic.write(0x10, &(1u32 << 24).to_le_bytes());
//! ioapic.set_irq(2, true);
//! let sent = sink.0.lock().unwrap();
//! assert_eq!(sent[0].address, 0xfee0_1000);
//! assert_eq!(sent[0].data, 0x30);
//! ```

use crate::{le_value, BusDevice, MsiMessage, MsiOutcome, MsiSink};
use irqlab_x86::msi::Msi;
use std::sync::Arc;

/// Size of the MMIO window the VMM maps (one page).
pub const WINDOW: u64 = 0x1000;
/// Input pins (82093AA: 24).
pub const NUM_PINS: usize = 24;

/// IOREGSEL offset.
pub const IOREGSEL_OFFSET: u64 = 0x00;
/// IOWIN offset.
pub const IOWIN_OFFSET: u64 = 0x10;

/// IOAPICID index.
pub const IOAPICID: u8 = 0x00;
/// IOAPICVER index.
pub const IOAPICVER: u8 = 0x01;
/// IOAPICARB index.
pub const IOAPICARB: u8 = 0x02;
/// First redirection-table index.
pub const IOREDTBL_BASE: u8 = 0x10;

/// Version register: maximum redirection entry 23 in bits 23:16, version 0x11 (82093AA, which
/// has no directed-EOI register; software EOIs through the local APIC).
pub const VERSION_VALUE: u32 = ((NUM_PINS as u32 - 1) << 16) | 0x11;
/// The 4-bit ID field of IOAPICID and IOAPICARB (bits 27:24).
const ID_MASK: u32 = 0x0f00_0000;

// Redirection entry (§3.2.4), 64 bits:
//
// | bits  | field            | access |
// |-------|------------------|--------|
// | 63:56 | destination      | R/W    |
// | 16    | mask             | R/W    |
// | 15    | trigger mode     | R/W (0 edge, 1 level) |
// | 14    | remote IRR       | RO     |
// | 13    | pin polarity     | R/W (0 active high, 1 active low) |
// | 12    | delivery status  | RO     |
// | 11    | destination mode | R/W (0 physical, 1 logical) |
// | 10:8  | delivery mode    | R/W    |
// | 7:0   | vector           | R/W    |
const VECTOR_MASK: u64 = 0xff;
const DELIVERY_MODE_SHIFT: u32 = 8;
const DELIVERY_MODE_MASK: u64 = 0x7 << DELIVERY_MODE_SHIFT;
const DEST_MODE_LOGICAL: u64 = 1 << 11;
const DELIVERY_STATUS: u64 = 1 << 12;
const POLARITY_LOW: u64 = 1 << 13;
const REMOTE_IRR: u64 = 1 << 14;
const TRIGGER_LEVEL: u64 = 1 << 15;
const MASKED: u64 = 1 << 16;
const DEST_SHIFT: u32 = 56;
/// Bits the guest cannot write.
const READ_ONLY: u64 = DELIVERY_STATUS | REMOTE_IRR;
/// Reset value: masked, everything else zero (§3.2.4).
const ENTRY_RESET: u64 = MASKED;

/// Delivery mode of a redirection entry (bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// To the listed destination(s).
    Fixed,
    /// To the lowest-priority processor among the destinations.
    LowestPriority,
    /// System management interrupt.
    Smi,
    /// Non-maskable interrupt.
    Nmi,
    /// INIT.
    Init,
    /// External (8259-style) interrupt.
    ExtInt,
}

impl TryFrom<u8> for DeliveryMode {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            7 => DeliveryMode::ExtInt,
            other => return Err(other),
        })
    }
}

impl DeliveryMode {
    fn bits(self) -> u32 {
        match self {
            DeliveryMode::Fixed => 0,
            DeliveryMode::LowestPriority => 1,
            DeliveryMode::Smi => 2,
            DeliveryMode::Nmi => 4,
            DeliveryMode::Init => 5,
            DeliveryMode::ExtInt => 7,
        }
    }
}

/// Trigger mode of a redirection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerMode {
    /// Delivered on each inactive → active transition.
    Edge,
    /// Delivered while active, once per EOI.
    Level,
}

/// One redirection-table entry, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectionEntry(pub u64);

impl RedirectionEntry {
    /// Vector (bits 7:0).
    pub fn vector(self) -> u8 {
        (self.0 & VECTOR_MASK) as u8
    }
    /// Delivery mode, or the reserved value (3 or 6).
    pub fn delivery_mode(self) -> Result<DeliveryMode, u8> {
        DeliveryMode::try_from(((self.0 & DELIVERY_MODE_MASK) >> DELIVERY_MODE_SHIFT) as u8)
    }
    /// Logical (true) or physical destination mode.
    pub fn logical(self) -> bool {
        self.0 & DEST_MODE_LOGICAL != 0
    }
    /// Active-low input.
    pub fn active_low(self) -> bool {
        self.0 & POLARITY_LOW != 0
    }
    /// Remote IRR: a level interrupt was accepted and its EOI has not arrived.
    pub fn remote_irr(self) -> bool {
        self.0 & REMOTE_IRR != 0
    }
    /// Trigger mode.
    pub fn trigger(self) -> TriggerMode {
        if self.0 & TRIGGER_LEVEL != 0 {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        }
    }
    /// Masked.
    pub fn masked(self) -> bool {
        self.0 & MASKED != 0
    }
    /// Destination (bits 63:56): an APIC ID, or a logical set.
    pub fn destination(self) -> u8 {
        (self.0 >> DEST_SHIFT) as u8
    }

    /// The MSI message this entry sends, or `None` for a reserved delivery mode.
    pub fn msi(self) -> Option<MsiMessage> {
        let mode = self.delivery_mode().ok()?;
        let msi = Msi {
            dest: self.destination(),
            logical: self.logical(),
            redirection_hint: mode == DeliveryMode::LowestPriority,
            vector: self.vector(),
            delivery_mode: mode.bits() as u8,
            level: self.trigger() == TriggerMode::Level,
        };
        Some(MsiMessage {
            address: msi.address(),
            data: msi.data(),
        })
    }
}

/// What happened to the interrupts of one pin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinStats {
    /// MSIs the local APIC accepted.
    pub delivered: u64,
    /// MSIs no local APIC accepted (KVM returned 0).
    pub undelivered: u64,
    /// Edges that arrived while the pin was masked (dropped, as on the chip).
    pub masked_edges: u64,
    /// Assertions not sent: reserved delivery mode, or the sink failed.
    pub failed: u64,
    /// EOIs that cleared this pin's Remote IRR.
    pub eois: u64,
    /// Level re-deliveries because the line was still asserted at EOI.
    pub redelivered_at_eoi: u64,
}

/// A pin's current route, handed to [`MsiSink::routes_changed`] so a VMM can mirror the
/// level-triggered vectors into KVM (which then exits on their EOI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinRoute {
    /// Pin number (= GSI).
    pub pin: u32,
    /// The message the pin sends.
    pub msi: MsiMessage,
    /// Level-triggered.
    pub level: bool,
    /// Masked.
    pub masked: bool,
}

/// The IO-APIC.
pub struct IoApic {
    id: u32,
    arbitration: u32,
    ioregsel: u8,
    entries: [RedirectionEntry; NUM_PINS],
    /// Raw pin levels as driven by the devices (before polarity).
    levels: [bool; NUM_PINS],
    stats: [PinStats; NUM_PINS],
    /// The message each level pin was last delivered with, while it awaits its EOI (Remote
    /// IRR set): see [`IoApic::routes`].
    in_service: [Option<MsiMessage>; NUM_PINS],
    bad_accesses: u64,
    msi: Arc<dyn MsiSink>,
}

impl IoApic {
    /// An IO-APIC in its reset state (every pin masked) sending through `msi`.
    pub fn new(msi: Arc<dyn MsiSink>) -> Self {
        IoApic {
            id: 0,
            arbitration: 0,
            ioregsel: 0,
            entries: [RedirectionEntry(ENTRY_RESET); NUM_PINS],
            levels: [false; NUM_PINS],
            stats: [PinStats::default(); NUM_PINS],
            in_service: [None; NUM_PINS],
            bad_accesses: 0,
            msi,
        }
    }

    /// The redirection entry of `pin`.
    pub fn entry(&self, pin: usize) -> Option<RedirectionEntry> {
        self.entries.get(pin).copied()
    }

    /// Counters of `pin`.
    pub fn stats(&self, pin: usize) -> Option<PinStats> {
        self.stats.get(pin).copied()
    }

    /// Accesses with a width or offset the chip does not define (ignored).
    pub fn bad_accesses(&self) -> u64 {
        self.bad_accesses
    }

    /// Every pin's route: its current message, except for a level pin awaiting its EOI
    /// (Remote IRR set), whose route stays the message it was delivered with until that EOI.
    ///
    /// A guest may retarget a level pin from inside its handler (kvm-unit-tests' ioapic
    /// "Reconfigure self" does); the EOI then comes from the old destination. With a split
    /// irqchip KVM exits to userspace on the EOI of a vector only for the vCPUs its routes
    /// name, and before Linux 6.2 (commit fceb3a36c29a) it does not look at vectors still in
    /// service elsewhere: publishing the new destination at once loses that EOI, and Remote
    /// IRR stays set for ever.
    pub fn routes(&self) -> Vec<PinRoute> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(pin, e)| {
                let in_service = self.in_service[pin].filter(|_| e.remote_irr());
                in_service.or_else(|| e.msi()).map(|msi| PinRoute {
                    pin: pin as u32,
                    msi,
                    level: e.trigger() == TriggerMode::Level,
                    masked: e.masked(),
                })
            })
            .collect()
    }

    /// A device drives input `pin` to `level`. Out-of-range pins are ignored.
    pub fn set_irq(&mut self, pin: usize, level: bool) {
        let Some(old) = self.levels.get(pin).copied() else {
            return;
        };
        self.levels[pin] = level;
        let entry = self.entries[pin];
        let asserted = level != entry.active_low();
        let was_asserted = old != entry.active_low();
        match entry.trigger() {
            TriggerMode::Edge if asserted && !was_asserted => {
                if entry.masked() {
                    self.stats[pin].masked_edges += 1;
                } else {
                    self.deliver(pin);
                }
            }
            TriggerMode::Edge => {}
            TriggerMode::Level => self.service_level(pin),
        }
    }

    /// The local APIC broadcast an EOI for `vector` (split irqchip: `KVM_EXIT_IOAPIC_EOI`).
    /// Clears Remote IRR on every level pin with that vector and re-delivers those whose line
    /// is still asserted.
    pub fn end_of_interrupt(&mut self, vector: u8) {
        for pin in 0..NUM_PINS {
            let e = self.entries[pin];
            if e.vector() == vector && e.trigger() == TriggerMode::Level && e.remote_irr() {
                self.entries[pin].0 &= !REMOTE_IRR;
                self.stats[pin].eois += 1;
                // Retargeted while in service: KVM learns the new route before the pin is
                // delivered along it (and its EOI must exit there).
                if self.in_service[pin]
                    .take()
                    .is_some_and(|m| Some(m) != e.msi())
                {
                    self.msi.routes_changed(&self.routes());
                }
                if self.line_asserted(pin) && !e.masked() {
                    self.stats[pin].redelivered_at_eoi += 1;
                }
                self.service_level(pin);
            }
        }
    }

    fn line_asserted(&self, pin: usize) -> bool {
        self.levels[pin] != self.entries[pin].active_low()
    }

    /// Delivers a level pin if it is asserted, unmasked and not waiting for an EOI.
    fn service_level(&mut self, pin: usize) {
        let e = self.entries[pin];
        if e.trigger() == TriggerMode::Level
            && self.line_asserted(pin)
            && !e.masked()
            && !e.remote_irr()
            && self.deliver(pin)
        {
            self.entries[pin].0 |= REMOTE_IRR;
            self.in_service[pin] = e.msi();
        }
    }

    /// Sends the pin's message; true unless the sink failed.
    fn deliver(&mut self, pin: usize) -> bool {
        let Some(msg) = self.entries[pin].msi() else {
            self.stats[pin].failed += 1;
            return false;
        };
        match self.msi.send_from_pin(pin as u8, msg) {
            MsiOutcome::Delivered => {
                self.stats[pin].delivered += 1;
                true
            }
            MsiOutcome::Blocked => {
                self.stats[pin].undelivered += 1;
                true
            }
            MsiOutcome::Failed(_) => {
                self.stats[pin].failed += 1;
                false
            }
        }
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            IOAPICID => self.id,
            IOAPICVER => VERSION_VALUE,
            IOAPICARB => self.arbitration,
            i if i >= IOREDTBL_BASE && usize::from(i - IOREDTBL_BASE) < 2 * NUM_PINS => {
                let n = usize::from(i - IOREDTBL_BASE);
                let e = self.entries[n / 2].0;
                if n % 2 == 0 {
                    e as u32
                } else {
                    (e >> 32) as u32
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, index: u8, value: u32) {
        match index {
            // §3.2.3: the arbitration ID is loaded with the IOAPIC ID whenever the ID register
            // is written (it then rotates during bus arbitration, which a message-signalled
            // model never does).
            IOAPICID => {
                self.id = value & ID_MASK;
                self.arbitration = self.id;
            }
            // Version and arbitration are read-only.
            IOAPICVER | IOAPICARB => {}
            i if i >= IOREDTBL_BASE && usize::from(i - IOREDTBL_BASE) < 2 * NUM_PINS => {
                let n = usize::from(i - IOREDTBL_BASE);
                let pin = n / 2;
                let old = self.entries[pin].0;
                let new = if n % 2 == 0 {
                    (old & !0xffff_ffff) | u64::from(value)
                } else {
                    (old & 0xffff_ffff) | (u64::from(value) << 32)
                };
                let mut new = (new & !READ_ONLY) | (old & READ_ONLY);
                // Remote IRR has no meaning for edge pins; switching to edge clears it.
                if new & TRIGGER_LEVEL == 0 {
                    new &= !REMOTE_IRR;
                    self.in_service[pin] = None;
                }
                self.entries[pin] = RedirectionEntry(new);
                // Unmasking (or re-polarising) an asserted level pin delivers it now.
                self.service_level(pin);
                if new != old {
                    self.msi.routes_changed(&self.routes());
                }
            }
            _ => self.bad_accesses += 1,
        }
    }
}

impl BusDevice for IoApic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match (offset, data.len()) {
            (IOREGSEL_OFFSET, 1 | 2 | 4) => u32::from(self.ioregsel),
            (IOWIN_OFFSET, 4) => self.read_register(self.ioregsel),
            _ => {
                self.bad_accesses += 1;
                return;
            }
        };
        data.copy_from_slice(&value.to_le_bytes()[..data.len()]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, le_value(data)) {
            (IOREGSEL_OFFSET, Some(v)) if data.len() <= 4 => self.ioregsel = v as u8,
            (IOWIN_OFFSET, Some(v)) if data.len() == 4 => {
                self.write_register(self.ioregsel, v as u32)
            }
            _ => self.bad_accesses += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Sink {
        sent: Mutex<Vec<MsiMessage>>,
        routes: Mutex<Vec<Vec<PinRoute>>>,
        coalesce: std::sync::atomic::AtomicBool,
    }

    impl MsiSink for Sink {
        fn send(&self, msg: MsiMessage) -> MsiOutcome {
            self.sent.lock().unwrap().push(msg);
            if self.coalesce.load(std::sync::atomic::Ordering::Relaxed) {
                MsiOutcome::Blocked
            } else {
                MsiOutcome::Delivered
            }
        }
        fn routes_changed(&self, routes: &[PinRoute]) {
            self.routes.lock().unwrap().push(routes.to_vec());
        }
    }

    fn setup() -> (Arc<Sink>, IoApic) {
        let sink = Arc::new(Sink::default());
        let io = IoApic::new(sink.clone());
        (sink, io)
    }

    fn write_reg(io: &mut IoApic, index: u8, value: u32) {
        io.write(IOREGSEL_OFFSET, &[index]);
        io.write(IOWIN_OFFSET, &value.to_le_bytes());
    }

    fn read_reg(io: &mut IoApic, index: u8) -> u32 {
        io.write(IOREGSEL_OFFSET, &[index]);
        let mut b = [0u8; 4];
        io.read(IOWIN_OFFSET, &mut b);
        u32::from_le_bytes(b)
    }

    fn program(io: &mut IoApic, pin: u8, entry: u64) {
        write_reg(io, IOREDTBL_BASE + 2 * pin + 1, (entry >> 32) as u32);
        write_reg(io, IOREDTBL_BASE + 2 * pin, entry as u32);
    }

    fn sent(sink: &Sink) -> Vec<MsiMessage> {
        sink.sent.lock().unwrap().clone()
    }

    #[test]
    fn reset_state_masks_every_pin() {
        let (_, mut io) = setup();
        for pin in 0..NUM_PINS as u8 {
            assert_eq!(read_reg(&mut io, IOREDTBL_BASE + 2 * pin), 1 << 16);
            assert_eq!(read_reg(&mut io, IOREDTBL_BASE + 2 * pin + 1), 0);
        }
    }

    #[test]
    fn version_register_reports_24_entries_and_version_0x11() {
        let (_, mut io) = setup();
        assert_eq!(read_reg(&mut io, IOAPICVER), 0x0017_0011);
        write_reg(&mut io, IOAPICVER, 0);
        assert_eq!(read_reg(&mut io, IOAPICVER), 0x0017_0011);
    }

    #[test]
    fn id_register_keeps_only_bits_27_to_24() {
        let (_, mut io) = setup();
        write_reg(&mut io, IOAPICID, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, IOAPICID), 0x0f00_0000);
    }

    #[test]
    fn ioregsel_reads_back() {
        let (_, mut io) = setup();
        io.write(IOREGSEL_OFFSET, &[0x21]);
        let mut b = [0u8; 4];
        io.read(IOREGSEL_OFFSET, &mut b);
        assert_eq!(b, [0x21, 0, 0, 0]);
    }

    #[test]
    fn unknown_register_reads_zero_and_ignores_writes() {
        let (_, mut io) = setup();
        assert_eq!(read_reg(&mut io, 0x03), 0);
        write_reg(&mut io, 0x40, 5);
        assert_eq!(read_reg(&mut io, 0x40), 0);
        assert_eq!(io.bad_accesses(), 1);
    }

    #[test]
    fn odd_widths_and_offsets_are_ignored_and_counted() {
        let (_, mut io) = setup();
        io.write(IOWIN_OFFSET, &[1, 2]);
        io.write(0x20, &[1, 2, 3, 4]);
        io.write(IOREGSEL_OFFSET, &[1, 2, 3]);
        let mut b = [0xaa; 2];
        io.read(IOWIN_OFFSET, &mut b);
        assert_eq!(b, [0xaa; 2]);
        assert_eq!(io.bad_accesses(), 4);
    }

    #[test]
    fn remote_irr_and_delivery_status_are_read_only() {
        let (_, mut io) = setup();
        write_reg(&mut io, IOREDTBL_BASE, 0xffff_ffff);
        let low = read_reg(&mut io, IOREDTBL_BASE);
        assert_eq!(low & ((1 << 12) | (1 << 14)), 0);
        assert_eq!(low | (1 << 12) | (1 << 14), 0xffff_ffff);
    }

    #[test]
    fn edge_pin_sends_fixed_physical_message_on_rising_edge_only() {
        let (sink, mut io) = setup();
        program(&mut io, 2, (3 << 56) | 0x30);
        io.set_irq(2, true);
        io.set_irq(2, true);
        io.set_irq(2, false);
        io.set_irq(2, true);
        let s = sent(&sink);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            MsiMessage {
                address: 0xfee0_3000,
                data: 0x30
            }
        );
        assert_eq!(io.stats(2).unwrap().delivered, 2);
    }

    #[test]
    fn logical_lowest_priority_sets_address_bits() {
        let e = RedirectionEntry((0x0f << 56) | (1 << 11) | (1 << 8) | 0x41);
        let m = e.msi().unwrap();
        assert_eq!(m.address, 0xfee0_f000 | (1 << 2) | (1 << 3));
        assert_eq!(m.data, 0x141);
    }

    #[test]
    fn nmi_delivery_mode_is_encoded() {
        let e = RedirectionEntry((4 << 8) | 0x02);
        assert_eq!(e.msi().unwrap().data, 0x402);
    }

    #[test]
    fn reserved_delivery_mode_sends_nothing() {
        let (sink, mut io) = setup();
        program(&mut io, 5, (3 << 8) | 0x30);
        io.set_irq(5, true);
        assert!(sent(&sink).is_empty());
        assert_eq!(io.stats(5).unwrap().failed, 1);
    }

    #[test]
    fn masked_edge_is_dropped_and_counted() {
        let (sink, mut io) = setup();
        program(&mut io, 4, (1 << 16) | 0x31);
        io.set_irq(4, true);
        io.set_irq(4, false);
        program(&mut io, 4, 0x31);
        assert!(sent(&sink).is_empty());
        assert_eq!(io.stats(4).unwrap().masked_edges, 1);
    }

    #[test]
    fn active_low_edge_fires_on_falling_input() {
        let (sink, mut io) = setup();
        io.set_irq(7, true); // idle level of an active-low line
        program(&mut io, 7, (1 << 13) | 0x33);
        io.set_irq(7, false);
        assert_eq!(sent(&sink).len(), 1);
        io.set_irq(7, true);
        assert_eq!(sent(&sink).len(), 1);
    }

    #[test]
    fn level_pin_sets_remote_irr_and_waits_for_eoi() {
        let (sink, mut io) = setup();
        program(&mut io, 9, (1 << 15) | 0x40);
        io.set_irq(9, true);
        let m = sent(&sink)[0];
        assert_eq!(m.data, 0x40 | (1 << 15) | (1 << 14));
        assert!(io.entry(9).unwrap().remote_irr());
        assert_ne!(read_reg(&mut io, IOREDTBL_BASE + 18) & (1 << 14), 0);
        // Still asserted, no EOI yet: nothing more.
        io.set_irq(9, true);
        assert_eq!(sent(&sink).len(), 1);
        // The handler quiets the device before EOI: no re-delivery.
        io.set_irq(9, false);
        io.end_of_interrupt(0x40);
        assert!(!io.entry(9).unwrap().remote_irr());
        assert_eq!(sent(&sink).len(), 1);
        assert_eq!(io.stats(9).unwrap().eois, 1);
    }

    #[test]
    fn level_still_asserted_at_eoi_is_redelivered() {
        let (sink, mut io) = setup();
        program(&mut io, 9, (1 << 15) | 0x40);
        io.set_irq(9, true);
        io.end_of_interrupt(0x40);
        assert_eq!(sent(&sink).len(), 2);
        assert!(io.entry(9).unwrap().remote_irr());
        assert_eq!(io.stats(9).unwrap().redelivered_at_eoi, 1);
    }

    #[test]
    fn eoi_for_another_vector_changes_nothing() {
        let (sink, mut io) = setup();
        program(&mut io, 9, (1 << 15) | 0x40);
        io.set_irq(9, true);
        io.end_of_interrupt(0x41);
        assert!(io.entry(9).unwrap().remote_irr());
        assert_eq!(sent(&sink).len(), 1);
    }

    #[test]
    fn eoi_serves_every_pin_sharing_the_vector() {
        let (sink, mut io) = setup();
        program(&mut io, 10, (1 << 15) | 0x50);
        program(&mut io, 11, (1 << 15) | 0x50);
        io.set_irq(10, true);
        io.set_irq(11, true);
        io.end_of_interrupt(0x50);
        assert_eq!(sent(&sink).len(), 4);
    }

    #[test]
    fn unmasking_an_asserted_level_pin_delivers_it() {
        let (sink, mut io) = setup();
        program(&mut io, 3, (1 << 16) | (1 << 15) | 0x44);
        io.set_irq(3, true);
        assert!(sent(&sink).is_empty());
        program(&mut io, 3, (1 << 15) | 0x44);
        assert_eq!(sent(&sink).len(), 1);
    }

    #[test]
    fn masked_level_pin_with_remote_irr_redelivers_only_after_unmask() {
        let (sink, mut io) = setup();
        program(&mut io, 3, (1 << 15) | 0x44);
        io.set_irq(3, true);
        program(&mut io, 3, (1 << 16) | (1 << 15) | 0x44);
        io.end_of_interrupt(0x44);
        assert_eq!(sent(&sink).len(), 1);
        program(&mut io, 3, (1 << 15) | 0x44);
        assert_eq!(sent(&sink).len(), 2);
    }

    #[test]
    fn coalesced_messages_are_counted() {
        let (sink, mut io) = setup();
        sink.coalesce
            .store(true, std::sync::atomic::Ordering::Relaxed);
        program(&mut io, 0, 0x30);
        io.set_irq(0, true);
        assert_eq!(io.stats(0).unwrap().undelivered, 1);
        assert_eq!(io.stats(0).unwrap().delivered, 0);
    }

    #[test]
    fn a_level_pin_retargeted_in_service_keeps_its_route_until_the_eoi() {
        let (sink, mut io) = setup();
        let last_route = |sink: &Sink, pin: u32| {
            let routes = sink.routes.lock().unwrap();
            *routes
                .last()
                .unwrap()
                .iter()
                .find(|r| r.pin == pin)
                .unwrap()
        };
        let dest = |m: MsiMessage| (m.address >> 12) & 0xff;
        program(&mut io, 13, (1 << 15) | 0x64); // level, vector 0x64, APIC 0
        io.set_irq(13, true);
        assert!(io.entry(13).unwrap().remote_irr());
        // The handler moves the pin to APIC 1 (high dword only) before its EOI.
        write_reg(&mut io, IOREDTBL_BASE + 2 * 13 + 1, 1 << 24);
        assert_eq!(io.entry(13).unwrap().destination(), 1);
        assert_eq!(dest(last_route(&sink, 13).msi), 0, "route of the delivery");
        let published = sink.routes.lock().unwrap().len();
        // The line is still asserted at the EOI: the new route is published, then the pin
        // is delivered along it.
        io.end_of_interrupt(0x64);
        assert_eq!(sink.routes.lock().unwrap().len(), published + 1);
        assert_eq!(dest(last_route(&sink, 13).msi), 1);
        let sent = sent(&sink);
        assert_eq!(sent.len(), 2);
        assert_eq!(dest(sent[1]), 1);
        assert!(io.entry(13).unwrap().remote_irr());
        // Not retargeted again: the next EOI publishes nothing.
        io.set_irq(13, false);
        io.end_of_interrupt(0x64);
        assert_eq!(sink.routes.lock().unwrap().len(), published + 1);
    }

    #[test]
    fn programming_an_entry_reports_routes() {
        let (sink, mut io) = setup();
        program(&mut io, 2, (1 << 15) | 0x30);
        let routes = sink.routes.lock().unwrap();
        let last = routes.last().unwrap();
        let r = last.iter().find(|r| r.pin == 2).unwrap();
        assert!(r.level && !r.masked);
        assert_eq!(r.msi.data & 0xff, 0x30);
    }

    #[test]
    fn out_of_range_pin_is_ignored() {
        let (sink, mut io) = setup();
        io.set_irq(24, true);
        io.set_irq(usize::MAX, true);
        assert!(sent(&sink).is_empty());
    }

    #[test]
    fn arbitration_id_loads_from_the_id_and_is_read_only() {
        let (_, mut io) = setup();
        write_reg(&mut io, IOAPICID, 0x0f00_0000);
        assert_eq!(read_reg(&mut io, IOAPICARB), 0x0f00_0000, "set by ID");
        write_reg(&mut io, IOAPICARB, 0);
        assert_eq!(read_reg(&mut io, IOAPICARB), 0x0f00_0000, "read only");
        write_reg(&mut io, IOAPICID, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, IOAPICARB), 0x0f00_0000, "only bits 27:24");
        write_reg(&mut io, IOAPICID, 0x0300_0000);
        assert_eq!(read_reg(&mut io, IOAPICARB), 0x0300_0000);
    }
}
