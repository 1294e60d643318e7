//! `run=softirq`: top and bottom halves, measured by what they do to a second, more urgent
//! device.
//!
//! The NIC (`docs/nic.md`, vector 0x48, priority class 4) floods the guest with packets; a
//! TSC-deadline LAPIC timer (vector 0x50, class 5: more urgent) ticks at `hz=` (1000) and
//! measures how late each tick's handler starts (entry TSC minus the programmed deadline).
//! Two designs of the NIC's interrupt:
//!
//! - **`hard`**: all the work in the hard handler, with interrupts off: every packet in the
//!   ring is processed before the handler returns. A tick that comes due meanwhile waits.
//! - **`softirq`**: the top half acknowledges the device (ICR), raises the bottom half and
//!   sends the EOI; then, still in the interrupt but with interrupts **on** (Linux's
//!   `irq_exit` → `do_softirq`), the bottom half processes up to `budget` packets per pass and
//!   restarts while packets remain, at most `restarts=` (10, Linux's `MAX_SOFTIRQ_RESTART`)
//!   times; past that it wakes the `ksoftirqd`-like task (the idle loop here), which finishes
//!   the work at task level. The tick can preempt the bottom half.
//!
//! While the experiment runs, both gates use IST 0 so an interrupt nests on the stack it
//! interrupts (the IST stacks are one per vector class and would be overwritten by a nested
//! interrupt of the same gate); nothing here runs libcore code with interrupts on. The
//! top half sends its own EOI before enabling interrupts (the dispatcher's EOI that follows
//! finds no interrupt in service and is ignored, SDM §11.8.5), so the tick is not held back by
//! the NIC's in-service bit.
//!
//! Checks (behaviour, not timing): every packet processed or counted as dropped in each
//! design; with `hard`, no tick ever started inside the NIC handler; with `softirq`, ticks did
//! start inside the bottom half (it was preempted); and work handed to ksoftirqd was processed
//! there, at task level. Reported: the ticks' lateness p50/p99/max in each design. Words:
//! `rate=20000` (NIC packets/s, 0 = back to back), `packets=10000`, `work=20`, `hz=1000`,
//! `budget=64`, `restarts=10`.

use super::nic::{self, done, rd, take, wr, NIC_VECTOR};
use crate::apic::{TimerMode, LAPIC};
use crate::boot::Boot;
use crate::boot_cell::BootCpuCell;
use crate::fmt::Dec;
use crate::{check, cpu, fail, idt, interrupts, println, skip, vectors};
use irqlab_abi::nic as reg;
use irqlab_guest_core::stats::Stats;

const SAMPLES: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Design {
    Hard,
    Softirq,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Hard => "hard",
            Design::Softirq => "softirq",
        }
    }
}

/// One run's state (boot CPU only; the nested tick touches only its own fields).
struct State {
    design: Design,
    next: usize,
    work: u64,
    budget: u64,
    restarts: u64,
    processed: u64,
    in_nic: bool,
    in_bottom_half: bool,
    in_ksoftirqd: bool,
    ksoftirqd_woken: bool,
    softirq_pending: bool,
    ksoftirqd_wakeups: u64,
    ksoftirqd_processed: u64,
    bottom_half_runs: u64,
    nested_top_halves: u64,
    ticks: u64,
    ticks_in_nic: u64,
    ticks_in_bottom_half: u64,
    period: u64,
    deadline: u64,
    lateness: [u32; SAMPLES],
    lateness_len: usize,
}

/// Boot CPU only. The tick handler nests inside the NIC handler only in the softirq
/// design and touches only the tick fields, which the NIC side never writes.
static STATE: BootCpuCell<State> = BootCpuCell::new(State {
    design: Design::Hard,
    next: 0,
    work: 20,
    budget: 64,
    restarts: 10,
    processed: 0,
    in_nic: false,
    in_bottom_half: false,
    in_ksoftirqd: false,
    ksoftirqd_woken: false,
    softirq_pending: false,
    ksoftirqd_wakeups: 0,
    ksoftirqd_processed: 0,
    bottom_half_runs: 0,
    nested_top_halves: 0,
    ticks: 0,
    ticks_in_nic: 0,
    ticks_in_bottom_half: 0,
    period: 0,
    deadline: 0,
    lateness: [0; SAMPLES],
    lateness_len: 0,
});

