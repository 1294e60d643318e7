//! The IDT: 256 gates, each pointing at a 16-byte entry stub. Exceptions, `int 0x80` and the
//! spurious vector funnel into one common path that saves the full register state (a
//! [`Frame`], laid out like Linux's `pt_regs`) and calls [`dispatch`]; device interrupts take a
//! lean path ([`irq_entry`]) that saves only what a Rust function may clobber.
//!
//! Stub for vector `v` (16 bytes each, `STUBS + 16 * v`):
//! ```text
//!   push $0          ; only when the CPU pushes no error code (SDM table 6-1)
//!   push $v
//!   jmp  common
//! ```
//! Common path: `swapgs` if we came from ring 3, push the 15 general registers, align the stack,
//! call `dispatch(&mut Frame)`, undo it all, `iretq`. The kernel is compiled without SSE/x87
//! (see `.cargo/config.toml`), so handlers never touch the interrupted code's FPU state and no
//! `fxsave` is needed — which matters on kvm-pvm hosts, where any FPU instruction in the guest
//! ends in a KVM emulation failure. Every gate uses an IST stack: the prebuilt libcore uses the red zone below RSP,
//! which an interrupt frame pushed on the same stack would overwrite.

use crate::gdt;
use core::cell::UnsafeCell;
use irqlab_x86::gate::{Gate, GateType};
use irqlab_x86::segment::Ring;

