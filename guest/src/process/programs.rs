//! The ring-3 programs of `run=sched` and `run=signals`, and what they leave in the shared
//! page for the kernel to check.
//!
//! Everything here runs in ring 3 (`.user_text`): helpers are `#[inline(always)]` and no code
//! indexes with bounds checks (a panic would call into kernel text and fault). System calls
//! go through [`user::sys`], i.e. through whichever gate the experiment selected.

use super::signal::{SigContext, SigInfo};
use super::{shared, MAX_TASKS};
use crate::user::{self, sys, UserMem};
use irqlab_abi::syscall as nr;
use irqlab_guest_core::signal::{SIGILL, SIGSEGV, SIGUSR1, SIGUSR2};

// ---- user-side helpers -------------------------------------------------------------------

#[inline(always)]
fn exit(code: u64) -> ! {
    sys(nr::EXIT, [code, 0, 0, 0, 0, 0]);
    loop {
        core::hint::spin_loop();
    }
}

#[inline(always)]
fn write(msg: &[u8]) {
    sys(
        nr::WRITE,
        [msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0, 0],
    );
}

#[inline(always)]
fn getpid() -> u64 {
    sys(nr::GETPID, [0; 6])
}

#[inline(always)]
fn sigaction(sig: u8, handler: u64) -> u64 {
    sys(
        nr::SIGACTION,
        [
            u64::from(sig),
            handler,
            restorer as *const () as u64,
            0,
            0,
            0,
        ],
    )
}

#[inline(always)]
fn kill(pid: u64, sig: u8) -> u64 {
    sys(nr::KILL, [pid, u64::from(sig), 0, 0, 0, 0])
}

#[inline(always)]
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc reads the time-stamp counter (CR4.TSD is clear: allowed in ring 3).
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Slot `i` of task `pid`'s values in the shared page (no bounds check: callers pass pids
/// below MAX_TASKS and fixed slots below 16).
#[inline(always)]
fn value(pid: u64, i: usize) -> *mut u64 {
    let pid = (pid as usize) % MAX_TASKS;
    // SAFETY: inside the shared page (`values` is [[u64; 16]; MAX_TASKS]).
    unsafe { ((&raw mut (*shared()).values) as *mut u64).add(pid * 16 + (i % 16)) }
}

#[inline(always)]
fn set(pid: u64, i: usize, v: u64) {
    // SAFETY: see `value`.
    unsafe { value(pid, i).write_volatile(v) }
}

#[inline(always)]
fn get(pid: u64, i: usize) -> u64 {
    // SAFETY: see `value`.
    unsafe { value(pid, i).read_volatile() }
}

#[inline(always)]
fn ticks() -> u64 {
    // SAFETY: the kernel updates the shared page's tick count; reading it is the vDSO idea.
    unsafe { (&raw const (*shared()).ticks).read_volatile() }
}

/// The code every handler returns to: `sigreturn` through the selected gate, with RSP at the
/// signal frame (the handler's `ret` popped this address).
///
/// # Safety
/// Only reached by a handler's return, with a signal frame at RSP.
#[unsafe(naked)]
#[link_section = ".user_text"]
pub unsafe extern "C" fn restorer() {
    core::arch::naked_asm!(
        "mov eax, {n}",
        "mov rdx, qword ptr [rip + {gate}]",
        "cmp rdx, 1",
        "je 2f",
        "ja 3f",
        "syscall",
        "ud2",
        "2:",
        "int 0x80",
        "ud2",
        "3:",
        "ud2",
        ".ascii \"sys\"",
        "ud2",
        n = const nr::SIGRETURN,
        gate = sym user::USER_GATE,
    )
}

// ---- run=sched ---------------------------------------------------------------------------

#[link_section = ".user_data"]
static MSG_SLEEPER_START: [u8; 23] = *b"sched: sleeper started\n";
#[link_section = ".user_data"]
static MSG_SLEEPER_DONE: [u8; 20] = *b"sched: sleeper done\n";

