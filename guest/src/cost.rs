//! Cost experiments: how many TSC cycles a mechanism costs, measured in this guest with
//! `lfence; rdtsc; lfence` around each iteration (min / median / p99 over `iters` iterations, default 10,000).
//!
//! The statistics are `irqlab_guest_core::stats` (host-tested); timing and printing are here.
//!
//! The first row, `timer-overhead`, is the timing pair with nothing between it: every other
//! row includes it, so subtract it to get the mechanism alone.
//!
//! After the entry mechanisms come the system-call rows (their ring-3 programs are in
//! `cost_user.rs`, the kernel side of the sink and the ring in `uring.rs`): the trap gate,
//! `getpid` and `time` through the gate the host supports, the vDSO-style clock read
//! (`vclock.rs`), 16 sink writes as 16 calls against one `writev`, 16 operations as 16 calls
//! against one submission ring, each followed by a check that the kernel consumed everything
//! (`PASS cost-…` lines), and the hostile calls the kernel must refuse. Then CR3 loads with and
//! without PCIDs (`cost_cr3.rs`), and the commonly cited figures (`CLAIM` lines) next to what
//! this run measured.

use crate::boot::Boot;
use crate::cost_user::{self, BATCH, BUF_LEN};
use crate::fmt::Dec;
use crate::user::{self, Gate, TaskEnd};
use crate::{check, cost_cr3, cpu, exceptions, fail, println, skip, uring, vclock};
use irqlab_abi::ports::BENCH;
use irqlab_guest_core::stats::Stats;
use irqlab_x86::error_code::Exception;

/// Default iterations per experiment.
pub const DEFAULT_ITERS: u64 = 10_000;

/// Prints one row; returns its median in ns.
pub(crate) fn row(boot: &Boot, name: &str, samples: &mut [u32]) -> Option<u64> {
    // Never empty: `iters` is at least 100.
    let s = Stats::of(samples)?;
    let khz = boot.info.tsc_khz;
    let ns = |c: u32| (u64::from(c) * 1_000_000).checked_div(khz).unwrap_or(0);
    let row = irqlab_abi::results::Cost {
        name,
        iters: samples.len() as u64,
        min: s.min.into(),
        median: s.median.into(),
        p99: s.p99.into(),
        median_ns: ns(s.median),
    };
    println!("{row}");
    Some(row.median_ns)
}

/// Times `f` in kernel mode.
pub(crate) fn kernel_loop(samples: &mut [u32], mut f: impl FnMut()) {
    for slot in samples.iter_mut() {
        let t0 = cpu::rdtsc_ordered();
        f();
        let t1 = cpu::rdtsc_ordered();
        *slot = t1.wrapping_sub(t0) as u32;
    }
}

#[inline(never)]
extern "C" fn empty_function() {
    // SAFETY: an empty asm statement keeps the call from being optimised away.
    unsafe { core::arch::asm!("", options(nomem, nostack)) };
}

/// Runs every cost experiment and prints the table.
pub fn run(boot: &Boot) {
    let iters = boot
        .cmdline
        .get_u64_clamped("iters", DEFAULT_ITERS, 100, user::MAX_SAMPLES as u64)
        as usize;
    println!(
        "COST table: TSC cycles per round trip (tsc {} kHz, host {})",
        Dec(boot.info.tsc_khz),
        boot.info.host().name()
    );

    let samples = user::samples(iters);
    kernel_loop(samples, || {});
    row(boot, "timer-overhead", samples);

    kernel_loop(samples, || {
        let f: extern "C" fn() = core::hint::black_box(empty_function);
        f();
    });
    row(boot, "function-call", samples);

    let mut syscall_ns = None;
    match user::enter(user::syscall_cost, iters as u64) {
        TaskEnd::Exited(0) => syscall_ns = row(boot, "syscall-sysret", user::samples(iters)),
        end if end.is_pvm_syscall_fault() => skip!(
            "cost-syscall",
            "host delivers SYSCALL from ring 3 at CPL 3 ({end})"
        ),
        other => fail!("cost-syscall", "user task ended with {other}"),
    }

    exceptions::expect(Exception::InvalidOpcode as u8, 2);
    kernel_loop(samples, || {
        // SAFETY: #UD is expected; the handler skips the two-byte ud2.
        unsafe { core::arch::asm!("ud2") };
    });
    let seen = exceptions::seen();
    if seen.hits == iters as u64 {
        row(boot, "exception-#UD", samples);
    } else {
        fail!(
            "cost-#UD",
            "{} of {} #UD exceptions were handled",
            Dec(seen.hits),
            Dec(iters as u64)
        );
    }

    let mut int80_ns = None;
    if boot.info.host().can_run_software_interrupts() {
        match user::enter(user::int80_cost, iters as u64) {
            TaskEnd::Exited(0) => int80_ns = row(boot, "int-0x80", user::samples(iters)),
            other => fail!("cost-int80", "user task ended with {other}"),
        }
    } else {
        skip!(
            "cost-int80",
            "host is {}: `int 0x80` cannot run there",
            boot.info.host().name()
        );
    }

    kernel_loop(samples, || {
        // SAFETY: the benchmark port only counts writes.
        unsafe { crate::port::outb(BENCH, 0) };
    });
    row(boot, "pio-exit", samples);

    let trap_ns = system_call_rows(boot, iters);
    cost_cr3::rows(boot, iters);
    claims(syscall_ns, int80_ns, trap_ns, boot);
}

