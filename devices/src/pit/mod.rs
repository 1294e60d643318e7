//! Intel 8254 programmable interval timer at ports 0x40–0x43.
//!
//! Counters are not stepped one clock at a time: each channel remembers when its count was
//! loaded and computes its count and OUT from the elapsed time of a [`Clock`] at the PIT's
//! 1.193182 MHz input. Channel 0's OUT drives an interrupt line (IO-APIC pin 2 in irqlab, as
//! ISA IRQ 0 is wired on boards with an IO-APIC). Rising edges of OUT are produced by a host
//! timer the PIT arms through [`PitTimer`]; when the host was too slow and one timer
//! expiration stands for several periods, the PIT sends **one** edge and counts the rest in
//! [`Pit::missed_ticks`] (the chip itself could not do better: one edge is all IRR holds).
//!
//! Ports (8254 datasheet, "Operation"):
//!
//! | offset | register |
//! |--------|----------|
//! | 0      | counter 0 |
//! | 1      | counter 1 |
//! | 2      | counter 2 |
//! | 3      | control word (write only) |
//!
//! Control word:
//!
//! | bits | field |
//! |------|-------|
//! | 7:6  | SC: counter select (3 = read-back command) |
//! | 5:4  | RW: 0 latch, 1 LSB, 2 MSB, 3 LSB then MSB |
//! | 3:1  | M: mode 0–5 (6 and 7 alias 2 and 3) |
//! | 0    | BCD |
//!
//! Read-back command (SC = 3): bit 5 = 0 latches the counts, bit 4 = 0 latches the status,
//! bits 3:1 select counters 2, 1, 0. The status byte is OUT (7), NULL COUNT (6), RW (5:4),
//! M (3:1), BCD (0).
//!
//! Gates: counters 0 and 1 have their gate tied high; counter 2's gate is port 0x61 bit 0 on a
//! PC, which irqlab does not map — [`Pit::set_gate`] drives it (tests use it for modes 1 and 5).
//!
//! # Example
//! ```
//! use irqlab_devices::pit::{Clock, Pit, PitTimer};
//! use irqlab_devices::{BusDevice, NoIrq};
//! use std::sync::Arc;
//!
//! struct Frozen;
//! impl Clock for Frozen { fn now_ns(&self) -> u64 { 0 } }
//! struct NoTimer;
//! impl PitTimer for NoTimer { fn arm(&mut self, _: u64, _: u64) {} fn disarm(&mut self) {} }
//!
//! let mut pit = Pit::new(Box::new(Frozen), Box::new(NoTimer), Arc::new(NoIrq));
//! pit.write(3, &[0x34]); // counter 0, LSB then MSB, mode 2
//! pit.write(0, &[0x9c]);
//! pit.write(0, &[0x2e]); // 0x2e9c = 11932: 100 Hz
//! let mut lo = [0u8];
//! let mut hi = [0u8];
//! pit.read(0, &mut lo);
//! pit.read(0, &mut hi);
//! assert_eq!(u16::from_le_bytes([lo[0], hi[0]]), 11932);
//! ```
//!
//! Modules: `clock` (the input clock, the host clock and timer), `control` (the control word
//! and status byte), `counter` (one channel's state machine).

mod clock;
mod control;
mod counter;

pub use clock::{Clock, PitTimer, PIT_HZ};
pub use control::{Access, Mode};

use crate::{BusDevice, IrqLine};
use clock::clocks_to_ns;
use control::{
    BCD_BIT, MODE_MASK, MODE_SHIFT, READ_BACK_NO_COUNT, READ_BACK_NO_STATUS, RW_MASK, RW_SHIFT,
    SC_READ_BACK, SC_SHIFT,
};
use counter::Channel;
use std::sync::Arc;

/// Ports 0x40–0x43.
pub const WINDOW: u64 = 4;
/// Offset of the control-word register.
pub const CONTROL_OFFSET: u64 = 3;

/// Counters of channel 0's interrupt output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickStats {
    /// Edges sent to the interrupt line.
    pub ticks: u64,
    /// Periods that passed while the host timer was late, folded into the next edge.
    pub missed: u64,
}

