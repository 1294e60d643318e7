//! Driver for the 8254 PIT channel 0 (ISA IRQ 0, IO-APIC pin 2): periodic interrupts in mode 2
//! (rate generator), and the counter latch for reading the count.

use crate::port;

/// Input clock (Hz).
pub const PIT_HZ: u64 = 1_193_182;
const CONTROL: u16 = 3;
/// Counter 0, LSB then MSB, mode 2, binary.
const CW_CH0_MODE2: u8 = 0x34;
/// Counter 0, mode 0 (stops periodic interrupts: one more edge at most).
const CW_CH0_MODE0: u8 = 0x30;
/// Counter latch command for counter 0.
const CW_CH0_LATCH: u8 = 0x00;

/// The divisor for `hz` (clamped to 2..=65535), and the rate it really gives (milli-Hz).
pub fn divisor_for(hz: u64) -> (u16, u64) {
    let d = (PIT_HZ + hz / 2) / hz.max(1);
    let d = d.clamp(2, 65535);
    (d as u16, PIT_HZ * 1000 / d)
}

/// Starts channel 0 in mode 2 with `divisor`.
pub fn start_periodic(base: u16, divisor: u16) {
    let [lo, hi] = divisor.to_le_bytes();
    // SAFETY: the PIT belongs to this kernel; control word then LSB, MSB (datasheet order).
    unsafe {
        port::outb(base + CONTROL, CW_CH0_MODE2);
        port::outb(base, lo);
        port::outb(base, hi);
    }
}

/// Stops periodic interrupts (reprograms channel 0 to mode 0 without a count).
pub fn stop(base: u16) {
    // SAFETY: as in `start_periodic`.
    unsafe { port::outb(base + CONTROL, CW_CH0_MODE0) };
}

/// Latches and reads channel 0's count.
pub fn read_count(base: u16) -> u16 {
    // SAFETY: as in `start_periodic`; the latch makes the two reads consistent.
    unsafe {
        port::outb(base + CONTROL, CW_CH0_LATCH);
        let lo = port::inb(base);
        let hi = port::inb(base);
        u16::from_le_bytes([lo, hi])
    }
}

/// Measures the TSC frequency (kHz) against channel 0 counting in mode 2 over ~2 ms, for
/// loaders that do not report it (PVH). Leaves channel 0 stopped.
pub fn calibrate_tsc_khz(base: u16) -> u64 {
    const CLOCKS: u64 = 2_386; // 2 ms at 1.193182 MHz
    start_periodic(base, 0xffff);
    let mut prev = read_count(base);
    let t0 = crate::cpu::rdtsc();
    let mut elapsed = 0u64;
    let mut spins = 0u32;
    while elapsed < CLOCKS && spins < 1_000_000 {
        let now = read_count(base);
        elapsed += u64::from(prev.wrapping_sub(now)) % 0xffff;
        prev = now;
        spins += 1;
    }
    let t1 = crate::cpu::rdtsc();
    stop(base);
    if elapsed == 0 {
        return 0;
    }
    (t1 - t0) * PIT_HZ / elapsed / 1000
}
