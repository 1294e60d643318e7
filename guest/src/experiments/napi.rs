//! `run=napi`: receiving packets from the NIC-like ring device (`docs/nic.md`) three ways, at
//! several packet rates — the textbook receive-livelock experiment.
//!
//! - **`irq`** (interrupt per packet): the device interrupts whenever a packet arrives and no
//!   interrupt is pending; the handler (top half, interrupts off) moves every finished
//!   descriptor into a software backlog (Linux's `netif_rx`) and returns it to the device; the
//!   packets are *processed* later, at task level with interrupts on. Past the rate at which
//!   interrupts alone fill the CPU, processing starves: the backlog overflows and what is
//!   processed collapses (receive livelock, Mogul & Ramakrishnan 1997).
//! - **`napi`**: the first interrupt masks the device (IMC) and schedules a poll; the poll loop
//!   processes up to `budget` (64) packets straight from the ring per pass and unmasks the
//!   device (IMS) only when the ring is empty. Under load interrupts stop and the CPU
//!   processes at full speed; the excess is dropped by the device, for free.
//! - **`posted`**: as `irq`, but the device posts its vector into this CPU's posted-interrupt
//!   descriptor (PIR) and notifies only on ON's 0 → 1 edge: several packets per notification.
//!
//! Per run the guest prints one `NAPI` line: packets sent, processed, dropped by the device
//! (ring full) and by the backlog, interrupts (handler runs) per packet, latency from the
//! device's descriptor write to processing (p50/p99, µs), and the share of guest time in
//! handlers and processing. The check (`napi-accounting`): every packet the device generated is
//! processed or counted as dropped. Words: `design=irq|napi|posted|all` (default all),
//! `rates=1000,10000,100000,0` (packets/s; 0 = back to back, as fast as the device's thread
//! writes), `ms=400` (per run), `work=20` (processing loop iterations per packet),
//! `budget=64`.

use super::nic::{done, rd, take, wr, NIC_VECTOR, RING};
use super::{mark, MARK_WINDOW_END, MARK_WINDOW_START};
use crate::boot::Boot;
use crate::boot_cell::BootCpuCell;
use crate::fmt::Dec;
use crate::{check, cpu, fail, interrupts, println, skip};
use core::sync::atomic::{AtomicBool, Ordering};
use irqlab_abi::layout::NIC_BASE;
use irqlab_abi::nic as reg;
use irqlab_guest_core::stats::Stats;

/// Latency samples kept per run.
const SAMPLES: usize = 4096;
/// Most packets the backlog holds (Linux's `netdev_max_backlog` is 1000).
const BACKLOG_MAX: usize = 1024;
/// Packets in a back-to-back run (`rates=0`).
const BACK_TO_BACK_PACKETS: u64 = 20_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Design {
    Irq,
    Napi,
    Posted,
}

impl Design {
    fn name(self) -> &'static str {
        match self {
            Design::Irq => "irq",
            Design::Napi => "napi",
            Design::Posted => "posted",
        }
    }
}

/// Everything one run counts (boot CPU only; task level disables interrupts around every
/// update the handler also makes).
struct State {
    design: Design,
    next: usize,
    backlog: [u64; BACKLOG_MAX],
    backlog_head: usize,
    backlog_len: usize,
    backlog_drops: u64,
    processed: u64,
    handler_runs: u64,
    handler_cycles: u64,
    process_cycles: u64,
    poll_passes: u64,
    tsc_offset: u64,
    work: u64,
    latency: [u32; SAMPLES],
    latency_len: usize,
}

/// Boot CPU only; who may touch what: see `State`.
static STATE: BootCpuCell<State> = BootCpuCell::new(State {
    design: Design::Irq,
    next: 0,
    backlog: [0; BACKLOG_MAX],
    backlog_head: 0,
    backlog_len: 0,
    backlog_drops: 0,
    processed: 0,
    handler_runs: 0,
    handler_cycles: 0,
    process_cycles: 0,
    poll_passes: 0,
    tsc_offset: 0,
    work: 20,
    latency: [0; SAMPLES],
    latency_len: 0,
});

#[allow(clippy::mut_from_ref)]
fn st() -> &'static mut State {
    // SAFETY: boot CPU; callers do not hold it across a point where the other context runs
    // (task level disables interrupts around its updates).
    unsafe { STATE.get() }
}

