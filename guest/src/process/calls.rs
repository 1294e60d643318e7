//! The process system calls (`getpid`, `yield`, `sleep`, `alarm`, `kill`, `sigaction`,
//! `sigprocmask`) and what a ring-3 fault becomes: each returns `Err(errno)` outside the
//! experiments (`-ENOSYS`) or for bad arguments.

use super::{
    active, raise, sched, schedule, signal, update_sigpending, Action, State, KSTACK_SIZE,
    MAX_TASKS,
};
use crate::frame::Frame;
use crate::user;
use irqlab_abi::syscall as nr;
use irqlab_guest_core::signal::SigSet;

/// Counts a system call and checks it runs on the caller's own kernel stack, with TSS.RSP0
/// and the SYSCALL entry's stack pointing at it.
pub fn on_syscall() {
    let s = sched();
    if !s.active || s.current == 0 {
        return;
    }
    let rsp: u64;
    // SAFETY: reads RSP.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    let t = &mut s.tasks[s.current];
    t.syscalls += 1;
    let switched =
        crate::gdt::rsp0(0) == t.kstack_top && crate::percpu::syscall_stack() == t.kstack_top;
    if crate::cpu::cr3() & !0xfff != t.cr3 & !0xfff {
        t.wrong_cr3 += 1;
    }
    if !switched || rsp > t.kstack_top || rsp < t.kstack_top - KSTACK_SIZE as u64 {
        t.wrong_stack += 1;
    }
}

/// `getpid`: the current task's pid (0 outside the experiments).
pub fn getpid() -> u64 {
    let s = sched();
    if s.active {
        s.tasks[s.current].pid
    } else {
        0
    }
}

/// `yield`: let the next task run (nothing to do outside the experiments).
pub fn yield_now() {
    if active() {
        schedule();
    }
}

/// `sleep(ticks)`.
pub fn sleep(ticks: u64) -> Result<u64, i64> {
    let s = sched();
    if !s.active {
        return Err(nr::ENOSYS);
    }
    let until = s.ticks.saturating_add(ticks);
    let cur = s.current;
    s.tasks[cur].state = State::Sleeping { until };
    schedule();
    let s = sched();
    let t = &mut s.tasks[cur];
    if s.ticks < until {
        if t.pending.next_deliverable(t.blocked).is_none() {
            t.early_wakes += 1;
        }
        return Ok(until - s.ticks);
    }
    Ok(0)
}

/// `alarm(ticks)`: returns the ticks left of the previous alarm.
pub fn alarm(ticks: u64) -> Result<u64, i64> {
    let s = sched();
    if !s.active {
        return Err(nr::ENOSYS);
    }
    let now = s.ticks;
    let t = &mut s.tasks[s.current];
    let left = t.alarm_at.saturating_sub(now);
    t.alarm_at = if ticks == 0 {
        0
    } else {
        now.saturating_add(ticks)
    };
    Ok(left)
}

/// `kill(pid, sig)`.
pub fn kill(pid: u64, sig: u64) -> Result<u64, i64> {
    let s = sched();
    if !s.active {
        return Err(nr::ENOSYS);
    }
    if sig == 0 || sig >= u64::from(irqlab_guest_core::signal::NSIG) {
        return Err(nr::EINVAL);
    }
    let slot = pid as usize;
    if pid == 0 || slot >= MAX_TASKS || matches!(s.tasks[slot].state, State::Unused | State::Zombie)
    {
        return Err(nr::ESRCH);
    }
    raise(slot, sig as u8);
    Ok(0)
}

/// `sigaction(sig, handler, restorer)`.
pub fn sigaction(sig: u64, handler: u64, restorer: u64) -> Result<u64, i64> {
    let s = sched();
    if !s.active {
        return Err(nr::ENOSYS);
    }
    if sig == 0 || sig >= 32 || sig == u64::from(irqlab_guest_core::signal::SIGKILL) {
        return Err(nr::EINVAL);
    }
    let action = match handler {
        0 => Action::Default,
        1 => Action::Ignore,
        h if user::range_ok(h, 1) && user::range_ok(restorer, 1) => Action::Handler {
            handler: h,
            restorer,
        },
        _ => return Err(nr::EFAULT),
    };
    let cur = s.current;
    s.tasks[cur].actions[sig as usize] = action;
    Ok(0)
}

/// `sigprocmask(how, set)`: returns the old mask.
pub fn sigprocmask(how: u64, set: u64) -> Result<u64, i64> {
    let s = sched();
    if !s.active {
        return Err(nr::ENOSYS);
    }
    let how = irqlab_guest_core::signal::How::from_arg(how).ok_or(nr::EINVAL)?;
    let cur = s.current;
    let old = s.tasks[cur].blocked;
    s.tasks[cur].blocked = how.apply(old, SigSet(set as u32));
    update_sigpending();
    Ok(u64::from(old.0))
}

/// A fault from ring 3 while the experiments run: it becomes the matching signal, forced
/// through (a blocked or ignored fault signal kills, as Linux's `force_sig` does). Returns
/// false outside the experiments (the caller then ends the task the old way).
pub fn user_fault(frame: &mut Frame) -> bool {
    let s = sched();
    if !s.active || s.current == 0 {
        return false;
    }
    // A ring-3 exception with no signal of its own (none is reachable today) still ends only
    // the task: outside the experiments' `user::enter`, `user::abort` has nowhere to return.
    let sig = irqlab_guest_core::signal::for_exception(frame.vector as u8)
        .unwrap_or(irqlab_guest_core::signal::SIGSEGV);
    let cur = s.current;
    let t = &mut s.tasks[cur];
    if t.blocked.contains(sig) || t.actions[usize::from(sig)] == Action::Ignore {
        t.blocked = t.blocked.without(sig);
        t.actions[usize::from(sig)] = Action::Default;
    }
    signal::record_fault(cur, frame);
    raise(cur, sig);
    true
}
