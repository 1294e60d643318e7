//! The control word and the read-back status byte: their bit fields, and the counter
//! [`Mode`] and read/write [`Access`] they select.

pub(super) const SC_SHIFT: u8 = 6;
pub(super) const SC_READ_BACK: u8 = 3;
pub(super) const RW_SHIFT: u8 = 4;
pub(super) const RW_MASK: u8 = 0x3;
pub(super) const MODE_SHIFT: u8 = 1;
pub(super) const MODE_MASK: u8 = 0x7;
pub(super) const BCD_BIT: u8 = 1;
pub(super) const READ_BACK_NO_COUNT: u8 = 1 << 5;
pub(super) const READ_BACK_NO_STATUS: u8 = 1 << 4;
pub(super) const STATUS_OUT: u8 = 1 << 7;
pub(super) const STATUS_NULL_COUNT: u8 = 1 << 6;

/// Counter mode (control word bits 3:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0: interrupt on terminal count.
    InterruptOnTerminalCount,
    /// 1: hardware-retriggerable one-shot.
    OneShot,
    /// 2: rate generator.
    RateGenerator,
    /// 3: square-wave generator.
    SquareWave,
    /// 4: software-triggered strobe.
    SoftwareStrobe,
    /// 5: hardware-triggered strobe.
    HardwareStrobe,
}

impl TryFrom<u8> for Mode {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0 => Mode::InterruptOnTerminalCount,
            1 => Mode::OneShot,
            2 | 6 => Mode::RateGenerator,
            3 | 7 => Mode::SquareWave,
            4 => Mode::SoftwareStrobe,
            5 => Mode::HardwareStrobe,
            other => return Err(other),
        })
    }
}

impl Mode {
    pub(super) fn bits(self) -> u8 {
        match self {
            Mode::InterruptOnTerminalCount => 0,
            Mode::OneShot => 1,
            Mode::RateGenerator => 2,
            Mode::SquareWave => 3,
            Mode::SoftwareStrobe => 4,
            Mode::HardwareStrobe => 5,
        }
    }

    /// Modes whose count starts on a gate rising edge rather than on the count write.
    pub(super) fn gate_triggered(self) -> bool {
        matches!(self, Mode::OneShot | Mode::HardwareStrobe)
    }

    pub(super) fn periodic(self) -> bool {
        matches!(self, Mode::RateGenerator | Mode::SquareWave)
    }
}

/// Read/write access (control word bits 5:4, 0 being the latch command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Least significant byte only.
    Lsb,
    /// Most significant byte only.
    Msb,
    /// LSB, then MSB.
    LsbMsb,
}

impl TryFrom<u8> for Access {
    type Error = u8;

    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(Access::Lsb),
            2 => Ok(Access::Msb),
            3 => Ok(Access::LsbMsb),
            other => Err(other),
        }
    }
}

impl Access {
    pub(super) fn bits(self) -> u8 {
        match self {
            Access::Lsb => 1,
            Access::Msb => 2,
            Access::LsbMsb => 3,
        }
    }
}
