//! Identity page tables for the low 4 GiB with 2 MiB pages: one PML4, one PDPT and four page
//! directories at `layout::PAGE_TABLES`. The IO-APIC/LAPIC windows (top 32 MiB) are mapped
//! uncached.

use super::BootError;
use irqlab_abi::layout::{IDENTITY_MAPPED, PAGE_TABLES};
use irqlab_x86::paging::{self, CACHE_DISABLE, PAGE_2M, WRITABLE, WRITE_THROUGH};
use vm_memory::{Bytes, GuestAddress};

/// Start of the uncached MMIO mapping (covers the IO-APIC at 0xfec00000 and the LAPIC at
/// 0xfee00000).
pub const UNCACHED_FROM: u64 = irqlab_abi::layout::MMIO_HOLE_START;

const PML4: u64 = PAGE_TABLES;
const PDPT: u64 = PAGE_TABLES + 0x1000;
const PD0: u64 = PAGE_TABLES + 0x2000;

/// Writes the tables; returns the value for CR3.
pub fn write(mem: &crate::memory::GuestMemory) -> Result<u64, BootError> {
    let put = |addr: u64, value: u64| {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(|source| BootError::Memory {
                what: "page tables",
                addr,
                source,
            })
    };
    put(PML4, paging::table_entry(PDPT, WRITABLE))?;
    let directories = IDENTITY_MAPPED / (1 << 30);
    for d in 0..directories {
        put(
            PDPT + 8 * d,
            paging::table_entry(PD0 + 0x1000 * d, WRITABLE),
        )?;
    }
    let pages = IDENTITY_MAPPED / PAGE_2M;
    for i in 0..pages {
        let addr = i * PAGE_2M;
        let cache = if addr >= UNCACHED_FROM {
            CACHE_DISABLE | WRITE_THROUGH
        } else {
            0
        };
        put(PD0 + 8 * i, paging::huge_2m_entry(addr, WRITABLE | cache))?;
    }
    Ok(PML4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    /// Walks the tables the way the MMU does, for a 2 MiB mapping.
    fn walk(mem: &crate::memory::GuestMemory, cr3: u64, va: u64) -> Option<(u64, u64)> {
        let [l4, l3, l2, _] = paging::indices(va);
        let e4: u64 = mem.read_obj(GuestAddress(cr3 + 8 * l4 as u64)).ok()?;
        let e3: u64 = mem
            .read_obj(GuestAddress((e4 & paging::ADDR_MASK) + 8 * l3 as u64))
            .ok()?;
        let e2: u64 = mem
            .read_obj(GuestAddress((e3 & paging::ADDR_MASK) + 8 * l2 as u64))
            .ok()?;
        (e2 & paging::PRESENT != 0 && e2 & paging::HUGE != 0)
            .then(|| ((e2 & paging::ADDR_MASK) + (va & (PAGE_2M - 1)), e2 & 0xfff))
    }

    #[test]
    fn low_4gib_is_identity_mapped_and_mmio_is_uncached() {
        let mem = crate::memory::create(8 << 20).unwrap();
        let cr3 = write(&mem).unwrap();
        for va in [
            0u64,
            0x10_0000,
            0x7fff_ffff,
            0xfec0_0000,
            0xfee0_0ff0,
            0xffff_ffff,
        ] {
            let (pa, flags) = walk(&mem, cr3, va).expect("mapped");
            assert_eq!(pa, va);
            assert_eq!(flags & CACHE_DISABLE != 0, va >= UNCACHED_FROM, "{va:#x}");
        }
    }
}
