//! The PIT's time base: its 1.193182 MHz input clock, the host [`Clock`] a counter's value is
//! computed from, the host [`PitTimer`] that produces channel 0's edges, and conversions
//! between nanoseconds and input clocks.

/// Input clock of every counter (Hz).
pub const PIT_HZ: u64 = 1_193_182;

/// Monotonic time source (nanoseconds from any fixed origin).
pub trait Clock: Send {
    /// Now.
    fn now_ns(&self) -> u64;
}

/// The host timer that produces channel 0's interrupts.
pub trait PitTimer: Send {
    /// Fire first after `first_ns`, then every `period_ns` (0: once).
    fn arm(&mut self, first_ns: u64, period_ns: u64);
    /// Stop firing.
    fn disarm(&mut self);
}

pub(super) fn ns_to_clocks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / 1_000_000_000) as u64
}

pub(super) fn clocks_to_ns(clocks: u64) -> u64 {
    (u128::from(clocks) * 1_000_000_000).div_ceil(u128::from(PIT_HZ)) as u64
}