/// A CPU-bound task: counts loop iterations in its shared counter until the kernel sets the
/// stop flag. It makes no system call before then (the kernel counts), so only the timer can
/// take the CPU from it.
#[link_section = ".user_text"]
pub extern "C" fn spinner(slot: u64) -> ! {
    let sh = shared();
    // SAFETY: the counter is this task's slot in the shared page (slot < MAX_TASKS).
    let counter = unsafe { ((&raw mut (*sh).counters) as *mut u64).add(slot as usize % MAX_TASKS) };
    loop {
        // SAFETY: as above; the stop flag is in the shared page.
        unsafe {
            counter.write_volatile(counter.read_volatile() + 1);
            if (&raw const (*sh).stop).read_volatile() != 0 {
                break;
            }
        }
    }
    exit(0)
}

/// Sleeper values: 0 = getpid, 1.. = ticks each sleep really took.
pub const SLEEPER_PID: usize = 0;
/// First slot of the measured sleep lengths.
pub const SLEEPER_SLEPT: usize = 1;

/// An I/O-bound task: `rounds` times sleep `ticks` (arg = ticks | rounds << 32), recording how
/// long each sleep took by the shared tick count, then yield.
#[link_section = ".user_text"]
pub extern "C" fn sleeper(arg: u64) -> ! {
    let (each, rounds) = (arg & 0xffff_ffff, (arg >> 32).min(14));
    let pid = getpid();
    set(pid, SLEEPER_PID, pid);
    write(&MSG_SLEEPER_START);
    let mut r = 0;
    while r < rounds {
        let t0 = ticks();
        sys(nr::SLEEP, [each, 0, 0, 0, 0, 0]);
        set(pid, SLEEPER_SLEPT + r as usize, ticks() - t0);
        sys(nr::YIELD, [0; 6]);
        r += 1;
    }
    write(&MSG_SLEEPER_DONE);
    exit(0)
}

// ---- run=signals -------------------------------------------------------------------------

/// A register probe's record.
pub type Probe = UserMem<{ 8 * 18 }>;

/// The latencies the SIGUSR2 handler recorded (read after the task exited).
pub fn latencies(n: usize) -> &'static mut [u32] {
    // SAFETY: user data no task touches any more; n <= LATENCY_ROUNDS.
    unsafe { core::slice::from_raw_parts_mut(LATENCIES.addr() as *mut u32, n.min(LATENCY_ROUNDS)) }
}

/// The register probes' records: 15 general registers (RAX, RBX, RCX, RDX, RSI, RDI, RBP,
/// R8–R15), RFLAGS, RSP after, RSP before.
#[link_section = ".user_data"]
pub static REGS_SYNC: Probe = UserMem::new();
/// The asynchronous probe's record (same layout).
#[link_section = ".user_data"]
pub static REGS_ASYNC: Probe = UserMem::new();
/// Set by the SIGALRM handler; the asynchronous probe spins on it.
#[link_section = ".user_data"]
static ALARM_FLAG: UserMem<8> = UserMem::new();
/// Delivery latencies the SIGUSR2 handler measured (u32 cycles each).
#[link_section = ".user_data"]
pub static LATENCIES: UserMem<{ 4 * LATENCY_ROUNDS }> = UserMem::new();
/// `kill(self, SIGUSR2)` rounds of the latency task.
pub const LATENCY_ROUNDS: usize = 200;

/// The value the probes load into general register `i` (in the record's order).
pub const fn pattern(i: usize) -> u64 {
    0xa5a5_0000_0000_0000 | ((i as u64 + 1) * 0x0101_0101)
}

