//! Debug-exit port, compatible with QEMU's `isa-debug-exit` configured with `iobase=0xf4,
//! iosize=0x04`: a write of 1, 2 or 4 bytes at offset 0 asks the VMM to stop the VM with the
//! written value as the guest status. irqlab passes the status through unchanged (QEMU exits
//! with `(status << 1) | 1`); see `irqlab_abi::status` for the exit-code mapping.
//!
//! # Example
//! ```
//! use irqlab_devices::{debug_exit::DebugExit, BusDevice, ExitSink};
//! use std::sync::{Arc, Mutex};
//!
//! #[derive(Default)]
//! struct Record(Mutex<Vec<u32>>);
//! impl ExitSink for Record {
//!     fn request_exit(&self, status: u32) { self.0.lock().unwrap().push(status); }
//!     fn request_reset(&self, _: irqlab_devices::reset::ResetSource) {}
//! }
//! let sink = Arc::new(Record::default());
//! let mut dev = DebugExit::new(sink.clone());
//! dev.write(0, &7u32.to_le_bytes());
//! assert_eq!(*sink.0.lock().unwrap(), vec![7]);
//! ```

use crate::{le_value, BusDevice, ExitSink};
use std::sync::Arc;

/// Size of the port window in bytes.
pub const WINDOW: u64 = irqlab_abi::ports::DEBUG_EXIT_SIZE as u64;

/// The debug-exit device.
pub struct DebugExit {
    sink: Arc<dyn ExitSink>,
    ignored: u64,
}

impl DebugExit {
    /// A device that forwards exit requests to `sink`.
    pub fn new(sink: Arc<dyn ExitSink>) -> Self {
        DebugExit { sink, ignored: 0 }
    }

    /// Writes that did not request an exit (wrong offset or width).
    pub fn ignored_writes(&self) -> u64 {
        self.ignored
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len(), le_value(data)) {
            (0, 1 | 2 | 4, Some(v)) => self.sink.request_exit(v as u32),
            _ => self.ignored += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<u32>>);
    impl ExitSink for Record {
        fn request_exit(&self, status: u32) {
            self.0.lock().unwrap().push(status);
        }
        fn request_reset(&self, _source: crate::reset::ResetSource) {}
    }

    #[test]
    fn each_supported_width_requests_an_exit_with_its_value() {
        let sink = Arc::new(Record::default());
        let mut dev = DebugExit::new(sink.clone());
        dev.write(0, &[0x2a]);
        dev.write(0, &0x1234u16.to_le_bytes());
        dev.write(0, &0xdead_beefu32.to_le_bytes());
        assert_eq!(*sink.0.lock().unwrap(), vec![0x2a, 0x1234, 0xdead_beef]);
        assert_eq!(dev.ignored_writes(), 0);
    }

    #[test]
    fn other_offsets_and_widths_are_ignored_and_counted() {
        let sink = Arc::new(Record::default());
        let mut dev = DebugExit::new(sink.clone());
        for (offset, data) in [
            (1u64, &[1u8][..]),
            (2, &[1, 2]),
            (0, &[1, 2, 3]),
            (0, &[0; 8]),
            (0, &[]),
        ] {
            dev.write(offset, data);
        }
        assert!(sink.0.lock().unwrap().is_empty());
        assert_eq!(dev.ignored_writes(), 5);
    }

    #[test]
    fn reads_return_zero() {
        let mut dev = DebugExit::new(Arc::new(Record::default()));
        let mut buf = [0xffu8; 4];
        dev.read(0, &mut buf);
        assert_eq!(buf, [0; 4]);
    }
}
