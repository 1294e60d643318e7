//! A task: its state, its accounting, its signal state.

use super::MAX_SAMPLES;
use irqlab_guest_core::signal::SigSet;

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Free slot.
    Unused,
    /// Running or ready to run.
    Runnable,
    /// Blocked in `sleep` until the tick count reaches `until`.
    Sleeping {
        /// Tick to wake at.
        until: u64,
    },
    /// Exited; its results stay for the report.
    Zombie,
}

/// What a signal does when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The signal's default action.
    Default,
    /// Discard it.
    Ignore,
    /// Run `handler` in ring 3; it returns to `restorer`, which calls `sigreturn`.
    Handler {
        /// User handler entry.
        handler: u64,
        /// User code the handler returns to.
        restorer: u64,
    },
}

/// One task.
pub struct Task {
    /// Process id (the slot number; 0 is the idle task).
    pub pid: u64,
    /// State.
    pub state: State,
    /// Name in reports.
    pub name: &'static str,
    pub(super) ksp: u64,
    pub(super) kstack_top: u64,
    /// The CR3 it runs with (its own PML4 with `cr3=per-task`, else the kernel's).
    pub cr3: u64,
    /// Timer ticks that found it running.
    pub ticks: u64,
    /// TSC cycles it ran (charged at each switch).
    pub cycles: u64,
    /// Switches away from it while it could still run (preemptions).
    pub involuntary: u64,
    /// Switches away from it because it blocked, yielded or exited.
    pub voluntary: u64,
    /// System calls it made.
    pub syscalls: u64,
    /// System calls that found RSP outside its own kernel stack (must stay 0).
    pub wrong_stack: u64,
    /// System calls that found CR3 other than its own (must stay 0).
    pub wrong_cr3: u64,
    /// Sleeps that ended before the requested tick without a signal (must stay 0).
    pub early_wakes: u64,
    /// Exit code (or 128 + signal when a signal killed it).
    pub exit_code: i64,
    /// The signal that killed it, 0 if it exited.
    pub killed_by: u8,
    /// Pending signals.
    pub pending: SigSet,
    /// Blocked signals.
    pub blocked: SigSet,
    /// Per-signal actions.
    pub actions: [Action; 32],
    /// Tick at which SIGALRM fires (0 = no alarm).
    pub alarm_at: u64,
    /// TSC when each pending signal was raised (for the delivery latency).
    pub raised_at: [u64; 32],
    /// Signals delivered to a handler, per signal.
    pub delivered: [u32; 32],
    /// The last ring-3 fault not yet delivered as a signal: (vector, CR2 or 0).
    pub(super) fault: Option<(u64, u64)>,
}

impl Task {
    pub(super) const fn new() -> Self {
        Task {
            pid: 0,
            state: State::Unused,
            name: "",
            ksp: 0,
            kstack_top: 0,
            cr3: 0,
            ticks: 0,
            cycles: 0,
            involuntary: 0,
            voluntary: 0,
            syscalls: 0,
            wrong_stack: 0,
            wrong_cr3: 0,
            early_wakes: 0,
            exit_code: 0,
            killed_by: 0,
            pending: SigSet::EMPTY,
            blocked: SigSet::EMPTY,
            actions: [Action::Default; 32],
            alarm_at: 0,
            raised_at: [0; 32],
            delivered: [0; 32],
            fault: None,
        }
    }
}

/// Samples of a cycle count.
pub struct Samples {
    /// The values (the first `len`).
    pub values: [u32; MAX_SAMPLES],
    /// How many.
    pub len: usize,
}

impl Samples {
    pub(super) const fn new() -> Self {
        Samples {
            values: [0; MAX_SAMPLES],
            len: 0,
        }
    }

    pub(super) fn push(&mut self, v: u64) {
        if self.len < MAX_SAMPLES {
            self.values[self.len] = v.min(u64::from(u32::MAX)) as u32;
            self.len += 1;
        }
    }

    /// The recorded values.
    pub fn as_mut_slice(&mut self) -> &mut [u32] {
        &mut self.values[..self.len]
    }
}
