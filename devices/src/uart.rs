//! COM1: the 16550A register model from vm-superio, wired to an output stream and an
//! interrupt line.
//!
//! vm-superio implements the registers (THR/RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR, the
//! divisor latch and the receive FIFO); this wrapper adapts it to the bus (any access width:
//! a 2-byte write to offset 0 writes registers 0 and 1, as the ISA bus splits it) and turns
//! its interrupt trigger into an [`IrqLine`].
//!
//! # Example
//! ```
//! use irqlab_devices::{uart::Uart, BusDevice, NoIrq};
//! use std::sync::Arc;
//! let mut uart = Uart::new(Arc::new(NoIrq), Vec::new());
//! for b in b"hi" { uart.write(0, &[*b]); }
//! assert_eq!(uart.output(), b"hi");
//! ```

use crate::{BusDevice, IrqLine};
use std::io::Write;
use std::sync::Arc;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

/// Number of registers (port window size).
pub const WINDOW: u64 = 8;

/// Adapts an [`IrqLine`] to vm-superio's edge-style `Trigger`.
pub struct LineTrigger(Arc<dyn IrqLine>);

impl Trigger for LineTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.set_level(true);
        self.0.set_level(false);
        Ok(())
    }
}

/// The UART.
pub struct Uart<W: Write + Send> {
    serial: Serial<LineTrigger, NoEvents, W>,
}

impl<W: Write + Send> Uart<W> {
    /// A UART whose transmitted bytes go to `out` and whose interrupt drives `irq`.
    pub fn new(irq: Arc<dyn IrqLine>, out: W) -> Self {
        Uart {
            serial: Serial::new(LineTrigger(irq), out),
        }
    }

    /// The output stream.
    pub fn writer_mut(&mut self) -> &mut W {
        self.serial.writer_mut()
    }

    /// Queues bytes received from the host (stdin); returns how many fit in the FIFO.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl Uart<Vec<u8>> {
    /// Everything transmitted so far (for tests).
    pub fn output(&self) -> &[u8] {
        self.serial.writer()
    }
}

impl<W: Write + Send> BusDevice for Uart<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let reg = offset + i as u64;
            if reg < WINDOW {
                *byte = self.serial.read(reg as u8);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            let reg = offset + i as u64;
            if reg < WINDOW {
                // The only error vm-superio reports is a failed write to the output stream
                // (e.g. a closed stdout); the guest cannot do anything about it, so the byte
                // is dropped like a real UART with no cable.
                let _ = self.serial.write(reg as u8, *byte);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct Edges(AtomicU32);
    impl IrqLine for Edges {
        fn set_level(&self, level: bool) {
            if level {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    const LSR: u64 = 5;
    const IER: u64 = 1;

    #[test]
    fn transmitted_bytes_reach_the_output() {
        let mut uart = Uart::new(Arc::new(NoIrq), Vec::new());
        for b in b"irqlab" {
            uart.write(0, &[*b]);
        }
        assert_eq!(uart.output(), b"irqlab");
    }

    #[test]
    fn line_status_reports_an_empty_transmitter() {
        let mut uart = Uart::new(Arc::new(NoIrq), Vec::new());
        let mut lsr = [0u8];
        uart.read(LSR, &mut lsr);
        assert_eq!(lsr[0] & 0x60, 0x60, "THRE and TEMT set");
    }

    #[test]
    fn received_bytes_raise_the_line_when_enabled_and_read_back() {
        let irq = Arc::new(Edges::default());
        let mut uart = Uart::new(irq.clone(), Vec::new());
        uart.write(IER, &[0x01]); // received-data-available interrupt
        assert_eq!(uart.receive(b"ok"), 2);
        assert!(irq.0.load(Ordering::SeqCst) >= 1);
        let mut b = [0u8];
        uart.read(0, &mut b);
        assert_eq!(b[0], b'o');
        uart.read(0, &mut b);
        assert_eq!(b[0], b'k');
    }

    #[test]
    fn wide_and_out_of_window_accesses_never_panic() {
        let mut uart = Uart::new(Arc::new(NoIrq), Vec::new());
        for offset in 0..16u64 {
            for width in [1usize, 2, 4, 8] {
                let mut buf = vec![0xffu8; width];
                uart.read(offset, &mut buf);
                uart.write(offset, &buf);
            }
        }
    }

    use crate::NoIrq;
}
