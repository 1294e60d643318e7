//! Cost experiments: how many TSC cycles a mechanism costs, measured in this guest with
//! `lfence; rdtsc; lfence` around each iteration (min / median / p99 over `iters` iterations, default 10,000).
//!
//! The statistics are `irqlab_guest_core::stats` (host-tested); timing and printing are here.
//!
//! The first row, `timer-overhead`, is the timing pair with nothing between it: every other
//! row includes it, so subtract it to get the mechanism alone.

use crate::boot::Boot;
use crate::exceptions;
use crate::fmt::Dec;
use crate::user::{self, TaskEnd};
use crate::{cpu, println, skip};
use irqlab_abi::ports::BENCH;
use irqlab_guest_core::stats::Stats;
use irqlab_x86::error_code::Exception;

/// Default iterations per experiment.
pub const DEFAULT_ITERS: u64 = 10_000;

fn row(boot: &Boot, name: &str, samples: &mut [u32]) {
    // Never empty: `iters` is at least 100.
    let Some(s) = Stats::of(samples) else {
        return;
    };
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
}

/// Times `f` in kernel mode.
fn kernel_loop(samples: &mut [u32], mut f: impl FnMut()) {
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

    match user::enter(user::syscall_cost, iters as u64) {
        TaskEnd::Exited(0) => row(boot, "syscall-sysret", user::samples(iters)),
        end if end.is_pvm_syscall_fault() => skip!(
            "cost-syscall",
            "host delivers SYSCALL from ring 3 at CPL 3 ({end})"
        ),
        other => crate::fail!("cost-syscall", "user task ended with {other}"),
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
        crate::fail!(
            "cost-#UD",
            "{} of {} #UD exceptions were handled",
            Dec(seen.hits),
            Dec(iters as u64)
        );
    }

    if boot.info.host().can_run_software_interrupts() {
        match user::enter(user::int80_cost, iters as u64) {
            TaskEnd::Exited(0) => row(boot, "int-0x80", user::samples(iters)),
            other => crate::fail!("cost-int80", "user task ended with {other}"),
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
