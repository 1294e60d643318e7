//! Ring 3: entering a user task with `iretq`, ending it (exit syscall or a fault), and the
//! user programs themselves.
//!
//! [`enter`] saves the kernel's callee-saved registers and RSP in the per-CPU data and
//! `iretq`s to ring 3 (CS = 0x23, SS = 0x1b, IF = 1). The task ends either with the `exit`
//! system call ([`finish`]) or with a fault the exception handler turns into [`abort`]; both
//! restore the saved kernel context, so `enter` simply returns how the task ended.
//!
//! User code and data live in the `.user_text`/`.user_data` sections, the only pages mapped
//! with U/S = 1. User code must not call into kernel text (that is a #PF, like a real user
//! program jumping into the kernel): every helper it uses is `#[inline(always)]`.

use crate::frame::Frame;
use crate::percpu::OFF_TASK_RETURN_RSP;
use crate::{cpu, gdt, paging, vectors};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use irqlab_abi::syscall as nr;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// `exit(code)`.
    Exited(i64),
    /// A fault: vector, faulting RIP, error code.
    Faulted {
        /// Exception vector.
        vector: u8,
        /// Faulting instruction.
        rip: u64,
        /// Error code.
        error_code: u64,
    },
}

impl core::fmt::Display for TaskEnd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TaskEnd::Exited(code) => write!(f, "exit({})", crate::fmt::Dec(code as u64)),
            TaskEnd::Faulted {
                vector,
                rip,
                error_code,
            } => {
                write!(
                    f,
                    "fault vector {} at rip={rip:#x} error={error_code:#x}",
                    crate::fmt::Dec(u64::from(vector))
                )
            }
        }
    }
}

impl TaskEnd {
    /// On kvm-pvm a SYSCALL from ring 3 arrives at LSTAR still at CPL 3, so fetching the
    /// supervisor-only entry page faults. This recognises exactly that signature.
    pub fn is_pvm_syscall_fault(&self) -> bool {
        matches!(*self, TaskEnd::Faulted { vector: 14, rip, .. } if rip == cpu::rdmsr(cpu::MSR_LSTAR))
    }
}

const FAULTED: i64 = i64::MIN;
static FAULT_VECTOR: AtomicU64 = AtomicU64::new(0);
static FAULT_RIP: AtomicU64 = AtomicU64::new(0);
static FAULT_ERROR: AtomicU64 = AtomicU64::new(0);

/// Page-aligned user memory (in `.user_data`).
#[repr(C, align(4096))]
pub struct UserMem<const N: usize>(UnsafeCell<[u8; N]>);
// SAFETY: only the user task (one at a time) and the kernel between tasks touch it.
unsafe impl<const N: usize> Sync for UserMem<N> {}

impl<const N: usize> UserMem<N> {
    /// Zeroed memory (place it with `#[link_section = ".user_data"]`).
    pub const fn new() -> Self {
        UserMem(UnsafeCell::new([0; N]))
    }