/// The PIT.
pub struct Pit {
    channels: [Channel; 3],
    clock: Box<dyn Clock>,
    timer: Box<dyn PitTimer>,
    irq: Arc<dyn IrqLine>,
    stats: TickStats,
    /// Channel 0 has a pending one-shot edge or is periodic.
    armed: bool,
}

impl Pit {
    /// A PIT in its power-on state (no counts loaded).
    pub fn new(clock: Box<dyn Clock>, timer: Box<dyn PitTimer>, irq: Arc<dyn IrqLine>) -> Self {
        Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            clock,
            timer,
            irq,
            stats: TickStats::default(),
            armed: false,
        }
    }

    /// Channel 0 interrupt counters.
    pub fn tick_stats(&self) -> TickStats {
        self.stats
    }

    /// Periods folded into a later edge because the host timer fired late.
    pub fn missed_ticks(&self) -> u64 {
        self.stats.missed
    }

    /// Channel `ch`'s OUT pin now.
    pub fn out(&self, ch: usize) -> Option<bool> {
        let now = self.clock.now_ns();
        self.channels.get(ch).map(|c| c.out(now))
    }

    /// The host timer fired `expirations` times since it was last read.
    pub fn timer_expired(&mut self, expirations: u64) {
        if !self.armed || expirations == 0 {
            return;
        }
        if !self.channels[0].mode.periodic() {
            self.armed = false;
        }
        self.stats.ticks += 1;
        self.stats.missed = self.stats.missed.saturating_add(expirations - 1);
        self.irq.set_level(true);
        self.irq.set_level(false);
    }

    /// Drives counter `ch`'s gate (only counter 2's is not tied high on a PC).
    pub fn set_gate(&mut self, ch: usize, level: bool) {
        let now = self.clock.now_ns();
        let Some(c) = self.channels.get_mut(ch) else {
            return;
        };
        let rising = level && !c.gate;
        c.gate = level;
        match c.mode {
            Mode::OneShot | Mode::HardwareStrobe | Mode::RateGenerator | Mode::SquareWave
                if rising =>
            {
                c.start_ns = Some(now);
                c.paused_at = None;
                c.null_count = false;
            }
            Mode::InterruptOnTerminalCount | Mode::SoftwareStrobe => {
                if let (false, Some(d)) = (level, c.elapsed(now)) {
                    c.paused_at = Some(d);
                } else if let (true, Some(d)) = (level, c.paused_at.take()) {
                    c.start_ns = Some(now.saturating_sub(clocks_to_ns(d)));
                }
            }
            Mode::RateGenerator | Mode::SquareWave if !level => {
                c.paused_at = c.elapsed(now);
            }
            _ => {}
        }
        if ch == 0 {
            self.rearm(now);
        }
    }

    /// Arms the host timer for channel 0's next rising edges.
    fn rearm(&mut self, now: u64) {
        let c = &self.channels[0];
        match (c.start_ns, c.paused_at, c.edges()) {
            (Some(start), None, Some((first, period))) => {
                let due = start.saturating_add(clocks_to_ns(first));
                self.timer
                    .arm(due.saturating_sub(now).max(1), clocks_to_ns(period));
                self.armed = true;
            }
            _ => {
                self.timer.disarm();
                self.armed = false;
            }
        }
    }

    fn control_word(&mut self, value: u8) {
        let now = self.clock.now_ns();
        let select = value >> SC_SHIFT;
        if select == SC_READ_BACK {
            for ch in 0..3 {
                if value & (1 << (ch + 1)) == 0 {
                    continue;
                }
                let c = &mut self.channels[ch];
                if value & READ_BACK_NO_COUNT == 0 {
                    c.latch_count(now);
                }
                if value & READ_BACK_NO_STATUS == 0 && c.status.is_none() {
                    c.status = Some(c.status_byte(now));
                }
            }
            return;
        }
        let ch = usize::from(select);
        let c = &mut self.channels[ch];
        let Ok(access) = Access::try_from((value >> RW_SHIFT) & RW_MASK) else {
            c.latch_count(now);
            return;
        };
        let Ok(mode) = Mode::try_from((value >> MODE_SHIFT) & MODE_MASK) else {
            return;
        };
        c.mode = mode;
        c.access = access;
        c.bcd = value & BCD_BIT != 0;
        c.start_ns = None;
        c.paused_at = None;
        c.null_count = true;
        c.pending_lsb = None;
        c.read_msb_next = false;
        c.latch = None;
        c.status = None;
        if ch == 0 {
            self.rearm(now);
        }
    }
}

