//! Decimal formatting that stays out of libcore's SSE code paths.
//!
//! The prebuilt libcore is compiled with SSE2, and its decimal `Display` for large integers
//! and its padding code (`{:<8}`) use SSE instructions, which end in KVM emulation failures on
//! kvm-pvm hosts. Hex formatting and plain `write_str` do not. The kernel therefore prints
//! decimals with [`Dec`] and never uses width or fill specifiers.

use core::fmt;

pub use irqlab_abi::results::Dec;

/// A signed value in decimal.
pub struct IDec(pub i64);

impl fmt::Display for IDec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        Dec(self.0.unsigned_abs()).fmt(f)
    }
}

/// A value in thousandths printed as `x.yyy` (signed).
pub struct Milli(pub i64);

impl fmt::Display for Milli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let v = self.0.unsigned_abs();
        let frac = v % 1000;
        Dec(v / 1000).fmt(f)?;
        f.write_str(".")?;
        if frac < 100 {
            f.write_str("0")?;
        }
        if frac < 10 {
            f.write_str("0")?;
        }
        Dec(frac).fmt(f)
    }
}