/// Loads every general register with [`pattern`], sets CF, runs `$event`, then stores them.
macro_rules! register_probe {
    ($regs:expr, [$($event:literal),+] $(, $name:ident = sym $sym:path)?) => {
        // SAFETY: RBX and RBP are saved and restored around the probe; every other register
        // is declared clobbered; the record is user data.
        unsafe {
            core::arch::asm!(
                "push rbx", "push rbp",
                "mov qword ptr [rip + {regs} + 136], rsp",
                "mov rax, {p0}", "mov rbx, {p1}", "mov rcx, {p2}", "mov rdx, {p3}",
                "mov rsi, {p4}", "mov rdi, {p5}", "mov rbp, {p6}", "mov r8, {p7}",
                "mov r9, {p8}", "mov r10, {p9}", "mov r11, {p10}", "mov r12, {p11}",
                "mov r13, {p12}", "mov r14, {p13}", "mov r15, {p14}",
                "stc",
                $($event,)+
                "mov qword ptr [rip + {regs} + 0], rax",
                "mov qword ptr [rip + {regs} + 8], rbx",
                "mov qword ptr [rip + {regs} + 16], rcx",
                "mov qword ptr [rip + {regs} + 24], rdx",
                "mov qword ptr [rip + {regs} + 32], rsi",
                "mov qword ptr [rip + {regs} + 40], rdi",
                "mov qword ptr [rip + {regs} + 48], rbp",
                "mov qword ptr [rip + {regs} + 56], r8",
                "mov qword ptr [rip + {regs} + 64], r9",
                "mov qword ptr [rip + {regs} + 72], r10",
                "mov qword ptr [rip + {regs} + 80], r11",
                "mov qword ptr [rip + {regs} + 88], r12",
                "mov qword ptr [rip + {regs} + 96], r13",
                "mov qword ptr [rip + {regs} + 104], r14",
                "mov qword ptr [rip + {regs} + 112], r15",
                "mov qword ptr [rip + {regs} + 128], rsp",
                "pushfq",
                "pop rax",
                "mov qword ptr [rip + {regs} + 120], rax",
                "pop rbp", "pop rbx",
                regs = sym $regs,
                $($name = sym $sym,)?
                p0 = const pattern(0), p1 = const pattern(1), p2 = const pattern(2),
                p3 = const pattern(3), p4 = const pattern(4), p5 = const pattern(5),
                p6 = const pattern(6), p7 = const pattern(7), p8 = const pattern(8),
                p9 = const pattern(9), p10 = const pattern(10), p11 = const pattern(11),
                p12 = const pattern(12), p13 = const pattern(13), p14 = const pattern(14),
                out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _, out("r12") _,
                out("r13") _, out("r14") _, out("r15") _,
            )
        }
    };
}

/// Signal-program value slots.
pub mod slot {
    /// Handler runs per signal kind / results, per program (see each program).
    pub const A: usize = 0;
    /// Second value.
    pub const B: usize = 1;
    /// Third value.
    pub const C: usize = 2;
    /// Fourth value.
    pub const D: usize = 3;
    /// Fifth value.
    pub const E: usize = 4;
    /// Last measured delivery latency (cycles).
    pub const LATENCY: usize = 8;
    /// Deepest handler nesting seen.
    pub const DEPTH_MAX: usize = 9;
    /// Current handler nesting.
    pub const DEPTH: usize = 10;
}

/// Handler entry bookkeeping: latency from raise, nesting depth.
#[inline(always)]
fn handler_enter(info: *const SigInfo) -> u64 {
    let now = rdtsc();
    let pid = getpid();
    // SAFETY: the kernel passes a pointer into the signal frame on this stack.
    let raised = unsafe { (*info).raised_tsc };
    set(pid, slot::LATENCY, now.wrapping_sub(raised));
    let depth = get(pid, slot::DEPTH) + 1;
    set(pid, slot::DEPTH, depth);
    if depth > get(pid, slot::DEPTH_MAX) {
        set(pid, slot::DEPTH_MAX, depth);
    }
    pid
}

#[inline(always)]
fn handler_leave(pid: u64) {
    set(pid, slot::DEPTH, get(pid, slot::DEPTH) - 1);
}

/// SIGALRM: count (slot A) and release the asynchronous probe.
#[link_section = ".user_text"]
extern "C" fn on_alarm(_sig: u64, info: *const SigInfo, _ctx: *mut SigContext) {
    let pid = handler_enter(info);
    set(pid, slot::A, get(pid, slot::A) + 1);
    // SAFETY: user data.
    unsafe { (ALARM_FLAG.addr() as *mut u64).write_volatile(1) };
    handler_leave(pid);
}

