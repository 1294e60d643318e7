//! The kernel's own page tables (Intel SDM vol. 3 §4.5).
//!
//! Identity map of the low 4 GiB like the VMM's entry tables, with two differences: the first
//! 2 MiB (where the kernel is loaded) is mapped with 4 KiB pages so that
//! - the user window `[__user_start, __user_end)` is the only memory with U/S = 1, and
//! - every stack's guard page is left not-present (an overflow faults instead of corrupting).
//!
//! The MMIO hole (from `MMIO_HOLE_START`: MSI source, IO-APIC, LAPIC) is mapped uncached.

use crate::cpu;
use core::cell::UnsafeCell;
use irqlab_x86::paging::{self, CACHE_DISABLE, PAGE_2M, PAGE_4K, USER, WRITABLE, WRITE_THROUGH};

#[repr(C, align(4096))]
struct Table([u64; 512]);

struct Tables {
    pml4: UnsafeCell<Table>,
    pdpt: UnsafeCell<Table>,
    pd: UnsafeCell<[Table; 4]>,
    pt0: UnsafeCell<Table>,
}
// SAFETY: built once by `init` on the boot CPU; afterwards only the MMU reads them (and
// `set_present` on the boot CPU with interrupts off).
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables {
    pml4: UnsafeCell::new(Table([0; 512])),
    pdpt: UnsafeCell::new(Table([0; 512])),
    pd: UnsafeCell::new([const { Table([0; 512]) }; 4]),
    pt0: UnsafeCell::new(Table([0; 512])),
};

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
    let (pml4, pdpt, pd, pt0) = unsafe {
        (
            &mut *TABLES.pml4.get(),
            &mut *TABLES.pdpt.get(),
            &mut *TABLES.pd.get(),
            &mut *TABLES.pt0.get(),
        )
    };
    // Upper levels allow user access; the leaves decide.
    set(
        &mut pml4.0[0],
        paging::table_entry(pdpt.0.as_ptr() as u64, WRITABLE | USER),
    );
    for (g, dir) in pd.iter_mut().enumerate() {
        set(
            &mut pdpt.0[g],
            paging::table_entry(dir.0.as_ptr() as u64, WRITABLE | USER),
        );
        for (i, e) in dir.0.iter_mut().enumerate() {
            let addr = ((g as u64) << 30) | ((i as u64) * PAGE_2M);
            let cache = if addr >= irqlab_abi::layout::MMIO_HOLE_START {
                CACHE_DISABLE | WRITE_THROUGH
            } else {
                0
            };
            set(e, paging::huge_2m_entry(addr, WRITABLE | cache));
        }
    }
    set(
        &mut pd[0].0[0],
        paging::table_entry(pt0.0.as_ptr() as u64, WRITABLE | USER),
    );
    for (i, e) in pt0.0.iter_mut().enumerate() {
        let addr = i as u64 * PAGE_4K;
        let user = if addr >= user_start && addr < user_end {
            USER
        } else {
            0
        };
        set(e, paging::page_4k_entry(addr, WRITABLE | user));
    }
    for &g in guards {
        set(&mut pt0.0[(g / PAGE_4K) as usize], 0);
    }
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
