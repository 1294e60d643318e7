//! Application processors, started the way firmware and Linux do it: INIT, then
//! STARTUP IPIs through the local APIC (Intel SDM vol. 3 §9.4.4). The VMM leaves every AP in
//! KVM's wait-for-SIPI state; a SIPI with vector `v` starts it in real mode at `v * 0x1000`.
//!
//! The trampoline copied to [`TRAMPOLINE`] takes the AP from real mode through 32-bit
//! protected mode (its own three-descriptor GDT) to long mode with the BSP's page tables,
//! then jumps to [`ap_main`] on a stack the BSP allocated. There each AP loads its own GDT and
//! TSS (with its own RSP0 and seven IST stacks, since every IDT gate names an IST slot), the
//! shared IDT, its per-CPU data, and enables its LAPIC (flat logical ID `1 << cpu`); then it
//! idles in `sti; hlt`, serving whatever interrupts are routed to it. APs are started one at a
//! time: they share the trampoline's parameter slots.

use crate::apic::LAPIC;
use crate::boot::Boot;
use crate::cpu;
use crate::gdt::IST_SIZE;
use crate::percpu::MAX_CPUS;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use irqlab_abi::boot_info::MEM_RAM;

/// Where the trampoline runs (below 1 MiB, page-aligned, free after boot: see the layout).
pub const TRAMPOLINE: u64 = 0xa000;
const SIPI_VECTOR: u32 = (TRAMPOLINE >> 12) as u32;
/// ICR: INIT, level assert.
const ICR_INIT: u32 = (5 << 8) | (1 << 14);
/// ICR: STARTUP.
const ICR_STARTUP: u32 = 6 << 8;
/// Stacks per AP: the entry stack, RSP0 and seven IST stacks.
const STACKS_PER_AP: u64 = 9;

core::arch::global_asm!(
    ".pushsection .rodata.irqlab_trampoline, \"a\"",
    ".balign 16",
    ".code16",
    ".global irqlab_trampoline_start",
    "irqlab_trampoline_start:",
    "cli",
    "cld",
    "movw %cs, %ax",
    "movw %ax, %ds",
    "lgdtl (irqlab_tramp_gdtr - irqlab_trampoline_start)",
    "movl %cr0, %eax",
    "orl $1, %eax",
    "movl %eax, %cr0",
    "ljmpl $0x08, $(0xa000 + irqlab_tramp_pm - irqlab_trampoline_start)",
    ".code32",
    "irqlab_tramp_pm:",
    "movw $0x10, %ax",
    "movw %ax, %ds",
    "movw %ax, %es",
    "movw %ax, %ss",
    // CR4: PAE, OSFXSR, OSXMMEXCPT (as the BSP's _start sets them).
    "movl %cr4, %eax",
    "orl $0x620, %eax",
    "movl %eax, %cr4",
    "movl (0xa000 + irqlab_tramp_cr3 - irqlab_trampoline_start), %eax",
    "movl %eax, %cr3",
    "movl $0xc0000080, %ecx",
    "movl (0xa000 + irqlab_tramp_efer - irqlab_trampoline_start), %eax",
    "xorl %edx, %edx",
    "wrmsr",
    // CR0: PG | MP | PE, EM clear.
    "movl %cr0, %eax",
    "orl $0x80000003, %eax",
    "andl $0xfffffffb, %eax",
    "movl %eax, %cr0",
    "ljmpl $0x18, $(0xa000 + irqlab_tramp_lm - irqlab_trampoline_start)",
    ".code64",
    "irqlab_tramp_lm:",
    "movq (0xa000 + irqlab_tramp_stack - irqlab_trampoline_start), %rsp",
    "movq (0xa000 + irqlab_tramp_cpu - irqlab_trampoline_start), %rdi",
    "movq (0xa000 + irqlab_tramp_entry - irqlab_trampoline_start), %rax",
    "jmpq *%rax",
    ".balign 8",
    "irqlab_tramp_gdt:",
    ".quad 0",
    ".quad 0x00cf9a000000ffff",
    ".quad 0x00cf92000000ffff",
    ".quad 0x00af9a000000ffff",
    "irqlab_tramp_gdtr:",
    ".word 31",
    ".long 0xa000 + irqlab_tramp_gdt - irqlab_trampoline_start",
    ".balign 8",
    ".global irqlab_tramp_params",
    "irqlab_tramp_params:",
    "irqlab_tramp_cr3: .quad 0",
    "irqlab_tramp_efer: .quad 0",
    "irqlab_tramp_stack: .quad 0",
    "irqlab_tramp_cpu: .quad 0",
    "irqlab_tramp_entry: .quad 0",
    ".global irqlab_trampoline_end",
    "irqlab_trampoline_end:",
    ".popsection",
    options(att_syntax)
);

unsafe extern "C" {
    static irqlab_trampoline_start: u8;
    static irqlab_tramp_params: u8;
    static irqlab_trampoline_end: u8;
}

/// The trampoline's parameter slots, in order.
#[repr(C)]
struct Params {
    cr3: u64,
    efer: u64,
    stack: u64,
    cpu: u64,
    entry: u64,
}

