//! Scenario 2 of `run=nesting`: the task priority register. TPR = 0x40 (class 4) holds 0x41
//! in the IRR, with interrupts enabled, while 0x52 (class 5) is delivered; writing CR8 = 0
//! (CR8 is TPR bits 7:4, SDM §11.8.6) lets 0x41 in.

use super::{
    done, enter, exit, irq_off, irq_on, lapic_read, lapic_write, log, log_is, log_reset, pending,
    print_log, spin_until, ENTER, EXIT, HELD, PPR, TPR,
};
use crate::apic::LAPIC;
use crate::fmt::Dec;
use crate::vectors::{NEST_TPR_ABOVE, NEST_TPR_HELD};

/// The TPR of the scenario: class 4.
const TPR_CLASS_4: u32 = 0x40;

fn cr8() -> u64 {
    let v: u64;
    // SAFETY: reading CR8 (the TPR's class) has no side effects at CPL 0.
    unsafe {
        core::arch::asm!("mov {}, cr8", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

fn set_cr8(v: u64) {
    // SAFETY: CR8 is the TPR's class; lowering it may let pending interrupts in, which is the
    // point (interrupts are on only around this module's own code).
    unsafe { core::arch::asm!("mov cr8, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// 0x41, class 4: held by TPR = 0x40.
pub fn held() {
    enter(NEST_TPR_HELD);
    exit(NEST_TPR_HELD);
}

/// 0x52, class 5: above TPR = 0x40.
pub fn above() {
    enter(NEST_TPR_ABOVE);
    exit(NEST_TPR_ABOVE);
}

/// Scenario 2: TPR = 0x40 holds 0x41 in the IRR while 0x52 runs; CR8 = 0 lets 0x41 in.
pub fn run() {
    log_reset();
    lapic_write(TPR, TPR_CLASS_4);
    LAPIC.self_ipi(NEST_TPR_HELD);
    irq_on();
    let accepted = spin_until(|| pending(NEST_TPR_HELD) || done(NEST_TPR_HELD));
    let held = accepted && !done(NEST_TPR_HELD);
    if held {
        log(NEST_TPR_HELD, HELD, 0);
    }
    LAPIC.self_ipi(NEST_TPR_ABOVE);
    let above_ran = spin_until(|| done(NEST_TPR_ABOVE));
    let still_held = pending(NEST_TPR_HELD) && !done(NEST_TPR_HELD);
    let (ppr, cr8_seen) = (lapic_read(PPR), cr8());
    set_cr8(0);
    let released = spin_until(|| done(NEST_TPR_HELD));
    irq_off();
    let tpr_now = lapic_read(TPR);

    print_log("tpr order");
    let order_ok = log_is(&[
        (NEST_TPR_HELD, HELD, 0),
        (NEST_TPR_ABOVE, ENTER, 1),
        (NEST_TPR_ABOVE, EXIT, 0),
        (NEST_TPR_HELD, ENTER, 1),
        (NEST_TPR_HELD, EXIT, 0),
    ]);
    crate::check!(
        held && above_ran
            && still_held
            && released
            && order_ok
            && ppr == TPR_CLASS_4
            && cr8_seen == 4
            && tpr_now == 0,
        "nesting-tpr",
        "TPR {:#x} (CR8 {}, PPR {:#x}) held {:#x} (class 4) in the IRR with interrupts on while {:#x} (class 5) ran: {}; CR8 = 0 (TPR now {:#x}) let it in: {}",
        TPR_CLASS_4,
        Dec(cr8_seen),
        ppr,
        NEST_TPR_HELD,
        NEST_TPR_ABOVE,
        if held && still_held && above_ran { "yes" } else { "no" },
        tpr_now,
        if released && order_ok { "yes" } else { "no" }
    );
}
