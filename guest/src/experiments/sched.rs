//! `run=sched`: a timer-driven preemptive round-robin scheduler of ring-3 tasks (see
//! `process` for the mechanism).
//!
//! Tasks: three CPU-bound spinners that make no system call until the stop flag (only the
//! timer can take the CPU from them) and one sleeper (`sleep`, `yield`, `getpid`, `write`)
//! that outlives them, so the CPU also idles. Words: `timer=lapic|pit`, `hz=250`,
//! `slice=2` (ticks), `ticks=200` (when the spinners stop), `fairness=25` (percent),
//! `gate=auto|syscall|int80|trap`, `cr3=per-task|shared` (each task its own PML4, so every
//! switch loads CR3 and flushes the TLB as between processes; or one address space, as
//! between threads).
//!
//! Checks: every task ran to `exit(0)`; each spinner was preempted and made no system call
//! but `exit`; the spinners' CPU shares (timer ticks charged to each) lie within `fairness`
//! percent of their mean; every system call ran on the caller's own kernel stack (TSS.RSP0 / the SYSCALL
//! stack switched per task); no sleep ended early; idle ticks were counted. Reported: each
//! task's ticks, share, switches, and the context-switch cost in cycles.

use super::ticker::Ticker;
use crate::boot::Boot;
use crate::fmt::Dec;
use crate::process::{self, programs, MAX_TASKS};
use crate::user::Gate;
use crate::{check, fail, println, skip};
use core::sync::atomic::{AtomicU64, Ordering};
use irqlab_guest_core::sched::{share_permille, unfair};
use irqlab_guest_core::stats::Stats;

/// Tick at which the spinners are told to stop.
static STOP_AT: AtomicU64 = AtomicU64::new(u64::MAX);

fn on_tick() {
    process::tick();
    if process::sched().ticks == STOP_AT.load(Ordering::Relaxed) {
        process::request_stop();
    }
}

/// The gate `gate=` names, or a SKIP/FAIL line and `None` (shared with `run=signals`).
pub(super) fn gate(boot: &Boot, experiment: &str) -> Option<Gate> {
    let host = boot.info.host();
    let Some(gate) = Gate::choose(boot.cmdline.get("gate"), host) else {
        fail!(
            experiment,
            "unknown gate={} (auto, syscall, int80, trap)",
            boot.cmdline.get("gate").unwrap_or("")
        );
        return None;
    };
    if gate != Gate::Trap && !host.can_run_software_interrupts() {
        skip!(
            experiment,
            "host is {}: the {} gate cannot work from ring 3 there (gate=trap or auto can)",
            host.name(),
            gate.name()
        );
        return None;
    }
    Some(gate)
}

/// Prints one `COST` row of cycle samples.
pub(super) fn cost_row(boot: &Boot, name: &str, samples: &mut [u32]) {
    let Some(s) = Stats::of(samples) else {
        return;
    };
    let khz = boot.info.tsc_khz;
    let row = irqlab_abi::results::Cost {
        name,
        iters: samples.len() as u64,
        min: s.min.into(),
        median: s.median.into(),
        p99: s.p99.into(),
        median_ns: (u64::from(s.median) * 1_000_000)
            .checked_div(khz)
            .unwrap_or(0),
    };
    println!("{row}");
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let Some(gate) = gate(boot, "sched") else {
        return;
    };
    let c = &boot.cmdline;
    let which = c.get("timer").unwrap_or("lapic");
    let Some(vector) = Ticker::vector_for(which) else {
        fail!("sched", "unknown timer={which} (lapic, pit)");
        return;
    };
    let hz = c.get_u64_clamped("hz", 250, 10, 5000);
    let slice = c.get_u64_clamped("slice", 2, 1, 1000);
    let ticks = c.get_u64_clamped("ticks", 200, 20, 1_000_000);
    let tolerance = c.get_u64_clamped("fairness", 25, 1, 100);
    let per_task_cr3 = match c.get("cr3").unwrap_or("per-task") {
        "per-task" => true,
        "shared" => false,
        other => {
            fail!("sched", "unknown cr3={other} (per-task, shared)");
            return;
        }
    };
    // The sleeper sleeps 6 times ticks/4: it outlives the spinners by about half a run.
    let (each, rounds) = ((ticks / 4).max(1), 6u64);

    crate::user::set_gate(gate);
    crate::cpu::cli();
    process::start(&process::Config {
        timer_vector: vector,
        slice,
        per_task_cr3,
    });
    STOP_AT.store(ticks, Ordering::Relaxed);
    let mut pids = [0u64; 4];
    for (i, pid) in pids.iter_mut().enumerate().take(3) {
        *pid = process::spawn("spinner", programs::spinner, i as u64 + 1).unwrap_or(0);
    }
    pids[3] = process::spawn("sleeper", programs::sleeper, each | (rounds << 32)).unwrap_or(0);
    let Some(ticker) = Ticker::start(boot, which, hz, on_tick) else {
        process::stop(vector);
        fail!("sched", "timer {which} did not start");
        return;
    };
    println!(
        "sched: 4 ring-3 tasks, gate {}, cr3 {}, timer {} at {} mHz, slice {} ticks, spinners stop at tick {}",
        gate.name(),
        if per_task_cr3 { "per-task" } else { "shared" },
        ticker.name,
        Dec(ticker.rate_mhz),
        Dec(slice),
        Dec(ticks)
    );
    let give_up = ticks + each * rounds * 3 + 100;
    let finished = process::run(give_up);
    ticker.stop(boot);
    process::stop(vector);
    crate::cpu::sti();
    report(boot, &pids, finished, tolerance, each, rounds, per_task_cr3);
}

