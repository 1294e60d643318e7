//! `run=signals`: signals delivered on the return to user mode, with user handlers, default
//! actions, masks and `sigreturn` (see `process::signal` for the mechanism and
//! `process::programs` for the eight ring-3 programs).
//!
//! Cases, one check each: SIGALRM from `alarm` interrupting a loop whose registers hold known
//! values (every register restored after the handler); SIGSEGV, SIGILL and SIGFPE from ring-3
//! #PF, #UD and #DE handled by skipping the faulting instruction (registers and CF restored
//! across the #UD); `kill` from one task to another ending its `sleep` early, and `kill` of a
//! missing pid (-ESRCH); a signal raised inside its own handler waiting until `sigreturn`;
//! default actions (SIGCHLD ignored, an ignored SIGUSR2, SIGTERM terminating); and two
//! handlers that corrupt their frame (kernel CS, kernel RIP), whose `sigreturn` the kernel
//! refuses and answers with SIGSEGV. Reported: the delivery latency of `kill(self)` and of
//! SIGALRM, raise to handler entry, in cycles. Words: `timer=`, `hz=`, `slice=`, `gate=` as
//! in `run=sched`.

use super::sched::{cost_row, gate};
use super::ticker::Ticker;
use crate::boot::Boot;
use crate::fmt::Dec;
use crate::process::programs::{self, pattern, slot};
use crate::process::{self, State};
use crate::{check, fail, println};
use irqlab_guest_core::signal::{SIGSEGV, SIGTERM};

fn on_tick() {
    process::tick();
}

/// The value slot `i` of task `pid` (read after every task exited).
fn value(pid: u64, i: usize) -> u64 {
    // SAFETY: the shared page; no task runs any more.
    unsafe { (*process::shared()).values[pid as usize % process::MAX_TASKS][i] }
}

/// Compares a register probe's record with the patterns it loaded; the first mismatch.
fn probe_mismatch(regs: &programs::Probe, check_cf: bool) -> Option<(usize, u64)> {
    // SAFETY: a user-data record written by the probe; no task runs any more.
    let r = unsafe { core::ptr::read_volatile(regs.addr() as *const [u64; 18]) };
    if let Some(i) = (0..15).find(|&i| r[i] != pattern(i)) {
        return Some((i, r[i]));
    }
    if r[16] != r[17] {
        return Some((16, r[16]));
    }
    if check_cf && r[15] & 1 == 0 {
        return Some((15, r[15]));
    }
    None
}

const REGISTER_NAMES: [&str; 17] = [
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "rflags.CF",
    "rsp",
];

