//! IDT gate descriptors (Intel SDM vol. 3, §6.14.1, figure 6-8).
//!
//! ```text
//!  127                     96 95                    64
//! +-------------------------+-----------------------+
//! |        reserved         |    offset 63:32       |
//! +-------------------------+-----------------------+
//!  63        48 47 46 45 44 43  40 39 35 34 32 31      16 15         0
//! +------------+--+-----+--+------+-----+-----+----------+------------+
//! |offset 31:16| P| DPL | 0| type | 0   | IST | selector |offset 15:0 |
//! +------------+--+-----+--+------+-----+-----+----------+------------+
//! ```

use crate::segment::Ring;

/// Gate type: interrupt gate (clears IF on entry) or trap gate (leaves IF alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GateType {
    /// 64-bit interrupt gate, type 0xE.
    Interrupt = 0xe,
    /// 64-bit trap gate, type 0xF.
    Trap = 0xf,
}

/// A gate's fields before encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    /// Handler address.
    pub offset: u64,
    /// Code segment selector loaded on entry.
    pub selector: u16,
    /// Interrupt Stack Table index 1..=7, or 0 for "no stack switch unless privilege changes".
    pub ist: u8,
    /// Interrupt or trap gate.
    pub kind: GateType,
    /// Highest privilege level allowed to reach the gate with `int n` (3 makes it a
    /// user-callable gate such as `int 0x80`).
    pub dpl: Ring,
}

impl Gate {
    /// Encodes the gate as the two 8-byte halves of an IDT entry.
    pub const fn encode(&self) -> [u64; 2] {
        let low = (self.offset & 0xffff)
            | ((self.selector as u64) << 16)
            | (((self.ist & 7) as u64) << 32)
            | ((self.kind as u64) << 40)
            | ((self.dpl as u64) << 45)
            | (1 << 47)
            | (((self.offset >> 16) & 0xffff) << 48);
        [low, self.offset >> 32]
    }

    /// Decodes an IDT entry; `None` when the present bit is clear or the type is not a 64-bit
    /// interrupt or trap gate.
    pub const fn decode(raw: [u64; 2]) -> Option<Gate> {
        let low = raw[0];
        if low & (1 << 47) == 0 {
            return None;
        }
        let kind = match (low >> 40) & 0xf {
            0xe => GateType::Interrupt,
            0xf => GateType::Trap,
            _ => return None,
        };
        let dpl = if (low >> 45) & 3 == 3 {
            Ring::Ring3
        } else {
            Ring::Ring0
        };
        Some(Gate {
            offset: (low & 0xffff) | (((low >> 48) & 0xffff) << 16) | (raw[1] << 32),
            selector: ((low >> 16) & 0xffff) as u16,
            ist: ((low >> 32) & 7) as u8,
            kind,
            dpl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_gate_encoding_matches_the_sdm_layout() {
        let gate = Gate {
            offset: 0xffff_8000_1234_5678,
            selector: 0x08,
            ist: 1,
            kind: GateType::Interrupt,
            dpl: Ring::Ring0,
        };
        let [low, high] = gate.encode();
        assert_eq!(low, 0x1234_8e01_0008_5678);
        assert_eq!(high, 0xffff_8000);
        assert_eq!(Gate::decode([low, high]), Some(gate));
    }

    #[test]
    fn user_trap_gate_round_trips() {
        let gate = Gate {
            offset: 0x10_2030,
            selector: 0x08,
            ist: 7,
            kind: GateType::Trap,
            dpl: Ring::Ring3,
        };
        assert_eq!(Gate::decode(gate.encode()), Some(gate));
        assert_eq!((gate.encode()[0] >> 40) & 0xff, 0xef);
    }

    #[test]
    fn absent_gate_decodes_to_none() {
        assert_eq!(Gate::decode([0, 0]), None);
    }
}
