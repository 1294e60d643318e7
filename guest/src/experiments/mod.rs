//! Interrupt experiments: each programs a device, takes its interrupts, checks what arrived
//! and reports PASS/FAIL/SKIP lines (see `report`).
//!
//! Waiting is done with `sti; hlt`, so the vCPU sleeps in KVM (in-kernel LAPIC) and the wait
//! itself costs no exit to userspace. A backstop LAPIC timer at [`vectors::WAKE`] wakes the
//! CPU every 10 ms so a lost interrupt ends in a FAIL line rather than a hang, unless the
//! experiment uses the LAPIC timer itself.

pub mod affinity;
pub mod echo;
pub mod msi;
pub mod napi;
pub mod nesting;
pub mod nic;
pub mod posted;
pub mod sched;
pub mod signals;
pub mod softirq;
pub mod ticker;
pub mod timer;

use crate::apic::{TimerMode, LAPIC};
use crate::boot::Boot;
use crate::{cpu, vectors};
use core::sync::atomic::{AtomicU64, Ordering};

/// LAPIC timer clocks per millisecond (divide by 1), measured by [`calibrate`].
static LAPIC_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Backstop wake-ups so far (all CPUs).
static WAKES: AtomicU64 = AtomicU64::new(0);

fn wake() {
    WAKES.fetch_add(1, Ordering::Relaxed);
}

/// Common set-up: PICs masked, LAPIC enabled, the wake-up handler, LAPIC timer calibrated.
pub fn init(boot: &Boot) {
    crate::pic::mask_all();
    LAPIC.enable();
    crate::interrupts::register(vectors::WAKE, wake);
    calibrate(boot);
    let pins = crate::ioapic::IoApic::new(boot.info.devices.ioapic_base).pins();
    crate::check!(
        pins == 24,
        "ioapic-version",
        "IOAPICVER reports {} redirection entries (82093AA: 24)",
        crate::fmt::Dec(pins.into())
    );
}

/// Measures the LAPIC timer clock against the TSC over ~2 ms.
fn calibrate(boot: &Boot) {
    let khz = boot.info.tsc_khz.max(1);
    LAPIC.start_timer(TimerMode::OneShot, vectors::WAKE, u32::MAX);
    let c0 = LAPIC.timer_current();
    let t0 = cpu::rdtsc();
    while cpu::rdtsc() - t0 < 2 * khz {
        core::hint::spin_loop();
    }
    let c1 = LAPIC.timer_current();
    let t1 = cpu::rdtsc();
    LAPIC.stop_timer();
    let per_ms = u64::from(c0 - c1) * khz / (t1 - t0).max(1);
    LAPIC_PER_MS.store(per_ms.max(1), Ordering::Relaxed);
}

/// LAPIC timer clocks per millisecond.
pub fn lapic_per_ms() -> u64 {
    LAPIC_PER_MS.load(Ordering::Relaxed)
}

/// Sleeps (`sti; hlt`) until `done()` or `timeout_ms` pass; true if `done()`. With
/// `backstop`, the LAPIC timer wakes the CPU every 10 ms meanwhile.
pub fn wait_until(boot: &Boot, timeout_ms: u64, backstop: bool, done: impl Fn() -> bool) -> bool {
    let deadline = cpu::rdtsc() + timeout_ms * boot.info.tsc_khz;
    if backstop {
        let ten_ms = (10 * lapic_per_ms()).min(u64::from(u32::MAX)) as u32;
        LAPIC.start_timer(TimerMode::Periodic, vectors::WAKE, ten_ms);
    }
    // The clock is read after a backstop wake-up (every 10 ms) or every 64th wake-up, not on
    // each: this loop runs once per interrupt, and an emulated `rdtsc` costs as much as three
    // ordinary instructions on kvm-pvm.
    let (mut wakeups, mut backstops) = (0u32, WAKES.load(Ordering::Relaxed));
    let ok = loop {
        cpu::cli();
        if done() {
            break true;
        }
        wakeups = wakeups.wrapping_add(1);
        let b = WAKES.load(Ordering::Relaxed);
        if (b != backstops || wakeups % 64 == 0) && cpu::rdtsc() > deadline {
            break false;
        }
        backstops = b;
        cpu::sti_hlt();
    };
    if backstop {
        LAPIC.stop_timer();
    }
    cpu::sti();
    ok
}

/// Drops mark `value` into the VMM's timeline (one PIO exit; see the mark port in the ABI).
pub fn mark(value: u32) {
    // SAFETY: the mark port only records the value.
    unsafe { crate::port::outl(irqlab_abi::ports::MARK, value) };
}

/// Mark values: start and end of a steady-state measurement window.
pub const MARK_WINDOW_START: u32 = 1;
/// End of the window.
pub const MARK_WINDOW_END: u32 = 2;

/// Prints the `BENCH` line `irqlab bench` reads: the interrupts taken between the two marks.
pub fn report_window(name: &str, interrupts: u64) {
    crate::println!(
        "BENCH {} window_interrupts={}",
        name,
        crate::fmt::Dec(interrupts)
    );
}

/// Rate in milli-Hz of `events - 1` intervals spanning `tsc_span` cycles.
pub fn rate_mhz(events: u64, tsc_span: u64, tsc_khz: u64) -> u64 {
    if events < 2 || tsc_span == 0 {
        return 0;
    }
    ((events - 1) as u128 * u128::from(tsc_khz) * 1_000_000 / u128::from(tsc_span)) as u64
}

/// Records first/last TSC and a count for a stream of interrupts.
pub struct Stream {
    /// Interrupts seen.
    pub count: AtomicU64,
    /// TSC at the first.
    pub first: AtomicU64,
    /// TSC at the last.
    pub last: AtomicU64,
}

impl Stream {
    /// Empty.
    pub const fn new() -> Self {
        Stream {
            count: AtomicU64::new(0),
            first: AtomicU64::new(0),
            last: AtomicU64::new(0),
        }
    }

    /// Called from a handler.
    pub fn hit(&self) -> u64 {
        let now = cpu::rdtsc();
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            self.first.store(now, Ordering::Relaxed);
        }
        self.last.store(now, Ordering::Relaxed);
        n + 1
    }

    /// Clears it.
    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.first.store(0, Ordering::Relaxed);
        self.last.store(0, Ordering::Relaxed);
    }

    /// Interrupts so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// TSC cycles from first to last.
    pub fn span(&self) -> u64 {
        self.last
            .load(Ordering::Relaxed)
            .saturating_sub(self.first.load(Ordering::Relaxed))
    }
}
