//! Processes: ring-3 tasks with their own kernel stacks, a timer-driven round-robin
//! scheduler, and signals delivered on the way back to user mode (`run=sched`,
//! `run=signals`).
//!
//! The model is Linux 0.11's `do_timer`/`schedule` pair, with the structure Linux keeps
//! today:
//! - **Tasks.** Slot 0 is the idle task: the kernel context that called [`run`]. Slots
//!   1.. are ring-3 tasks, each with its own kernel stack, user stack and saved context.
//! - **The tick** ([`tick`], the timer's interrupt handler) charges the tick to the running
//!   task, counts down its time slice and, when the slice is used up, sets the per-CPU
//!   `NEED_RESCHED` work bit. It also wakes sleepers and fires alarms.
//! - **The switch happens on the way back to user mode**: every exit path to ring 3 tests the
//!   per-CPU work word (`percpu::work`); with work pending it calls [`exit_to_user`], which
//!   calls [`schedule`] and delivers signals (Linux's `exit_to_user_mode_loop`). A task that
//!   never makes a system call is preempted this way too.
//! - **Blocking calls** (`sleep`, `yield`, `exit`) call [`schedule`] directly from the system
//!   call, on the task's own kernel stack.
//! - **Kernel stacks.** While the experiments run, the gates ring 3 can reach (the timer,
//!   `int 0x80`, the exceptions) use IST 0, so the CPU switches to TSS.RSP0, which
//!   [`schedule`] points at the next task's kernel stack (and the SYSCALL entry's stack with
//!   it). Every system call checks that it runs on the caller's own kernel stack.
//!
//! Everything here runs on the boot CPU with interrupts off (interrupt gates, FMASK), except
//! the idle loop's `sti; hlt`.

mod calls;
pub mod programs;
pub mod signal;
mod switch;
mod task;

use crate::boot_cell::BootCpuCell;
use crate::frame::Frame;
use crate::percpu::{WORK_NEED_RESCHED, WORK_SIGPENDING};
use crate::stack::Stack;
use crate::user::{self, UserMem};
use crate::{cpu, gdt, idt, percpu};
use core::cell::UnsafeCell;
use irqlab_guest_core::signal::SigSet;

pub use calls::{
    alarm, getpid, kill, on_syscall, sigaction, sigprocmask, sleep, user_fault, yield_now,
};
pub use signal::sigreturn;
pub use task::{Action, Samples, State, Task};

/// Task slots, idle (slot 0) included.
pub const MAX_TASKS: usize = 10;
const KSTACK_SIZE: usize = 8 * 1024;
const USTACK_SIZE: usize = 8 * 1024;
/// Most context-switch and signal-latency samples kept.
pub const MAX_SAMPLES: usize = 2048;

/// The scheduler's state.
pub struct Sched {
    active: bool,
    /// The task table.
    pub tasks: [Task; MAX_TASKS],
    current: usize,
    /// Timer ticks since [`start`].
    pub ticks: u64,
    /// Ticks that found the idle task running.
    pub idle_ticks: u64,
    /// Ticks that ended a time slice (and so asked for a preemption).
    pub preempt_ticks: u64,
    /// Context switches.
    pub switches: u64,
    slice: u64,
    slice_left: u64,
    per_task_cr3: bool,
    kernel_cr3: u64,
    ran_since: u64,
    switch_t0: u64,
    /// Cycles from `switch_to`'s call in one task to its return in the next.
    pub switch_cost: Samples,
    /// Live tasks (not idle, not zombies).
    pub live: usize,
    /// Sigreturns refused (bad context).
    pub bad_sigreturns: u64,
    /// CR3 loads by `schedule` (per-task page tables).
    pub cr3_switches: u64,
}

/// Only the boot CPU touches the scheduler, with interrupts off.
static SCHED: BootCpuCell<Sched> = BootCpuCell::new(Sched {
    active: false,
    tasks: [const { Task::new() }; MAX_TASKS],
    current: 0,
    ticks: 0,
    idle_ticks: 0,
    preempt_ticks: 0,
    switches: 0,
    slice: 1,
    slice_left: 1,
    per_task_cr3: false,
    kernel_cr3: 0,
    ran_since: 0,
    switch_t0: 0,
    switch_cost: Samples::new(),
    live: 0,
    bad_sigreturns: 0,
    cr3_switches: 0,
});

