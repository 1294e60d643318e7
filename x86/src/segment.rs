//! Segment descriptors and selectors (Intel SDM vol. 3, §3.4.5 and §7.2.3).
//!
//! ```text
//!  63      56 55 54 53 52 51    48 47 46 45 44 43  40 39        16 15         0
//! +----------+--+--+--+--+--------+--+-----+--+------+------------+------------+
//! |base 31:24| G|DB| L|AV|lim 19:16| P| DPL | S| type |base 23:0   |limit 15:0  |
//! +----------+--+--+--+--+--------+--+-----+--+------+------------+------------+
//! ```
//! A 64-bit TSS descriptor is 16 bytes: the low 8 bytes as above (S = 0, type 9 = available
//! TSS, 11 = busy TSS) and base bits 63:32 in the low half of the next 8 bytes.

/// Accessed bit of the type field.
pub const TYPE_ACCESSED: u64 = 1 << 40;
/// Readable (code) / writable (data) bit of the type field.
pub const TYPE_RW: u64 = 1 << 41;
/// Code segment bit of the type field (S = 1).
pub const TYPE_CODE: u64 = 1 << 43;
/// Descriptor type: code/data (1) or system (0).
pub const S_CODE_DATA: u64 = 1 << 44;
/// Present.
pub const PRESENT: u64 = 1 << 47;
/// 64-bit code segment (L).
pub const LONG_MODE: u64 = 1 << 53;
/// Default operation size 32 bit (D/B).
pub const DB: u64 = 1 << 54;
/// Granularity: limit counted in 4 KiB units.
pub const GRANULARITY: u64 = 1 << 55;

const DPL_SHIFT: u32 = 45;
const SYSTEM_TYPE_SHIFT: u32 = 40;

/// System descriptor type of an available 64-bit TSS (SDM §3.5, table 3-2).
pub const SYSTEM_TYPE_TSS_AVAILABLE: u64 = 0x9;
/// System descriptor type of a busy 64-bit TSS.
pub const SYSTEM_TYPE_TSS_BUSY: u64 = 0xb;

/// Privilege level of a descriptor or selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Ring {
    /// Kernel.
    Ring0 = 0,
    /// User.
    Ring3 = 3,
}

/// A 64-bit code segment descriptor (base and limit ignored in long mode).
pub const fn code64(dpl: Ring) -> u64 {
    PRESENT
        | S_CODE_DATA
        | TYPE_CODE
        | TYPE_RW
        | TYPE_ACCESSED
        | LONG_MODE
        | GRANULARITY
        | 0x000f_0000_0000_ffff
        | ((dpl as u64) << DPL_SHIFT)
}

/// A flat writable data segment descriptor.
pub const fn data(dpl: Ring) -> u64 {
    PRESENT
        | S_CODE_DATA
        | TYPE_RW
        | TYPE_ACCESSED
        | DB
        | GRANULARITY
        | 0x000f_0000_0000_ffff
        | ((dpl as u64) << DPL_SHIFT)
}

/// A flat 32-bit code segment descriptor (used by 32-bit boot protocols).
pub const fn code32() -> u64 {
    PRESENT
        | S_CODE_DATA
        | TYPE_CODE
        | TYPE_RW
        | TYPE_ACCESSED
        | DB
        | GRANULARITY
        | 0x000f_0000_0000_ffff
}

/// The two 8-byte halves of a 64-bit TSS descriptor for a TSS at `base` with `limit`.
pub const fn tss64(base: u64, limit: u32, system_type: u64) -> [u64; 2] {
    let low = (limit as u64 & 0xffff)
        | ((base & 0x00ff_ffff) << 16)
        | (system_type << SYSTEM_TYPE_SHIFT)
        | PRESENT
        | (((limit as u64 >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// Fields of a segment descriptor as KVM's `kvm_segment` wants them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Segment base.
    pub base: u64,
    /// Limit in bytes (granularity applied).
    pub limit: u32,
    /// Type field (4 bits).
    pub type_: u8,
    /// Descriptor type S (1 = code/data).
    pub s: u8,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present.
    pub present: u8,
    /// Available-for-software bit.
    pub avl: u8,
    /// Long mode.
    pub l: u8,
    /// Default operation size.
    pub db: u8,
    /// Granularity.
    pub g: u8,
}

/// Decodes the low 8 bytes of a descriptor.
pub const fn decode(desc: u64) -> Decoded {
    let g = ((desc >> 55) & 1) as u8;
    let raw_limit = ((desc & 0xffff) | ((desc >> 32) & 0xf_0000)) as u32;
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    Decoded {
        base: ((desc >> 16) & 0x00ff_ffff) | ((desc >> 32) & 0xff00_0000),
        limit,
        type_: ((desc >> 40) & 0xf) as u8,
        s: ((desc >> 44) & 1) as u8,
        dpl: ((desc >> 45) & 3) as u8,
        present: ((desc >> 47) & 1) as u8,
        avl: ((desc >> 52) & 1) as u8,
        l: ((desc >> 53) & 1) as u8,
        db: ((desc >> 54) & 1) as u8,
        g,
    }
}

/// A segment selector: GDT index, table indicator 0, requested privilege level.
pub const fn selector(index: u16, rpl: Ring) -> u16 {
    (index << 3) | rpl as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_code64_matches_the_classic_constant() {
        // 0x00af9b000000ffff is the flat 64-bit kernel code descriptor used by Linux and
        // Firecracker (accessed bit set).
        assert_eq!(code64(Ring::Ring0), 0x00af_9b00_0000_ffff);
    }

    #[test]
    fn data_segments_match_the_classic_constants() {
        assert_eq!(data(Ring::Ring0), 0x00cf_9300_0000_ffff);
        assert_eq!(data(Ring::Ring3), 0x00cf_f300_0000_ffff);
        assert_eq!(code64(Ring::Ring3), 0x00af_fb00_0000_ffff);
        assert_eq!(code32(), 0x00cf_9b00_0000_ffff);
    }

    #[test]
    fn decode_round_trips_flags_and_limit() {
        let d = decode(code64(Ring::Ring3));
        assert_eq!(
            (d.type_, d.s, d.dpl, d.present, d.l, d.db, d.g),
            (0xb, 1, 3, 1, 1, 0, 1)
        );
        assert_eq!(d.limit, 0xffff_ffff);
        assert_eq!(d.base, 0);
    }

    #[test]
    fn tss_descriptor_splits_base_across_both_halves() {
        let [low, high] = tss64(0x1234_5678_9abc_def0, 0x67, SYSTEM_TYPE_TSS_AVAILABLE);
        let d = decode(low);
        assert_eq!(d.base, 0x9abc_def0);
        assert_eq!(d.limit, 0x67);
        assert_eq!(d.type_, 9);
        assert_eq!((d.s, d.present, d.g), (0, 1, 0));
        assert_eq!(high, 0x1234_5678);
    }

    #[test]
    fn selectors_carry_rpl() {
        assert_eq!(selector(1, Ring::Ring0), 0x08);
        assert_eq!(selector(4, Ring::Ring3), 0x23);
    }
}
