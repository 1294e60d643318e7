//! The kernel's own page tables (Intel SDM vol. 3 §4.5).
//!
//! Identity map of the low 4 GiB like the VMM's entry tables, with two differences: the first
//! 2 MiB (where the kernel is loaded) is mapped with 4 KiB pages so that
//! - the user window `[__user_start, __user_end)` is the only memory with U/S = 1, and
//! - every stack's guard page is left not-present (an overflow faults instead of corrupting).
//!
//! The MMIO hole (from `MMIO_HOLE_START`: MSI source, IO-APIC, LAPIC) is mapped uncached.
//!
//! The kernel keeps the page directories it was entered with (the VMM's, or the PVH entry's:
//! both identity-map the low 4 GiB with 2 MiB pages, the MMIO hole uncached) and only points
//! the first entry of the first one at its own 4 KiB table. Building 2048 directory entries itself would cost
//! ~10 ms on hosts that emulate every guest instruction (kvm-pvm), a third of the boot.

use crate::cpu;
use core::cell::UnsafeCell;
use irqlab_x86::paging::{self, PAGE_2M, PAGE_4K, USER, WRITABLE};

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables {
    pml4: UnsafeCell<Table>,
    pdpt: UnsafeCell<Table>,
    pt0: UnsafeCell<Table>,
}
// SAFETY: built once by `init` on the boot CPU; afterwards only the MMU reads them (and
// `set_present` on the boot CPU with interrupts off).
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables {
    pml4: UnsafeCell::new(Table([0; 512])),
    pdpt: UnsafeCell::new(Table([0; 512])),
    pt0: UnsafeCell::new(Table(kernel_pages())),
};

/// The first 2 MiB identity-mapped with 4 KiB kernel-only pages, computed at compile time:
/// writing 512 entries at boot took ~1 ms on hosts that emulate every guest instruction.
const fn kernel_pages() -> [u64; 512] {
    let mut t = [0; 512];
    let mut i = 0;
    while i < 512 {
        t[i] = paging::page_4k_entry((i as u64) << 12, WRITABLE);
        i += 1;
    }
    t
}

unsafe extern "C" {
    static __user_start: u8;
    static __user_end: u8;
    static __kernel_end: u8;
}

/// The user window `[start, end)`.
pub fn user_window() -> (u64, u64) {
    // SAFETY: linker symbols; only their addresses are used.
    (&raw const __user_start as u64, &raw const __user_end as u64)
}

/// One past the kernel image.
pub fn kernel_end() -> u64 {
    // SAFETY: linker symbol; only its address is used.
    &raw const __kernel_end as u64
}

/// Physical-address bits of a table entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Stores one entry. Volatile, so the compiler cannot vectorise table construction into SSE
/// stores: on shadow-paging hosts (kvm-pvm) KVM emulates writes to write-tracked pages, and
/// its instruction emulator has no SSE.
fn set(e: &mut u64, value: u64) {
    // SAFETY: `e` is a valid, aligned reference.
    unsafe { core::ptr::write_volatile(e, value) }
}

/// Builds the tables, unmaps `guards`, and loads CR3.
pub fn init(guards: &[u64]) {
    assert!(kernel_end() <= PAGE_2M, "kernel image must end below 2 MiB");
    let (user_start, user_end) = user_window();
    // SAFETY: single-threaded init before CR3 points at these tables.
    let (pml4, pdpt, pt0) = unsafe {
        (
            &mut *TABLES.pml4.get(),
            &mut *TABLES.pdpt.get(),
            &mut *TABLES.pt0.get(),
        )
    };
    // The page directories the CPU runs on now (the VMM's, or the PVH entry's), found
    // through CR3: PML4[0] → PDPT[g] → PD g.
    let live_pdpt = {
        // SAFETY: CR3 and the tables it names are identity-mapped and valid (we run on them).
        let pml4 = unsafe { core::ptr::read_volatile((cpu::cr3() & ADDR_MASK) as *const u64) };
        pml4 & ADDR_MASK
    };
    let vmm_pd = |g: u64| {
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile((live_pdpt + 8 * g) as *const u64) & ADDR_MASK }
    };
    // Upper levels allow user access; the leaves decide.
    set(
        &mut pml4.0[0],
        paging::table_entry(pdpt.0.as_ptr() as u64, WRITABLE | USER),
    );
    for g in 0..4u64 {
        set(
            &mut pdpt.0[g as usize],
            paging::table_entry(vmm_pd(g), WRITABLE | USER),
        );
    }
    // Every page starts kernel-only (`kernel_pages`); the user window's few pages get U/S = 1.
    for page in (user_start / PAGE_4K)..user_end.div_ceil(PAGE_4K) {
        let addr = page * PAGE_4K;
        set(
            &mut pt0.0[page as usize],
            paging::page_4k_entry(addr, WRITABLE | USER),
        );
    }
    for &g in guards {
        assert!(
            g != 0 && g < PAGE_2M,
            "guard page {g:#x} outside the kernel's first 2 MiB"
        );
        set(&mut pt0.0[(g / PAGE_4K) as usize], 0);
    }
    // SAFETY: the VMM's first page directory is identity-mapped boot memory this kernel now
    // owns; its entry 0 (the first 2 MiB as one large page) becomes a pointer to pt0, which
    // maps the same addresses. The live CR3 still uses this entry, but the old and the new
    // translation agree for every page but the guard pages, and the CR3 load below flushes.
    let pd0 = unsafe { &mut *(vmm_pd(0) as *mut u64) };
    set(
        pd0,
        paging::table_entry(pt0.0.as_ptr() as u64, WRITABLE | USER),
    );
    // SAFETY: the new tables map the whole kernel, its stacks (minus guard pages) and the
    // MMIO windows exactly as before, so execution continues unchanged.
    unsafe { cpu::set_cr3(pml4.0.as_ptr() as u64) };
}

/// Whether `addr` is mapped with U/S = 1 at the leaf (for the self-test).
pub fn is_user(addr: u64) -> bool {
    if addr >= PAGE_2M {
        return false;
    }
    // SAFETY: plain read of a static table.
    let e = unsafe { (*TABLES.pt0.get()).0[(addr / PAGE_4K) as usize] };
    e & paging::PRESENT != 0 && e & USER != 0
}