/// `run=pio-loop`: `iters` back-to-back writes to the benchmark port, for `irqlab bench`.
///
/// The loop is `1: out dx, al; loop 1b` — the very instructions of the bare `KVM_RUN` loop
/// `irqlab bench boot` compares against (`irqlab::bench`), because on hosts that emulate
/// guest instructions (kvm-pvm) every extra instruction per iteration would show up as VMM
/// overhead.
pub fn pio_loop(boot: &Boot) {
    let n = boot.cmdline.get_u64("iters", DEFAULT_ITERS);
    if n == 0 {
        return;
    }
    // SAFETY: the benchmark port only counts writes; RCX counts down to 0.
    unsafe {
        core::arch::asm!(
            "2: out dx, al",
            "loop 2b",
            in("dx") BENCH,
            in("al") 0u8,
            inout("rcx") n => _,
            options(nomem, nostack)
        )
    };
}

/// Runs ring-3 `program(iters)`; false (and a FAIL line) unless it exits with 0.
fn run_user(check_name: &str, program: user::Program, iters: usize) -> bool {
    match user::enter(program, iters as u64) {
        TaskEnd::Exited(0) => true,
        other => {
            fail!(check_name, "user task ended with {other}");
            false
        }
    }
}

/// Samples of the batching rows (16 operations each) for `iters` samples of single calls:
/// `iters / 16`, at least 100.
const fn batches(iters: usize) -> usize {
    let b = iters / BATCH as usize;
    if b < 100 {
        100
    } else {
        b
    }
}

/// The row name of `getpid` through `gate`.
fn getpid_row(gate: Gate) -> &'static str {
    match gate {
        Gate::Syscall => "getpid-syscall",
        Gate::Int80 => "getpid-int80",
        Gate::Trap => "getpid-trap",
    }
}