    /// Base address (inlined: user code calls it too).
    #[inline(always)]
    pub fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

const USER_STACK_SIZE: usize = 16 * 1024;
#[link_section = ".user_data"]
static USER_STACK: UserMem<USER_STACK_SIZE> = UserMem(UnsafeCell::new([0; USER_STACK_SIZE]));

/// Most samples a cost experiment records.
pub const MAX_SAMPLES: usize = 20_000;
/// Samples written by user cost loops (cycles per iteration, u32 each).
#[link_section = ".user_data"]
pub static SAMPLES: UserMem<{ MAX_SAMPLES * 4 }> = UserMem(UnsafeCell::new([0; MAX_SAMPLES * 4]));
/// Return values the ABI program records, one u64 each.
#[link_section = ".user_data"]
pub static RESULTS: UserMem<4096> = UserMem(UnsafeCell::new([0; 4096]));
#[link_section = ".user_data"]
static MESSAGE: [u8; 20] = *b"hello from ring 3!\r\n";

/// Whether `[addr, addr + len)` is user memory (system calls check every pointer with it).
pub fn range_ok(addr: u64, len: u64) -> bool {
    let (start, end) = paging::user_window();
    nr::user_range_ok(addr, len, start, end)
}

/// Runs user `program` with `arg` in ring 3 until it exits or faults.
pub fn enter(program: Program, arg: u64) -> TaskEnd {
    let stack_top = USER_STACK.addr() + USER_STACK_SIZE as u64;
    // SAFETY: `program` is in `.user_text`, the stack in `.user_data`; the kernel context is
    // saved in the per-CPU data and restored by `finish`/`abort`.
    let code = unsafe { enter_user(program as *const () as u64, stack_top, arg) };
    if code == FAULTED {
        TaskEnd::Faulted {
            vector: FAULT_VECTOR.load(Ordering::Relaxed) as u8,
            rip: FAULT_RIP.load(Ordering::Relaxed),
            error_code: FAULT_ERROR.load(Ordering::Relaxed),
        }
    } else {
        TaskEnd::Exited(code)
    }
}

#[unsafe(naked)]
unsafe extern "C" fn enter_user(rip: u64, rsp: u64, arg: u64) -> i64 {
    core::arch::naked_asm!(
        "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
        "mov gs:[{ret}], rsp",
        "push {uds}",   // SS
        "push rsi",     // RSP
        "push 0x202",   // RFLAGS: IF
        "push {ucs}",   // CS
        "push rdi",     // RIP
        "mov rdi, rdx",
        "xor eax, eax", "xor ebx, ebx", "xor ecx, ecx", "xor edx, edx", "xor esi, esi",
        "xor ebp, ebp", "xor r8d, r8d", "xor r9d, r9d", "xor r10d, r10d", "xor r11d, r11d",
        "xor r12d, r12d", "xor r13d, r13d", "xor r14d, r14d", "xor r15d, r15d",
        "swapgs",
        "iretq",
        ret = const OFF_TASK_RETURN_RSP,
        uds = const gdt::USER_DS as u64,
        ucs = const gdt::USER_CS as u64,
    )
}

/// Returns to the context `enter_user` saved, making it return `code`. Must run in ring 0
/// with the kernel GS.
#[unsafe(naked)]
unsafe extern "C" fn return_to_kernel(code: i64) -> ! {
    core::arch::naked_asm!(
        "mov rax, rdi",
        "mov rsp, gs:[{ret}]",
        "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
        "ret",
        ret = const OFF_TASK_RETURN_RSP,
    )
}

/// Ends the task with `exit(code)`.
pub fn finish(code: i64) -> ! {
    let code = if code == FAULTED { FAULTED + 1 } else { code };
    // SAFETY: called from the syscall path (ring 0, kernel GS) while a task runs.
    unsafe { return_to_kernel(code) }
}

/// Ends the task after a fault (called by the exception handler for ring-3 faults).
pub fn abort(frame: &Frame) -> ! {
    FAULT_VECTOR.store(frame.vector, Ordering::Relaxed);
    FAULT_RIP.store(frame.rip, Ordering::Relaxed);
    FAULT_ERROR.store(frame.error_code, Ordering::Relaxed);
    // SAFETY: the exception entry swapped to the kernel GS; the IST frame is abandoned.
    unsafe { return_to_kernel(FAULTED) }
}

/// A user program's entry point.
pub type Program = extern "C" fn(u64) -> !;

#[inline(always)]
fn syscall6(n: u64, a: [u64; 6]) -> u64 {
    let ret: u64;
    // SAFETY: the syscall instruction enters the kernel, which preserves every register but
    // RAX, RCX and R11.
    unsafe {
        core::arch::asm!("syscall", inlateout("rax") n => ret, in("rdi") a[0], in("rsi") a[1],
            in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
            out("rcx") _, out("r11") _, options(nostack));
    }
    ret
}

#[inline(always)]
fn int80(n: u64, a: [u64; 6]) -> u64 {
    let ret: u64;
    // SAFETY: the DPL-3 gate 0x80 enters the kernel, which returns the result in RAX and
    // restores every other register.
    unsafe {
        core::arch::asm!("int {vector}", vector = const vectors::SYSCALL,
            inlateout("rax") n => ret, in("rdi") a[0], in("rsi") a[1],
            in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5], options(nostack));
    }
    ret
}