/// NAPI: a poll is scheduled (set by the handler, cleared by the poll loop).
static NAPI_SCHEDULED: AtomicBool = AtomicBool::new(false);

/// One packet's processing (the protocol work the top half defers): `work` loop iterations,
/// then its latency.
fn process(s: &mut State, tsc: u64) {
    let t0 = cpu::rdtsc();
    let mut x = s.work;
    while x > 0 {
        x = core::hint::black_box(x) - 1;
    }
    let now = cpu::rdtsc();
    s.process_cycles += now.wrapping_sub(t0);
    s.processed += 1;
    if s.latency_len < SAMPLES {
        let written = tsc.wrapping_add(s.tsc_offset);
        s.latency[s.latency_len] = now.saturating_sub(written).min(u64::from(u32::MAX)) as u32;
        s.latency_len += 1;
    }
}

/// The device's interrupt (and, in posted mode, the vector harvested from the PIR).
fn on_nic() {
    let s = st();
    let t0 = cpu::rdtsc();
    s.handler_runs += 1;
    let _causes = rd(reg::ICR);
    match s.design {
        Design::Napi => {
            wr(reg::IMC, reg::ICR_ALL);
            NAPI_SCHEDULED.store(true, Ordering::Release);
        }
        Design::Irq | Design::Posted => {
            let mut moved = false;
            while done(s.next) {
                let tsc = take(s.next);
                s.next = (s.next + 1) % RING;
                moved = true;
                if s.backlog_len < BACKLOG_MAX {
                    s.backlog[(s.backlog_head + s.backlog_len) % BACKLOG_MAX] = tsc;
                    s.backlog_len += 1;
                } else {
                    s.backlog_drops += 1;
                }
            }
            if moved {
                super::nic::give_back(s.next);
            }
        }
    }
    s.handler_cycles += cpu::rdtsc().wrapping_sub(t0);
}

/// What a NIC interrupt arriving after the experiment does: nothing (the EOI follows).
fn late_nic() {}

/// One NAPI poll pass: up to `budget` packets from the ring; returns how many.
fn poll(budget: u64) -> u64 {
    let t0 = cpu::rdtsc();
    let n = poll_pass(budget);
    // The trace shows each pass (its exits, in lockstep mode) as source `napi-poll`.
    if crate::trace::enabled() {
        crate::trace::record(
            irqlab_abi::trace::WORK_VECTOR,
            crate::percpu::cpu_index() as u8,
            irqlab_abi::trace::KIND_NAPI_POLL,
            t0,
            cpu::rdtsc(),
        );
    }
    n
}

fn poll_pass(budget: u64) -> u64 {
    let s = st();
    s.poll_passes += 1;
    let mut n = 0;
    while n < budget && done(s.next) {
        let tsc = take(s.next);
        s.next = (s.next + 1) % RING;
        process(s, tsc);
        n += 1;
    }
    if n > 0 {
        super::nic::give_back(s.next);
    }
    n
}

/// The device's view of one run.
struct Outcome {
    sent: u64,
    delivered: u64,
    ring_drops: u64,
    irqs: u64,
    finished: bool,
    cycles: u64,
}

fn reset_state(design: Design) {
    let s = st();
    s.design = design;
    s.next = 0;
    s.backlog_head = 0;
    s.backlog_len = 0;
    s.backlog_drops = 0;
    s.processed = 0;
    s.handler_runs = 0;
    s.handler_cycles = 0;
    s.process_cycles = 0;
    s.poll_passes = 0;
    s.latency_len = 0;
    NAPI_SCHEDULED.store(false, Ordering::Relaxed);
    super::nic::clear_ring();
}

/// Whether the run is over: the device generated everything and nothing is left to process.
fn drained() -> bool {
    !super::nic::busy() && !done(st().next) && st().backlog_len == 0
}

