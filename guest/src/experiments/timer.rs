//! `run=timer`: periodic timer interrupts at a set rate, counted and timed with the TSC.
//!
//! `timer=pit` (default): PIT channel 0 in mode 2 → IO-APIC pin 2 (edge) → vector 0x30.
//! `timer=lapic`: the LAPIC timer in periodic mode. `timer=deadline`: the LAPIC timer in
//! TSC-deadline mode, re-armed by the handler at absolute deadlines.
//! Parameters: `hz=1000`, `ticks=200`, `tolerance=5` (percent; `off` reports the rate without
//! judging it). The check: `ticks`
//! interrupts arrive and the measured rate (first to last tick) is within the tolerance of
//! the rate the hardware was really programmed for.

use super::{rate_mhz, wait_until, Stream};
use crate::apic::{TimerMode, LAPIC};
use crate::boot::Boot;
use crate::fmt::{Dec, Milli};
use crate::ioapic::IoApic;
use crate::{interrupts, vectors};
use core::sync::atomic::{AtomicU64, Ordering};

static TICKS: Stream = Stream::new();
static DEADLINE_PERIOD: AtomicU64 = AtomicU64::new(0);
static NEXT_DEADLINE: AtomicU64 = AtomicU64::new(0);

fn tick() {
    TICKS.hit();
}

fn deadline_tick() {
    TICKS.hit();
    let next = NEXT_DEADLINE.fetch_add(DEADLINE_PERIOD.load(Ordering::Relaxed), Ordering::Relaxed)
        + DEADLINE_PERIOD.load(Ordering::Relaxed);
    LAPIC.set_tsc_deadline(next);
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let hz = boot.cmdline.get_u64("hz", 1000).max(1);
    let ticks = boot.cmdline.get_u64("ticks", 200).max(2);
    // `tolerance=off`: report the rate but judge only the count, for hosts whose clock cannot
    // be trusted (QEMU TCG underneath a nested hypervisor runs its clock unevenly).
    let judge_rate = boot.cmdline.get("tolerance") != Some("off");
    let tolerance = boot.cmdline.get_u64("tolerance", 5);
    let which = boot.cmdline.get("timer").unwrap_or("pit");
    let khz = boot.info.tsc_khz;
    if khz == 0 {
        crate::skip!("timer", "the VMM did not report the TSC frequency");
        return;
    }
    TICKS.reset();
    // Expected rate in milli-Hz, from what is really programmed.
    let (name, expected) = match which {
        "pit" => {
            let d = &boot.info.devices;
            let (divisor, real) = super::ticker::start_pit(boot, hz, tick);
            // Counter latch: two latched reads a few microseconds apart count down within
            // the programmed divisor (mode 2 counts N..1).
            let (c1, c2) = (
                crate::pit::read_count(d.pit_port),
                crate::pit::read_count(d.pit_port),
            );
            crate::check!(
                (1..=divisor).contains(&c1) && (1..=divisor).contains(&c2) && c1 != c2,
                "pit-latch",
                "latched counts {} then {} (divisor {})",
                Dec(c1.into()),
                Dec(c2.into()),
                Dec(divisor.into())
            );
            ("timer-pit", real)
        }
        "lapic" => {
            let count = (super::lapic_per_ms() * 1000 / hz).max(1);
            interrupts::register(vectors::LAPIC_TIMER, tick);
            LAPIC.start_timer(TimerMode::Periodic, vectors::LAPIC_TIMER, count as u32);
            ("timer-lapic", super::lapic_per_ms() * 1_000_000 / count)
        }
        "deadline" => {
            if !crate::apic::has_tsc_deadline() {
                crate::skip!("timer-deadline", "CPUID.01H:ECX.TSC_DEADLINE[24] is clear");
                return;
            }
            let period = khz * 1000 / hz;
            DEADLINE_PERIOD.store(period, Ordering::Relaxed);
            interrupts::register(vectors::LAPIC_TIMER, deadline_tick);
            LAPIC.start_timer(TimerMode::TscDeadline, vectors::LAPIC_TIMER, 0);
            let first = crate::cpu::rdtsc() + period;
            NEXT_DEADLINE.store(first, Ordering::Relaxed);
            LAPIC.set_tsc_deadline(first);
            ("timer-deadline", khz * 1_000_000 / period)
        }
        other => {
            crate::fail!("timer", "unknown timer={} (pit, lapic, deadline)", other);
            return;
        }
    };
    // Generous: the whole run at the configured rate, twice, plus a second.
    let timeout_ms = ticks * 2000 / hz + 1000;
    let uses_lapic = which != "pit";
    // Steady state is measured between the first and the last tick, bracketed by marks.
    let started = wait_until(boot, timeout_ms, !uses_lapic, || TICKS.count() >= 1);
    super::mark(super::MARK_WINDOW_START);
    let n1 = TICKS.count();
    let arrived = started && wait_until(boot, timeout_ms, !uses_lapic, || TICKS.count() >= ticks);
    super::mark(super::MARK_WINDOW_END);
    let n2 = TICKS.count();
    match which {
        "pit" => {
            crate::pit::stop(boot.info.devices.pit_port);
            IoApic::new(boot.info.devices.ioapic_base).mask(boot.info.devices.pit_gsi);
        }
        _ => LAPIC.stop_timer(),
    }
    super::report_window(name, n2 - n1);
    let got = TICKS.count();
    let measured = rate_mhz(got, TICKS.span(), khz);
    let error_ppm = (measured as i64 - expected as i64) * 1_000_000 / expected.max(1) as i64;
    let ok = arrived && (!judge_rate || error_ppm.unsigned_abs() <= tolerance * 10_000);
    if judge_rate {
        crate::check!(
            ok,
            name,
            "{} of {} ticks, programmed {} Hz, measured {} Hz ({}% off, tolerance {}%)",
            Dec(got),
            Dec(ticks),
            Milli(expected as i64),
            Milli(measured as i64),
            Milli(error_ppm / 10),
            Dec(tolerance)
        );
    } else {
        crate::check!(
            ok,
            name,
            "{} of {} ticks, programmed {} Hz, measured {} Hz ({}% off, rate not judged: tolerance=off)",
            Dec(got),
            Dec(ticks),
            Milli(expected as i64),
            Milli(measured as i64),
            Milli(error_ppm / 10)
        );
    }
}