/// The scheduler. Callers run with interrupts off on the boot CPU and must not hold the
/// reference across [`schedule`] (re-borrow after it).
#[allow(clippy::mut_from_ref)]
pub fn sched() -> &'static mut Sched {
    // SAFETY: one CPU, interrupts off: no other reference is live while the caller uses it
    // (every function here re-borrows after anything that may switch tasks).
    unsafe { SCHED.get() }
}

static KSTACKS: [Stack<KSTACK_SIZE>; MAX_TASKS] = [const { Stack::new() }; MAX_TASKS];
#[link_section = ".user_data"]
static USTACKS: UserMem<{ MAX_TASKS * USTACK_SIZE }> = UserMem::new();

/// Kernel-stack guard pages (unmapped by `paging::init`, like every other stack's).
pub fn guard_pages() -> impl Iterator<Item = u64> {
    KSTACKS.iter().skip(1).map(|s| s.guard_page())
}

/// Data the kernel shares with ring 3 (a vDSO-like page): user code reads the tick count and
/// the stop flag without a system call and keeps its counters here.
#[repr(C)]
pub struct Shared {
    /// Timer ticks since [`start`].
    pub ticks: u64,
    /// Set by the tick at the experiment's end: CPU-bound tasks stop and exit.
    pub stop: u64,
    /// Per-task counters the user programs keep (loop iterations, handler runs, ...).
    pub counters: [u64; MAX_TASKS],
    /// Per-task values the signal programs record (slot per check).
    pub values: [[u64; 16]; MAX_TASKS],
}

#[link_section = ".user_data"]
static SHARED: UserMem<4096> = UserMem::new();
const _: () = assert!(core::mem::size_of::<Shared>() <= 4096);

/// The shared page.
#[inline(always)]
pub fn shared() -> *mut Shared {
    SHARED.addr() as *mut Shared
}

/// Vectors ring 3 can reach while tasks run (their gates move to IST 0): the exceptions a
/// user program can raise and `int 0x80`; the timer's vector is added by [`start`].
const USER_REACHABLE: [u8; 15] = [0, 1, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17, 19];

/// How the scheduler is set up.
pub struct Config {
    /// The timer's vector.
    pub timer_vector: u8,
    /// Ticks per time slice.
    pub slice: u64,
    /// Give every task its own PML4 (a copy of the kernel's: same mappings, its own CR3), so
    /// each switch loads CR3 and flushes the TLB, as switching processes does without PCID.
    pub per_task_cr3: bool,
}

#[repr(C, align(4096))]
struct Pml4([u64; 512]);
struct Pml4s(UnsafeCell<[Pml4; MAX_TASKS]>);
// SAFETY: written by `spawn` on the boot CPU with interrupts off, before the task runs;
// afterwards only the MMU reads them.
unsafe impl Sync for Pml4s {}
static PML4S: Pml4s = Pml4s(UnsafeCell::new([const { Pml4([0; 512]) }; MAX_TASKS]));

/// Whether the process experiments are running (system calls and faults go through them).
pub fn active() -> bool {
    sched().active
}

/// Resets the task table, moves the user-reachable gates to IST 0 and installs the
/// return-to-user hook. Interrupts off; the caller starts the timer afterwards (its handler
/// must call [`tick`]).
pub fn start(config: &Config) {
    let s = sched();
    *s = Sched {
        active: true,
        tasks: [const { Task::new() }; MAX_TASKS],
        current: 0,
        ticks: 0,
        idle_ticks: 0,
        preempt_ticks: 0,
        switches: 0,
        slice: config.slice.max(1),
        slice_left: config.slice.max(1),
        per_task_cr3: config.per_task_cr3,
        kernel_cr3: cpu::cr3(),
        ran_since: cpu::rdtsc(),
        switch_t0: 0,
        switch_cost: Samples::new(),
        live: 0,
        bad_sigreturns: 0,
        cr3_switches: 0,
    };
    s.tasks[0].state = State::Runnable;
    s.tasks[0].name = "idle";
    // SAFETY: the shared page is plain user data; no task runs yet.
    unsafe { shared().write_bytes(0, 1) };
    for v in USER_REACHABLE
        .iter()
        .copied()
        .chain([crate::vectors::SYSCALL, config.timer_vector])
    {
        idt::set_ist(v, 0);
    }
    idt::set_exit_to_user(Some(exit_to_user));
}

