//! `run=posted`: the MSI source raises `count=10000` events at `rate=10000` per second
//! (0: as fast as it can) for CPU `cpu=0`, either `mode=direct` (one MSI per event) or
//! `mode=posted` (each event sets vector 0x40's bit in the CPU's posted-interrupt descriptor;
//! one notification at vector 0xeb only when ON goes 0 → 1). With `poll=1` (posted, CPU 0)
//! the guest sets SN and harvests the PIR itself, NAPI-style, so events post without any
//! notification. Every event is accounted for through the device's written-back counter;
//! the check is that all `count` events were processed.

use super::{rate_mhz, wait_until, Stream};
use crate::boot::Boot;
use crate::fmt::{Dec, Milli};
use crate::msi_source::MsiSource;
use crate::{interrupts, vectors};
use core::sync::atomic::{AtomicU32, Ordering};

/// Vector dispatches (one per harvest that found the vector's PIR bit, or per direct MSI),
/// with the TSC of the first and the last.
static EVENTS_IRQ: Stream = Stream::new();
static EVENT_COUNTER: AtomicU32 = AtomicU32::new(0);
/// Events accounted for: the device's counter at the latest dispatch.
static SEEN: AtomicU32 = AtomicU32::new(0);
/// The device's counter at the first dispatch: events between the first and the last
/// dispatch are `SEEN - FIRST_SEEN`, the numerator of the event rate.
static FIRST_SEEN: AtomicU32 = AtomicU32::new(0);

fn handler() {
    let n = EVENTS_IRQ.hit();
    let seen = EVENT_COUNTER.load(Ordering::Acquire);
    if n == 1 {
        FIRST_SEEN.store(seen, Ordering::Relaxed);
    }
    SEEN.store(seen, Ordering::Relaxed);
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let dev = MsiSource::new(boot.info.devices.msi_source_base);
    if !dev.present() {
        crate::skip!("posted", "no MSI source device");
        return;
    }
    let posted = boot.cmdline.get("mode") != Some("direct");
    if posted && !crate::posted::available() {
        crate::skip!(
            "posted",
            "the VMM announced no posted-interrupt descriptors"
        );
        return;
    }
    let count = boot
        .cmdline
        .get_u64("count", 10_000)
        .min(u64::from(u32::MAX)) as u32;
    let rate = boot
        .cmdline
        .get_u64("rate", 10_000)
        .min(u64::from(u32::MAX)) as u32;
    let mut cpu = boot.cmdline.get_u64("cpu", 0) as usize;
    let poll = posted && boot.cmdline.get_u64("poll", 0) != 0;
    if cpu > 0 && crate::smp::start_aps(boot) <= cpu {
        crate::fail!("posted", "CPU {} is not online", Dec(cpu as u64));
        return;
    }
    if poll {
        cpu = 0; // the polling loop runs here
    }
    let name = match (posted, poll) {
        (false, _) => "posted-direct",
        (true, false) => "posted-notify",
        (true, true) => "posted-poll",
    };
    EVENTS_IRQ.reset();
    EVENT_COUNTER.store(0, Ordering::Relaxed);
    SEEN.store(0, Ordering::Relaxed);
    FIRST_SEEN.store(0, Ordering::Relaxed);
    interrupts::register(vectors::MSI, handler);
    let notifications_before = crate::posted::NOTIFICATIONS.load(Ordering::Relaxed);
    dev.set_mode(posted, crate::posted::descriptor_addr(cpu));
    if poll {
        crate::posted::suppress(cpu, true);
    }
    let wb = &EVENT_COUNTER as *const AtomicU32 as u64;
    dev.start(cpu as u8, false, vectors::MSI, count, rate, wb);
    let timeout_ms = if rate == 0 {
        10_000
    } else {
        u64::from(count) * 2000 / u64::from(rate) + 3000
    };
    let all = if poll {
        let deadline = crate::cpu::rdtsc() + timeout_ms * boot.info.tsc_khz;
        super::mark(super::MARK_WINDOW_START);
        while SEEN.load(Ordering::Relaxed) < count && crate::cpu::rdtsc() < deadline {
            crate::cpu::cli();
            crate::posted::harvest(cpu);
            crate::cpu::sti();
            core::hint::spin_loop();
        }
        super::mark(super::MARK_WINDOW_END);
        crate::posted::suppress(cpu, false);
        crate::cpu::cli();
        crate::posted::harvest(cpu);
        crate::cpu::sti();
        SEEN.load(Ordering::Relaxed) >= count
    } else {
        let started = wait_until(boot, timeout_ms, true, || EVENTS_IRQ.count() >= 1);
        super::mark(super::MARK_WINDOW_START);
        let ok = started
            && wait_until(boot, timeout_ms, true, || {
                SEEN.load(Ordering::Relaxed) >= count
            });
        super::mark(super::MARK_WINDOW_END);
        ok
    };
    let finished = wait_until(boot, 1000, true, || !dev.busy());
    let c = dev.counters();
    let notified = dev.notified();
    dev.set_mode(false, 0);
    let seen = SEEN.load(Ordering::Relaxed);
    let handled = EVENTS_IRQ.count();
    let notes = crate::posted::NOTIFICATIONS.load(Ordering::Relaxed) - notifications_before;
    let messages = if posted {
        u64::from(notified)
    } else {
        u64::from(c.sent)
    };
    super::report_window(name, if posted { notes } else { handled });
    // Rates over the span from the first to the last dispatch: events (the device's counter
    // advanced by SEEN - FIRST_SEEN in it) and dispatches (one per harvest in posted mode,
    // covering many events — not an event rate).
    let span = EVENTS_IRQ.span();
    let events_in_span = u64::from(seen.saturating_sub(FIRST_SEEN.load(Ordering::Relaxed)));
    // Which condition failed, last on the line (`irqlab bench posted` reads the counts by
    // position): the counts alone do not say.
    let why = if !all {
        "not every event was processed within the time limit"
    } else if !finished {
        "the device was still sending 1 s after the window"
    } else if seen != count {
        "the guest processed more events than the device was asked for"
    } else if c.sent != count {
        "the device's sent count differs from the events asked for"
    } else if c.failed != 0 {
        "some deliveries failed"
    } else {
        ""
    };
    crate::check!(
        why.is_empty(),
        name,
        "{} of {} events processed on CPU {} (each wait up to {} ms); {} MSIs sent ({} per 1000 events), {} failed, {} notifications handled, {} vector dispatches, {} suppressed; {} events/s, {} dispatches/s{}{}",
        Dec(seen.into()),
        Dec(count.into()),
        Dec(cpu as u64),
        Dec(timeout_ms),
        Dec(messages),
        Milli((messages * 1_000_000 / u64::from(count.max(1))) as i64),
        Dec(c.failed.into()),
        Dec(notes),
        Dec(handled),
        Dec(c.suppressed.into()),
        Milli(rate_mhz(events_in_span + 1, span, boot.info.tsc_khz) as i64),
        Milli(rate_mhz(handled.max(2), span, boot.info.tsc_khz) as i64),
        if why.is_empty() { "" } else { "; failed: " },
        why
    );
}
