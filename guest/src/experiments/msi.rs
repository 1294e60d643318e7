//! `run=msi`: the MSI source device raises `count=1000` events at `rate=1000` Hz (0: back
//! to back), each announced by an MSI to this CPU's LAPIC. The device writes its event counter
//! into guest memory before each MSI (like a NIC's ring index); the handler reads it and
//! accounts for every event since its last run, without any VM exit.
//!
//! The check: the device raised `count` events and the handler accounted for all of them.
//! Reported besides: interrupts handled, and how many MSIs merged into one still pending in
//! the LAPIC's IRR (events − interrupts when every event was seen). KVM's `KVM_SIGNAL_MSI`
//! reports such a merged MSI as delivered, so only the guest can count merges. With
//! `no_merge=1` the check also demands that no MSI merged.

use super::{rate_mhz, wait_until, Stream};
use crate::boot::Boot;
use crate::fmt::{Dec, Milli};
use crate::msi_source::MsiSource;
use crate::{interrupts, vectors};
use core::sync::atomic::{AtomicU32, Ordering};

static MSIS: Stream = Stream::new();
/// The device's event counter (written by the device, read by the handler).
static EVENT_COUNTER: AtomicU32 = AtomicU32::new(0);
/// Events the handler has accounted for.
static SEEN: AtomicU32 = AtomicU32::new(0);

fn handler() {
    MSIS.hit();
    SEEN.store(EVENT_COUNTER.load(Ordering::Acquire), Ordering::Relaxed);
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let dev = MsiSource::new(boot.info.devices.msi_source_base);
    if !dev.present() {
        crate::skip!("msi", "no MSI source device in the boot info");
        return;
    }
    let max = u64::from(u32::MAX);
    let count = boot.cmdline.get_u64_clamped("count", 1000, 0, max) as u32;
    let rate = boot.cmdline.get_u64_clamped("rate", 1000, 0, max) as u32;
    let no_merge = boot.cmdline.get_u64("no_merge", 0) != 0;
    let dest = crate::apic::LAPIC.id();
    MSIS.reset();
    EVENT_COUNTER.store(0, Ordering::Relaxed);
    SEEN.store(0, Ordering::Relaxed);
    interrupts::register(vectors::MSI, handler);
    let wb = &EVENT_COUNTER as *const AtomicU32 as u64;
    dev.start(dest, false, vectors::MSI, count, rate, wb);
    let timeout_ms = if rate == 0 {
        5000
    } else {
        u64::from(count) * 2000 / u64::from(rate) + 2000
    };
    // Steady state: from the first interrupt to the one that accounts for the last event,
    // bracketed by marks; waiting reads only memory, so the window has no exits of its own.
    let started = wait_until(boot, timeout_ms, true, || MSIS.count() >= 1);
    super::mark(super::MARK_WINDOW_START);
    let n1 = MSIS.count();
    let all_seen = started
        && wait_until(boot, timeout_ms, true, || {
            SEEN.load(Ordering::Relaxed) >= count
        });
    super::mark(super::MARK_WINDOW_END);
    super::report_window("msi", MSIS.count() - n1);
    // The device writes the event counter before it sends each MSI and counts the MSI as
    // sent after the send returns: having seen the last event does not mean `sent` has been
    // counted yet (on a loaded host the guest got there first). Its counters are final only
    // once it is idle.
    let finished = wait_until(boot, if all_seen { 2000 } else { 1000 }, true, || {
        !dev.busy()
    });
    let c = dev.counters();
    let got = MSIS.count();
    let seen = SEEN.load(Ordering::Relaxed);
    let measured = rate_mhz(got, MSIS.span(), boot.info.tsc_khz);
    let merged = u64::from(seen).saturating_sub(got);
    let ok = finished
        && c.sent == count
        && seen == c.sent
        && got <= u64::from(c.sent)
        && c.failed == 0
        && (!no_merge || merged == 0);
    crate::check!(
        ok,
        "msi",
        "{} of {} events accounted for, {} interrupts, {} merged in IRR, undeliverable {}, failed {}, late {}; {} Hz programmed, {} Hz measured",
        Dec(seen.into()),
        Dec(count.into()),
        Dec(got),
        Dec(merged),
        Dec(c.undelivered.into()),
        Dec(c.failed.into()),
        Dec(c.late.into()),
        Dec(rate.into()),
        Milli(measured as i64)
    );
}
