//! `run=msi`: the MSI source device raises `count=1000` MSIs at `rate=1000` Hz (0: back to
//! back) to this CPU's LAPIC; the handler counts them. The check: the device sent `count`
//! and the handler saw every one. An MSI that arrives while the previous one with the same
//! vector still waits in the LAPIC's IRR merges with it and is lost to software; KVM's
//! `KVM_SIGNAL_MSI` still reports it delivered, so only this count can tell. With
//! `allow_loss=1` losses are reported but allowed (back-to-back runs outpace any handler).

use super::{rate_mhz, wait_until, Stream};
use crate::boot::Boot;
use crate::fmt::{Dec, Milli};
use crate::interrupts::{self, MSI_VECTOR};
use crate::msi_source::MsiSource;

static MSIS: Stream = Stream::new();

fn handler(_: &mut crate::idt::Frame) {
    MSIS.hit();
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let dev = MsiSource::new(boot.info.devices.msi_source_base);
    if !dev.present() {
        crate::skip!("msi", "no MSI source device in the boot info");
        return;
    }
    let count = boot.cmdline.get_u64("count", 1000).min(u64::from(u32::MAX)) as u32;
    let rate = boot
        .cmdline
        .get_u64("rate", 10_000)
        .min(u64::from(u32::MAX)) as u32;
    let allow_loss = boot.cmdline.get_u64("allow_loss", 0) != 0;
    let dest = crate::apic::LAPIC.id();
    MSIS.reset();
    interrupts::register(MSI_VECTOR, handler);
    dev.start(dest, false, MSI_VECTOR, count, rate);
    let timeout_ms = if rate == 0 {
        5000
    } else {
        u64::from(count) * 2000 / u64::from(rate) + 2000
    };
    let finished = wait_until(boot, timeout_ms, true, || !dev.busy());
    // Let the last accepted MSI reach the handler.
    let c = dev.counters();
    wait_until(boot, 100, true, || MSIS.count() >= u64::from(c.delivered));
    let got = MSIS.count();
    let measured = rate_mhz(got, MSIS.span(), boot.info.tsc_khz);
    let lost = u64::from(c.sent).saturating_sub(got);
    let ok = finished
        && c.sent == count
        && got <= u64::from(c.sent)
        && c.failed == 0
        && (allow_loss || lost == 0);
    crate::check!(
        ok,
        "msi",
        "sent {} of {}, handled {}, lost {}, undeliverable {}, failed {}, late {}; {} Hz programmed, {} Hz measured",
        Dec(c.sent.into()),
        Dec(count.into()),
        Dec(got),
        Dec(lost),
        Dec(c.undelivered.into()),
        Dec(c.failed.into()),
        Dec(c.late.into()),
        Dec(rate.into()),
        Milli(measured as i64)
    );
}
