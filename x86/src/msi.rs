//! Message-signalled interrupts: the address/data pair a device (or an IO-APIC, or a VMM
//! posting a notification) writes to reach local APICs (Intel SDM vol. 3 §11.11).
//!
//! One encoder for the whole project: the IO-APIC's redirection entries, the posted-interrupt
//! notification, and the guest programming irqlab's MSI source all build messages here.

/// The address window every MSI is written to (§11.11.1: bits 31:20 = 0xFEE).
pub const ADDRESS_BASE: u64 = 0xfee0_0000;
/// Address bits 19:12: the destination APIC ID (physical) or logical set.
const ADDRESS_DEST_SHIFT: u32 = 12;
/// Address bit 3: redirection hint (lowest-priority arbitration among the destinations).
const ADDRESS_REDIRECTION_HINT: u64 = 1 << 3;
/// Address bit 2: destination mode, 1 = logical.
const ADDRESS_DEST_LOGICAL: u64 = 1 << 2;
/// Data bits 10:8: delivery mode.
const DATA_DELIVERY_SHIFT: u32 = 8;
/// Data bit 14: level (assert) for level-triggered messages.
const DATA_LEVEL_ASSERT: u32 = 1 << 14;
/// Data bit 15: trigger mode, 1 = level.
const DATA_TRIGGER_LEVEL: u32 = 1 << 15;

/// One MSI, as fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    /// Destination: an APIC ID, or a logical set when `logical`.
    pub dest: u8,
    /// Destination mode.
    pub logical: bool,
    /// Redirection hint (set for lowest-priority delivery).
    pub redirection_hint: bool,
    /// The vector.
    pub vector: u8,
    /// Delivery mode, the 3-bit encoding of §11.11.2 (0 fixed, 1 lowest priority, 2 SMI,
    /// 4 NMI, 5 INIT, 7 ExtINT).
    pub delivery_mode: u8,
    /// Level-triggered (asserted); edge when false.
    pub level: bool,
}

impl Msi {
    /// Fixed delivery of `vector` to the APIC with ID `dest`, physical destination, edge.
    pub const fn fixed(dest: u8, vector: u8) -> Msi {
        Msi {
            dest,
            logical: false,
            redirection_hint: false,
            vector,
            delivery_mode: 0,
            level: false,
        }
    }

    /// The message address.
    pub const fn address(&self) -> u64 {
        let mut a = ADDRESS_BASE | ((self.dest as u64) << ADDRESS_DEST_SHIFT);
        if self.logical {
            a |= ADDRESS_DEST_LOGICAL;
        }
        if self.redirection_hint {
            a |= ADDRESS_REDIRECTION_HINT;
        }
        a
    }

    /// The message data.
    pub const fn data(&self) -> u32 {
        let mut d = self.vector as u32 | (((self.delivery_mode & 7) as u32) << DATA_DELIVERY_SHIFT);
        if self.level {
            d |= DATA_TRIGGER_LEVEL | DATA_LEVEL_ASSERT;
        }
        d
    }

    /// Decodes a message; `None` if `address` is outside the MSI window.
    pub const fn decode(address: u64, data: u32) -> Option<Msi> {
        if address & !0xf_ffff != ADDRESS_BASE {
            return None;
        }
        Some(Msi {
            dest: (address >> ADDRESS_DEST_SHIFT) as u8,
            logical: address & ADDRESS_DEST_LOGICAL != 0,
            redirection_hint: address & ADDRESS_REDIRECTION_HINT != 0,
            vector: data as u8,
            delivery_mode: ((data >> DATA_DELIVERY_SHIFT) & 7) as u8,
            level: data & DATA_TRIGGER_LEVEL != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_physical_edge_is_the_plain_form() {
        let m = Msi::fixed(3, 0xeb);
        assert_eq!(m.address(), 0xfee0_3000);
        assert_eq!(m.data(), 0xeb);
        assert_eq!(Msi::decode(m.address(), m.data()), Some(m));
    }

    #[test]
    fn every_field_has_its_bits() {
        let m = Msi {
            dest: 0xff,
            logical: true,
            redirection_hint: true,
            vector: 0x41,
            delivery_mode: 1,
            level: true,
        };
        // §11.11.1: 0xFEE | dest << 12 | RH << 3 | DM << 2; §11.11.2: TM << 15 | level << 14 |
        // mode << 8 | vector.
        assert_eq!(m.address(), 0xfeef_f00c);
        assert_eq!(m.data(), 0xc141);
        assert_eq!(Msi::decode(m.address(), m.data()), Some(m));
        let nmi = Msi {
            delivery_mode: 4,
            ..Msi::fixed(0, 2)
        };
        assert_eq!(nmi.data(), 0x402);
    }

    #[test]
    fn outside_the_window_is_not_an_msi() {
        assert_eq!(Msi::decode(0xfed0_0000, 0x30), None);
        assert_eq!(Msi::decode(0x1_fee0_0000, 0x30), None);
    }
}
