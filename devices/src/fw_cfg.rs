//! QEMU's firmware configuration device, legacy I/O interface (as `docs/specs/fw_cfg.rst` in
//! QEMU describes it): a 16-bit write to the selector port picks an item, and byte reads from
//! the data port return the item's bytes in order, then 0. Unknown items read as 0, as in QEMU.
//!
//! irqlab offers the items kvm-unit-tests kernels read at start-up (without them they read
//! 0xff.. and wait for 65534 APs):
//!
//! | key  | item        | value |
//! |------|-------------|-------|
//! | 0x00 | SIGNATURE   | `"QEMU"` |
//! | 0x01 | ID          | 1 (u32: traditional interface, no DMA) |
//! | 0x03 | RAM_SIZE    | guest RAM in bytes (u64) |
//! | 0x05 | NB_CPUS     | vCPUs (u16) |
//! | 0x0f | MAX_CPUS    | vCPUs (u16) |
//!
//! There is no file directory and no DMA interface: writes to the data port are ignored.
//!
//! # Example
//! ```
//! use irqlab_devices::{fw_cfg::FwCfg, BusDevice};
//! let mut dev = FwCfg::new(4, 64 << 20);
//! dev.write(0, &5u16.to_le_bytes()); // select NB_CPUS
//! let mut b = [0u8; 2];
//! dev.read(1, &mut b[..1]);
//! dev.read(1, &mut b[1..]);
//! assert_eq!(u16::from_le_bytes(b), 4);
//! ```

use crate::BusDevice;

/// Selector port (the data port follows it).
pub const SELECTOR_PORT: u16 = 0x510;
/// Window size: selector (2 bytes, at offset 0) and data (1 byte, at offset 1) overlap as in
/// QEMU's legacy layout.
pub const WINDOW: u64 = 2;

/// Item keys.
pub mod key {
    /// `"QEMU"`.
    pub const SIGNATURE: u16 = 0x00;
    /// Interface feature bits.
    pub const ID: u16 = 0x01;
    /// Guest RAM size in bytes.
    pub const RAM_SIZE: u16 = 0x03;
    /// Number of (boot-time) CPUs.
    pub const NB_CPUS: u16 = 0x05;
    /// Maximum number of CPUs.
    pub const MAX_CPUS: u16 = 0x0f;
}

/// The device.
pub struct FwCfg {
    items: Vec<(u16, Vec<u8>)>,
    selected: u16,
    offset: usize,
}

impl FwCfg {
    /// The items for a machine with `vcpus` CPUs and `ram_bytes` of RAM.
    pub fn new(vcpus: u16, ram_bytes: u64) -> Self {
        FwCfg {
            items: vec![
                (key::SIGNATURE, b"QEMU".to_vec()),
                (key::ID, 1u32.to_le_bytes().to_vec()),
                (key::RAM_SIZE, ram_bytes.to_le_bytes().to_vec()),
                (key::NB_CPUS, vcpus.to_le_bytes().to_vec()),
                (key::MAX_CPUS, vcpus.to_le_bytes().to_vec()),
            ],
            selected: 0,
            offset: 0,
        }
    }

    fn item(&self) -> &[u8] {
        self.items
            .iter()
            .find(|(k, _)| *k == self.selected)
            .map_or(&[], |(_, v)| v.as_slice())
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset != 1 {
            // Reading the selector returns nothing useful on QEMU either.
            data.fill(0);
            return;
        }
        for b in data.iter_mut() {
            *b = self.item().get(self.offset).copied().unwrap_or(0);
            self.offset = self.offset.saturating_add(1);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.len() == 2 {
            self.selected = u16::from_le_bytes([data[0], data[1]]);
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_item(dev: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
        dev.write(0, &key.to_le_bytes());
        (0..len)
            .map(|_| {
                let mut b = [0xffu8];
                dev.read(1, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn items_read_back_in_order_then_zero() {
        let mut dev = FwCfg::new(4, 256 << 20);
        assert_eq!(read_item(&mut dev, key::SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(read_item(&mut dev, key::ID, 4), [1, 0, 0, 0]);
        let ram = read_item(&mut dev, key::RAM_SIZE, 8);
        assert_eq!(u64::from_le_bytes(ram.try_into().unwrap()), 256 << 20);
        assert_eq!(read_item(&mut dev, key::NB_CPUS, 2), [4, 0]);
        assert_eq!(read_item(&mut dev, key::MAX_CPUS, 2), [4, 0]);
        assert_eq!(read_item(&mut dev, 0x11, 8), [0; 8], "unknown items read 0");
        // Selecting again restarts the item.
        assert_eq!(read_item(&mut dev, key::SIGNATURE, 2), b"QE");
    }

    #[test]
    fn odd_accesses_never_panic_and_change_nothing() {
        let mut dev = FwCfg::new(1, 1 << 20);
        for off in 0..4u64 {
            for width in [1usize, 2, 4, 8] {
                let mut buf = vec![0xffu8; width];
                dev.read(off, &mut buf);
                if off != 0 || width != 2 {
                    dev.write(off, &buf);
                }
            }
        }
        assert_eq!(read_item(&mut dev, key::NB_CPUS, 2), [1, 0]);
    }
}
