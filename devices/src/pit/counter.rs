//! One counter (channel) of the 8254: its programmed mode and count, how its count and OUT
//! follow from the time elapsed since the count was loaded, and reading and writing its
//! count byte by byte (latches, read-back status, LSB/MSB order, BCD).

use super::clock::ns_to_clocks;
use super::control::{Access, Mode, BCD_BIT, MODE_SHIFT, RW_SHIFT, STATUS_NULL_COUNT, STATUS_OUT};

/// Largest count: a written 0 means 2^16 (binary) or 10^4 (BCD).
const MAX_BINARY: u32 = 0x1_0000;
const MAX_BCD: u32 = 10_000;

/// A latched 16-bit count being read out byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Latch {
    Both(u16),
    Msb(u16),
    Lsb(u16),
}

/// One counter's state.
#[derive(Debug, Clone)]
pub(super) struct Channel {
    pub(super) mode: Mode,
    pub(super) access: Access,
    pub(super) bcd: bool,
    /// Programmed count in binary (1..=65536).
    reload: u32,
    /// When counting started (`None`: no count loaded yet, or waiting for a gate trigger).
    pub(super) start_ns: Option<u64>,
    /// Clocks counted before the gate went low (modes 0 and 4 resume from there).
    pub(super) paused_at: Option<u64>,
    pub(super) gate: bool,
    pub(super) null_count: bool,
    /// The LSB of an LSB-then-MSB write waiting for its MSB.
    pub(super) pending_lsb: Option<u8>,
    /// The next unlatched LSB-then-MSB read returns the MSB.
    pub(super) read_msb_next: bool,
    pub(super) latch: Option<Latch>,
    pub(super) status: Option<u8>,
}

impl Channel {
    pub(super) fn new(gate: bool) -> Self {
        Channel {
            mode: Mode::InterruptOnTerminalCount,
            access: Access::LsbMsb,
            bcd: false,
            reload: MAX_BINARY,
            start_ns: None,
            paused_at: None,
            gate,
            null_count: true,
            pending_lsb: None,
            read_msb_next: false,
            latch: None,
            status: None,
        }
    }

    /// Clocks counted since the count was loaded.
    pub(super) fn elapsed(&self, now: u64) -> Option<u64> {
        if let Some(paused) = self.paused_at {
            return Some(paused);
        }
        self.start_ns.map(|s| ns_to_clocks(now.saturating_sub(s)))
    }

    /// The counting element's value (binary, 0..=65535 as read).
    fn count(&self, now: u64) -> u16 {
        let n = u64::from(self.reload);
        let Some(d) = self.elapsed(now) else {
            return self.reload as u16;
        };
        let modulus = if self.bcd {
            u64::from(MAX_BCD)
        } else {
            u64::from(MAX_BINARY)
        };
        let value = match self.mode {
            Mode::RateGenerator => n - d % n,
            Mode::SquareWave => n - (2 * d) % n,
            // The counter wraps and keeps counting after terminal count.
            _ => (n + modulus - d % modulus) % modulus,
        };
        value as u16
    }

    pub(super) fn out(&self, now: u64) -> bool {
        let n = u64::from(self.reload);
        match (self.mode, self.elapsed(now)) {
            (Mode::InterruptOnTerminalCount, None) => false,
            (_, None) => true,
            (Mode::InterruptOnTerminalCount | Mode::OneShot, Some(d)) => d >= n,
            (Mode::RateGenerator, Some(d)) => d % n != n - 1,
            (Mode::SquareWave, Some(d)) => d % n < n.div_ceil(2),
            (Mode::SoftwareStrobe | Mode::HardwareStrobe, Some(d)) => d != n,
        }
    }

    pub(super) fn status_byte(&self, now: u64) -> u8 {
        let mut s = (self.access.bits() << RW_SHIFT) | (self.mode.bits() << MODE_SHIFT);
        if self.bcd {
            s |= BCD_BIT;
        }
        if self.out(now) {
            s |= STATUS_OUT;
        }
        if self.null_count {
            s |= STATUS_NULL_COUNT;
        }
        s
    }

    pub(super) fn latch_count(&mut self, now: u64) {
        // A second latch before the first was read is ignored (datasheet).
        if self.latch.is_none() {
            let c = self.encode(self.count(now));
            self.latch = Some(match self.access {
                Access::Lsb => Latch::Lsb(c),
                Access::Msb => Latch::Msb(c),
                Access::LsbMsb => Latch::Both(c),
            });
        }
    }

    fn encode(&self, count: u16) -> u16 {
        if self.bcd {
            to_bcd(count)
        } else {
            count
        }
    }

    pub(super) fn read_byte(&mut self, now: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        if let Some(latch) = self.latch.take() {
            return match latch {
                Latch::Both(c) => {
                    self.latch = Some(Latch::Msb(c));
                    c as u8
                }
                Latch::Lsb(c) => c as u8,
                Latch::Msb(c) => (c >> 8) as u8,
            };
        }
        let c = self.encode(self.count(now));
        match self.access {
            Access::Lsb => c as u8,
            Access::Msb => (c >> 8) as u8,
            Access::LsbMsb => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    c as u8
                } else {
                    (c >> 8) as u8
                }
            }
        }
    }

    /// Writes one byte of the count; returns true once a whole count was loaded.
    pub(super) fn write_byte(&mut self, value: u8, now: u64) -> bool {
        let raw = match (self.access, self.pending_lsb.take()) {
            (Access::Lsb, _) => u16::from(value),
            (Access::Msb, _) => u16::from(value) << 8,
            (Access::LsbMsb, None) => {
                self.pending_lsb = Some(value);
                return false;
            }
            (Access::LsbMsb, Some(lsb)) => u16::from_le_bytes([lsb, value]),
        };
        let count = if self.bcd {
            u32::from(from_bcd(raw))
        } else {
            u32::from(raw)
        };
        self.reload = match count {
            0 if self.bcd => MAX_BCD,
            0 => MAX_BINARY,
            // Mode 3 with a count of 1 and mode 2 with 1 are illegal on the chip; treat as 2.
            1 if self.mode.periodic() => 2,
            c => c,
        };
        self.paused_at = None;
        if self.mode.gate_triggered() {
            // The count loads on the next gate rising edge.
            self.start_ns = None;
            self.null_count = true;
        } else {
            self.start_ns = Some(now);
            self.null_count = false;
            if !self.gate {
                self.paused_at = Some(0);
            }
        }
        true
    }

    /// Time from the count load to OUT's first rising edge, and the period of the following
    /// ones (0: none), in clocks.
    pub(super) fn edges(&self) -> Option<(u64, u64)> {
        let n = u64::from(self.reload);
        match self.mode {
            Mode::InterruptOnTerminalCount | Mode::OneShot => Some((n, 0)),
            Mode::RateGenerator | Mode::SquareWave => Some((n, n)),
            Mode::SoftwareStrobe | Mode::HardwareStrobe => Some((n + 1, 0)),
        }
    }
}

fn from_bcd(v: u16) -> u16 {
    let digit = |shift: u16| ((v >> shift) & 0xf).min(9);
    digit(12) * 1000 + digit(8) * 100 + digit(4) * 10 + digit(0)
}

fn to_bcd(v: u16) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10)
}