#[allow(clippy::mut_from_ref)]
fn st() -> &'static mut State {
    // SAFETY: boot CPU; see `STATE`.
    unsafe { STATE.get() }
}

/// The urgent device: how late this tick started, then the next deadline.
fn on_tick() {
    let now = cpu::rdtsc();
    let s = st();
    s.ticks += 1;
    if s.in_nic {
        s.ticks_in_nic += 1;
    }
    if s.in_bottom_half {
        s.ticks_in_bottom_half += 1;
    }
    if s.lateness_len < SAMPLES {
        s.lateness[s.lateness_len] = now.saturating_sub(s.deadline).min(u64::from(u32::MAX)) as u32;
        s.lateness_len += 1;
    }
    // The next deadline after now (ticks missed while the CPU was busy are skipped).
    while s.deadline <= now {
        s.deadline += s.period;
    }
    LAPIC.set_tsc_deadline(s.deadline);
}

fn process_one(s: &mut State) -> bool {
    if !done(s.next) {
        return false;
    }
    take(s.next);
    s.next = (s.next + 1) % nic::RING;
    let mut x = s.work;
    while x > 0 {
        x = core::hint::black_box(x) - 1;
    }
    s.processed += 1;
    true
}

/// Up to `budget` packets; returns whether the ring still had packets after them.
fn pass(s: &mut State) -> bool {
    let mut n = 0;
    while n < s.budget && process_one(s) {
        n += 1;
    }
    nic::give_back(s.next);
    done(s.next)
}

/// The NIC's interrupt, in either design.
fn on_nic() {
    let s = st();
    let was_in_nic = s.in_nic;
    s.in_nic = true;
    let _causes = rd(reg::ICR);
    match s.design {
        Design::Hard => while pass(s) {},
        // The bottom half this interrupt nested into will see the new packets (Linux's
        // `irq_exit` runs softirqs only when not already in one: `in_interrupt()`).
        // Nor while ksoftirqd has work: once woken it does the softirq work until none is left
        // (Linux: "let ksoftirqd do its job", `ksoftirqd_running()` in `invoke_softirq`).
        Design::Softirq if s.in_bottom_half || s.in_ksoftirqd || s.ksoftirqd_woken => {
            s.softirq_pending = true;
            s.nested_top_halves += 1;
        }
        Design::Softirq => {
            s.softirq_pending = true;
            // The EOI now, so the bottom half runs with the NIC no longer in service.
            LAPIC.eoi();
            s.in_bottom_half = true;
            s.bottom_half_runs += 1;
            let bottom_half_start = cpu::rdtsc();
            cpu::sti();
            let mut restarts = 0;
            loop {
                s.softirq_pending = pass(s);
                if !s.softirq_pending {
                    break;
                }
                restarts += 1;
                if restarts >= s.restarts {
                    // Past the restart limit: ksoftirqd takes over at task level.
                    s.ksoftirqd_wakeups += 1;
                    s.ksoftirqd_woken = true;
                    break;
                }
            }
            cpu::cli();
            // A nested top half may have marked work after the last pass looked: look again
            // now that nothing can interrupt (else the mark is lost with its packet).
            s.softirq_pending |= done(s.next);
            s.in_bottom_half = false;
            // The trace shows each bottom-half run (its exits, in lockstep mode) as `softirq`.
            if crate::trace::enabled() {
                crate::trace::record(
                    irqlab_abi::trace::WORK_VECTOR,
                    crate::percpu::cpu_index() as u8,
                    irqlab_abi::trace::KIND_SOFTIRQ,
                    bottom_half_start,
                    cpu::rdtsc(),
                );
            }
        }
    }
    s.in_nic = was_in_nic;
}

