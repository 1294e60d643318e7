//! The context switch proper: kernel stack to kernel stack (Linux's `__switch_to_asm`), and a
//! new task's first way out to ring 3 (`ret_from_fork`).
//!
//! A task that is not running is always stopped inside [`switch_to`]: its kernel stack holds
//! the callee-saved registers and the return address into `schedule`, under them whatever
//! brought it into the kernel (an interrupt frame, a system call frame). Switching is saving
//! six registers and RSP, loading the other task's RSP and popping its six: everything else
//! of the user context is already on that task's kernel stack.

use crate::gdt;

/// Saves the callee-saved registers on the current stack and RSP in `*prev_ksp`, then
/// continues the task whose saved RSP is `next_ksp`.
///
/// # Safety
/// `next_ksp` must be a stack saved by this function or built by [`prepare`]; interrupts off.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_to(prev_ksp: *mut u64, next_ksp: u64) {
    core::arch::naked_asm!(
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
    )
}

/// A new task's first return from [`switch_to`]: into ring 3 at the entry point [`prepare`]
/// put in the `iretq` frame, with the argument (saved as R12) in RDI and every other register
/// zero.
#[unsafe(naked)]
unsafe extern "C" fn first_entry() {
    core::arch::naked_asm!(
        "mov rdi, r12",
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor esi, esi",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "swapgs",
        "iretq",
    )
}

/// Builds a new task's kernel stack under `kstack_top` so that [`switch_to`] "returns" into
/// [`first_entry`] and from there `iretq`s to `rip` in ring 3 with `user_rsp` and IF set.
/// Returns the saved RSP to hand to [`switch_to`].
pub fn prepare(kstack_top: u64, rip: u64, user_rsp: u64, arg: u64) -> u64 {
    let words = [
        // What `switch_to` pops (R15 first), then its `ret` target.
        0,   // r15
        0,   // r14
        0,   // r13
        arg, // r12
        0,   // rbp
        0,   // rbx
        first_entry as *const () as u64,
        // The `iretq` frame.
        rip,
        u64::from(gdt::USER_CS),
        0x202,
        user_rsp,
        u64::from(gdt::USER_DS),
    ];
    let ksp = kstack_top - 8 * words.len() as u64;
    for (i, w) in words.iter().enumerate() {
        // SAFETY: the words lie at the top of the task's own (unused) kernel stack.
        unsafe { ((ksp + 8 * i as u64) as *mut u64).write(*w) };
    }
    ksp
}
