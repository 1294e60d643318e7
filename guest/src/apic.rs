//! The local APIC (xAPIC MMIO at 0xfee00000; Intel SDM vol. 3 §11). Only what the self-test
//! needs for now: software enable, EOI, and a self-IPI, which delivers a real external
//! interrupt through the in-kernel LAPIC (no `int n` needed, so it works on every host).

const SVR: u64 = 0xf0;
const EOI: u64 = 0xb0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const SVR_ENABLE: u32 = 1 << 8;
/// Spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// ICR destination shorthand "self" (bits 19:18 = 01).
const ICR_SELF: u32 = 1 << 18;

fn reg(base: u64, offset: u64) -> *mut u32 {
    (base + offset) as *mut u32
}

/// The LAPIC of this CPU.
pub struct Lapic {
    base: u64,
}

impl Lapic {
    /// The LAPIC at `base` (from the boot info).
    pub const fn new(base: u64) -> Self {
        Lapic { base }
    }

    fn write(&self, offset: u64, value: u32) {
        // SAFETY: `base` is the identity-mapped, uncached LAPIC window; registers are 32-bit
        // and 16-byte aligned.
        unsafe { core::ptr::write_volatile(reg(self.base, offset), value) }
    }

    fn read(&self, offset: u64) -> u32 {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile(reg(self.base, offset)) }
    }

    /// Software-enables the LAPIC with the spurious vector.
    pub fn enable(&self) {
        let svr = self.read(SVR);
        self.write(SVR, svr | SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    }

    /// Signals end of interrupt.
    pub fn eoi(&self) {
        self.write(EOI, 0);
    }

    /// Sends fixed-delivery `vector` to this CPU.
    pub fn self_ipi(&self, vector: u8) {
        self.write(ICR_HIGH, 0);
        self.write(ICR_LOW, ICR_SELF | u32::from(vector));
    }
}

/// The boot CPU's LAPIC at the architectural default address.
pub static LAPIC: Lapic = Lapic::new(irqlab_abi::layout::LAPIC_BASE);
