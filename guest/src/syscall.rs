//! System calls: `syscall`/`sysret` through IA32_LSTAR, the legacy `int 0x80` gate, and the
//! trap gate (`ud2` + marker) for hosts where neither works from ring 3.
//!
//! MSRs (Intel SDM vol. 3 §5.8.8):
//! - STAR[47:32] = 0x08: SYSCALL loads CS = 0x08, SS = 0x10.
//! - STAR[63:48] = 0x10: SYSRET loads SS = 0x10 + 8 | 3 = 0x1b and CS = 0x10 + 16 | 3 = 0x23.
//! - LSTAR = [`entry`]; FMASK clears IF, TF, DF and AC on entry (as Linux does).
//!
//! Every gate ends in [`handle`] with a full [`Frame`] of the caller's registers (the same
//! layout the IDT's full path saves): the SYSCALL entry builds one itself, as Linux's
//! `entry_SYSCALL_64` builds a `pt_regs`, on the per-CPU syscall stack (the running task's
//! kernel stack under `run=sched`), so a system call may block, switch tasks, or have a signal
//! change the context it returns to. It returns with `sysretq` when RCX/R11 still equal the
//! frame's RIP/RFLAGS and the segments are the user's, and with `iretq` otherwise (after a
//! `sigreturn` or a signal delivery).

use crate::frame::Frame;
use crate::percpu::{OFF_SYSCALLS, OFF_SYSCALL_RSP, OFF_USER_RSP};
use crate::{cpu, gdt, idt, process, user, vectors};
use irqlab_abi::syscall as nr;
use irqlab_x86::error_code::Exception;

/// RFLAGS bits cleared on SYSCALL: AC, DF, IF, TF.
const FMASK: u64 = (1 << 18) | (1 << 10) | (1 << 9) | (1 << 8);

/// [`Frame::vector`] of frames the SYSCALL entry builds (not an IDT vector).
pub const FRAME_SYSCALL: u64 = 0x100;

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

/// The LSTAR entry point: builds a [`Frame`] (SS, RSP, RFLAGS = R11, CS, RIP = RCX, error
/// code 0, vector [`FRAME_SYSCALL`], the 15 general registers) and calls [`from_syscall`].
/// [`from_syscall`] sets the frame's error-code slot to 1 when the return must use `iretq`.
#[unsafe(naked)]
unsafe extern "C" fn entry() {
    core::arch::naked_asm!(
        "swapgs",
        "mov gs:[{user_rsp}], rsp",
        "mov rsp, gs:[{syscall_rsp}]",
        "push {uds}",
        "push qword ptr gs:[{user_rsp}]",
        "push r11",
        "push {ucs}",
        "push rcx",
        "push 0",
        "push {vector}",
        "push rax", "push rbx", "push rcx", "push rdx", "push rsi", "push rdi", "push rbp",
        "push r8", "push r9", "push r10", "push r11", "push r12", "push r13", "push r14", "push r15",
        "inc qword ptr gs:[{count}]",
        "mov rbp, rsp",
        "and rsp, -16",
        "mov rdi, rbp",
        "call {dispatch}",
        "mov rsp, rbp",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop r11", "pop r10", "pop r9", "pop r8",
        "pop rbp", "pop rdi", "pop rsi", "pop rdx", "pop rcx", "pop rbx", "pop rax",
        "cmp qword ptr [rsp + 8], 0",
        "jne 2f",
        // RCX = RIP and R11 = RFLAGS (checked by `from_syscall`): SYSRET.
        "mov rsp, [rsp + 40]",
        "swapgs",
        "sysretq",
        "2:",
        "add rsp, 16",
        "swapgs",
        "iretq",
        user_rsp = const OFF_USER_RSP,
        syscall_rsp = const OFF_SYSCALL_RSP,
        count = const OFF_SYSCALLS,
        uds = const gdt::USER_DS as u64,
        ucs = const gdt::USER_CS as u64,
        vector = const FRAME_SYSCALL,
        dispatch = sym from_syscall,
    )
}