fn check_probe(name: &str, regs: &programs::Probe, check_cf: bool, what: &str) {
    match probe_mismatch(regs, check_cf) {
        None => check!(
            true,
            name,
            "all 15 general registers, RSP{} restored exactly after {}",
            if check_cf { " and CF" } else { "" },
            what
        ),
        Some((i, v)) => fail!(
            name,
            "{} = {:#x} after {} (expected {:#x})",
            REGISTER_NAMES[i],
            v,
            what,
            if i < 15 { pattern(i) } else { 0 }
        ),
    }
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let Some(gate) = gate(boot, "signals") else {
        return;
    };
    let c = &boot.cmdline;
    let which = c.get("timer").unwrap_or("lapic");
    let Some(vector) = Ticker::vector_for(which) else {
        fail!("signals", "unknown timer={which} (lapic, pit)");
        return;
    };
    let hz = c.get_u64_clamped("hz", 250, 10, 5000);
    let slice = c.get_u64_clamped("slice", 2, 1, 1000);

    crate::user::set_gate(gate);
    crate::cpu::cli();
    process::start(&process::Config {
        timer_vector: vector,
        slice,
        per_task_cr3: false,
    });
    let spawn = |name, program, arg| process::spawn(name, program, arg).unwrap_or(0);
    let alarm = spawn("alarm", programs::alarm_task as _, 0);
    let faults = spawn("faults", programs::fault_task as _, 0);
    let receiver = spawn("receiver", programs::receiver as _, 0);
    let sender = spawn("sender", programs::sender as _, receiver);
    let nesting = spawn("nesting", programs::nesting_task as _, 0);
    let defaults = spawn("defaults", programs::default_task as _, 0);
    let bad_cs = spawn("bad-cs", programs::corrupt_task as _, 0);
    let bad_rip = spawn("bad-rip", programs::corrupt_task as _, 1);
    let Some(ticker) = Ticker::start(boot, which, hz, on_tick) else {
        process::stop(vector);
        fail!("signals", "timer {which} did not start");
        return;
    };
    println!(
        "signals: 8 ring-3 tasks, gate {}, timer {} at {} mHz",
        gate.name(),
        ticker.name,
        Dec(ticker.rate_mhz)
    );
    let finished = process::run(2000);
    ticker.stop(boot);
    process::stop(vector);
    crate::cpu::sti();

    let s = process::sched();
    let t = |pid: u64| &s.tasks[pid as usize % process::MAX_TASKS];
    let exited = |pid: u64| t(pid).state == State::Zombie && t(pid).exit_code == 0;
    check!(
        finished,
        "signals-complete",
        "every task ended{}",
        if finished { "" } else { ": gave up waiting" }
    );

    check!(
        exited(alarm) && value(alarm, slot::A) == 1 && value(alarm, slot::B) == 0,
        "signals-alarm",
        "alarm(2) raised SIGALRM; its handler ran {} time(s); the task exited with {}",
        Dec(value(alarm, slot::A)),
        Dec(t(alarm).exit_code as u64)
    );
    check_probe(
        "signals-context-async",
        &programs::REGS_ASYNC,
        false,
        "SIGALRM's handler interrupted a spin loop",
    );

    check!(
        exited(faults)
            && value(faults, slot::A) == 1
            && value(faults, slot::B) == 1
            && value(faults, slot::C) == 1
            && value(faults, slot::D) == programs::KERNEL_ADDR
            && value(faults, slot::E) == 1,
        "signals-faults",
        "ring-3 #PF, #UD, #DE became SIGSEGV x{} (addr {:#x}), SIGILL x{}, SIGFPE x{}; the handler skipped each and the task went on",
        Dec(value(faults, slot::A)),
        value(faults, slot::D),
        Dec(value(faults, slot::B)),
        Dec(value(faults, slot::C))
    );
    check_probe(
        "signals-context-sync",
        &programs::REGS_SYNC,
        true,
        "SIGILL's handler skipped a ud2",
    );

    let esrch = (-irqlab_abi::syscall::ESRCH) as u64;
    check!(
        exited(receiver)
            && exited(sender)
            && value(receiver, slot::A) == 1
            && value(receiver, slot::B) > 0
            && value(sender, slot::A) == 0
            && value(sender, slot::B) == esrch,
        "signals-kill",
        "kill(receiver, SIGUSR1) from another task ran its handler {} time(s) and ended its sleep with {} ticks left; kill(999) returned {:#x} (-ESRCH)",
        Dec(value(receiver, slot::A)),
        Dec(value(receiver, slot::B)),
        value(sender, slot::B)
    );

    check!(
        exited(nesting)
            && value(nesting, slot::A) == 2
            && value(nesting, slot::B) == 1
            && value(nesting, slot::DEPTH_MAX) == 1,
        "signals-masked-in-handler",
        "SIGUSR1 raised inside its own handler ran after sigreturn: {} runs, {} while the first was running, deepest nesting {}",
        Dec(value(nesting, slot::A)),
        Dec(value(nesting, slot::B)),
        Dec(value(nesting, slot::DEPTH_MAX))
    );

    check!(
        t(defaults).killed_by == SIGTERM
            && value(defaults, slot::A) == 1
            && value(defaults, slot::B) == 0,
        "signals-default-actions",
        "SIGCHLD (default ignore) and an ignored SIGUSR2 left the task running; SIGTERM's default ended it (exit code {})",
        Dec(t(defaults).exit_code as u64)
    );

    check!(
        t(bad_cs).killed_by == SIGSEGV
            && t(bad_rip).killed_by == SIGSEGV
            && value(bad_cs, slot::A) == 0
            && value(bad_rip, slot::A) == 0
            && s.bad_sigreturns == 2,
        "signals-bad-sigreturn",
        "{} sigreturns with a corrupted frame (kernel CS, kernel RIP) were refused and the tasks got SIGSEGV",
        Dec(s.bad_sigreturns)
    );

    println!(
        "signals: SIGALRM delivery, tick to handler entry: {} cycles",
        Dec(value(alarm, slot::LATENCY))
    );
    let n = (value(nesting, slot::C) as usize).min(programs::LATENCY_ROUNDS);
    let samples = programs::latencies(n);
    cost_row(boot, "signal-delivery", samples);
}
