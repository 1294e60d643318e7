//! Driver for the 82093AA IO-APIC (userspace model with a split irqchip, KVM's with the kernel
//! irqchip — both answer the same registers). Datasheet §3.
//!
//! Redirection entry: vector (7:0), delivery mode (10:8), destination mode (11), polarity
//! (13), trigger mode (15), mask (16), destination (63:56).

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const IOAPICVER: u32 = 0x01;
const IOREDTBL: u32 = 0x10;
const TRIGGER_LEVEL: u32 = 1 << 15;
const MASKED: u32 = 1 << 16;
const DEST_LOGICAL: u32 = 1 << 11;

/// Where and how a pin is delivered.
#[derive(Clone, Copy)]
pub struct Route {
    /// Vector.
    pub vector: u8,
    /// Destination APIC ID (physical) or logical set.
    pub dest: u8,
    /// Logical destination mode.
    pub logical: bool,
    /// Level-triggered (else edge).
    pub level: bool,
    /// Masked.
    pub masked: bool,
}

/// The IO-APIC at `base`.
pub struct IoApic {
    base: u64,
}

impl IoApic {
    /// The IO-APIC whose window the boot info names.
    pub const fn new(base: u64) -> Self {
        IoApic { base }
    }

    fn write(&self, index: u32, value: u32) {
        // SAFETY: `base` is the identity-mapped, uncached IO-APIC window; IOREGSEL and IOWIN
        // are 32-bit registers. Interrupt handlers never touch the IO-APIC, so the
        // select-then-access pair is not interleaved.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, index);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, value);
        }
    }

    fn read(&self, index: u32) -> u32 {
        // SAFETY: as in `write`.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, index);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    /// Number of redirection entries (IOAPICVER bits 23:16, plus one).
    pub fn pins(&self) -> u32 {
        ((self.read(IOAPICVER) >> 16) & 0xff) + 1
    }

    /// Programs `pin` (fixed delivery). The high half goes first so the entry is never
    /// unmasked with a stale destination.
    pub fn route(&self, pin: u8, r: Route) {
        let mut lo = u32::from(r.vector);
        if r.logical {
            lo |= DEST_LOGICAL;
        }
        if r.level {
            lo |= TRIGGER_LEVEL;
        }
        if r.masked {
            lo |= MASKED;
        }
        self.write(IOREDTBL + 2 * u32::from(pin), MASKED);
        self.write(IOREDTBL + 2 * u32::from(pin) + 1, u32::from(r.dest) << 24);
        self.write(IOREDTBL + 2 * u32::from(pin), lo);
    }

    /// Masks `pin`.
    pub fn mask(&self, pin: u8) {
        let lo = self.read(IOREDTBL + 2 * u32::from(pin));
        self.write(IOREDTBL + 2 * u32::from(pin), lo | MASKED);
    }
}