/// NAPI's task-level step: a poll pass if one is scheduled (true), else false.
fn napi_step(budget: u64) -> bool {
    if !NAPI_SCHEDULED.load(Ordering::Acquire) {
        return false;
    }
    cpu::sti();
    if poll(budget) < budget {
        cpu::cli();
        // Ring empty: clear the causes gathered while masked, unmask, and look once more (a
        // packet written in between would otherwise wait for the next one's interrupt).
        let _ = rd(reg::ICR);
        NAPI_SCHEDULED.store(false, Ordering::Release);
        wr(reg::IMS, reg::ICR_ALL);
        if done(st().next) {
            wr(reg::IMC, reg::ICR_ALL);
            NAPI_SCHEDULED.store(true, Ordering::Release);
        }
    }
    true
}

/// The interrupt-per-packet designs' task-level step: process one backlog packet (true).
fn backlog_step() -> bool {
    let s = st();
    if s.backlog_len == 0 {
        return false;
    }
    let tsc = s.backlog[s.backlog_head];
    s.backlog_head = (s.backlog_head + 1) % BACKLOG_MAX;
    s.backlog_len -= 1;
    cpu::sti();
    process(st(), tsc);
    true
}

fn one_run(boot: &Boot, design: Design, rate: u64, ms: u64, budget: u64) -> Outcome {
    // Rate 0: back to back, as fast as the device's thread writes descriptors.
    let count = if rate == 0 {
        BACK_TO_BACK_PACKETS
    } else {
        (rate * ms / 1000).clamp(10, 1_000_000)
    };
    // Reset with interrupts off: a NIC interrupt still on its way must not push stale
    // descriptors into the fresh backlog.
    cpu::cli();
    reset_state(design);
    let pid = (design == Design::Posted).then(|| crate::posted::descriptor_addr(0));
    st().tsc_offset = super::nic::program(pid, rate, count);
    let khz = boot.info.tsc_khz.max(1);
    let deadline = cpu::rdtsc() + (ms * 4 + 5000) * khz;
    mark(MARK_WINDOW_START);
    let start = cpu::rdtsc();
    wr(reg::CONTROL, reg::CTRL_START);
    let finished = loop {
        cpu::cli();
        let worked = match design {
            Design::Napi => napi_step(budget),
            Design::Irq | Design::Posted => backlog_step(),
        };
        if worked {
            continue;
        }
        if design == Design::Posted {
            crate::posted::harvest(0);
        }
        if drained() {
            break true;
        }
        if cpu::rdtsc() > deadline {
            break false;
        }
        cpu::sti_hlt();
    };
    let cycles = cpu::rdtsc().wrapping_sub(start);
    mark(MARK_WINDOW_END);
    // A run that timed out leaves the device busy: stop it, so the next run's configuration
    // is not ignored (configuration registers are read-only while busy).
    wr(reg::CONTROL, reg::CTRL_STOP);
    wr(reg::IMC, reg::ICR_ALL);
    cpu::sti();
    Outcome {
        sent: u64::from(rd(reg::SENT)),
        delivered: u64::from(rd(reg::DELIVERED)),
        ring_drops: u64::from(rd(reg::DROPPED)),
        irqs: u64::from(rd(reg::IRQS)),
        finished,
        cycles,
    }
}

/// Prints `n / d` with two decimals.
struct Ratio(u64, u64);
impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hundredths = (u128::from(self.0) * 100 / u128::from(self.1.max(1))) as u64;
        write!(
            f,
            "{}.{}{}",
            Dec(hundredths / 100),
            Dec(hundredths / 10 % 10),
            Dec(hundredths % 10)
        )
    }
}

/// The `rates=` list; `None` after a FAIL line.
fn parse_rates(list: &str, out: &mut [u64; 8]) -> Option<usize> {
    let mut n = 0;
    for r in list.split(',') {
        match r.parse::<u64>() {
            Ok(v) if v <= 1_000_000 && n < out.len() => {
                out[n] = v;
                n += 1;
            }
            _ => {
                fail!(
                    "napi",
                    "bad rates= entry {:?} (0..1000000 packets/s, 0 = back to back, at most 8)",
                    r
                );
                return None;
            }
        }
    }
    Some(n)
}

