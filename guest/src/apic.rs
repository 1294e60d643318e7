//! The local APIC (xAPIC MMIO at 0xfee00000; Intel SDM vol. 3 §11): software enable, EOI,
//! IPIs (a self-IPI delivers a real external interrupt through the in-kernel LAPIC, no `int n`
//! needed) and the LAPIC timer in one-shot, periodic and TSC-deadline modes (§11.5.4).

const ID: u64 = 0x20;
const LDR: u64 = 0xd0;
const DFR: u64 = 0xe0;
const SVR: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;
/// Divide configuration 0b1011: divide by 1.
const DIVIDE_BY_1: u32 = 0b1011;
const LVT_MASKED: u32 = 1 << 16;
/// IA32_TSC_DEADLINE.
const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// ICR delivery status (send pending).
const ICR_PENDING: u32 = 1 << 12;
const EOI: u64 = 0xb0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const SVR_ENABLE: u32 = 1 << 8;
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
        self.write(SVR, svr | SVR_ENABLE | u32::from(crate::vectors::SPURIOUS));
    }

    /// Signals end of interrupt.
    pub fn eoi(&self) {
        self.write(EOI, 0);
    }

    /// Flat logical destination model (DFR = all ones) with logical ID `1 << cpu` (LDR bits
    /// 31:24), so logical destinations are CPU bit masks (SDM §11.6.2.2). CPUs 0–7.
    pub fn set_logical_id(&self, cpu: usize) {
        self.write(DFR, u32::MAX);
        self.write(LDR, (1u32 << (cpu & 7)) << 24);
    }

    /// This CPU's APIC ID.
    pub fn id(&self) -> u8 {
        (self.read(ID) >> 24) as u8
    }

    /// Sends an IPI: `icr_low` (vector, delivery mode, level, trigger) to APIC `dest`.
    pub fn send_ipi(&self, dest: u8, icr_low: u32) {
        self.write(ICR_HIGH, u32::from(dest) << 24);
        self.write(ICR_LOW, icr_low);
        while self.read(ICR_LOW) & ICR_PENDING != 0 {
            core::hint::spin_loop();
        }
    }

    /// Starts the LAPIC timer: `mode` with `vector`, counting `initial` bus clocks (divide
    /// by 1). TSC-deadline mode ignores `initial`; arm it with [`Lapic::set_tsc_deadline`].
    pub fn start_timer(&self, mode: TimerMode, vector: u8, initial: u32) {
        self.write(TIMER_DIVIDE, DIVIDE_BY_1);
        self.write(LVT_TIMER, mode.bits() | u32::from(vector));
        if mode != TimerMode::TscDeadline {
            self.write(TIMER_INITIAL, initial);
        }
    }

    /// Masks the timer and stops its count.
    pub fn stop_timer(&self) {
        self.write(LVT_TIMER, LVT_MASKED);
        self.write(TIMER_INITIAL, 0);
        // SAFETY: writing 0 to IA32_TSC_DEADLINE disarms it (harmless in other modes).
        unsafe { crate::cpu::wrmsr(MSR_TSC_DEADLINE, 0) };
    }

    /// The timer's current count.
    pub fn timer_current(&self) -> u32 {
        self.read(TIMER_CURRENT)
    }

    /// Arms the TSC-deadline timer to fire when the TSC reaches `tsc`.
    pub fn set_tsc_deadline(&self, tsc: u64) {
        // SAFETY: IA32_TSC_DEADLINE exists when CPUID.01H:ECX[24] is set (the caller checks).
        unsafe { crate::cpu::wrmsr(MSR_TSC_DEADLINE, tsc) };
    }

    /// Sends fixed-delivery `vector` to this CPU.
    pub fn self_ipi(&self, vector: u8) {
        self.write(ICR_HIGH, 0);
        self.write(ICR_LOW, ICR_SELF | u32::from(vector));
    }
}

/// The boot CPU's LAPIC at the architectural default address.
pub static LAPIC: Lapic = Lapic::new(irqlab_abi::layout::LAPIC_BASE);

/// LAPIC timer mode (LVT timer bits 18:17).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// Counts down once.
    OneShot,
    /// Reloads the initial count.
    Periodic,
    /// Fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline,
}

impl TimerMode {
    fn bits(self) -> u32 {
        match self {
            TimerMode::OneShot => 0,
            TimerMode::Periodic => 1 << 17,
            TimerMode::TscDeadline => 2 << 17,
        }
    }
}

/// Whether the CPU has the TSC-deadline timer (CPUID.01H:ECX bit 24).
pub fn has_tsc_deadline() -> bool {
    let r = core::arch::x86_64::__cpuid(1);
    r.ecx & (1 << 24) != 0
}