/// Each AP's RSP0 and IST stack tops, written by the BSP before the SIPI.
struct ApStacks(UnsafeCell<[[u64; 8]; MAX_CPUS]>);
// SAFETY: entry `i` is written by the BSP before AP `i` starts and only read by AP `i`.
unsafe impl Sync for ApStacks {}
static AP_STACKS: ApStacks = ApStacks(UnsafeCell::new([[0; 8]; MAX_CPUS]));

/// CPUs running (the BSP counts).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Next free byte of the AP stack area.
static NEXT_STACK: AtomicU64 = AtomicU64::new(0);

/// CPUs online.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Takes `bytes` from the first RAM region above 2 MiB (identity-mapped with large pages);
/// returns the top, or `None` if RAM ran out.
fn alloc_stack(boot: &Boot, bytes: u64) -> Option<u64> {
    if NEXT_STACK.load(Ordering::Relaxed) == 0 {
        let ram = boot.mem_map().iter().find(|e| e.kind == MEM_RAM)?;
        NEXT_STACK.store(ram.addr.max(0x20_0000), Ordering::Relaxed);
    }
    let base = NEXT_STACK.fetch_add(bytes, Ordering::Relaxed);
    let ram_end = boot
        .mem_map()
        .iter()
        .filter(|e| e.kind == MEM_RAM)
        .map(|e| e.addr + e.size)
        .max()?;
    (base + bytes <= ram_end).then_some(base + bytes)
}

/// Starts every AP the boot info announces; returns how many CPUs are online.
pub fn start_aps(boot: &Boot) -> usize {
    let cpus = (boot.info.vcpus as usize).min(MAX_CPUS);
    if cpus <= 1 || online() >= cpus {
        return online();
    }
    LAPIC.set_logical_id(0);
    // Assembler symbols; only their addresses are used.
    let (start, params, end) = (
        &raw const irqlab_trampoline_start as u64,
        &raw const irqlab_tramp_params as u64,
        &raw const irqlab_trampoline_end as u64,
    );
    // SAFETY: [TRAMPOLINE, +len) is free low memory (guest ABI layout), identity-mapped and
    // writable; the source is the trampoline's bytes in .rodata.
    unsafe {
        core::ptr::copy_nonoverlapping(
            start as *const u8,
            TRAMPOLINE as *mut u8,
            (end - start) as usize,
        )
    };
    let slots = (TRAMPOLINE + (params - start)) as *mut Params;
    let khz = boot.info.tsc_khz.max(1);
    for ap in 1..cpus {
        let size = IST_SIZE as u64;
        let Some(top) = alloc_stack(boot, STACKS_PER_AP * size) else {
            crate::println!(
                "smp: no RAM left for CPU {}'s stacks",
                crate::fmt::Dec(ap as u64)
            );
            break;
        };
        let mut tops = [0u64; 8];
        for (i, t) in tops.iter_mut().enumerate() {
            *t = top - (i as u64 + 1) * size;
        }
        // SAFETY: AP `ap` has not started; nobody else reads this entry yet.
        unsafe { (*AP_STACKS.0.get())[ap] = tops };
        let before = online();
        // SAFETY: the slots are in the copied trampoline; the previous AP has finished with
        // them (it incremented ONLINE only after leaving the trampoline).
        unsafe {
            slots.write_volatile(Params {
                cr3: cpu::cr3(),
                efer: cpu::rdmsr(cpu::MSR_EFER) & !(1 << 10),
                stack: top - 8,
                cpu: ap as u64,
                entry: ap_main as *const () as u64,
            })
        };
        LAPIC.send_ipi(ap as u8, ICR_INIT);
        delay(khz, 1);
        for _ in 0..2 {
            LAPIC.send_ipi(ap as u8, ICR_STARTUP | SIPI_VECTOR);
            let t0 = cpu::rdtsc();
            while online() == before && cpu::rdtsc() - t0 < 200 * khz {
                core::hint::spin_loop();
            }
            if online() > before {
                break;
            }
        }
        if online() == before {
            crate::println!("smp: CPU {} did not come up", crate::fmt::Dec(ap as u64));
        }
    }
    online()
}

fn delay(khz: u64, ms: u64) {
    let t0 = cpu::rdtsc();
    while cpu::rdtsc() - t0 < ms * khz {
        core::hint::spin_loop();
    }
}

/// Where APs arrive in long mode (RDI = CPU index, on their entry stack).
extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    // SAFETY: the BSP wrote this entry before sending the SIPI.
    let tops = unsafe { (*AP_STACKS.0.get())[cpu] };
    let mut ist = [0u64; 7];
    ist.copy_from_slice(&tops[1..]);
    crate::gdt::init_cpu(cpu, tops[0], &ist);
    crate::idt::load();
    crate::percpu::init_cpu(cpu, 0);
    LAPIC.enable();
    LAPIC.set_logical_id(cpu);
    ONLINE.fetch_add(1, Ordering::Release);
    loop {
        cpu::sti_hlt();
    }
}