/// The SYSCALL path's Rust side: the system call, the return-to-user work, and the choice of
/// return instruction (error-code slot: 0 = `sysretq`, 1 = `iretq`).
extern "C" fn from_syscall(f: &mut Frame) {
    handle(f);
    idt::exit_to_user(f);
    let sysret_ok = f.rcx == f.rip
        && f.r11 == f.rflags
        // SYSRET cannot restore RF, and restoring TF would trap at once (Linux checks both).
        && f.r11 & ((1 << 8) | (1 << 16)) == 0
        && f.cs == u64::from(gdt::USER_CS)
        && f.ss == u64::from(gdt::USER_DS)
        && f.rip < 0x0000_8000_0000_0000;
    f.error_code = u64::from(!sysret_ok);
}

/// Installs [`int80`] as the IDT's handler of the `int 0x80` gate.
pub fn install_int80() {
    idt::set_handler(vectors::SYSCALL, int80);
}

/// The `int 0x80` path: same numbers and registers, result in RAX.
pub fn int80(frame: &mut Frame) {
    handle(frame);
}

/// Whether a #UD from ring 3 is the trap gate: `ud2` followed by the marker, all in user
/// memory.
pub fn is_trap_gate(frame: &Frame) -> bool {
    if frame.vector != Exception::InvalidOpcode as u64 || !frame.is_from_user() {
        return false;
    }
    if !user::range_ok(frame.rip, nr::TRAP_GATE_LEN) {
        return false;
    }
    // SAFETY: `range_ok` proved the five bytes lie in the mapped user window.
    let bytes = unsafe { core::ptr::read_unaligned(frame.rip as *const [u8; 5]) };
    bytes[..2] == [0x0f, 0x0b] && bytes[2..] == nr::TRAP_GATE_MARKER
}

/// The trap gate's system call: resume after the marker, then run it.
pub fn trap_gate(frame: &mut Frame) {
    frame.rip += nr::TRAP_GATE_LEN;
    handle(frame);
}

/// Every gate's system call: number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9, result
/// in RAX (`sigreturn` replaces the whole frame instead).
pub fn handle(f: &mut Frame) {
    process::on_syscall();
    if f.rax == nr::SIGRETURN {
        process::sigreturn(f);
        return;
    }
    f.rax = table(f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9]);
}

fn errno(e: i64) -> u64 {
    (-e) as u64
}

/// A process call's result: the value, or minus the errno.
fn as_result(r: Result<u64, i64>) -> u64 {
    r.unwrap_or_else(errno)
}

/// The system call table.
pub fn table(number: u64, a: [u64; 6]) -> u64 {
    match number {
        nr::WRITE if a[2] != nr::FD_CONSOLE => crate::uring::write(a[0], a[1], a[2]),
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
        nr::YIELD => {
            process::yield_now();
            0
        }
        nr::EXIT if process::active() => process::exit(a[0] as i64),
        nr::EXIT => user::finish(a[0] as i64),
        nr::SUM6 => nr::sum6(a[0], a[1], a[2], a[3], a[4], a[5]),
        nr::GETPID => process::getpid(),
        nr::SLEEP => as_result(process::sleep(a[0])),
        nr::ALARM => as_result(process::alarm(a[0])),
        nr::KILL => as_result(process::kill(a[0], a[1])),
        nr::SIGACTION => as_result(process::sigaction(a[0], a[1], a[2])),
        nr::SIGPROCMASK => as_result(process::sigprocmask(a[0], a[1])),
        nr::WRITEV => crate::uring::writev(a[0], a[1], a[2]),
        nr::RING_ENTER => crate::uring::ring_enter(a[0], a[1]),
        nr::OP => crate::uring::op(a[0], a[1], a[2]),
        _ => errno(nr::ENOSYS),
    }
}
