//! The kernel's GDT and TSS (Intel SDM vol. 3 §3.4.5, §8.7).
//!
//! | index | selector | descriptor                                         |
//! |-------|----------|----------------------------------------------------|
//! | 1     | 0x08     | kernel code, 64-bit                                |
//! | 2     | 0x10     | kernel data                                        |
//! | 3     | 0x1b     | user data (RPL 3)   ← SYSRET loads SS = STAR.63:48 + 8 |
//! | 4     | 0x23     | user code, 64-bit   ← SYSRET loads CS = STAR.63:48 + 16 |
//! | 5–6   | 0x28     | TSS (16-byte system descriptor)                    |
//! | 7     | 0x38     | data, *not present* (for the #NP/#SS self-tests)   |

use crate::percpu::MAX_CPUS;
use crate::stack::Stack;
use core::cell::UnsafeCell;
use irqlab_x86::segment::{self, Ring};

/// Kernel code selector.
pub const KERNEL_CS: u16 = segment::selector(1, Ring::Ring0);
/// Kernel data selector.
pub const KERNEL_DS: u16 = segment::selector(2, Ring::Ring0);
/// User data selector.
pub const USER_DS: u16 = segment::selector(3, Ring::Ring3);
/// User code selector.
pub const USER_CS: u16 = segment::selector(4, Ring::Ring3);
/// TSS selector.
pub const TSS: u16 = segment::selector(5, Ring::Ring0);
/// A selector whose descriptor is not present.
pub const NOT_PRESENT: u16 = segment::selector(7, Ring::Ring0);

/// IST slot of external interrupts and unexpected vectors.
pub const IST_IRQ: u8 = 1;
/// IST slot of exceptions without a slot of their own.
pub const IST_EXCEPTION: u8 = 2;
/// IST slot of #DF.
pub const IST_DOUBLE_FAULT: u8 = 3;
/// IST slot of NMI.
pub const IST_NMI: u8 = 4;
/// IST slot of #MC.
pub const IST_MACHINE_CHECK: u8 = 5;
/// IST slot of #PF (a #PF inside another exception handler must not reuse its stack).
pub const IST_PAGE_FAULT: u8 = 6;
/// IST slot of #GP.
pub const IST_GP: u8 = 7;

/// Size of each IST and RSP0 stack.
pub const IST_SIZE: usize = 16 * 1024;

/// The seven IST stacks.
pub static IST_STACKS: [Stack<IST_SIZE>; 7] = [const { Stack::new() }; 7];
/// RSP0: used for ring 3 → 0 transitions through gates without IST (none today).
pub static RSP0_STACK: Stack<IST_SIZE> = Stack::new();

/// One CPU's GDT and TSS.
struct Tables {
    gdt: UnsafeCell<[u64; 8]>,
    /// The 104-byte TSS as 26 doublewords (RSP0 at byte 4, IST1 at byte 36, I/O map base at
    /// byte 102), so no field is ever accessed unaligned.
    tss: UnsafeCell<[u32; 26]>,
}
// SAFETY: each CPU's tables are written once by that CPU's `init_cpu` before it loads them;
// no other CPU touches them.
unsafe impl Sync for Tables {}

static TABLES: [Tables; MAX_CPUS] = [const {
    Tables {
        gdt: UnsafeCell::new([0; 8]),
        tss: UnsafeCell::new([0; 26]),
    }
}; MAX_CPUS];

fn set_tss_u64(tss: &mut [u32; 26], byte: usize, value: u64) {
    tss[byte / 4] = value as u32;
    tss[byte / 4 + 1] = (value >> 32) as u32;
}

/// Builds the boot CPU's GDT and TSS (with the static IST stacks), loads them, reloads every
/// segment register and TR.
pub fn init() {
    let mut ist = [0u64; 7];
    for (top, stack) in ist.iter_mut().zip(IST_STACKS.iter()) {
        stack.arm();
        *top = stack.top();
    }
    RSP0_STACK.arm();
    init_cpu(0, RSP0_STACK.top(), &ist);
}

/// Builds and loads CPU `cpu`'s GDT and TSS with its own RSP0 and IST stack tops. Every CPU
/// shares the IDT, so every CPU must provide all seven IST stacks.
pub fn init_cpu(cpu: usize, rsp0: u64, ist: &[u64; 7]) {
    let t = &TABLES[cpu];
    // SAFETY: only CPU `cpu` touches its tables, once, before loading them.
    let (gdt, tss) = unsafe { (&mut *t.gdt.get(), &mut *t.tss.get()) };
    set_tss_u64(tss, 4, rsp0);
    for (i, top) in ist.iter().enumerate() {
        set_tss_u64(tss, 36 + 8 * i, *top);
    }
    tss[25] = 104 << 16; // I/O map base beyond the limit: no I/O bitmap
    let [tss_low, tss_high] =
        segment::tss64(tss.as_ptr() as u64, 103, segment::SYSTEM_TYPE_TSS_AVAILABLE);
    *gdt = [
        0,
        segment::code64(Ring::Ring0),
        segment::data(Ring::Ring0),
        segment::data(Ring::Ring3),
        segment::code64(Ring::Ring3),
        tss_low,
        tss_high,
        segment::data(Ring::Ring0) & !segment::PRESENT,
    ];
    let pointer = DescriptorPointer {
        limit: (core::mem::size_of::<[u64; 8]>() - 1) as u16,
        base: gdt.as_ptr() as u64,
    };
    // SAFETY: the GDT is static and complete; CS is reloaded with a far return to the new
    // kernel code selector, the data segments and TR with their new selectors.
    unsafe {
        core::arch::asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:e}",
            "mov es, {ds:e}",
            "mov ss, {ds:e}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:e}",
            "ltr {tss:x}",
            ptr = in(reg) &pointer,
            cs = in(reg) u64::from(KERNEL_CS),
            ds = in(reg) u32::from(KERNEL_DS),
            tss = in(reg) TSS,
            tmp = out(reg) _,
        );
    }
}

/// Points CPU `cpu`'s TSS.RSP0 at `top`: the stack the CPU switches to on an interrupt or
/// exception from ring 3 through a gate with IST 0 (the process experiments switch it per
/// task, as Linux does on every context switch).
pub fn set_rsp0(cpu: usize, top: u64) {
    // SAFETY: only CPU `cpu` touches its TSS, with interrupts off; the CPU reads RSP0 only
    // when delivering an event, never concurrently with this store.
    let tss = unsafe { &mut *TABLES[cpu].tss.get() };
    set_tss_u64(tss, 4, top);
}

/// CPU `cpu`'s TSS.RSP0.
pub fn rsp0(cpu: usize) -> u64 {
    // SAFETY: a plain read of this CPU's TSS.
    let tss = unsafe { &*TABLES[cpu].tss.get() };
    u64::from(tss[1]) | (u64::from(tss[2]) << 32)
}

/// Whether every IST stack's canary is intact.
pub fn stacks_intact() -> bool {
    IST_STACKS.iter().all(|s| s.canary_ok()) && RSP0_STACK.canary_ok()
}

/// The operand of `lgdt`/`lidt`.
#[repr(C, packed)]
pub struct DescriptorPointer {
    /// Size - 1.
    pub limit: u16,
    /// Linear address.
    pub base: u64,
}