impl BusDevice for Pit {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        // Each byte of a wider access is a separate 8-bit read of the same port.
        if let Some(c) = self.channels.get_mut(offset as usize) {
            for b in data.iter_mut() {
                *b = c.read_byte(now);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        for &b in data {
            match offset {
                0..=2 if self.channels[offset as usize].write_byte(b, now) && offset == 0 => {
                    self.rearm(now);
                }
                0..=2 => {}
                CONTROL_OFFSET => self.control_word(b),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::{STATUS_NULL_COUNT, STATUS_OUT};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeClock(Arc<AtomicU64>);
    impl Clock for FakeClock {
        fn now_ns(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[derive(Default, Clone)]
    struct FakeTimer(Arc<Mutex<Option<(u64, u64)>>>);
    impl PitTimer for FakeTimer {
        fn arm(&mut self, first: u64, period: u64) {
            *self.0.lock().unwrap() = Some((first, period));
        }
        fn disarm(&mut self) {
            *self.0.lock().unwrap() = None;
        }
    }

    #[derive(Default)]
    struct Edges(Mutex<(bool, u64)>);
    impl IrqLine for Edges {
        fn set_level(&self, level: bool) {
            let mut s = self.0.lock().unwrap();
            if level && !s.0 {
                s.1 += 1;
            }
            s.0 = level;
        }
    }

    struct Rig {
        pit: Pit,
        now: Arc<AtomicU64>,
        timer: FakeTimer,
        irq: Arc<Edges>,
    }

    impl Rig {
        fn new() -> Rig {
            let now = Arc::new(AtomicU64::new(1_000_000));
            let timer = FakeTimer::default();
            let irq = Arc::new(Edges::default());
            let pit = Pit::new(
                Box::new(FakeClock(now.clone())),
                Box::new(timer.clone()),
                irq.clone(),
            );
            Rig {
                pit,
                now,
                timer,
                irq,
            }
        }
        /// Advances the clock by `clocks` PIT input clocks.
        fn advance(&self, clocks: u64) {
            self.now.fetch_add(clocks_to_ns(clocks), Ordering::SeqCst);
        }
        fn cw(&mut self, v: u8) {
            self.pit.write(CONTROL_OFFSET, &[v]);
        }
        fn load(&mut self, ch: u64, count: u16) {
            let [lo, hi] = count.to_le_bytes();
            self.pit.write(ch, &[lo]);
            self.pit.write(ch, &[hi]);
        }
        fn read16(&mut self, ch: u64) -> u16 {
            let mut lo = [0u8];
            let mut hi = [0u8];
            self.pit.read(ch, &mut lo);
            self.pit.read(ch, &mut hi);
            u16::from_le_bytes([lo[0], hi[0]])
        }
        fn read8(&mut self, ch: u64) -> u8 {
            let mut b = [0u8];
            self.pit.read(ch, &mut b);
            b[0]
        }
        fn armed(&self) -> Option<(u64, u64)> {
            *self.timer.0.lock().unwrap()
        }
        fn edges(&self) -> u64 {
            self.irq.0.lock().unwrap().1
        }
    }

    #[test]
    fn mode2_counts_down_and_reloads() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 1000);
        assert_eq!(r.read16(0), 1000);
        r.advance(300);
        assert_eq!(r.read16(0), 700);
        r.advance(700);
        assert_eq!(r.read16(0), 1000);
        r.advance(999);
        assert_eq!(r.read16(0), 1);
        assert_eq!(r.pit.out(0), Some(false));
        r.advance(1);
        assert_eq!(r.pit.out(0), Some(true));
    }

    #[test]
    fn mode2_arms_a_periodic_host_timer() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 11932);
        let (first, period) = r.armed().unwrap();
        assert_eq!(period, clocks_to_ns(11932));
        assert!((9_999_000..=10_001_000).contains(&period), "{period}");
        assert_eq!(first, period);
        r.pit.timer_expired(1);
        r.pit.timer_expired(1);
        assert_eq!(r.edges(), 2);
        assert_eq!(r.pit.tick_stats().ticks, 2);
    }

    #[test]
    fn late_host_timer_sends_one_edge_and_counts_missed_periods() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 100);
        r.pit.timer_expired(4);
        assert_eq!(r.edges(), 1);
        assert_eq!(r.pit.missed_ticks(), 3);
    }