/// Undoes [`start`]: the gates go back to their IST stacks, the hook is removed, system calls
/// and faults behave as outside the experiments again.
pub fn stop(timer_vector: u8) {
    for v in USER_REACHABLE
        .iter()
        .copied()
        .chain([crate::vectors::SYSCALL, timer_vector])
    {
        idt::set_ist(v, idt::ist_for(v));
    }
    idt::set_exit_to_user(None);
    percpu::clear_work(WORK_NEED_RESCHED | WORK_SIGPENDING);
    // SAFETY: the kernel's own PML4, which the idle task (the caller) runs on already.
    unsafe { cpu::set_cr3(sched().kernel_cr3) };
    gdt::set_rsp0(0, gdt::RSP0_STACK.top());
    percpu::set_syscall_stack(crate::SYSCALL_STACK.top());
    sched().active = false;
}

/// Creates a ring-3 task running `program(arg)`; returns its pid, or `None` when the table is
/// full.
pub fn spawn(name: &'static str, program: user::Program, arg: u64) -> Option<u64> {
    let s = sched();
    let slot = (1..MAX_TASKS).find(|&i| s.tasks[i].state == State::Unused)?;
    KSTACKS[slot].arm();
    let kstack_top = KSTACKS[slot].top();
    let ustack_top = USTACKS.addr() + ((slot + 1) * USTACK_SIZE) as u64 - 8;
    let ksp = switch::prepare(kstack_top, program as *const () as u64, ustack_top, arg);
    let cr3 = if s.per_task_cr3 {
        // SAFETY: boot CPU, interrupts off; slot `slot`'s PML4 is not in use (its task is
        // not running); the kernel's PML4 is identity-mapped.
        unsafe {
            let pml4 = &mut (*PML4S.0.get())[slot];
            let kernel = (s.kernel_cr3 & !0xfff) as *const [u64; 512];
            for (dst, src) in pml4.0.iter_mut().zip((*kernel).iter()) {
                core::ptr::write_volatile(dst, *src);
            }
            pml4 as *const Pml4 as u64
        }
    } else {
        s.kernel_cr3
    };
    let t = &mut s.tasks[slot];
    *t = Task::new();
    t.pid = slot as u64;
    t.name = name;
    t.state = State::Runnable;
    t.ksp = ksp;
    t.kstack_top = kstack_top;
    t.cr3 = cr3;
    s.live += 1;
    Some(slot as u64)
}

/// The idle task: runs the tasks until all have exited or `give_up_ticks` ticks pass (then
/// the rest are killed, still counted as failures by the caller). Interrupts are enabled only
/// in its `sti; hlt`.
pub fn run(give_up_ticks: u64) -> bool {
    loop {
        cpu::cli();
        let s = sched();
        if s.live == 0 {
            return true;
        }
        if s.ticks >= give_up_ticks {
            for t in s.tasks.iter_mut().skip(1) {
                if !matches!(t.state, State::Unused | State::Zombie) {
                    t.state = State::Zombie;
                    t.exit_code = -1;
                }
            }
            s.live = 0;
            return false;
        }
        if s.tasks.iter().skip(1).any(|t| t.state == State::Runnable) {
            schedule();
        } else {
            cpu::sti_hlt();
        }
    }
}

/// The timer interrupt's work (Linux 0.11's `do_timer`): charge the tick, end the slice,
/// wake sleepers, fire alarms.
pub fn tick() {
    let s = sched();
    if !s.active {
        return;
    }
    s.ticks += 1;
    let now = s.ticks;
    // SAFETY: aligned stores into the shared user page.
    unsafe { (&raw mut (*shared()).ticks).write_volatile(now) };
    let cur = s.current;
    if cur == 0 {
        s.idle_ticks += 1;
    } else {
        s.tasks[cur].ticks += 1;
        s.slice_left = s.slice_left.saturating_sub(1);
        if s.slice_left == 0 {
            s.preempt_ticks += 1;
            percpu::set_work(WORK_NEED_RESCHED);
        }
    }
    for i in 1..MAX_TASKS {
        if let State::Sleeping { until } = s.tasks[i].state {
            if until <= now {
                s.tasks[i].state = State::Runnable;
                if cur == 0 {
                    percpu::set_work(WORK_NEED_RESCHED);
                }
            }
        }
        let alarm = s.tasks[i].alarm_at;
        if alarm != 0 && alarm <= now && !matches!(s.tasks[i].state, State::Zombie) {
            s.tasks[i].alarm_at = 0;
            raise(i, irqlab_guest_core::signal::SIGALRM);
        }
    }
}

