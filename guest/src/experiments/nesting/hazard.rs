//! Scenario 3 of `run=nesting`: a reentrancy hazard, shown and then fixed.
//!
//! 0x33's handler runs with interrupts enabled (as handlers could in Linux before 2.6.35)
//! and adds one to a counter it shares with 0x53's handler by a plain read-modify-write:
//! read into a register, add, write back. A self-IPI of 0x53 sent between the read and the
//! write stands for a device interrupt arriving at exactly that moment; 0x53 (class 5)
//! preempts 0x33 (class 3), adds its own one, and 0x33's write then overwrites it with a
//! stale value: one update lost per round, deterministically. The fix keeps interrupts off
//! around the read-modify-write (`local_irq_save`/`restore`): the same self-IPI, sent at the
//! same point, waits in the IRR until interrupts are on again, and no update is lost. (On
//! one CPU a single `add [mem], 1` would do too: an interrupt is taken only between
//! instructions; across CPUs it takes `lock add`, i.e. `fetch_add`.)

use super::{irq_off, irq_on, pending, spin_until};
use crate::apic::LAPIC;
use crate::fmt::Dec;
use crate::vectors::{NEST_HAZARD, NEST_HAZARD_NESTED};
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// The shared counter both handlers add one to.
static SHARED: AtomicU64 = AtomicU64::new(0);
/// Whether 0x33 protects its update (the fixed version).
static PROTECT: AtomicBool = AtomicBool::new(false);
/// 0x33 rounds completed; 0x53 runs.
static ROUNDS: AtomicU32 = AtomicU32::new(0);
static NESTED: AtomicU32 = AtomicU32::new(0);
/// Rounds in which 0x53 ran between 0x33's read and write (unprotected) / waited in the
/// IRR across them (protected).
static IN_WINDOW: AtomicU32 = AtomicU32::new(0);
static HELD: AtomicU32 = AtomicU32::new(0);

/// 0x33, class 3: the handler with the read-modify-write.
pub fn outer() {
    if !super::armed() {
        ROUNDS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let before = NESTED.load(Ordering::Relaxed);
    irq_on();
    if PROTECT.load(Ordering::Relaxed) {
        irq_off();
        let x = SHARED.load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        LAPIC.self_ipi(NEST_HAZARD_NESTED);
        let waited =
            spin_until(|| pending(NEST_HAZARD_NESTED)) && NESTED.load(Ordering::Relaxed) == before;
        compiler_fence(Ordering::SeqCst);
        SHARED.store(x + 1, Ordering::Relaxed);
        irq_on();
        // 0x53 runs here, after the write.
        spin_until(|| NESTED.load(Ordering::Relaxed) != before);
        if waited {
            HELD.fetch_add(1, Ordering::Relaxed);
        }
    } else {
        let x = SHARED.load(Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        LAPIC.self_ipi(NEST_HAZARD_NESTED);
        // 0x53 runs here, between the read and the write.
        if spin_until(|| NESTED.load(Ordering::Relaxed) != before) {
            IN_WINDOW.fetch_add(1, Ordering::Relaxed);
        }
        compiler_fence(Ordering::SeqCst);
        SHARED.store(x + 1, Ordering::Relaxed);
    }
    irq_off();
    ROUNDS.fetch_add(1, Ordering::Relaxed);
}

/// 0x53, class 5: the interrupt that arrives inside 0x33's update (interrupts off).
pub fn nested() {
    SHARED.store(SHARED.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    NESTED.fetch_add(1, Ordering::Relaxed);
}

/// What one version did: (rounds finished, counter, 0x53 runs, rounds that counted).
fn rounds_of(rounds: u32, protect: bool) -> (u32, u64, u32, u32) {
    SHARED.store(0, Ordering::Relaxed);
    ROUNDS.store(0, Ordering::Relaxed);
    NESTED.store(0, Ordering::Relaxed);
    IN_WINDOW.store(0, Ordering::Relaxed);
    HELD.store(0, Ordering::Relaxed);
    PROTECT.store(protect, Ordering::Relaxed);
    for r in 0..rounds {
        // Interrupts are off here: 0x33 arrives in the spin, on this stack (IST 0).
        LAPIC.self_ipi(NEST_HAZARD);
        irq_on();
        let ok = spin_until(|| ROUNDS.load(Ordering::Relaxed) > r);
        irq_off();
        if !ok {
            break;
        }
    }
    let counted = if protect { &HELD } else { &IN_WINDOW };
    (
        ROUNDS.load(Ordering::Relaxed),
        SHARED.load(Ordering::Relaxed),
        NESTED.load(Ordering::Relaxed),
        counted.load(Ordering::Relaxed),
    )
}

/// Runs both versions `rounds` times each and reports `nesting-hazard` and `nesting-fixed`.
pub fn run(rounds: u32) {
    let expected = 2 * u64::from(rounds);
    let (done, counter, nested, in_window) = rounds_of(rounds, false);
    let lost = expected.saturating_sub(counter);
    crate::check!(
        done == rounds && nested == rounds && in_window == rounds && lost == u64::from(rounds),
        "nesting-hazard",
        "unprotected read-modify-write in {:#x}'s handler, interrupts on: {:#x} ran between its read and its write in {} of {} rounds, and {} of {} increments were lost (counter {})",
        NEST_HAZARD,
        NEST_HAZARD_NESTED,
        Dec(in_window.into()),
        Dec(rounds.into()),
        Dec(lost),
        Dec(expected),
        Dec(counter)
    );
    let (done, counter, nested, held) = rounds_of(rounds, true);
    let lost = expected.saturating_sub(counter);
    crate::check!(
        done == rounds && nested == rounds && held == rounds && lost == 0 && counter == expected,
        "nesting-fixed",
        "interrupts off around the read-modify-write: {:#x}, raised at the same point, waited in the IRR until after the write in {} of {} rounds, then ran nested; {} of {} increments lost (counter {})",
        NEST_HAZARD_NESTED,
        Dec(held.into()),
        Dec(rounds.into()),
        Dec(lost),
        Dec(expected),
        Dec(counter)
    );
}
