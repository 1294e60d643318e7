//! 4-level paging structures (Intel SDM vol. 3, §4.5, tables 4-14 to 4-20).

/// Entry present.
pub const PRESENT: u64 = 1 << 0;
/// Writable.
pub const WRITABLE: u64 = 1 << 1;
/// Accessible from ring 3 (U/S).
pub const USER: u64 = 1 << 2;
/// Page-level write-through.
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Page-level cache disable (used for MMIO windows).
pub const CACHE_DISABLE: u64 = 1 << 4;
/// Page size: in a PDPTE maps 1 GiB, in a PDE maps 2 MiB.
pub const HUGE: u64 = 1 << 7;
/// Execute-disable (needs EFER.NXE).
pub const NO_EXECUTE: u64 = 1 << 63;
/// Physical-address bits of an entry pointing to a 4 KiB aligned table or page.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Bytes mapped by one 4 KiB page.
pub const PAGE_4K: u64 = 4096;
/// Bytes mapped by one page-directory entry with [`HUGE`].
pub const PAGE_2M: u64 = 2 << 20;
/// Entries in every paging table.
pub const ENTRIES: usize = 512;

/// Index of `addr` in the PML4, PDPT, PD and PT (in that order).
pub const fn indices(addr: u64) -> [usize; 4] {
    [
        ((addr >> 39) & 0x1ff) as usize,
        ((addr >> 30) & 0x1ff) as usize,
        ((addr >> 21) & 0x1ff) as usize,
        ((addr >> 12) & 0x1ff) as usize,
    ]
}

/// An entry pointing to a lower-level table at `table_addr`.
pub const fn table_entry(table_addr: u64, flags: u64) -> u64 {
    (table_addr & ADDR_MASK) | flags | PRESENT
}

/// A page-directory entry mapping the 2 MiB page at `addr`.
pub const fn huge_2m_entry(addr: u64, flags: u64) -> u64 {
    (addr & ADDR_MASK & !(PAGE_2M - 1)) | flags | HUGE | PRESENT
}

/// A page-table entry mapping the 4 KiB page at `addr`.
pub const fn page_4k_entry(addr: u64, flags: u64) -> u64 {
    (addr & ADDR_MASK) | flags | PRESENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_split_a_canonical_address() {
        assert_eq!(indices(0xfee0_0000), [0, 3, 503, 0]);
        assert_eq!(indices(0x0020_1000), [0, 0, 1, 1]);
        assert_eq!(indices(0xffff_8000_0000_0000), [256, 0, 0, 0]);
    }

    #[test]
    fn entries_keep_flags_and_mask_the_address() {
        assert_eq!(table_entry(0x5000, WRITABLE), 0x5003);
        assert_eq!(huge_2m_entry(0x0040_1234, WRITABLE), 0x0040_0083);
        assert_eq!(page_4k_entry(0x3000, USER | WRITABLE), 0x3007);
    }
}
