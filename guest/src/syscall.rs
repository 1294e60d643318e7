//! System calls: `syscall`/`sysret` through IA32_LSTAR (and the legacy `int 0x80` gate).
//!
//! MSRs (Intel SDM vol. 3 §5.8.8):
//! - STAR[47:32] = 0x08: SYSCALL loads CS = 0x08, SS = 0x10.
//! - STAR[63:48] = 0x10: SYSRET loads SS = 0x10 + 8 | 3 = 0x1b and CS = 0x10 + 16 | 3 = 0x23.
//! - LSTAR = [`entry`]; FMASK clears IF, TF, DF and AC on entry (as Linux does).
//!
//! The entry swaps GS to reach the per-CPU data, saves the user RSP there, switches to the
//! per-CPU syscall stack, builds a [`SyscallFrame`] and calls
//! [`dispatch`] with the number in RAX and arguments in RDI, RSI, RDX, R10, R8, R9.
//! [`install_int80`] registers the `int 0x80` path ([`int80`]) with the IDT.

use crate::frame::Frame;
use crate::percpu::{OFF_SYSCALLS, OFF_SYSCALL_RSP, OFF_USER_RSP};
use crate::{cpu, gdt, idt, user, vectors};
use irqlab_abi::syscall as nr;

/// RFLAGS bits cleared on SYSCALL: AC, DF, IF, TF.
const FMASK: u64 = (1 << 18) | (1 << 10) | (1 << 9) | (1 << 8);

/// Registers saved by the entry stub, lowest address first.
#[repr(C)]
#[allow(missing_docs)]
pub struct SyscallFrame {
    pub r9: u64,
    pub r8: u64,
    pub r10: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// System call number.
    pub rax: u64,
    /// User RIP (SYSCALL put it in RCX).
    pub rcx: u64,
    /// User RFLAGS (SYSCALL put them in R11).
    pub r11: u64,
    /// User RSP.
    pub user_rsp: u64,
}

/// Programs STAR, LSTAR and FMASK and turns SYSCALL on in EFER.
pub fn init() {
    let star = (u64::from(gdt::KERNEL_DS) << 48) | (u64::from(gdt::KERNEL_CS) << 32);
    // SAFETY: the selectors match the GDT layout above and `entry` is a valid entry stub.
    unsafe {
        cpu::wrmsr(cpu::MSR_STAR, star);
        cpu::wrmsr(cpu::MSR_LSTAR, entry as *const () as u64);
        cpu::wrmsr(cpu::MSR_FMASK, FMASK);
        cpu::wrmsr(cpu::MSR_EFER, cpu::rdmsr(cpu::MSR_EFER) | cpu::EFER_SCE);
    }
}

/// The LSTAR entry point.
#[unsafe(naked)]
unsafe extern "C" fn entry() {
    core::arch::naked_asm!(
        "swapgs",
        "mov gs:[{user_rsp}], rsp",
        "mov rsp, gs:[{syscall_rsp}]",
        "push qword ptr gs:[{user_rsp}]",
        "push r11",
        "push rcx",
        "push rax",
        "push rdi",
        "push rsi",
        "push rdx",
        "push r10",
        "push r8",
        "push r9",
        "inc qword ptr gs:[{count}]",
        "push rbp",
        "mov rbp, rsp",
        "and rsp, -16",
        "lea rdi, [rbp + 8]",
        "call {dispatch}",
        "mov rsp, rbp",
        "pop rbp",
        "pop r9",
        "pop r8",
        "pop r10",
        "pop rdx",
        "pop rsi",
        "pop rdi",
        "add rsp, 8",
        "pop rcx",
        "pop r11",
        "pop rsp",
        "swapgs",
        "sysretq",
        user_rsp = const OFF_USER_RSP,
        syscall_rsp = const OFF_SYSCALL_RSP,
        count = const OFF_SYSCALLS,
        dispatch = sym dispatch,
    )
}

extern "C" fn dispatch(f: &mut SyscallFrame) -> u64 {
    table(f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9])
}

/// Installs [`int80`] as the IDT's handler of the `int 0x80` gate.
pub fn install_int80() {
    idt::set_handler(vectors::SYSCALL, int80);
}

/// The `int 0x80` path: same numbers and registers, result in RAX.
pub fn int80(frame: &mut Frame) {
    frame.rax = table(
        frame.rax,
        [
            frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
        ],
    );
}

fn errno(e: i64) -> u64 {
    (-e) as u64
}

/// The system call table.
pub fn table(number: u64, a: [u64; 6]) -> u64 {
    match number {
        nr::WRITE => {
            let (buf, len) = (a[0], a[1]);
            if !user::range_ok(buf, len) {
                return errno(nr::EFAULT);
            }
            // SAFETY: `range_ok` proved [buf, buf+len) lies in the mapped user window.
            let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, len as usize) };
            crate::serial::write_bytes(bytes);
            len
        }
        nr::COUNTER => crate::percpu::syscalls(),
        nr::TIME => cpu::rdtsc(),
        nr::YIELD => 0,
        nr::EXIT => user::finish(a[0] as i64),
        nr::SUM6 => nr::sum6(a[0], a[1], a[2], a[3], a[4], a[5]),
        _ => errno(nr::ENOSYS),
    }
}
