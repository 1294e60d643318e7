//! Owns the devices, their port and MMIO windows, and the order they are set up in.
//!
//! | device      | window            | interrupt            |
//! |-------------|-------------------|----------------------|
//! | COM1 16550  | ports 0x3f8–0x3ff | IO-APIC pin 4        |
//! | debug-exit  | ports 0xf4–0xf7   | –                    |
//! | bench port  | port 0xf8         | –                    |

use crate::console::ConsoleOut;
use irqlab_abi::ports;
use irqlab_devices::bench_port::BenchPort;
use irqlab_devices::debug_exit::{self, DebugExit};
use irqlab_devices::uart::{self, Uart};
use irqlab_devices::{BusDevice, ExitSink, NoIrq};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A device shared between vCPU threads.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Two windows overlap.
#[derive(Debug, thiserror::Error)]
#[error("{what} window {base:#x}+{len:#x} overlaps another device")]
pub struct OverlapError {
    /// Device name.
    pub what: &'static str,
    /// Window base.
    pub base: u64,
    /// Window length.
    pub len: u64,
}

/// An address-ordered set of device windows (ports or MMIO).
#[derive(Default)]
pub struct Bus {
    windows: Vec<(u64, u64, SharedDevice)>,
    unhandled: AtomicU64,
}

impl Bus {
    /// Adds a device at `[base, base + len)`.
    pub fn insert(
        &mut self,
        what: &'static str,
        base: u64,
        len: u64,
        dev: SharedDevice,
    ) -> Result<(), OverlapError> {
        if self
            .windows
            .iter()
            .any(|(b, l, _)| base < b + l && *b < base + len)
        {
            return Err(OverlapError { what, base, len });
        }
        self.windows.push((base, len, dev));
        self.windows.sort_by_key(|w| w.0);
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        self.windows
            .iter()
            .find(|(b, l, _)| addr >= *b && addr - b < *l)
            .map(|(b, _, d)| (addr - b, d))
    }

    /// A guest read; unclaimed addresses read as all ones, as on a real bus.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        data.fill(0xff);
        match self.find(addr) {
            Some((offset, dev)) => dev
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(offset, data),
            None => {
                self.unhandled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A guest write; writes to unclaimed addresses are dropped and counted.
    pub fn write(&self, addr: u64, data: &[u8]) {
        match self.find(addr) {
            Some((offset, dev)) => dev
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(offset, data),
            None => {
                self.unhandled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Accesses no device claimed.
    pub fn unhandled(&self) -> u64 {
        self.unhandled.load(Ordering::Relaxed)
    }
}

/// All devices of one VM.
pub struct Devices {
    /// Port-I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// The UART, kept to flush its output at exit.
    pub uart: Arc<Mutex<Uart<ConsoleOut>>>,
    /// The benchmark port.
    pub bench: Arc<Mutex<BenchPort>>,
}

impl Devices {
    /// Creates and places the devices. Order: console first (so later failures can print),
    /// then the debug-exit port, then the benchmark port.
    pub fn new(console: ConsoleOut, exit: Arc<dyn ExitSink>) -> Result<Devices, OverlapError> {
        let mut pio = Bus::default();
        let uart = Arc::new(Mutex::new(Uart::new(Arc::new(NoIrq), console)));
        pio.insert("COM1", ports::COM1.into(), uart::WINDOW, uart.clone())?;
        pio.insert(
            "debug-exit",
            ports::DEBUG_EXIT.into(),
            debug_exit::WINDOW,
            Arc::new(Mutex::new(DebugExit::new(exit))),
        )?;
        let bench = Arc::new(Mutex::new(BenchPort::default()));
        pio.insert("bench", ports::BENCH.into(), 1, bench.clone())?;
        Ok(Devices {
            pio,
            mmio: Bus::default(),
            uart,
            bench,
        })
    }

    /// Flushes the console.
    pub fn flush(&self) {
        let _ = self
            .uart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .writer_mut()
            .flush_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_at_its_offset() {
        let mut bus = Bus::default();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert("echo", 0x100, 8, dev.clone()).unwrap();
        let mut b = [0u8; 2];
        bus.read(0x103, &mut b);
        assert_eq!(b, [3, 3]);
        bus.write(0x107, &[9]);
        assert_eq!(dev.lock().unwrap().0, vec![(7, vec![9])]);
        assert_eq!(bus.unhandled(), 0);
    }

    #[test]
    fn unclaimed_reads_are_all_ones_and_counted() {
        let bus = Bus::default();
        let mut b = [0u8; 4];
        bus.read(0x80, &mut b);
        bus.write(0x80, &[1]);
        assert_eq!(b, [0xff; 4]);
        assert_eq!(bus.unhandled(), 2);
    }

    #[test]
    fn overlapping_windows_are_refused() {
        let mut bus = Bus::default();
        bus.insert("a", 0x100, 8, Arc::new(Mutex::new(Echo::default())))
            .unwrap();
        assert!(bus
            .insert("b", 0x107, 2, Arc::new(Mutex::new(Echo::default())))
            .is_err());
        assert!(bus
            .insert("c", 0x108, 2, Arc::new(Mutex::new(Echo::default())))
            .is_ok());
    }
}