/// SIGALRM from `alarm(2)` interrupts a spin loop whose registers hold known values: slot A
/// handler runs, slot B alarm's return value (0: no previous alarm); [`REGS_ASYNC`] the
/// registers after the handler returned.
#[link_section = ".user_text"]
pub extern "C" fn alarm_task(_: u64) -> ! {
    let pid = getpid();
    sigaction(
        irqlab_guest_core::signal::SIGALRM,
        on_alarm as *const () as u64,
    );
    set(pid, slot::B, sys(nr::ALARM, [2, 0, 0, 0, 0, 0]));
    register_probe!(
        REGS_ASYNC,
        ["2:", "cmp qword ptr [rip + {flag}], 0", "je 2b"],
        flag = sym ALARM_FLAG
    );
    exit(0)
}

/// SIGSEGV, SIGILL, SIGFPE: count per signal (slots A, B, C), record the fault address (D)
/// and skip the faulting instruction (ud2: 2 bytes, the others here: 3).
#[link_section = ".user_text"]
extern "C" fn on_fault(sig: u64, info: *const SigInfo, ctx: *mut SigContext) {
    let pid = handler_enter(info);
    let i = match sig as u8 {
        SIGSEGV => slot::A,
        SIGILL => slot::B,
        _ => slot::C,
    };
    set(pid, i, get(pid, i) + 1);
    // SAFETY: the kernel passes pointers into the signal frame on this stack.
    unsafe {
        if (*info).vector == 14 {
            set(pid, slot::D, (*info).addr);
        }
        let len = if (*info).vector == 6 { 2 } else { 3 };
        (*ctx).rip += len;
    }
    handler_leave(pid);
}

/// The faulting address the #PF probe reads (kernel memory: present, supervisor-only).
pub const KERNEL_ADDR: u64 = 0x10_0000;

/// #PF, #UD and #DE from ring 3 become SIGSEGV, SIGILL and SIGFPE; the handler skips each
/// faulting instruction and the task goes on. The #UD runs inside a register probe
/// ([`REGS_SYNC`]); slot E = 1 when the task got past all three.
#[link_section = ".user_text"]
pub extern "C" fn fault_task(_: u64) -> ! {
    let pid = getpid();
    let h = on_fault as *const () as u64;
    sigaction(SIGSEGV, h);
    sigaction(SIGILL, h);
    sigaction(irqlab_guest_core::signal::SIGFPE, h);
    // SAFETY: the read faults (#PF, supervisor page); the handler skips the 3-byte
    // `mov rax, [rcx]`.
    unsafe {
        core::arch::asm!(".byte 0x48, 0x8b, 0x01", in("rcx") KERNEL_ADDR, out("rax") _, options(nostack))
    };
    // SAFETY: #DE; the handler skips the 3-byte `div rcx`.
    unsafe {
        core::arch::asm!(".byte 0x48, 0xf7, 0xf1", in("rcx") 0u64, inout("rax") 1u64 => _,
            inout("rdx") 0u64 => _, options(nostack))
    };
    register_probe!(REGS_SYNC, ["ud2"]);
    set(pid, slot::E, 1);
    exit(0)
}

/// SIGUSR1 for the receiver: count (slot A).
#[link_section = ".user_text"]
extern "C" fn on_usr1(_sig: u64, info: *const SigInfo, _ctx: *mut SigContext) {
    let pid = handler_enter(info);
    set(pid, slot::A, get(pid, slot::A) + 1);
    handler_leave(pid);
}

/// Sleeps 10,000 ticks; another task's `kill` ends the sleep early. Slot B = what `sleep`
/// returned (ticks left, > 0 when interrupted).
#[link_section = ".user_text"]
pub extern "C" fn receiver(_: u64) -> ! {
    let pid = getpid();
    sigaction(SIGUSR1, on_usr1 as *const () as u64);
    set(pid, slot::B, sys(nr::SLEEP, [10_000, 0, 0, 0, 0, 0]));
    exit(0)
}

/// Waits 3 ticks, then `kill(receiver, SIGUSR1)` (slot A = its result) and `kill(999,
/// SIGUSR1)` (slot B = its result: -ESRCH).
#[link_section = ".user_text"]
pub extern "C" fn sender(receiver_pid: u64) -> ! {
    let pid = getpid();
    sys(nr::SLEEP, [3, 0, 0, 0, 0, 0]);
    set(pid, slot::A, kill(receiver_pid, SIGUSR1));
    set(pid, slot::B, kill(999, SIGUSR1));
    exit(0)
}