/// The trap gate: `ud2` followed by the marker (`irqlab_abi::syscall::TRAP_GATE_MARKER`);
/// the #UD handler recognises it, runs the system call and resumes after the marker.
#[inline(always)]
fn trap6(n: u64, a: [u64; 6]) -> u64 {
    let ret: u64;
    // SAFETY: the kernel's #UD handler treats `ud2; .ascii "sys"` from ring 3 as a system
    // call: result in RAX, every other register preserved, resumed after the marker.
    unsafe {
        core::arch::asm!("ud2", ".ascii \"sys\"",
            inlateout("rax") n => ret, in("rdi") a[0], in("rsi") a[1],
            in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5], options(nostack));
    }
    ret
}

const _: () = assert!(nr::TRAP_GATE_LEN == 5 && nr::TRAP_GATE_MARKER[0] == b's');

/// How user code enters the kernel: the `gate` word of the process experiments and the cost
/// table's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Gate {
    /// `syscall` → IA32_LSTAR, `sysret` back.
    Syscall = 0,
    /// `int 0x80` through the DPL-3 IDT gate, `iretq` back.
    Int80 = 1,
    /// `ud2` + marker → the #UD handler, `iretq` back (works where the other two do not:
    /// kvm-pvm).
    Trap = 2,
}

impl Gate {
    /// The gate's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Gate::Syscall => "syscall",
            Gate::Int80 => "int 0x80",
            Gate::Trap => "trap (ud2 + marker)",
        }
    }

    /// `gate=syscall|int80|trap|auto` from the command line; `auto` (the default) takes the
    /// trap gate where ring-3 `syscall` and `int 0x80` cannot work (kvm-pvm) and `syscall`
    /// elsewhere. `None` for an unknown name.
    pub fn choose(word: Option<&str>, host: irqlab_abi::boot_info::HostKind) -> Option<Gate> {
        match word.unwrap_or("auto") {
            "syscall" => Some(Gate::Syscall),
            "int80" => Some(Gate::Int80),
            "trap" => Some(Gate::Trap),
            "auto" if host.can_run_software_interrupts() => Some(Gate::Syscall),
            "auto" => Some(Gate::Trap),
            _ => None,
        }
    }
}

/// The gate user code uses (a [`Gate`] as u64), readable from ring 3.
#[link_section = ".user_data"]
pub static USER_GATE: UserMem<8> = UserMem(UnsafeCell::new([0; 8]));

/// Selects the gate [`sys`] uses from now on.
pub fn set_gate(gate: Gate) {
    // SAFETY: an aligned u64 in user data; no task runs while the kernel changes it.
    unsafe { (USER_GATE.addr() as *mut u64).write_volatile(gate as u64) }
}

/// A system call through the selected gate ([`set_gate`]): user code's one way in.
#[inline(always)]
pub fn sys(n: u64, a: [u64; 6]) -> u64 {
    // SAFETY: an aligned u64 in user data (readable from ring 3).
    let gate = unsafe { (USER_GATE.addr() as *const u64).read_volatile() };
    match gate {
        0 => syscall6(n, a),
        1 => int80(n, a),
        _ => trap6(n, a),
    }
}

#[inline(always)]
fn call(use_int80: u64, n: u64, a: [u64; 6]) -> u64 {
    if use_int80 != 0 {
        int80(n, a)
    } else {
        syscall6(n, a)
    }
}

#[inline(always)]
fn exit(code: u64) -> ! {
    syscall6(nr::EXIT, [code, 0, 0, 0, 0, 0]);
    loop {
        core::hint::spin_loop();
    }
}

#[inline(always)]
fn record(i: usize, v: u64) {
    // SAFETY: RESULTS holds 512 u64 slots; callers use fixed indices below 16.
    unsafe { (RESULTS.0.get() as *mut u64).add(i).write_volatile(v) }
}

/// Number of slots the ABI program fills in [`RESULTS`].
pub const ABI_RESULTS: usize = 7;

/// Exercises the system call ABI and records each return value in [`RESULTS`]:
/// 0 write(msg) · 1 sum6(1..6) · 2 unknown number · 3 write(kernel pointer) ·
/// 4 write(non-canonical pointer) · 5 counter() · 6 write(pointer + length overflowing).
#[link_section = ".user_text"]
pub extern "C" fn abi_program(use_int80: u64) -> ! {
    let msg = MESSAGE.as_ptr() as u64;
    record(
        0,
        call(
            use_int80,
            nr::WRITE,
            [msg, MESSAGE.len() as u64, 0, 0, 0, 0],
        ),
    );
    record(1, call(use_int80, nr::SUM6, [1, 2, 3, 4, 5, 6]));
    record(2, call(use_int80, 999, [0; 6]));
    record(3, call(use_int80, nr::WRITE, [0x10_0000, 16, 0, 0, 0, 0]));
    record(
        4,
        call(
            use_int80,
            nr::WRITE,
            [0x8000_0000_0000_0000, 16, 0, 0, 0, 0],
        ),
    );
    record(5, call(use_int80, nr::COUNTER, [0; 6]));
    record(6, call(use_int80, nr::WRITE, [msg, u64::MAX, 0, 0, 0, 0]));
    exit(0)
}