    #[test]
    fn mode3_square_wave_counts_by_two_and_halves_the_output() {
        let mut r = Rig::new();
        r.cw(0x36);
        r.load(0, 10);
        assert_eq!(r.pit.out(0), Some(true));
        r.advance(1);
        assert_eq!(r.read16(0), 8);
        r.advance(4);
        assert_eq!(r.pit.out(0), Some(false));
        assert_eq!(r.read16(0), 10);
        r.advance(5);
        assert_eq!(r.pit.out(0), Some(true));
        assert_eq!(r.armed().unwrap().1, clocks_to_ns(10));
    }

    #[test]
    fn mode3_odd_count_output_is_high_one_clock_longer() {
        let mut r = Rig::new();
        r.cw(0x36);
        r.load(0, 5);
        r.advance(2);
        assert_eq!(r.pit.out(0), Some(true));
        r.advance(1);
        assert_eq!(r.pit.out(0), Some(false));
    }

    #[test]
    fn mode0_output_low_until_terminal_count_then_one_shot() {
        let mut r = Rig::new();
        r.cw(0x30);
        assert_eq!(r.pit.out(0), Some(false));
        r.load(0, 50);
        assert_eq!(r.armed(), Some((clocks_to_ns(50), 0)));
        r.advance(49);
        assert_eq!(r.pit.out(0), Some(false));
        r.advance(1);
        assert_eq!(r.pit.out(0), Some(true));
        r.pit.timer_expired(1);
        r.pit.timer_expired(1);
        assert_eq!(r.edges(), 1, "a one-shot fires once");
        // The counter wraps and keeps counting.
        r.advance(1);
        assert_eq!(r.read16(0), 0xffff);
    }

    #[test]
    fn mode4_strobes_one_clock_after_terminal_count() {
        let mut r = Rig::new();
        r.cw(0x38);
        r.load(0, 20);
        assert_eq!(r.armed(), Some((clocks_to_ns(21), 0)));
        r.advance(19);
        assert_eq!(r.pit.out(0), Some(true));
        r.advance(1);
        assert_eq!(r.pit.out(0), Some(false));
        r.advance(1);
        assert_eq!(r.pit.out(0), Some(true));
    }

    #[test]
    fn mode1_waits_for_a_gate_trigger() {
        let mut r = Rig::new();
        r.cw(0x80 | 0x32);
        r.load(2, 30);
        assert_eq!(r.pit.out(2), Some(true));
        r.advance(100);
        assert_eq!(r.read16(2), 30, "not counting before the trigger");
        r.pit.set_gate(2, true);
        assert_eq!(r.pit.out(2), Some(false));
        r.advance(30);
        assert_eq!(r.pit.out(2), Some(true));
        // Retrigger restarts the one-shot.
        r.pit.set_gate(2, false);
        r.pit.set_gate(2, true);
        assert_eq!(r.pit.out(2), Some(false));
        assert_eq!(r.read16(2), 30);
    }

    #[test]
    fn mode5_strobes_after_gate_trigger() {
        let mut r = Rig::new();
        r.cw(0x80 | 0x3a);
        r.load(2, 10);
        r.pit.set_gate(2, true);
        r.advance(10);
        assert_eq!(r.pit.out(2), Some(false));
        r.advance(1);
        assert_eq!(r.pit.out(2), Some(true));
    }

    #[test]
    fn gate_low_pauses_mode0() {
        let mut r = Rig::new();
        r.pit.set_gate(2, true);
        r.cw(0x80 | 0x30);
        r.load(2, 100);
        r.advance(40);
        r.pit.set_gate(2, false);
        r.advance(1000);
        assert_eq!(r.read16(2), 60);
        r.pit.set_gate(2, true);
        r.advance(10);
        assert_eq!(r.read16(2), 50);
    }

