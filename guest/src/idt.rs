//! The IDT: 256 gates, each pointing at a 16-byte entry stub. Exceptions, `int 0x80` and the
//! spurious vector funnel into one common path that saves the full register state (a
//! [`Frame`], laid out like Linux's `pt_regs`) and calls [`dispatch`], which runs the handler
//! registered for the vector with [`set_handler`] (the exception and system call modules
//! install theirs at boot; this module names none of them); device interrupts take a lean
//! path ([`irq_entry`]) that saves only what a Rust function may clobber and calls
//! `interrupts::handle`, which keeps the device handlers.
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

use crate::frame::Frame;
use crate::{gdt, vectors};
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicUsize, Ordering};
use irqlab_x86::error_code::Exception;
use irqlab_x86::gate::{Gate, GateType};
use irqlab_x86::segment::Ring;

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
        ".if (vec < {first_external}) || (vec == {syscall}) || (vec == {spurious})",
        "jmp {common}",
        ".else",
        "jmp {irq}",
        ".endif",
        ".set vec, vec + 1",
        ".endr",
        common = sym common,
        irq = sym irq_entry,
        first_external = const vectors::FIRST_EXTERNAL,
        syscall = const vectors::SYSCALL,
        spurious = const vectors::SPURIOUS,
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
        "cmp qword ptr [rbp + {vector}], {nm}",
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
        vector = const offset_of!(Frame, vector),
        nm = const Exception::DeviceNotAvailable as u8,
    )
}

/// The lean path for device interrupts: it saves only the nine registers the C ABI lets
/// `interrupts::handle` clobber (Rust code preserves the other six itself) and calls it with
/// (vector, entry TSC or 0, interrupted RIP). 34 instructions from the stub to `iretq` (two
/// more when it interrupted ring 3, to test the return-to-user work), where the full path
/// takes 55: on hosts that emulate every guest instruction (kvm-pvm, ~1.2 µs
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
        "test byte ptr [rsp + 24], 3",
        "jz 8f",
        // Back to ring 3: with return-to-user work pending (a reschedule, a signal) the
        // interrupted context needs a full frame, so re-enter through the full path with
        // the registers exactly as they were interrupted; its exit does the work.
        "cmp qword ptr gs:[{work}], 0",
        "jne 9f",
        "swapgs",
        "8:",
        "add rsp, 16",
        "iretq",
        "9:",
        "swapgs",
        "jmp {common}",
        handle = sym crate::interrupts::handle,
        trace_on = sym crate::trace::STUB_TIMESTAMPS,
        work = const crate::percpu::OFF_WORK,
        common = sym common,
    )
}

/// A handler on the full path: it gets the interrupted context's saved registers and may
/// change them (the return value of a system call, the RIP to resume at).
pub type FrameHandler = fn(&mut Frame);

/// Handlers of the full-path vectors (see [`frame_slot`]); 0 = none.
static FRAME_HANDLERS: [AtomicUsize; FRAME_SLOTS] = [const { AtomicUsize::new(0) }; FRAME_SLOTS];
const FRAME_SLOTS: usize = vectors::FIRST_EXTERNAL as usize + 2;

/// Where `vector`'s handler lives in [`FRAME_HANDLERS`], if its stub takes the full path:
/// the exceptions, `int 0x80` and the spurious vector (the same test as in [`stubs`]).
const fn frame_slot(vector: u8) -> Option<usize> {
    match vector {
        v if v < vectors::FIRST_EXTERNAL => Some(v as usize),
        vectors::SYSCALL => Some(FRAME_SLOTS - 2),
        vectors::SPURIOUS => Some(FRAME_SLOTS - 1),
        _ => None,
    }
}

/// Installs `handler` for a full-path `vector` (an exception, `int 0x80` or the spurious
/// vector). Device vectors have their handlers in `interrupts` instead.
pub fn set_handler(vector: u8, handler: FrameHandler) {
    let Some(slot) = frame_slot(vector) else {
        panic!("vector {vector:#x} does not take the full entry path");
    };
    FRAME_HANDLERS[slot].store(handler as usize, Ordering::Release);
}

/// The full path's Rust side: runs the handler installed for the vector. A vector without
/// one (the spurious vector) is ignored: spurious interrupts take no EOI (SDM §11.9).
extern "C" fn dispatch(frame: &mut Frame, _tsc_entry: u64) {
    // A device vector arrives here only from the lean path's exit with work pending.
    if let Some(slot) = frame_slot(frame.vector as u8) {
        let h = FRAME_HANDLERS[slot].load(Ordering::Acquire);
        if h != 0 {
            // SAFETY: only `set_handler` stores non-zero values, and it stores `FrameHandler`s.
            let handler = unsafe { core::mem::transmute::<usize, FrameHandler>(h) };
            handler(frame);
        }
    }
    exit_to_user(frame);
}

/// The return-to-user work hook (0 = none): the process experiments install theirs.
static EXIT_TO_USER: AtomicUsize = AtomicUsize::new(0);

/// Installs (or with `None` removes) the function that does the pending return-to-user work
/// (`percpu::work`) on a frame about to return to ring 3.
pub fn set_exit_to_user(hook: Option<FrameHandler>) {
    EXIT_TO_USER.store(hook.map_or(0, |h| h as usize), Ordering::Release);
}

/// Runs the return-to-user hook if `frame` returns to ring 3 and work is pending (every
/// path's exit calls this: the full path, the SYSCALL entry, and through the full path the
/// lean one).
pub fn exit_to_user(frame: &mut Frame) {
    if !frame.is_from_user() || crate::percpu::work() == 0 {
        return;
    }
    let h = EXIT_TO_USER.load(Ordering::Acquire);
    if h != 0 {
        // SAFETY: only `set_exit_to_user` stores non-zero values, and it stores `FrameHandler`s.
        let hook = unsafe { core::mem::transmute::<usize, FrameHandler>(h) };
        hook(frame);
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
        dpl: if vector == Exception::Breakpoint as u8 || vector == vectors::SYSCALL {
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

/// Changes the IST slot of `vector`'s gate (0: the CPU switches to TSS.RSP0 when coming from
/// ring 3 and stays on the current stack in ring 0). The process experiments take the gates
/// ring 3 reaches off the shared IST stacks, so each task's interrupted context stays on its
/// own kernel stack while other tasks run; they put them back afterwards.
pub fn set_ist(vector: u8, ist: u8) {
    let gate = Gate {
        ist,
        ..gate_for(vector)
    };
    // SAFETY: one aligned 16-byte store of a valid gate, on the boot CPU with interrupts off.
    unsafe { (*IDT.0.get())[usize::from(vector)] = gate.encode() };
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
