//! A pc-testdev-compatible device: the harness device kvm-unit-tests drives under QEMU
//! (`-device pc-testdev`; QEMU's `hw/misc/pc-testdev.c` defines its behaviour — this is an
//! independent implementation of that behaviour, not a copy).
//!
//! | where | what |
//! |-------|------|
//! | ports 0xe0–0xe3 | a 32-bit scratch register, byte-addressable: an access of width w at offset o reads or writes bytes o..o+w of it |
//! | port 0xe4 (4 bytes) | page flush: the guest writes a guest-physical address; accepted and counted (irqlab keeps no host-side mapping state to drop) |
//! | ports 0x2000–0x2017 | IRQ lines: a byte write of v to port 0x2000 + n drives GSI n to `v != 0` (the IO-APIC pin in split mode, `KVM_IRQ_LINE` in kernel mode) |
//! | MMIO 0xff000000, 64 KiB | memory behind MMIO exits: reads return what was written (every width, 0 at first) |
//!
//! The four parts are separate [`BusDevice`]s so that each sits on its own bus range.

use crate::{BusDevice, IrqLine};
use std::sync::Arc;

/// The scratch port's base.
pub const IOPORT: u16 = 0xe0;
/// The page-flush port.
pub const FLUSH_PAGE_PORT: u16 = 0xe4;
/// The first IRQ-line port.
pub const IRQ_PORT_BASE: u16 = 0x2000;
/// Number of IRQ lines (one per IO-APIC pin).
pub const IRQ_LINES: usize = 24;
/// The memory-like MMIO window.
pub const IOMEM_BASE: u64 = 0xff00_0000;
/// Its size.
pub const IOMEM_SIZE: u64 = 64 << 10;

/// Ports 0xe0–0xe3.
#[derive(Debug, Default)]
pub struct ScratchPort {
    value: u32,
}

impl BusDevice for ScratchPort {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let bytes = self.value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = self.value.to_le_bytes();
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = bytes.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
        self.value = u32::from_le_bytes(bytes);
    }
}

/// Port 0xe4: page flush requests, counted.
#[derive(Debug, Default)]
pub struct FlushPage {
    /// Requests so far.
    pub requests: u64,
}

impl BusDevice for FlushPage {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {
        self.requests += 1;
    }
}

/// Ports 0x2000–0x2017: one byte per interrupt line.
pub struct IrqLines {
    lines: Vec<Arc<dyn IrqLine>>,
}

impl IrqLines {
    /// Line n drives `lines[n]`.
    pub fn new(lines: Vec<Arc<dyn IrqLine>>) -> Self {
        IrqLines { lines }
    }
}

impl BusDevice for IrqLines {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Each byte of a wider write drives the next line, as the ISA bus splits it.
        for (i, v) in data.iter().enumerate() {
            if let Some(line) = usize::try_from(offset)
                .ok()
                .and_then(|o| self.lines.get(o + i))
            {
                line.set_level(*v != 0);
            }
        }
    }
}

/// 0xff000000: 64 KiB that behave as memory through MMIO exits.
pub struct IoMem {
    bytes: Vec<u8>,
}

impl Default for IoMem {
    fn default() -> Self {
        IoMem {
            bytes: vec![0; IOMEM_SIZE as usize],
        }
    }
}

impl BusDevice for IoMem {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = self.bytes.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn scratch_port_is_a_byte_addressable_register() {
        let mut p = ScratchPort::default();
        p.write(0, &0x1234_5678u32.to_le_bytes());
        let mut b = [0u8; 1];
        p.read(2, &mut b);
        assert_eq!(b[0], 0x34);
        p.write(1, &[0xaa]);
        let mut w = [0u8; 4];
        p.read(0, &mut w);
        assert_eq!(u32::from_le_bytes(w), 0x1234_aa78);
        let mut wide = [0u8; 8];
        p.read(3, &mut wide); // past the register: zeros, no panic
        assert_eq!(wide[0], 0x12);
    }

    #[derive(Default)]
    struct Levels(Mutex<Vec<(usize, bool)>>);
    struct Line(Arc<Levels>, usize);
    impl IrqLine for Line {
        fn set_level(&self, level: bool) {
            self.0 .0.lock().unwrap().push((self.1, level));
        }
    }

    #[test]
    fn irq_ports_drive_their_lines() {
        let rec = Arc::new(Levels::default());
        let lines = (0..IRQ_LINES)
            .map(|n| Arc::new(Line(rec.clone(), n)) as Arc<dyn IrqLine>)
            .collect();
        let mut dev = IrqLines::new(lines);
        dev.write(9, &[1]);
        dev.write(9, &[0]);
        dev.write(23, &[1, 1]); // the second byte has no line
        dev.write(1000, &[1]);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![(9, true), (9, false), (23, true)]
        );
    }

    #[test]
    fn iomem_behaves_as_memory() {
        let mut m = IoMem::default();
        m.write(0x100, &0xdead_beef_cafe_f00du64.to_le_bytes());
        let mut q = [0u8; 8];
        m.read(0x100, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xdead_beef_cafe_f00d);
        let mut b = [0u8; 2];
        m.read(0x102, &mut b);
        assert_eq!(u16::from_le_bytes(b), 0xcafe);
        m.write(IOMEM_SIZE - 1, &[1, 2, 3]); // straddles the end: the rest is dropped
        m.read(IOMEM_SIZE - 1, &mut b);
        assert_eq!(b, [1, 0]);
    }
}