    #[test]
    fn lsb_only_and_msb_only_access() {
        let mut r = Rig::new();
        r.cw(0x10); // counter 0, LSB only, mode 0
        r.pit.write(0, &[0x80]);
        assert_eq!(r.read8(0), 0x80);
        r.cw(0x20); // MSB only
        r.pit.write(0, &[0x12]);
        assert_eq!(r.read8(0), 0x12);
        r.advance(1);
        assert_eq!(r.read8(0), 0x11, "0x1200 - 1 = 0x11ff: MSB 0x11");
    }

    #[test]
    fn counter_latch_freezes_the_value_until_read() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 1000);
        r.advance(100);
        r.cw(0x00); // latch counter 0
        r.advance(200);
        assert_eq!(r.read16(0), 900);
        assert_eq!(r.read16(0), 700, "the latch is released after both bytes");
    }

    #[test]
    fn second_latch_before_read_is_ignored() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 1000);
        r.cw(0x00);
        r.advance(100);
        r.cw(0x00);
        assert_eq!(r.read16(0), 1000);
    }

    #[test]
    fn read_back_latches_status_then_count() {
        let mut r = Rig::new();
        r.cw(0xb6); // counter 2, LSB/MSB, mode 3, binary
        r.pit.set_gate(2, true);
        r.load(2, 400);
        r.advance(50);
        r.cw(0xc0 | 0x08); // read-back: count + status of counter 2
        let status = r.read8(2);
        assert_eq!(status, STATUS_OUT | (3 << 4) | (3 << 1));
        assert_eq!(r.read16(2), 300);
    }

    #[test]
    fn read_back_status_shows_null_count_before_load() {
        let mut r = Rig::new();
        r.cw(0x30);
        r.cw(0xc0 | 0x20 | 0x02); // status only, counter 0
        assert_eq!(r.read8(0), STATUS_NULL_COUNT | (3 << 4));
    }

    #[test]
    fn read_back_of_several_counters() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 500);
        r.cw(0x74);
        r.load(1, 600);
        r.advance(10);
        r.cw(0xc0 | 0x10 | 0x06); // count only, counters 0 and 1
        r.advance(10);
        assert_eq!(r.read16(0), 490);
        assert_eq!(r.read16(1), 590);
    }

    #[test]
    fn bcd_counts_in_decimal_digits() {
        let mut r = Rig::new();
        r.cw(0x35); // counter 0, LSB/MSB, mode 2, BCD
        r.load(0, 0x1000); // 1000 decimal
        r.advance(1);
        assert_eq!(r.read16(0), 0x0999);
        assert_eq!(r.armed().unwrap().1, clocks_to_ns(1000));
    }

    #[test]
    fn zero_count_means_65536() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 0);
        assert_eq!(r.armed().unwrap().1, clocks_to_ns(65536));
        r.advance(1);
        assert_eq!(r.read16(0), 0xffff);
    }

    #[test]
    fn new_control_word_stops_channel0_interrupts() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.load(0, 100);
        r.cw(0x30);
        assert_eq!(r.armed(), None);
        r.pit.timer_expired(1);
        assert_eq!(r.edges(), 0);
    }

    #[test]
    fn channel2_interrupts_do_not_reach_the_line() {
        let mut r = Rig::new();
        r.cw(0xb4);
        r.pit.set_gate(2, true);
        r.load(2, 100);
        assert_eq!(r.armed(), None);
    }

    #[test]
    fn wide_accesses_are_byte_sequences() {
        let mut r = Rig::new();
        r.cw(0x34);
        r.pit.write(0, &[0x34, 0x12]);
        let mut b = [0u8; 2];
        r.pit.read(0, &mut b);
        assert_eq!(u16::from_le_bytes(b), 0x1234);
    }

    #[test]
    fn count_tracks_real_time_at_1_193182_mhz() {
        let mut r = Rig::new();
        r.cw(0x30);
        r.load(0, 0xffff);
        r.now.fetch_add(10_000_000, Ordering::SeqCst); // 10 ms = 11931.82 clocks
        assert_eq!(r.read16(0), 0xffff - 11931);
    }
}