/// Reads a kernel address from ring 3 (#PF, protection violation).
#[link_section = ".user_text"]
pub extern "C" fn read_kernel(addr: u64) -> ! {
    // SAFETY: deliberately faulting: the kernel ends the task.
    let _v = unsafe { core::ptr::read_volatile(addr as *const u64) };
    exit(1)
}

/// Executes a privileged instruction (`cli`) in ring 3 (#GP(0)).
#[link_section = ".user_text"]
pub extern "C" fn privileged(_: u64) -> ! {
    // SAFETY: deliberately faulting.
    unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
    exit(1)
}

/// Executes `ud2` in ring 3 (#UD).
#[link_section = ".user_text"]
pub extern "C" fn invalid_opcode(_: u64) -> ! {
    // SAFETY: deliberately faulting.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    exit(1)
}

/// Divides by zero in ring 3 (#DE).
#[link_section = ".user_text"]
pub extern "C" fn divide_by_zero(zero: u64) -> ! {
    // SAFETY: deliberately faulting.
    unsafe {
        core::arch::asm!("div {0}", in(reg) zero, inout("rax") 1u64 => _, inout("rdx") 0u64 => _, options(nomem, nostack))
    };
    exit(1)
}

/// Sets RFLAGS.AC and loads from a misaligned address (#AC with CR0.AM = 1).
#[link_section = ".user_text"]
pub extern "C" fn misaligned(addr: u64) -> ! {
    // SAFETY: deliberately faulting; the address is inside the user window.
    unsafe {
        core::arch::asm!("pushfq", "or qword ptr [rsp], 0x40000", "popfq", "mov {0}, [{0}]",
            inout(reg) addr | 1 => _);
    }
    exit(1)
}

/// Times `iterations` calls of `round_trip`, writing cycle counts to [`SAMPLES`].
#[inline(always)]
fn time_round_trips(iterations: u64, round_trip: impl Fn()) {
    let samples = SAMPLES.0.get() as *mut u32;
    let mut i = 0;
    while i < iterations {
        let t0 = cpu::rdtsc_ordered();
        round_trip();
        let t1 = cpu::rdtsc_ordered();
        // SAFETY: the kernel bounds `iterations` by MAX_SAMPLES.
        unsafe {
            samples
                .add(i as usize)
                .write_volatile(t1.wrapping_sub(t0) as u32)
        };
        i += 1;
    }
}

/// Times `syscall(yield)` round trips into [`SAMPLES`].
#[link_section = ".user_text"]
pub extern "C" fn syscall_cost(iterations: u64) -> ! {
    time_round_trips(iterations, || {
        syscall6(nr::YIELD, [0; 6]);
    });
    exit(0)
}

/// Times `int 0x80` (yield) round trips into [`SAMPLES`].
#[link_section = ".user_text"]
pub extern "C" fn int80_cost(iterations: u64) -> ! {
    time_round_trips(iterations, || {
        int80(nr::YIELD, [0; 6]);
    });
    exit(0)
}

/// The recorded ABI results.
pub fn results() -> [u64; ABI_RESULTS] {
    let mut out = [0; ABI_RESULTS];
    for (i, v) in out.iter_mut().enumerate() {
        // SAFETY: reading slots the ABI program wrote, between tasks.
        *v = unsafe { (RESULTS.0.get() as *const u64).add(i).read_volatile() };
    }
    out
}

/// The recorded samples.
pub fn samples(n: usize) -> &'static mut [u32] {
    // SAFETY: no task runs while the kernel looks at the samples; n <= MAX_SAMPLES.
    unsafe { core::slice::from_raw_parts_mut(SAMPLES.0.get() as *mut u32, n.min(MAX_SAMPLES)) }
}
