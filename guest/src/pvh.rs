//! PVH entry: the same kernel boots from a PVH loader (QEMU `-kernel`, irqlab
//! `boot = "pvh"`), which enters `pvh_start` in 32-bit protected mode, paging off, with EBX
//! pointing at a `hvm_start_info` (`irqlab_abi::pvh`).
//!
//! The 32-bit stub loads a GDT, builds nothing at run time (the identity map of the low
//! 4 GiB with 2 MiB pages, MMIO hole uncached, is assembled into `.data`), enables PAE, long
//! mode and paging, and continues in 64-bit code on the boot stack. [`pvh_main`] then
//! translates the start info into irqlab's own boot info (memory map, command line, the
//! devices a PC or QEMU microvm has at the standard places) and calls `kmain` as the native
//! entry would. There is no VMM to say what host this is: `host=pvm` on the command line tells
//! the guest, and the TSC frequency is measured against the PIT.

use crate::boot_info_builder::BootInfoBuilder;
use irqlab_abi::pvh::{HvmMemmapEntry, HvmStartInfo, HVM_MEMMAP_TYPE_RAM, HVM_START_MAGIC};

core::arch::global_asm!(
    // The note: name "Xen", type XEN_ELFNOTE_PHYS32_ENTRY, the 32-bit entry address.
    ".pushsection .note.Xen, \"a\"",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long 18",
    ".asciz \"Xen\"",
    ".long irqlab_pvh_start",
    ".popsection",
    // irqlab's own note: this kernel speaks the irqlab boot ABI (native entry), version 1.
    ".pushsection .note.irqlab, \"a\"",
    ".balign 4",
    ".long 7",
    ".long 4",
    ".long 1",
    ".asciz \"irqlab\"",
    ".balign 4",
    ".long 1",
    ".popsection",
    // Page tables and GDT, fully assembled: no code runs before paging is on.
    ".pushsection .data.irqlab_pvh, \"aw\"",
    ".balign 4096",
    "irqlab_pvh_pml4:",
    ".quad irqlab_pvh_pdpt + 0x3",
    ".fill 511, 8, 0",
    "irqlab_pvh_pdpt:",
    ".quad irqlab_pvh_pd + 0x3",
    ".quad irqlab_pvh_pd + 0x1003",
    ".quad irqlab_pvh_pd + 0x2003",
    ".quad irqlab_pvh_pd + 0x3003",
    ".fill 508, 8, 0",
    "irqlab_pvh_pd:",
    ".set addr, 0",
    ".rept 2048",
    // Present, writable, 2 MiB; PCD|PWT from the MMIO hole (0xc0000000) up.
    ".if addr >= 0xc0000000",
    ".quad addr + 0x9b",
    ".else",
    ".quad addr + 0x83",
    ".endif",
    ".set addr, addr + 0x200000",
    ".endr",
    ".balign 16",
    "irqlab_pvh_gdt:",
    ".quad 0",
    ".quad 0x00af9a000000ffff", // 0x08: 64-bit code
    ".quad 0x00cf92000000ffff", // 0x10: data
    "irqlab_pvh_gdtr:",
    ".word 23",
    ".long irqlab_pvh_gdt",
    ".long 0",
    ".popsection",
    ".pushsection .text.irqlab_pvh, \"ax\"",
    ".code32",
    ".global irqlab_pvh_start",
    "irqlab_pvh_start:",
    "cli",
    "cld",
    "movl %ebx, %edi", // start info, kept for pvh_main (RDI)
    "lgdtl irqlab_pvh_gdtr",
    "movl %cr4, %eax",
    "orl $0x620, %eax", // PAE, OSFXSR, OSXMMEXCPT
    "movl %eax, %cr4",
    "movl $irqlab_pvh_pml4, %eax",
    "movl %eax, %cr3",
    "movl $0xc0000080, %ecx",
    "rdmsr",
    "orl $0x100, %eax", // EFER.LME
    "wrmsr",
    "movl %cr0, %eax",
    "orl $0x80000003, %eax", // PG | MP | PE
    "andl $0xfffffffb, %eax", // EM off
    "movl %eax, %cr0",
    "ljmpl $0x08, $irqlab_pvh_long",
    ".code64",
    "irqlab_pvh_long:",
    "movl $0x10, %eax",
    "movl %eax, %ds",
    "movl %eax, %es",
    "movl %eax, %ss",
    "xorl %eax, %eax",
    "movl %eax, %fs",
    "movl %eax, %gs",
    "leaq {stack}+{top}(%rip), %rsp",
    "xorl %ebp, %ebp",
    "call {main}",
    "2: cli",
    "hlt",
    "jmp 2b",
    ".popsection",
    stack = sym crate::BOOT_STACK,
    top = const 4096 + 64 * 1024,
    main = sym pvh_main,
    options(att_syntax)
);

/// 64-bit continuation of the PVH entry: builds irqlab's boot info and runs the kernel.
extern "C" fn pvh_main(start_info: u64) -> ! {
    crate::serial::init();
    // SAFETY: the PVH loader passed the start info's physical address in EBX; the first
    // 4 GiB are identity-mapped.
    let si: HvmStartInfo = unsafe { core::ptr::read_volatile(start_info as *const HvmStartInfo) };
    if si.magic != HVM_START_MAGIC {
        crate::println!(
            "FAIL boot-info: PVH start info magic {:#x} is wrong",
            si.magic
        );
        crate::exit::exit(irqlab_abi::status::BAD_BOOT_INFO);
    }
    let mut b = BootInfoBuilder::new();
    if si.cmdline_paddr != 0 {
        // SAFETY: the loader's NUL-terminated command line, identity-mapped.
        unsafe { b.cmdline_from_c(si.cmdline_paddr) };
    }
    if si.version >= 1 && si.memmap_paddr != 0 {
        for i in 0..u64::from(si.memmap_entries).min(64) {
            // SAFETY: `memmap_entries` records at `memmap_paddr`, identity-mapped.
            let e: HvmMemmapEntry = unsafe {
                core::ptr::read_volatile((si.memmap_paddr + i * 24) as *const HvmMemmapEntry)
            };
            if e.kind == HVM_MEMMAP_TYPE_RAM {
                b.ram(e.addr, e.size);
            }
        }
    }
    crate::kmain(b.finish())
}