/// SIGUSR1 that raises itself again inside its handler: the second must wait until the
/// first's `sigreturn` (slot A counts runs; DEPTH_MAX stays 1).
#[link_section = ".user_text"]
extern "C" fn on_usr1_again(_sig: u64, info: *const SigInfo, _ctx: *mut SigContext) {
    let pid = handler_enter(info);
    let runs = get(pid, slot::A) + 1;
    set(pid, slot::A, runs);
    if runs == 1 {
        kill(pid, SIGUSR1);
        // Still blocked: a system call returns to this handler, not to a new one.
        sys(nr::YIELD, [0; 6]);
        set(pid, slot::B, get(pid, slot::A));
    }
    handler_leave(pid);
}

/// SIGUSR2: the delivery latency of `kill(self)`, into [`LATENCIES`] (slot C counts).
#[link_section = ".user_text"]
extern "C" fn on_usr2(_sig: u64, info: *const SigInfo, _ctx: *mut SigContext) {
    let pid = handler_enter(info);
    let n = get(pid, slot::C);
    if (n as usize) < LATENCY_ROUNDS {
        // SAFETY: inside LATENCIES (n < LATENCY_ROUNDS).
        unsafe {
            (LATENCIES.addr() as *mut u32)
                .add(n as usize)
                .write_volatile(get(pid, slot::LATENCY) as u32)
        };
    }
    set(pid, slot::C, n + 1);
    handler_leave(pid);
}

/// A signal during its own handler, then [`LATENCY_ROUNDS`] self-signals for the latency.
#[link_section = ".user_text"]
pub extern "C" fn nesting_task(_: u64) -> ! {
    let pid = getpid();
    sigaction(SIGUSR1, on_usr1_again as *const () as u64);
    kill(pid, SIGUSR1);
    sigaction(SIGUSR2, on_usr2 as *const () as u64);
    let mut i = 0;
    while i < LATENCY_ROUNDS {
        kill(pid, SIGUSR2);
        i += 1;
    }
    exit(0)
}

/// Default actions: SIGCHLD (default: ignore) and an ignored SIGUSR2 leave it running (slot
/// A = 1), SIGTERM's default ends it before slot B is set.
#[link_section = ".user_text"]
pub extern "C" fn default_task(_: u64) -> ! {
    let pid = getpid();
    kill(pid, irqlab_guest_core::signal::SIGCHLD);
    sigaction(SIGUSR2, 1);
    kill(pid, SIGUSR2);
    set(pid, slot::A, 1);
    kill(pid, irqlab_guest_core::signal::SIGTERM);
    set(pid, slot::B, 1);
    exit(0)
}

/// A handler that corrupts its frame: CS becomes the kernel's.
#[link_section = ".user_text"]
extern "C" fn on_usr1_bad_cs(_sig: u64, _info: *const SigInfo, ctx: *mut SigContext) {
    // SAFETY: the kernel passes a pointer into the signal frame on this stack.
    unsafe { (*ctx).cs = 0x08 };
}

/// A handler that corrupts its frame: RIP becomes a kernel address.
#[link_section = ".user_text"]
extern "C" fn on_usr1_bad_rip(_sig: u64, _info: *const SigInfo, ctx: *mut SigContext) {
    // SAFETY: the kernel passes a pointer into the signal frame on this stack.
    unsafe { (*ctx).rip = KERNEL_ADDR };
}

/// Raises SIGUSR1 with a handler that corrupts the frame (arg 0: CS, 1: RIP); the kernel must
/// refuse the `sigreturn` and kill the task with SIGSEGV before slot A is set.
#[link_section = ".user_text"]
pub extern "C" fn corrupt_task(which: u64) -> ! {
    let pid = getpid();
    let h = if which == 0 {
        on_usr1_bad_cs as *const () as u64
    } else {
        on_usr1_bad_rip as *const () as u64
    };
    sigaction(SIGUSR1, h);
    kill(pid, SIGUSR1);
    set(pid, slot::A, 1);
    exit(0)
}