/// Saved state of the interrupted context, lowest address first.
#[repr(C)]
#[derive(Debug)]
#[allow(missing_docs)]
pub struct Frame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number (pushed by the stub).
    pub vector: u64,
    /// Error code (pushed by the CPU, or 0 by the stub).
    pub error_code: u64,
    /// Interrupted RIP (pushed by the CPU from here on).
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl Frame {
    /// Whether the interrupted code ran in ring 3.
    pub fn is_from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// `swapgs` when the interrupted code ran in ring 3 (CS at [rsp + 24], below the vector and
/// error code): on entry to get the kernel's GS base, on exit to give the user's back.
macro_rules! swapgs_if_from_user {
    () => {
        concat!("test byte ptr [rsp + 24], 3\n", "jz 7f\n", "swapgs\n", "7:")
    };
}

/// RSI = the TSC if the trace wants entry timestamps (`trace_on`), else 0; clobbers RAX, RDX.
/// Taken a few instructions after the CPU accepted the interrupt, rather than in Rust code
/// much later.
macro_rules! entry_tsc_to_rsi {
    () => {
        concat!(
            "xor esi, esi\n",
            "cmp byte ptr [rip + {trace_on}], 0\n",
            "je 5f\n",
            "rdtsc\n",
            "shl rdx, 32\n",
            "or rax, rdx\n",
            "mov rsi, rax\n",
            "5:"
        )
    };
}

/// The 256 entry stubs.
#[unsafe(naked)]
#[link_section = ".text.isr"]
unsafe extern "C" fn stubs() {
    core::arch::naked_asm!(
        ".set vec, 0",
        ".rept 256",
        ".balign 16",
        // Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30.
        ".if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)",
        ".else",
        "pushq $0",
        ".endif",
        "pushq $vec",
        // Exceptions, `int 0x80` and the spurious vector need the full frame; device
        // interrupts take the lean path.
        ".if (vec < 32) || (vec == 0x80) || (vec == 0xff)",
        "jmp {common}",
        ".else",
        "jmp {irq}",
        ".endif",
        ".set vec, vec + 1",
        ".endr",
        common = sym common,
        irq = sym irq_entry,
        options(att_syntax),
    )
}

#[unsafe(naked)]
unsafe extern "C" fn common() {
    core::arch::naked_asm!(
        // [rsp] = vector, [rsp+8] = error, [rsp+16] = rip, [rsp+24] = cs
        swapgs_if_from_user!(),
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
        "cld",
        "mov rbp, rsp",
        entry_tsc_to_rsi!(),
        // #NM raised because CR0.TS is set would raise #NM again at fxsave: clear TS first.
        "cmp qword ptr [rbp + 120], 7",
        "jne 4f",
        "clts",
        "4:",
        "and rsp, -16",
        "mov rdi, rbp",
        "call {dispatch}",
        "mov rsp, rbp",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        swapgs_if_from_user!(),
        "add rsp, 16",
        "iretq",
        dispatch = sym dispatch,
        trace_on = sym crate::trace::STUB_TIMESTAMPS,
    )
}

/// The lean path for device interrupts: it saves only the nine registers the C ABI lets
/// `interrupts::handle` clobber (Rust code preserves the other six itself) and calls it with
/// (vector, entry TSC or 0, interrupted RIP). 34 instructions from the stub to `iretq`, where
/// the full path takes 55: on hosts that emulate every guest instruction (kvm-pvm, ~1.2 µs
/// each) that is most of the difference between keeping up with 10 kHz and not.
///
/// Stack at entry: [rsp] vector, +8 error code (0), +16 RIP, +24 CS, +32 RFLAGS, +40 RSP,
/// +48 SS; the CPU aligned RSP to 16 before pushing SS, so after the nine pushes RSP is
/// 16-byte aligned again at the call, as the ABI wants.
#[unsafe(naked)]
unsafe extern "C" fn irq_entry() {
    core::arch::naked_asm!(
        swapgs_if_from_user!(),
        "push rax", "push rcx", "push rdx", "push rsi", "push rdi",
        "push r8", "push r9", "push r10", "push r11",
        "cld",
        entry_tsc_to_rsi!(),
        "mov rdi, [rsp + 72]",
        "mov rdx, [rsp + 88]",
        "call {handle}",
        "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rax",
        swapgs_if_from_user!(),
        "add rsp, 16",
        "iretq",
        handle = sym crate::interrupts::handle,
        trace_on = sym crate::trace::STUB_TIMESTAMPS,
    )
}

/// The full path's Rust side: exceptions, `int 0x80`, the spurious vector.
extern "C" fn dispatch(frame: &mut Frame, _tsc_entry: u64) {
    match frame.vector {
        0..=31 => crate::exceptions::handle(frame),
        0x80 => crate::syscall::int80(frame),
        // Spurious interrupts take no EOI (SDM §11.9).
        _ => {}
    }
}

#[repr(align(4096))]
struct Table(UnsafeCell<[[u64; 2]; 256]>);
// SAFETY: built at compile time; changed only by `clear_gate` (a deliberate crash mode) on
// the boot CPU with interrupts off.
unsafe impl Sync for Table {}
static IDT: Table = Table(UnsafeCell::new(table()));

/// The IST slot each vector uses.
pub const fn ist_for(vector: u8) -> u8 {
    match vector {
        2 => gdt::IST_NMI,
        8 => gdt::IST_DOUBLE_FAULT,
        13 => gdt::IST_GP,
        14 => gdt::IST_PAGE_FAULT,
        18 => gdt::IST_MACHINE_CHECK,
        0..=31 => gdt::IST_EXCEPTION,
        _ => gdt::IST_IRQ,
    }
}

/// Where the linker puts the stubs (`guest/link.ld` asserts it): a constant address lets the
/// whole IDT be computed at compile time. Encoding 256 gates at boot took ~2 ms on hosts that
/// emulate every guest instruction (kvm-pvm), a sixth of the boot.
pub const STUBS: u64 = 0x10_1000;

/// The gate for a vector: interrupt gates everywhere (IF cleared on entry); DPL 3 for `int3`
/// and `int 0x80` so ring 3 may raise them.
pub const fn gate_for(vector: u8) -> Gate {
    Gate {
        offset: STUBS + 16 * vector as u64,
        selector: gdt::KERNEL_CS,
        ist: ist_for(vector),
        kind: GateType::Interrupt,
        dpl: if vector == 3 || vector == crate::syscall::INT80_VECTOR {
            Ring::Ring3
        } else {
            Ring::Ring0
        },
    }
}

/// All 256 gates, encoded at compile time.
const fn table() -> [[u64; 2]; 256] {
    let mut t = [[0; 2]; 256];
    let mut v = 0;
    while v < 256 {
        t[v] = gate_for(v as u8).encode();
        v += 1;
    }
    t
}

/// Loads the IDT (built at compile time) on the boot CPU.
pub fn init() {
    // The linker script asserts the address; this catches a stale constant in a hand-edited
    // script before any interrupt could jump into the void.
    if stubs as *const () as u64 != STUBS {
        panic!("IDT stubs linked at the wrong address");
    }
    load();
}

/// Loads the (shared) IDT on this CPU.
pub fn load() {
    let pointer = gdt::DescriptorPointer {
        limit: (256 * 16 - 1) as u16,
        base: IDT.0.get() as u64,
    };
    // SAFETY: the IDT is static and every gate points at a valid stub.
    unsafe {
        core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags))
    };
}

/// Marks a gate not present (the `crash=triple-fault` mode).
pub fn clear_gate(vector: u8) {
    // SAFETY: one aligned 16-byte store, on the boot CPU with interrupts off.
    unsafe { (*IDT.0.get())[usize::from(vector)] = [0, 0] };
}

/// Reads a gate back.
pub fn gate(vector: u8) -> Option<Gate> {
    // SAFETY: plain read of a static table.
    Gate::decode(unsafe { (*IDT.0.get())[usize::from(vector)] })
}
