//! `run=affinity`: IO-APIC pins and MSIs routed to chosen CPUs, as
//! `/proc/irq/N/smp_affinity` does on Linux. Starts the APs, routes the PIT (pin 2) to
//! `pit_cpu=1` in physical destination mode and the MSI source to `msi_cpu=<last>` in logical
//! (flat) mode, runs both at once (`ticks=200` PIT ticks at `hz=1000`, `count=500` MSIs at
//! `rate=1000`), and prints the per-CPU counts like `/proc/interrupts`. The check: each
//! source's interrupts arrived on its CPU and nowhere else.

use super::{wait_until, Stream};
use crate::boot::Boot;
use crate::fmt::Dec;
use crate::ioapic::{IoApic, Route};
use crate::msi_source::MsiSource;
use crate::percpu::MAX_CPUS;
use crate::{interrupts, vectors};
use core::sync::atomic::{AtomicU32, Ordering};

static TICKS: Stream = Stream::new();
static MSIS: Stream = Stream::new();
static EVENTS: AtomicU32 = AtomicU32::new(0);

fn tick() {
    TICKS.hit();
}

fn msi() {
    MSIS.hit();
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let cpus = boot.info.vcpus as usize;
    if cpus < 2 {
        crate::skip!(
            "affinity",
            "needs vcpus >= 2 (this VM has {})",
            Dec(cpus as u64)
        );
        return;
    }
    let online = crate::smp::start_aps(boot);
    crate::check!(
        online == cpus.min(MAX_CPUS),
        "smp-bringup",
        "{} of {} CPUs online (INIT + STARTUP IPIs, real-mode trampoline at {:#x})",
        Dec(online as u64),
        Dec(cpus as u64),
        crate::smp::TRAMPOLINE
    );
    if online < 2 {
        return;
    }
    let pit_cpu = (boot.cmdline.get_u64("pit_cpu", 1) as usize).min(online - 1);
    let msi_cpu = (boot.cmdline.get_u64("msi_cpu", online as u64 - 1) as usize).min(online - 1);
    let ticks = boot.cmdline.get_u64("ticks", 200);
    let hz = boot.cmdline.get_u64("hz", 1000).max(1);
    let count = boot.cmdline.get_u64("count", 500) as u32;
    let rate = boot.cmdline.get_u64("rate", 1000) as u32;
    let d = &boot.info.devices;
    let io = IoApic::new(d.ioapic_base);
    let dev = MsiSource::new(d.msi_source_base);
    TICKS.reset();
    MSIS.reset();
    interrupts::register(vectors::PIT, tick);
    interrupts::register(vectors::MSI, msi);
    let pit_before: [u64; MAX_CPUS] = core::array::from_fn(|c| interrupts::count(c, vectors::PIT));
    let msi_before: [u64; MAX_CPUS] = core::array::from_fn(|c| interrupts::count(c, vectors::MSI));
    // APIC IDs equal CPU indexes (the VMM's CPUID says so).
    io.route(
        d.pit_gsi,
        Route {
            vector: vectors::PIT,
            dest: pit_cpu as u8,
            logical: false,
            level: false,
            masked: false,
        },
    );
    let (divisor, _) = crate::pit::divisor_for(hz);
    crate::pit::start_periodic(d.pit_port, divisor);
    let have_msi = dev.present();
    if have_msi {
        let wb = &EVENTS as *const AtomicU32 as u64;
        dev.start(1 << msi_cpu, true, vectors::MSI, count, rate, wb);
    }
    let timeout = ticks * 2000 / hz + u64::from(count) * 2000 / u64::from(rate.max(1)) + 2000;
    let done = wait_until(boot, timeout, true, || {
        TICKS.count() >= ticks && (!have_msi || EVENTS.load(Ordering::Relaxed) >= count)
    });
    crate::pit::stop(d.pit_port);
    io.mask(d.pit_gsi);
    // Let the last interrupts land before counting.
    wait_until(boot, 20, true, || false);
    let delta = |before: &[u64; MAX_CPUS], v: u8, c: usize| interrupts::count(c, v) - before[c];
    let pit_on_target = delta(&pit_before, vectors::PIT, pit_cpu);
    let pit_elsewhere: u64 = (0..online)
        .filter(|&c| c != pit_cpu)
        .map(|c| delta(&pit_before, vectors::PIT, c))
        .sum();
    let msi_on_target = delta(&msi_before, vectors::MSI, msi_cpu);
    let msi_elsewhere: u64 = (0..online)
        .filter(|&c| c != msi_cpu)
        .map(|c| delta(&msi_before, vectors::MSI, c))
        .sum();
    interrupts::print_table(
        online,
        &[
            (vectors::PIT, "IO-APIC pin 2 (PIT)"),
            (vectors::MSI, "MSI source"),
            (vectors::WAKE, "LAPIC timer (wake-up)"),
        ],
    );
    crate::check!(
        done && pit_on_target >= ticks && pit_elsewhere == 0,
        "affinity-ioapic",
        "PIT pin 2 -> CPU {} (physical): {} ticks there, {} elsewhere",
        Dec(pit_cpu as u64),
        Dec(pit_on_target),
        Dec(pit_elsewhere)
    );
    if have_msi {
        crate::check!(
            done && msi_on_target > 0
                && msi_elsewhere == 0
                && EVENTS.load(Ordering::Relaxed) == count,
            "affinity-msi",
            "MSIs -> CPU {} (logical mask {:#x}): {} interrupts there for {} events, {} elsewhere",
            Dec(msi_cpu as u64),
            1u32 << msi_cpu,
            Dec(msi_on_target),
            Dec(EVENTS.load(Ordering::Relaxed).into()),
            Dec(msi_elsewhere)
        );
    } else {
        crate::skip!("affinity-msi", "no MSI source device");
    }
}