/// Offered load of a rate (0 = back to back = the most).
fn load(rate: u64) -> u64 {
    if rate == 0 {
        u64::MAX
    } else {
        rate
    }
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    if !super::nic::present() {
        skip!(
            "napi",
            "no NIC at {:#x} (ID reads {:#x})",
            NIC_BASE,
            rd(reg::ID)
        );
        return;
    }
    let c = &boot.cmdline;
    let designs: &[Design] = match c.get("design").unwrap_or("all") {
        "irq" => &[Design::Irq],
        "napi" => &[Design::Napi],
        "posted" => &[Design::Posted],
        "all" => &[Design::Irq, Design::Napi, Design::Posted],
        other => {
            fail!("napi", "unknown design={} (irq, napi, posted, all)", other);
            return;
        }
    };
    let mut rates = [0u64; 8];
    let Some(nrates) = parse_rates(c.get("rates").unwrap_or("1000,10000,100000,0"), &mut rates)
    else {
        return;
    };
    let rates = &rates[..nrates];
    let ms = c.get_u64_clamped("ms", 400, 50, 10_000);
    let budget = c.get_u64_clamped("budget", 64, 1, RING as u64);
    st().work = c.get_u64_clamped("work", 20, 0, 1_000_000);
    let highest = rates.iter().map(|&r| load(r)).max().unwrap_or(0);
    interrupts::register(NIC_VECTOR, on_nic);
    let khz = boot.info.tsc_khz.max(1);
    println!(
        "NAPI columns: design rate sent processed ring_drops backlog_drops irqs irqs/pkt p50_us p99_us handler% process% polls"
    );
    let mut all_accounted = true;
    let mut napi_high: Option<(u64, u64)> = None;
    for &design in designs {
        if design == Design::Posted && !crate::posted::available() {
            skip!(
                "napi-posted",
                "the VMM provided no posted-interrupt descriptors"
            );
            continue;
        }
        for &rate in rates {
            let o = one_run(boot, design, rate, ms, budget);
            let s = st();
            let (p50, p99) = match Stats::of(&mut s.latency[..s.latency_len]) {
                Some(l) => (
                    u64::from(l.median) * 1000 / khz,
                    u64::from(l.p99) * 1000 / khz,
                ),
                None => (0, 0),
            };
            // Posted: the handler runs once per harvested vector; the device's IRQS counts
            // posts.
            let irqs = if design == Design::Posted {
                s.handler_runs
            } else {
                o.irqs
            };
            println!(
                "NAPI {} {} {} {} {} {} {} {} {} {} {} {} {}",
                design.name(),
                Dec(rate),
                Dec(o.sent),
                Dec(s.processed),
                Dec(o.ring_drops),
                Dec(s.backlog_drops),
                Dec(irqs),
                Ratio(irqs, s.processed),
                Dec(p50),
                Dec(p99),
                Ratio(s.handler_cycles * 100, o.cycles),
                Ratio(s.process_cycles * 100, o.cycles),
                Dec(s.poll_passes)
            );
            let accounted = o.finished
                && o.sent == o.delivered + o.ring_drops
                && o.sent == s.processed + o.ring_drops + s.backlog_drops;
            if !accounted {
                all_accounted = false;
                fail!(
                    "napi-accounting",
                    "{} at {}/s: sent {} != processed {} + ring drops {} + backlog drops {}{}",
                    design.name(),
                    Dec(rate),
                    Dec(o.sent),
                    Dec(s.processed),
                    Dec(o.ring_drops),
                    Dec(s.backlog_drops),
                    if o.finished {
                        ""
                    } else {
                        " (the run did not finish)"
                    }
                );
            }
            if design == Design::Napi && load(rate) == highest {
                napi_high = Some((irqs, s.processed));
            }
        }
    }
    // A message already on its way when the device was masked still arrives: not unexpected.
    interrupts::register(NIC_VECTOR, late_nic);
    if all_accounted {
        check!(
            true,
            "napi-accounting",
            "every packet the device generated was processed or counted as dropped, in every run"
        );
    }
    match napi_high {
        // Below ~100k packets/s a fast CPU empties the ring between packets and NAPI rightly
        // re-enables the interrupt each time: the claim is about overload.
        Some((irqs, processed)) if highest >= 100_000 => check!(
            irqs * 10 < processed.max(1),
            "napi-mitigation",
            "NAPI at the highest offered load took {} interrupts for {} packets (< 0.1 per packet)",
            Dec(irqs),
            Dec(processed)
        ),
        Some(_) => skip!(
            "napi-mitigation",
            "judged only at 100000 packets/s or back to back (rates=...,0)"
        ),
        None => {}
    }
}
