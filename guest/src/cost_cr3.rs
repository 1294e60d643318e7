//! The cost table's CR3 rows (`run=cost`): kernel CR3 loads alternating between the kernel's
//! PML4 and a copy of it, without PCIDs and, where CPUID offers them, with CR4.PCIDE = 1 and
//! the no-flush bit (Intel SDM vol. 3 §4.10.1).

use crate::boot::Boot;
use crate::cost::{kernel_loop, row};
use crate::{check, cpu, skip, user};
use core::cell::UnsafeCell;

/// A page-aligned PML4 (the second address space of the CR3 rows).
#[repr(C, align(4096))]
struct Pml4(UnsafeCell<[u64; 512]>);
// SAFETY: only the boot CPU writes it, before loading it.
unsafe impl Sync for Pml4 {}
static SECOND_PML4: Pml4 = Pml4(UnsafeCell::new([0; 512]));

/// CR4.PCIDE (Intel SDM vol. 3 §4.10.1).
const CR4_PCIDE: u64 = 1 << 17;
/// MOV to CR3 bit 63 with CR4.PCIDE = 1: keep the new PCID's TLB entries.
const CR3_NOFLUSH: u64 = 1 << 63;
const CR3_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// CR3 loads alternating between the kernel's PML4 and a copy of it (so the address space
/// really changes, with the same mappings), without PCIDs (every load flushes the TLB's
/// non-global entries) and, where CPUID offers them, with CR4.PCIDE = 1, PCIDs 1 and 2 and
/// the no-flush bit. CR3 and CR4 are restored exactly.
pub fn rows(boot: &Boot, iters: usize) {
    let cr3 = cpu::cr3();
    let cr4 = cpu::cr4();
    let a = cr3 & CR3_ADDR;
    let b = SECOND_PML4.0.get() as u64;
    let low = cr3 & 0xfff;
    for i in 0..512u64 {
        // SAFETY: `a` is the live PML4 (identity-mapped), `b` our own table; volatile so the
        // copy stays plain 8-byte moves.
        unsafe {
            let e = ((a + i * 8) as *const u64).read_volatile();
            ((b + i * 8) as *mut u64).write_volatile(e);
        }
    }
    let samples = user::samples(iters);
    let mut flip = false;
    kernel_loop(samples, || {
        flip = !flip;
        // SAFETY: both tables hold the same entries, so every mapping in use stays.
        unsafe { cpu::set_cr3(if flip { b } else { a } | low) };
    });
    // SAFETY: the original value.
    unsafe { cpu::set_cr3(cr3) };
    row(boot, "cr3-switch", samples);

    let pcid = core::arch::x86_64::__cpuid(1).ecx & (1 << 17) != 0;
    if !pcid {
        skip!(
            "cost-cr3-pcid",
            "CPUID.01H:ECX.PCID[17] is clear on this CPU (host {}): no process-context identifiers",
            boot.info.host().name()
        );
    } else if low != 0 || cr4 & CR4_PCIDE != 0 {
        skip!(
            "cost-cr3-pcid",
            "CR3[11:0] = {low:#x}, CR4 = {cr4:#x}: CR4.PCIDE can only be set while CR3[11:0] = 0"
        );
    } else {
        // SAFETY: long mode, CR3[11:0] = 0 (checked), CPUID offers PCIDs: setting PCIDE is
        // allowed and changes no translation (the current PCID is 0).
        unsafe { cpu::set_cr4(cr4 | CR4_PCIDE) };
        kernel_loop(samples, || {
            flip = !flip;
            let next = if flip { b | 1 } else { a | 2 };
            // SAFETY: as above; PCIDs 1 and 2 hold only entries of these identical tables.
            unsafe { cpu::set_cr3(CR3_NOFLUSH | next) };
        });
        // SAFETY: back to PCID 0 (flushing it), PCIDE cleared (flushes every PCID), and the
        // original CR3 once more for good measure: the state before the experiment.
        unsafe {
            cpu::set_cr3(cr3);
            cpu::set_cr4(cr4);
            cpu::set_cr3(cr3);
        }
        row(boot, "cr3-switch-pcid", samples);
    }
    let (cr3_now, cr4_now) = (cpu::cr3(), cpu::cr4());
    check!(
        cr3_now == cr3 && cr4_now == cr4,
        "cost-cr3-restore",
        "CR3 {cr3_now:#x} (was {cr3:#x}) and CR4 {cr4_now:#x} (was {cr4:#x}) after the switches"
    );
}