fn late_nic() {}
fn late_tick() {}

/// The task-level loop: ksoftirqd's work when the bottom half handed it over, else sleep.
fn run_once(boot: &Boot, design: Design, rate: u64, packets: u64, hz: u64) -> (u64, u64, bool) {
    let khz = boot.info.tsc_khz.max(1);
    let s = st();
    s.design = design;
    s.next = 0;
    s.processed = 0;
    s.in_nic = false;
    s.in_bottom_half = false;
    s.in_ksoftirqd = false;
    s.ksoftirqd_woken = false;
    s.softirq_pending = false;
    s.ksoftirqd_wakeups = 0;
    s.ksoftirqd_processed = 0;
    s.bottom_half_runs = 0;
    s.nested_top_halves = 0;
    s.ticks = 0;
    s.ticks_in_nic = 0;
    s.ticks_in_bottom_half = 0;
    s.lateness_len = 0;
    s.period = (khz * 1000 / hz).max(1);
    nic::clear_ring();
    nic::program(None, rate, packets);
    interrupts::register(NIC_VECTOR, on_nic);
    interrupts::register(vectors::LAPIC_TIMER, on_tick);
    LAPIC.start_timer(TimerMode::TscDeadline, vectors::LAPIC_TIMER, 0);
    s.deadline = cpu::rdtsc() + s.period;
    LAPIC.set_tsc_deadline(s.deadline);
    let give_up = cpu::rdtsc() + (packets / 100 + 10_000) * khz;
    wr(reg::CONTROL, reg::CTRL_START);
    let finished = loop {
        cpu::cli();
        let s = st();
        if s.softirq_pending {
            // ksoftirqd: the rest of the work, at task level, interrupts on, softirqs
            // disabled (Linux's `local_bh_disable`): a NIC interrupt meanwhile only marks more
            // work instead of running a second bottom half over the same ring.
            s.in_ksoftirqd = true;
            cpu::sti();
            let before = st().processed;
            let more = pass(st());
            cpu::cli();
            let s = st();
            s.softirq_pending |= more;
            if !more {
                s.softirq_pending = done(s.next);
            }
            // No work left: ksoftirqd sleeps, and interrupt exits run softirqs again.
            if !s.softirq_pending {
                s.ksoftirqd_woken = false;
            }
            s.in_ksoftirqd = false;
            s.ksoftirqd_processed += s.processed - before;
            continue;
        }
        if !nic::busy() && !done(s.next) {
            break true;
        }
        if cpu::rdtsc() > give_up {
            break false;
        }
        cpu::sti_hlt();
    };
    // Two more ticks, so a tick held back by the last of the work is measured too.
    let target = st().ticks + 2;
    while finished && st().ticks < target && cpu::rdtsc() < give_up {
        cpu::sti_hlt();
        cpu::cli();
    }
    LAPIC.stop_timer();
    wr(reg::IMC, reg::ICR_ALL);
    interrupts::register(NIC_VECTOR, late_nic);
    interrupts::register(vectors::LAPIC_TIMER, late_tick);
    cpu::sti();
    (
        u64::from(rd(reg::SENT)),
        u64::from(rd(reg::DROPPED)),
        finished,
    )
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    if !nic::present() {
        skip!("softirq", "no NIC device");
        return;
    }
    if boot.info.tsc_khz == 0 {
        skip!("softirq", "the VMM did not report the TSC frequency");
        return;
    }
    if !crate::apic::has_tsc_deadline() {
        skip!(
            "softirq",
            "the urgent device is the TSC-deadline timer: CPUID.01H:ECX[24] is clear"
        );
        return;
    }
    let c = &boot.cmdline;
    let rate = c.get_u64_clamped("rate", 20_000, 0, 1_000_000);
    let packets = c.get_u64_clamped("packets", 10_000, 100, 1_000_000);
    let hz = c.get_u64_clamped("hz", 1000, 10, 10_000);
    let s = st();
    s.work = c.get_u64_clamped("work", 20, 0, 1_000_000);
    s.budget = c.get_u64_clamped("budget", 64, 1, nic::RING as u64);
    s.restarts = c.get_u64_clamped("restarts", 10, 1, 1000);
    let khz = boot.info.tsc_khz.max(1);
    println!(
        "SOFTIRQ columns: design sent processed drops ticks ticks_inside_nic_handler ticks_inside_bottom_half bottom_halves nested_top_halves ksoftirqd late_p50_us late_p99_us late_max_us"
    );
    let mut hard_blocked = None;
    let mut soft = None;
    for design in [Design::Hard, Design::Softirq] {
        cpu::cli();
        idt::set_ist(NIC_VECTOR, 0);
        idt::set_ist(vectors::LAPIC_TIMER, 0);
        let (sent, drops, finished) = run_once(boot, design, rate, packets, hz);
        cpu::cli();
        idt::set_ist(NIC_VECTOR, idt::ist_for(NIC_VECTOR));
        idt::set_ist(vectors::LAPIC_TIMER, idt::ist_for(vectors::LAPIC_TIMER));
        cpu::sti();
        let s = st();
        let max = s.lateness[..s.lateness_len]
            .iter()
            .copied()
            .max()
            .unwrap_or(0);
        let max = u64::from(max) * 1000 / khz;
        let (p50, p99) = match Stats::of(&mut s.lateness[..s.lateness_len]) {
            Some(l) => (
                u64::from(l.median) * 1000 / khz,
                u64::from(l.p99) * 1000 / khz,
            ),
            None => (0, 0),
        };
        println!(
            "SOFTIRQ {} {} {} {} {} {} {} {} {} {} {} {} {}",
            design.name(),
            Dec(sent),
            Dec(s.processed),
            Dec(drops),
            Dec(s.ticks),
            Dec(s.ticks_in_nic - s.ticks_in_bottom_half),
            Dec(s.ticks_in_bottom_half),
            Dec(s.bottom_half_runs),
            Dec(s.nested_top_halves),
            Dec(s.ksoftirqd_wakeups),
            Dec(p50),
            Dec(p99),
            Dec(max)
        );
        if !finished || sent != s.processed + drops {
            fail!(
                "softirq-accounting",
                "{}: sent {} != processed {} + dropped {}{}",
                design.name(),
                Dec(sent),
                Dec(s.processed),
                Dec(drops),
                if finished {
                    ""
                } else {
                    " (the run did not finish)"
                }
            );
            return;
        }
        match design {
            Design::Hard => hard_blocked = Some(s.ticks_in_nic),
            Design::Softirq => {
                soft = Some((
                    s.ticks_in_bottom_half,
                    s.ksoftirqd_wakeups,
                    s.bottom_half_runs,
                    s.ksoftirqd_processed,
                ))
            }
        }
    }
    check!(
        true,
        "softirq-accounting",
        "every packet processed or counted as dropped, in both designs"
    );
    if let Some(n) = hard_blocked {
        check!(
            n == 0,
            "softirq-hard-blocks",
            "all work in the hard handler: {} ticks started inside it (interrupts stay off there)",
            Dec(n)
        );
    }
    if let Some((preempted, handed, runs, by_ksoftirqd)) = soft {
        check!(
            preempted > 0,
            "softirq-preempted",
            "{} ticks started inside the bottom half ({} bottom-half runs): it runs with interrupts on",
            Dec(preempted),
            Dec(runs)
        );
        if handed > 0 {
            check!(
                by_ksoftirqd > 0,
                "softirq-ksoftirqd",
                "the restart limit handed work to ksoftirqd {} times; it processed {} packets at task level",
                Dec(handed),
                Dec(by_ksoftirqd)
            );
        } else {
            skip!(
                "softirq-ksoftirqd",
                "no bottom half reached the restart limit in this run (try restarts=1)"
            );
        }
    }
}
