//! ICR/IMS/IMC semantics and ITR coalescing, on an injected clock.

use super::*;

#[test]
fn a_masked_device_raises_nothing_and_unmasking_pending_causes_raises_one() {
    let mut d = Dev::with_ring(16);
    d.start(5, 0, 0);
    d.step(0);
    assert!(d.fires.is_empty(), "IMS is 0 at reset");
    // Unmasking a pending cause raises one interrupt at once.
    d.w(reg::IMS, reg::ICR_RX, 10);
    assert_eq!(d.fires, [10]);
    assert_eq!(d.r(reg::IMS, 10), reg::ICR_RX);
    // Still asserted: more packets raise nothing more.
    d.start(3, 0, 20);
    d.step(20);
    assert_eq!(d.fires, [10]);
    // Reading ICR ends the assertion; the next packet raises the next interrupt.
    assert_eq!(d.r(reg::ICR, 30), reg::ICR_RX);
    d.start(1, 0, 40);
    d.step(40);
    assert_eq!(d.fires, [10, 40]);
    // NAPI: mask, poll, unmask — a cause that arrived while masked raises one at the unmask.
    d.w(reg::IMC, reg::ICR_ALL, 50);
    d.r(reg::ICR, 51);
    d.start(1, 0, 52);
    d.step(52);
    assert_eq!(d.fires.len(), 2);
    d.w(reg::IMS, reg::ICR_RX, 60);
    assert_eq!(d.fires, [10, 40, 60]);
    // Unmasking with nothing pending raises nothing; a masked cause raises nothing.
    d.r(reg::ICR, 70);
    d.w(reg::IMC, reg::ICR_ALL, 71);
    d.w(reg::IMS, reg::ICR_RX, 72);
    d.w(reg::ICS, reg::ICR_RXO, 73);
    assert_eq!(d.fires.len(), 3);
    // W1C of the pending cause, then ICS of an enabled one.
    d.w(reg::ICR, reg::ICR_RXO, 74);
    d.w(reg::IMS, reg::ICR_RXO, 75);
    assert_eq!(d.fires.len(), 3);
    d.w(reg::ICS, reg::ICR_RXO, 76);
    assert_eq!(d.fires, [10, 40, 60, 76]);
    assert_eq!(
        d.core.counters().irqs,
        2,
        "counters are per run: two since the last START"
    );
}

/// Packets every 10 µs for 10 ms, a driver that reads ICR right after each interrupt: with
/// ITR off one interrupt per packet, with ITR 100 µs at most one per 100 µs.
fn itr_run(itr_us: u32) -> Dev {
    let mut d = Dev::with_ring(reg::RING_MAX);
    d.w(reg::IMS, reg::ICR_RX, 0);
    d.w(reg::ITR_US, itr_us, 0);
    d.start(1000, 100_000, 0);
    let mut seen = 0;
    for k in 0..1000u64 {
        d.step(k * 10_000);
        if d.fires.len() > seen {
            seen = d.fires.len();
            d.r(reg::ICR, k * 10_000 + 1);
        }
    }
    // The last packet's interrupt, if held.
    d.step(10_000_000);
    d
}

#[test]
fn itr_bounds_the_interrupt_rate() {
    let d = itr_run(0);
    assert_eq!(d.fires.len(), 1000);
    let d = itr_run(100);
    // 10 ms / 100 µs, plus the first.
    assert!((100..=101).contains(&d.fires.len()), "{}", d.fires.len());
    assert!(d.fires.windows(2).all(|w| w[1] - w[0] >= 100_000));
    let c = d.core.counters();
    assert_eq!(c.irqs as usize, d.fires.len());
    assert_eq!(
        c.irq_held,
        c.irqs - 1,
        "every interrupt after the first was held"
    );
    assert_eq!((c.sent, c.delivered), (1000, 1000));
}

#[test]
fn a_held_interrupt_fires_at_the_interval_end_or_not_at_all() {
    let mut d = Dev::new();
    d.w(reg::IMS, reg::ICR_ALL, 0);
    d.w(reg::ITR_US, 100, 0);
    d.w(reg::ICS, reg::ICR_RX, 0);
    assert_eq!(d.fires, [0], "no interrupt yet: nothing to wait for");
    d.r(reg::ICR, 1);
    let e = d.w(reg::ICS, reg::ICR_RX, 10_000);
    assert_eq!(
        (e.fire, e.wake),
        (false, true),
        "held: the worker must wake"
    );
    assert_eq!(d.core.next_deadline(), Some(100_000));
    // Causes gathered while held ride along on the one interrupt.
    d.w(reg::ICS, reg::ICR_RXO, 20_000);
    d.step(99_999);
    assert_eq!(d.fires, [0]);
    d.step(100_000);
    assert_eq!(d.fires, [0, 100_000]);
    assert_eq!(d.r(reg::ICR, 100_001), reg::ICR_ALL);
    // Held, then the driver clears the causes (it polled): nothing fires.
    d.w(reg::ICS, reg::ICR_RX, 150_000);
    d.r(reg::ICR, 160_000);
    assert_eq!(d.core.next_deadline(), None);
    d.step(200_000);
    assert_eq!(d.fires.len(), 2);
    // Held, then ITR turned off: fires at once.
    d.w(reg::ICS, reg::ICR_RX, 250_000);
    d.w(reg::ICS, reg::ICR_RX, 260_000);
    assert_eq!(d.fires.len(), 3);
    d.r(reg::ICR, 261_000);
    d.w(reg::ICS, reg::ICR_RX, 270_000);
    d.w(reg::ITR_US, 0, 280_000);
    assert_eq!(d.fires, [0, 100_000, 250_000, 280_000]);
    let c = d.core.counters();
    assert_eq!((c.irqs, c.irq_held), (4, 3));
}

#[test]
fn interrupt_results_are_counted() {
    let mut d = Dev::new();
    for r in [
        IrqResult::Msi(MsiOutcome::Delivered),
        IrqResult::Msi(MsiOutcome::Blocked),
        IrqResult::Msi(MsiOutcome::Failed(5)),
        IrqResult::Posted(PostOutcome::Notified),
        IrqResult::Posted(PostOutcome::Coalesced),
        IrqResult::Posted(PostOutcome::Suppressed),
        IrqResult::Posted(PostOutcome::Failed(1)),
        IrqResult::NoDescriptor,
    ] {
        d.core.record(r);
    }
    let c = d.core.counters();
    assert_eq!((c.irq_failed, c.notified, c.suppressed), (4, 1, 1));
    assert_eq!(d.r(reg::IRQ_FAILED, 0), 4);
}
