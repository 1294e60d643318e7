//! Shared by the device targets: a register access sequence and the fakes devices need.
#![allow(dead_code)] // each target uses part of it

use arbitrary::Arbitrary;
use irqlab_devices::{BusDevice, MsiMessage, MsiOutcome, MsiSink};

/// One step a guest (or the device's other side) takes.
#[derive(Arbitrary, Debug)]
pub enum Op {
    Read { offset: u16, len: u8 },
    Write { offset: u16, bytes: Vec<u8> },
    /// A device-side event: pin level, EOI, gate, timer expiry, clock step, received bytes.
    Event(u8, u64),
}

/// Applies a bus access (widths up to 16 bytes, any offset in the window and past it).
pub fn access(dev: &mut dyn BusDevice, op: &Op, window: u64) {
    match op {
        Op::Read { offset, len } => {
            let mut buf = vec![0u8; usize::from(*len % 17)];
            dev.read(u64::from(*offset) % (window + 8), &mut buf);
        }
        Op::Write { offset, bytes } => {
            dev.write(u64::from(*offset) % (window + 8), &bytes[..bytes.len().min(16)]);
        }
        Op::Event(..) => {}
    }
}

/// Accepts every MSI.
pub struct Accept;
impl MsiSink for Accept {
    fn send(&self, _: MsiMessage) -> MsiOutcome {
        MsiOutcome::Delivered
    }
}