/// `got == want` for every (name, got, want), or the first mismatch as text.
fn first_mismatch(checks: &[(&'static str, u64, u64)]) -> Option<(&'static str, u64, u64)> {
    checks.iter().copied().find(|&(_, got, want)| got != want)
}

/// Reports a check over several values: PASS with `detail`, or FAIL naming the first value
/// that differs.
fn check_values(name: &str, checks: &[(&'static str, u64, u64)], detail: core::fmt::Arguments) {
    match first_mismatch(checks) {
        None => crate::pass!(name, "{detail}"),
        Some((what, got, want)) => {
            fail!(name, "{what} = {} (want {}); {detail}", Dec(got), Dec(want))
        }
    }
}

/// The system-call rows; returns the trap gate's median in ns.
fn system_call_rows(boot: &Boot, iters: usize) -> Option<u64> {
    let host = boot.info.host();
    let n = iters as u64;
    // SAFETY: an aligned u64 in user data; no task runs.
    let saved_gate = unsafe { (user::USER_GATE.addr() as *const u64).read_volatile() };
    vclock::start(boot.info.tsc_khz);

    // The trap gate works on every host (it is the one that does on kvm-pvm).
    user::set_gate(Gate::Trap);
    cost_user::reset();
    let mut trap_ns = None;
    if run_user("cost-trap", cost_user::yield_cost, iters) {
        trap_ns = row(boot, "trap-gate", user::samples(iters));
        check!(
            cost_user::result(0) == 0,
            "cost-trap",
            "{} of {} yield calls through ud2 + \"sys\" returned 0",
            Dec(n - cost_user::result(0)),
            Dec(n)
        );
    }

    let gate = Gate::choose(None, host).unwrap_or(Gate::Trap);
    user::set_gate(gate);
    println!(
        "cost: the system-call rows below enter the kernel through the {} gate (host {})",
        gate.name(),
        host.name()
    );
    cost_user::reset();
    if run_user("cost-getpid", cost_user::getpid_cost, iters) {
        row(boot, getpid_row(gate), user::samples(iters));
        check!(
            cost_user::result(0) == 0,
            "cost-getpid",
            "{} of {} getpid calls returned a pid",
            Dec(n - cost_user::result(0)),
            Dec(n)
        );
    }

    // Time: the system call against the page read with no kernel entry.
    cost_user::reset();
    if run_user("cost-time", cost_user::time_syscall_cost, iters) {
        row(boot, "time-syscall", user::samples(iters));
    }
    vclock::refresh();
    cost_user::reset();
    if run_user("cost-vdso", cost_user::time_vdso_cost, iters) {
        row(boot, "time-vdso", user::samples(iters));
        let back = cost_user::result(0);
        let (before, first, last, after) = (
            vclock::ns_at(cost_user::result(1)),
            cost_user::result(2),
            cost_user::result(3),
            vclock::ns_at(cost_user::result(4)),
        );
        if boot.info.tsc_khz == 0 {
            skip!("cost-vdso", "TSC frequency unknown: the clock stands still");
        } else {
            check!(
                back == 0 && before <= first && first <= last && last <= after,
                "cost-vdso",
                "{} clock-page reads without a kernel entry, {} going backwards, from {} ns to {} ns, inside the time system calls around them ({} ns, {} ns)",
                Dec(n),
                Dec(back),
                Dec(first),
                Dec(last),
                Dec(before),
                Dec(after)
            );
        }
    }

    // N sink writes as N system calls against one writev. The batching rows time
    // `batches(iters)` batches of 16, so that they make about as many operations as a row of
    // single calls (16 times the samples would take minutes where system calls are slow).
    let batch_sum = cost_user::batch_byte_sum();
    let iters = batches(iters);
    let n = iters as u64;
    let writes = n * BATCH;
    cost_user::reset();
    uring::reset();
    if run_user("cost-write", cost_user::write_cost, iters) {
        row(boot, "write-x16", user::samples(iters));
        let c = uring::counts();
        check_values(
            "cost-write",
            &[
                ("calls not returning the length", cost_user::result(0), 0),
                ("sink writes", c.sink_writes, writes),
                ("sink bytes", c.sink_bytes, writes * BUF_LEN),
                ("sink byte sum", c.sink_sum, n * batch_sum),
            ],
            format_args!(
                "{} of {} write(FD_SINK) calls consumed: {} bytes, byte sum {} as sent",
                Dec(c.sink_writes),
                Dec(writes),
                Dec(c.sink_bytes),
                Dec(c.sink_sum)
            ),
        );
    }
    cost_user::reset();
    uring::reset();
    if run_user("cost-writev", cost_user::writev_cost, iters) {
        row(boot, "writev-x16", user::samples(iters));
        let c = uring::counts();
        check_values(
            "cost-writev",
            &[
                ("calls not returning the total", cost_user::result(0), 0),
                ("writev calls", c.writev_calls, n),
                ("sink writes", c.sink_writes, writes),
                ("sink bytes", c.sink_bytes, writes * BUF_LEN),
                ("sink byte sum", c.sink_sum, n * batch_sum),
            ],
            format_args!(
                "{} of {} buffers consumed in {} writev calls: {} bytes, byte sum {} as sent",
                Dec(c.sink_writes),
                Dec(writes),
                Dec(c.writev_calls),
                Dec(c.sink_bytes),
                Dec(c.sink_sum)
            ),
        );
    }

    // N operations as N system calls against one submission ring.
    let added = n * (BATCH * (BATCH + 1) / 2);
    cost_user::reset();
    uring::reset();
    if run_user("cost-ops", cost_user::ops_syscall_cost, iters) {
        row(boot, "ops-x16-syscalls", user::samples(iters));
        let c = uring::counts();
        check_values(
            "cost-ops",
            &[
                ("failed calls", cost_user::result(0), 0),
                ("operations", c.ops, writes),
                ("counter", c.counter, added),
            ],
            format_args!(
                "{} of {} op(OP_ADD) calls applied: counter {} as sent",
                Dec(c.ops),
                Dec(writes),
                Dec(c.counter)
            ),
        );
    }
    cost_user::reset();
    uring::reset();
    if run_user("cost-ring", cost_user::ops_ring_cost, iters) {
        row(boot, "ops-x16-ring", user::samples(iters));
        let c = uring::counts();
        check_values(
            "cost-ring",
            &[
                ("calls not consuming 16", cost_user::result(0), 0),
                ("entries consumed", c.ring_consumed, writes),
                ("ring_enter calls", c.ring_calls, n),
                ("operations", c.ops, writes),
                ("counter", c.counter, added),
                ("head", cost_user::result(1), writes),
                ("tail", cost_user::result(2), writes),
            ],
            format_args!(
                "{} of {} submissions consumed in {} ring_enter calls: counter {} as sent, head = tail = {}",
                Dec(c.ring_consumed),
                Dec(writes),
                Dec(c.ring_calls),
                Dec(c.counter),
                Dec(cost_user::result(1))
            ),
        );
    }

    hostile_checks();
    // SAFETY: as above.
    unsafe { (user::USER_GATE.addr() as *mut u64).write_volatile(saved_gate) };
    trap_ns
}

/// The calls the kernel must refuse (`cost_user::hostile`): one PASS/FAIL line for the
/// `write`/`writev` checks, one for the ring's.
fn hostile_checks() {
    cost_user::reset();
    uring::reset();
    if !run_user("cost-hostile", cost_user::hostile, 0) {
        return;
    }
    let c = uring::counts();
    let einval = (-irqlab_abi::syscall::EINVAL) as u64;
    // Slots 0-5 are the write/writev calls, 6 on the ring's (cost_user::hostile_expectations).
    let wrong = |ring: bool| {
        cost_user::hostile_expectations()
            .into_iter()
            .filter(|&(slot, _, _)| (slot >= 6) == ring)
            .find(|&(slot, want, _)| cost_user::result(slot) != want)
    };
    match wrong(false) {
        Some((slot, want, what)) => fail!(
            "cost-hostile-iov",
            "{what}: returned {:#x} (want {want:#x})",
            cost_user::result(slot)
        ),
        None if c.sink_writes != 0 || c.writev_calls != 0 => fail!(
            "cost-hostile-iov",
            "refused calls still wrote: {} sink writes, {} writev calls",
            Dec(c.sink_writes),
            Dec(c.writev_calls)
        ),
        None => crate::pass!(
            "cost-hostile-iov",
            "write refused a kernel buffer (-EFAULT) and fd 7 (-EBADF); writev refused a kernel buffer in iov[2], a kernel iov array (-EFAULT), {} buffers (-EINVAL) and a length overflowing the address space (-EFAULT); nothing reached the sink",
            Dec(irqlab_abi::syscall::IOV_MAX + 1)
        ),
    }
    let op = cost_user::result(cost_user::HOSTILE_OP_SLOT);
    let empty = cost_user::result(cost_user::HOSTILE_EMPTY_SLOT);
    match wrong(true) {
        Some((slot, want, what)) => fail!(
            "cost-hostile-ring",
            "{what}: {:#x} (want {want:#x})",
            cost_user::result(slot)
        ),
        None if op != einval => fail!(
            "cost-hostile-ring",
            "op(99) returned {op:#x} (want -EINVAL)"
        ),
        None if empty != 0 => fail!(
            "cost-hostile-ring",
            "ring_enter(u64::MAX) on an empty ring consumed {}",
            Dec(empty)
        ),
        None if c.counter != 6 || c.sink_writes != 0 => fail!(
            "cost-hostile-ring",
            "counter {} (want 6), sink writes {} (want 0)",
            Dec(c.counter),
            Dec(c.sink_writes)
        ),
        None => crate::pass!(
            "cost-hostile-ring",
            "ring_enter refused tail 2^40 ahead of head and head 2^40 ahead of tail (-EINVAL, head left alone), a kernel ring (-EFAULT) and a misaligned one (-EINVAL); indices wrapping at 2^64 consumed 3 of 3 (entries 62, 63, 0; counter 6); entries with a kernel buffer, an unknown opcode and a buffer overflowing the address space completed -EFAULT, -EINVAL, -EFAULT; op(99) -EINVAL; ring_enter(2^64-1) on an empty ring consumed 0; nothing reached the sink"
        ),
    }
}

/// One `CLAIM` line: a commonly cited figure next to what this run measured (the trap gate's
/// median stands in where the host cannot run the mechanism).
fn claim(mechanism: &str, cited: &str, measured: Option<u64>, trap_ns: Option<u64>, boot: &Boot) {
    let host = boot.info.host().name();
    match (measured, trap_ns) {
        (Some(ns), _) => println!(
            "CLAIM {mechanism}: commonly cited {cited} per round trip (folklore, not measured here); this run: {} ns median",
            Dec(ns)
        ),
        (None, Some(trap)) => println!(
            "CLAIM {mechanism}: commonly cited {cited} per round trip (folklore, not measured here); this run: not measurable on host {host}; the trap gate: {} ns median",
            Dec(trap)
        ),
        (None, None) => println!(
            "CLAIM {mechanism}: commonly cited {cited} per round trip (folklore, not measured here); this run: not measured (host {host})"
        ),
    }
}

/// The commonly cited costs of the system-call gates, next to this run's medians.
fn claims(syscall_ns: Option<u64>, int80_ns: Option<u64>, trap_ns: Option<u64>, boot: &Boot) {
    claim("int-0x80", "~100 ns", int80_ns, trap_ns, boot);
    claim(
        "syscall",
        "~30 ns for sysenter/syscall",
        syscall_ns,
        trap_ns,
        boot,
    );
}