fn report(
    boot: &Boot,
    pids: &[u64; 4],
    finished: bool,
    tolerance: u64,
    each: u64,
    rounds: u64,
    per_task_cr3: bool,
) {
    let s = process::sched();
    let total: u64 = s.tasks.iter().map(|t| t.cycles).sum();
    println!("sched: pid name     ticks  share%  cycles%  preempted  blocked  syscalls");
    for (i, t) in s.tasks.iter().enumerate().take(MAX_TASKS) {
        if i != 0 && t.pid == 0 {
            continue;
        }
        let share = share_permille(t.cycles, total);
        println!(
            "sched: {} {} {} {}.{} {}.{} {} {} {}",
            Dec(t.pid),
            t.name,
            Dec(if i == 0 { s.idle_ticks } else { t.ticks }),
            Dec(share_permille(if i == 0 { s.idle_ticks } else { t.ticks }, s.ticks) / 10),
            Dec(share_permille(if i == 0 { s.idle_ticks } else { t.ticks }, s.ticks) % 10),
            Dec(share / 10),
            Dec(share % 10),
            Dec(t.involuntary),
            Dec(t.voluntary),
            Dec(t.syscalls)
        );
    }
    println!(
        "sched: {} ticks ({} idle, {} ended a slice), {} context switches",
        Dec(s.ticks),
        Dec(s.idle_ticks),
        Dec(s.preempt_ticks),
        Dec(s.switches)
    );
    let tasks = |range: core::ops::Range<usize>| pids[range].iter().map(|&p| &s.tasks[p as usize]);
    let all_exited =
        finished && tasks(0..4).all(|t| t.state == process::State::Zombie && t.exit_code == 0);
    check!(
        all_exited,
        "sched-complete",
        "{} tasks ran to exit(0){}",
        Dec(tasks(0..4).filter(|t| t.exit_code == 0).count() as u64),
        if finished { "" } else { " (gave up waiting)" }
    );
    let preempted = tasks(0..3).all(|t| t.involuntary >= 2 && t.syscalls == 1);
    check!(
        preempted,
        "sched-preempt",
        "each CPU-bound task was preempted by the timer without making a system call (preemptions: {} {} {})",
        Dec(s.tasks[pids[0] as usize].involuntary),
        Dec(s.tasks[pids[1] as usize].involuntary),
        Dec(s.tasks[pids[2] as usize].involuntary)
    );
    // Judged in ticks, the kernel's own unit of account (Linux 0.11's `counter`): TSC cycles
    // also count the time the host took the vCPU away, which lands on whichever task the
    // guest was running (reported, not judged).
    let mut ticks = [0u64; 3];
    for (c, t) in ticks.iter_mut().zip(tasks(0..3)) {
        *c = t.ticks;
    }
    match unfair(&ticks, tolerance) {
        None => check!(
            true,
            "sched-fair",
            "the CPU-bound tasks' shares of timer ticks ({} {} {}) are within {}% of their mean",
            Dec(ticks[0]),
            Dec(ticks[1]),
            Dec(ticks[2]),
            Dec(tolerance)
        ),
        Some((i, permille)) => fail!(
            "sched-fair",
            "task {} ran {}.{}% of the mean, beyond the {}% tolerance",
            Dec(pids[i]),
            Dec(permille / 10),
            Dec(permille % 10),
            Dec(tolerance)
        ),
    }
    let wrong: u64 = tasks(0..4).map(|t| t.wrong_stack).sum();
    let calls: u64 = tasks(0..4).map(|t| t.syscalls).sum();
    check!(
        wrong == 0 && calls > 0,
        "sched-kernel-stacks",
        "{} of {} system calls ran on the caller's own kernel stack",
        Dec(calls - wrong),
        Dec(calls)
    );
    let wrong_cr3: u64 = tasks(0..4).map(|t| t.wrong_cr3).sum();
    let distinct = tasks(0..4).all(|a| tasks(0..4).filter(|b| b.cr3 == a.cr3).count() == 1);
    check!(
        wrong_cr3 == 0 && (!per_task_cr3 || (distinct && s.cr3_switches == s.switches)),
        "sched-address-spaces",
        "{}: every system call found CR3 = the caller's ({} CR3 loads in {} switches)",
        if per_task_cr3 {
            "each task has its own PML4"
        } else {
            "one address space"
        },
        Dec(s.cr3_switches),
        Dec(s.switches)
    );
    let sleeper = pids[3];
    let slept_ok = (0..rounds as usize).all(|r| {
        // SAFETY: the shared page, read after every task exited.
        let v =
            unsafe { (*process::shared()).values[sleeper as usize][programs::SLEEPER_SLEPT + r] };
        v >= each
    });
    check!(
        slept_ok && s.tasks[sleeper as usize].early_wakes == 0,
        "sched-sleep",
        "{} sleeps of {} ticks each took at least that long",
        Dec(rounds),
        Dec(each)
    );
    // SAFETY: as above.
    let got_pid = unsafe { (*process::shared()).values[sleeper as usize][programs::SLEEPER_PID] };
    check!(
        got_pid == sleeper,
        "sched-getpid",
        "getpid() returned {} in task {}",
        Dec(got_pid),
        Dec(sleeper)
    );
    check!(
        s.idle_ticks > 0,
        "sched-idle",
        "{} ticks found the CPU idle (every task asleep)",
        Dec(s.idle_ticks)
    );
    cost_row(
        boot,
        if per_task_cr3 {
            "context-switch"
        } else {
            "context-switch-shared-cr3"
        },
        s.switch_cost.as_mut_slice(),
    );
}