/// Stops the CPU-bound tasks at their next look at the shared page.
pub fn request_stop() {
    // SAFETY: an aligned store into the shared user page.
    unsafe { (&raw mut (*shared()).stop).write_volatile(1) };
}

/// Picks the next task round-robin and switches to it (the idle task if nothing can run).
pub fn schedule() {
    let s = sched();
    percpu::clear_work(WORK_NEED_RESCHED);
    let prev = s.current;
    let next = irqlab_guest_core::sched::round_robin(prev, MAX_TASKS, |i| {
        i != 0 && s.tasks[i].state == State::Runnable
    })
    .unwrap_or(0);
    s.slice_left = s.slice;
    if next == prev {
        update_sigpending();
        return;
    }
    let now = cpu::rdtsc();
    s.tasks[prev].cycles += now.wrapping_sub(s.ran_since);
    s.ran_since = now;
    if prev != 0 {
        if s.tasks[prev].state == State::Runnable {
            s.tasks[prev].involuntary += 1;
        } else {
            s.tasks[prev].voluntary += 1;
        }
    }
    s.switches += 1;
    s.current = next;
    if next != 0 {
        let top = s.tasks[next].kstack_top;
        gdt::set_rsp0(0, top);
        percpu::set_syscall_stack(top);
    }
    let next_cr3 = if next == 0 {
        s.kernel_cr3
    } else {
        s.tasks[next].cr3
    };
    if s.per_task_cr3 {
        s.cr3_switches += 1;
        // SAFETY: every task's PML4 is a copy of the kernel's: the same mappings.
        unsafe { cpu::set_cr3(next_cr3) };
    }
    // The next task's work bits before it runs: a new task leaves through `first_entry`
    // straight to ring 3, without the return-to-user check.
    update_sigpending();
    let s = sched();
    let prev_ksp = &raw mut s.tasks[prev].ksp;
    let next_ksp = s.tasks[next].ksp;
    s.switch_t0 = cpu::rdtsc();
    // SAFETY: `next_ksp` was saved by `switch_to` or built by `switch::prepare`; interrupts
    // are off; `s` is not used across the call.
    unsafe { switch::switch_to(prev_ksp, next_ksp) };
    // Back in `prev`, switched to by some later `schedule`.
    let s = sched();
    let cost = cpu::rdtsc().wrapping_sub(s.switch_t0);
    s.switch_cost.push(cost);
    update_sigpending();
}

/// Sets or clears the per-CPU SIGPENDING work bit for the current task.
fn update_sigpending() {
    let s = sched();
    let t = &s.tasks[s.current];
    if s.current != 0 && t.pending.next_deliverable(t.blocked).is_some() {
        percpu::set_work(WORK_SIGPENDING);
    } else {
        percpu::clear_work(WORK_SIGPENDING);
    }
}

/// Makes `sig` pending for task `slot`, waking it from a sleep if it is not blocked.
fn raise(slot: usize, sig: u8) {
    let s = sched();
    let t = &mut s.tasks[slot];
    if t.state == State::Zombie || t.state == State::Unused {
        return;
    }
    if !t.pending.contains(sig) {
        t.raised_at[usize::from(sig)] = cpu::rdtsc();
    }
    t.pending = t.pending.with(sig);
    if SigSet::of(sig).next_deliverable(t.blocked).is_some() {
        if let State::Sleeping { .. } = t.state {
            t.state = State::Runnable;
        }
    }
    if slot == s.current {
        update_sigpending();
    }
}

/// The return-to-user work (Linux's `exit_to_user_mode_loop`): reschedule while asked to,
/// then deliver pending signals, until no work is left.
fn exit_to_user(frame: &mut Frame) {
    loop {
        let work = percpu::work();
        if work & WORK_NEED_RESCHED != 0 {
            schedule();
        } else if work & WORK_SIGPENDING != 0 {
            signal::deliver(frame);
            update_sigpending();
        } else {
            return;
        }
    }
}

/// Ends the current task (the `exit` system call, or a fatal signal).
pub fn exit(code: i64) -> ! {
    let s = sched();
    let cur = s.current;
    s.tasks[cur].state = State::Zombie;
    s.tasks[cur].exit_code = code;
    s.tasks[cur].alarm_at = 0;
    s.live = s.live.saturating_sub(1);
    schedule();
    unreachable!("a zombie was scheduled");
}
