//! `run=nesting` (issue 15): interrupt priority classes, nested handlers, TPR masking and a
//! reentrancy hazard, on one CPU, driven by LAPIC self-IPIs (no timing, no `int n`).
//!
//! The local APIC ranks a vector by its *priority class*, `vector >> 4` (Intel SDM vol. 3
//! §11.8.3). It delivers the highest pending vector in the IRR only if that class is above
//! the processor priority, PPR = max(TPR class, class of the highest vector in service),
//! and EOI clears the highest ISR bit (§11.8.5). Three scenarios:
//!
//! 1. **Preemption** ([`priorities`]): 0x31's handler (class 3) enables interrupts and raises
//!    0x51 (class 5), which preempts it at once (depth 2); 0x51's handler does the same with
//!    0x61 (depth 3). Back in 0x31, it raises 0x32 (its own class) and 0x21 (a lower one):
//!    both wait in the IRR until 0x31's EOI, then run one after the other, higher class first.
//! 2. **TPR** (`tpr`): with TPR = 0x40, 0x41 (class 4) waits in the IRR while 0x52
//!    (class 5) runs; writing CR8 = 0 (CR8 is TPR bits 7:4) lets 0x41 in.
//! 3. **Reentrancy** (`hazard`): a handler's read-modify-write of a shared counter, with
//!    a nested interrupt forced into it, loses the nested update; the same update with
//!    interrupts off around it loses none.
//!
//! **Stacks.** Every gate names an IST stack (`idt::ist_for`), and the CPU loads RSP from the
//! gate's IST slot on *every* delivery through it, nested or not: a second interrupt through
//! IST 1 while a handler runs on IST 1 with interrupts enabled would start at that stack's
//! top again and overwrite the first handler's frame. So while this experiment runs, the
//! vectors that enable interrupts in their handlers or nest inside one (`ON_CURRENT_STACK`)
//! get IST 0: the CPU stays on the interrupted stack and pushes the new frame below the
//! interrupted one — the boot stack the experiment runs on, as Linux's device interrupts
//! nest on the interrupted kernel stack. IST 0 is safe in ring 0 only if the interrupted code
//! keeps nothing below RSP (the red zone): this kernel is compiled without one, the
//! precompiled libcore is not, so interrupts are enabled only around code of this module
//! (spin loops, atomics, LAPIC accesses; never a print or another libcore call). The other
//! device vectors keep IST 1, which is then empty whenever interrupts are on: a stray device
//! interrupt there lands on a free stack. Every gate and the TPR are put back at the end.

mod hazard;
mod tpr;

use crate::apic::LAPIC;
use crate::boot::Boot;
use crate::fmt::Dec;
use crate::{cpu, gdt, idt, interrupts, vectors};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use vectors::{
    NEST_HAZARD, NEST_HAZARD_NESTED, NEST_HIGH, NEST_HIGHER, NEST_LOW, NEST_LOWER, NEST_SAME,
    NEST_TPR_ABOVE, NEST_TPR_HELD,
};

/// The vectors whose gates get IST 0 while the experiment runs: their handlers enable
/// interrupts, or they arrive nested inside such a handler.
const ON_CURRENT_STACK: [u8; 5] = [
    NEST_LOW,
    NEST_HIGH,
    NEST_HIGHER,
    NEST_HAZARD,
    NEST_HAZARD_NESTED,
];

/// LAPIC registers read or written here (`apic` keeps the ones the other experiments use).
const TPR: u64 = 0x80;
const PPR: u64 = 0xa0;
const ISR: u64 = 0x100;
const IRR: u64 = 0x200;

fn lapic_read(offset: u64) -> u32 {
    // SAFETY: the identity-mapped, uncached LAPIC window; 32-bit registers, 16-byte aligned.
    unsafe { core::ptr::read_volatile((irqlab_abi::layout::LAPIC_BASE + offset) as *const u32) }
}

fn lapic_write(offset: u64, value: u32) {
    // SAFETY: as in `lapic_read`; TPR is the only register written here.
    unsafe {
        core::ptr::write_volatile((irqlab_abi::layout::LAPIC_BASE + offset) as *mut u32, value)
    }
}

/// Bit `v` of the 256-bit register (IRR, ISR) starting at `base`: eight 32-bit words 16
/// bytes apart.
fn bit(base: u64, v: u8) -> bool {
    lapic_read(base + 0x10 * u64::from(v / 32)) & (1 << (v % 32)) != 0
}

/// Whether `v` waits in the IRR (accepted by the LAPIC, not yet delivered).
fn pending(v: u8) -> bool {
    bit(IRR, v)
}

/// Whether `v` is in service (delivered, no EOI yet).
fn in_service(v: u8) -> bool {
    bit(ISR, v)
}

/// `sti`, and a compiler barrier: no memory access of this module moves across it (the
/// reentrancy scenario depends on where its read and write are). `cpu::sti` is one too now;
/// this module keeps its own pair so the scenario states it where it matters.
fn irq_on() {
    // SAFETY: the IDT is loaded; see the module comment for the stacks.
    unsafe { core::arch::asm!("sti", options(nostack)) };
}

/// `cli`, and a compiler barrier (see [`irq_on`]).
fn irq_off() {
    // SAFETY: disabling interrupts is always safe for this kernel.
    unsafe { core::arch::asm!("cli", options(nostack)) };
}

fn rsp() -> u64 {
    let v: u64;
    // SAFETY: reads the stack pointer.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// True while the scenarios run: the handlers raise the next vector and enable interrupts
/// only then (a vector that arrives after the gates were put back just logs itself).
static ARMED: AtomicBool = AtomicBool::new(false);
/// TSC cycles a spin waits at most for something that should happen at once (2 s).
static BUDGET: AtomicU64 = AtomicU64::new(0);
/// Handlers running now (0: the experiment's own code), and the most seen.
static DEPTH: AtomicU32 = AtomicU32::new(0);
static MAX_DEPTH: AtomicU32 = AtomicU32::new(0);
/// Per vector: handler exits, and RSP and PPR at the last entry.
static DONE: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static RSP_AT: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
static PPR_AT: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static DEPTH_AT: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
/// Which of 0x31, 0x51 and 0x61 (bits 0, 1, 2) the ISR showed in service while 0x61 ran.
static ISR_AT_DEPTH_3: AtomicU32 = AtomicU32::new(0);

/// The order log: events packed as `vector | event << 8 | depth << 16`.
const LOG_CAP: usize = 32;
static LOG: [AtomicU32; LOG_CAP] = [const { AtomicU32::new(0) }; LOG_CAP];
static LOG_LEN: AtomicUsize = AtomicUsize::new(0);
const ENTER: u32 = 0;
const EXIT: u32 = 1;
const HELD: u32 = 2;

fn log(vector: u8, event: u32, depth: u32) {
    let i = LOG_LEN.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = LOG.get(i) {
        slot.store(
            u32::from(vector) | event << 8 | depth << 16,
            Ordering::Relaxed,
        );
    }
}

fn log_reset() {
    LOG_LEN.store(0, Ordering::Relaxed);
}

/// Whether the log holds exactly `want` (vector, event, depth).
fn log_is(want: &[(u8, u32, u32)]) -> bool {
    LOG_LEN.load(Ordering::Relaxed) == want.len()
        && want
            .iter()
            .zip(LOG.iter())
            .all(|(&(v, e, d), got)| got.load(Ordering::Relaxed) == u32::from(v) | e << 8 | d << 16)
}

/// Whether the log begins with `want`.
fn log_starts_with(want: &[(u8, u32, u32)]) -> bool {
    LOG_LEN.load(Ordering::Relaxed) >= want.len()
        && want
            .iter()
            .zip(LOG.iter())
            .all(|(&(v, e, d), got)| got.load(Ordering::Relaxed) == u32::from(v) | e << 8 | d << 16)
}

/// Prints the log as `0x31 enter, 0x51 enter (depth 2), ..., 0x32 held in IRR, ...`.
fn print_log(what: &str) {
    crate::print!("nesting: {}", what);
    let n = LOG_LEN.load(Ordering::Relaxed).min(LOG_CAP);
    for (i, e) in LOG.iter().take(n).enumerate() {
        let e = e.load(Ordering::Relaxed);
        let (v, event, depth) = (e & 0xff, (e >> 8) & 0xff, e >> 16);
        crate::print!("{}{:#x}", if i == 0 { " " } else { ", " }, v);
        match event {
            ENTER if depth > 1 => crate::print!(" enter (depth {})", Dec(depth.into())),
            ENTER => crate::print!(" enter"),
            EXIT => crate::print!(" exit"),
            _ => crate::print!(" held in IRR"),
        }
    }
    crate::println!("");
}

/// A handler's first step (interrupts off): depth, RSP, PPR, the log.
fn enter(v: u8) {
    let depth = DEPTH.fetch_add(1, Ordering::Relaxed) + 1;
    MAX_DEPTH.fetch_max(depth, Ordering::Relaxed);
    RSP_AT[usize::from(v)].store(rsp(), Ordering::Relaxed);
    PPR_AT[usize::from(v)].store(lapic_read(PPR), Ordering::Relaxed);
    DEPTH_AT[usize::from(v)].store(depth, Ordering::Relaxed);
    log(v, ENTER, depth);
}

/// A handler's last step (interrupts off again).
fn exit(v: u8) {
    DEPTH.fetch_sub(1, Ordering::Relaxed);
    DONE[usize::from(v)].fetch_add(1, Ordering::Relaxed);
    log(v, EXIT, 0);
}

fn done(v: u8) -> bool {
    DONE[usize::from(v)].load(Ordering::Relaxed) != 0
}

fn armed() -> bool {
    ARMED.load(Ordering::Relaxed)
}

/// Spins (interrupts as they are) until `cond()`, at most [`BUDGET`] TSC cycles; whether
/// `cond()` held. Only inlined code of this kernel runs in it, so it may be interrupted
/// through an IST-0 gate. `cond()` is tested once more after the deadline: the interrupt it
/// waits for may have arrived, and taken long, between the test and the clock read.
#[inline(always)]
fn spin_until(cond: impl Fn() -> bool) -> bool {
    let end = cpu::rdtsc() + BUDGET.load(Ordering::Relaxed);
    loop {
        if cond() {
            return true;
        }
        if cpu::rdtsc() > end {
            return cond();
        }
        core::hint::spin_loop();
    }
}

/// 0x31, class 3: enables interrupts, raises a higher class (preempts it) and then its own
/// and a lower class (both wait for its EOI).
fn low() {
    enter(NEST_LOW);
    if armed() {
        irq_on();
        LAPIC.self_ipi(NEST_HIGH);
        spin_until(|| done(NEST_HIGH));
        LAPIC.self_ipi(NEST_SAME);
        LAPIC.self_ipi(NEST_LOWER);
        // Interrupts are on, yet both stay in the IRR: PPR is 0x30 while 0x31 is in service.
        // Re-read a few times, so a LAPIC that wrongly delivered them had every chance to.
        // (`done`: a LAPIC that wrongly delivered them ends the wait too, see `priorities`.)
        spin_until(|| {
            (pending(NEST_SAME) || done(NEST_SAME)) && (pending(NEST_LOWER) || done(NEST_LOWER))
        });
        let (mut same_held, mut lower_held) = (true, true);
        for _ in 0..16 {
            same_held &= pending(NEST_SAME) && !done(NEST_SAME);
            lower_held &= pending(NEST_LOWER) && !done(NEST_LOWER);
        }
        let depth = DEPTH.load(Ordering::Relaxed);
        if same_held {
            log(NEST_SAME, HELD, depth);
        }
        if lower_held {
            log(NEST_LOWER, HELD, depth);
        }
        irq_off();
    }
    exit(NEST_LOW);
}

/// 0x51, class 5: preempts 0x31, and is preempted in turn by 0x61.
fn high() {
    enter(NEST_HIGH);
    if armed() {
        irq_on();
        LAPIC.self_ipi(NEST_HIGHER);
        spin_until(|| done(NEST_HIGHER));
        irq_off();
    }
    exit(NEST_HIGH);
}

/// 0x61, class 6: the innermost handler (interrupts stay off).
fn higher() {
    enter(NEST_HIGHER);
    let isr = [NEST_LOW, NEST_HIGH, NEST_HIGHER]
        .iter()
        .enumerate()
        .fold(0, |m, (i, &v)| m | u32::from(in_service(v)) << i);
    ISR_AT_DEPTH_3.store(isr, Ordering::Relaxed);
    exit(NEST_HIGHER);
}

fn same() {
    enter(NEST_SAME);
    exit(NEST_SAME);
}

fn lower() {
    enter(NEST_LOWER);
    exit(NEST_LOWER);
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let rounds = boot.cmdline.get_u64_clamped("rounds", 16, 1, 1000) as u32;
    let khz = if boot.info.tsc_khz == 0 {
        3_000_000
    } else {
        boot.info.tsc_khz
    };
    BUDGET.store(2000 * khz, Ordering::Relaxed);
    irq_off();
    let tpr_before = lapic_read(TPR);
    lapic_write(TPR, 0);
    for (v, h) in [
        (NEST_LOW, low as fn()),
        (NEST_HIGH, high),
        (NEST_HIGHER, higher),
        (NEST_SAME, same),
        (NEST_LOWER, lower),
        (NEST_TPR_HELD, tpr::held),
        (NEST_TPR_ABOVE, tpr::above),
        (NEST_HAZARD, hazard::outer),
        (NEST_HAZARD_NESTED, hazard::nested),
    ] {
        interrupts::register(v, h);
    }
    for v in ON_CURRENT_STACK {
        idt::set_ist(v, 0);
    }
    ARMED.store(true, Ordering::Relaxed);

    let pvm = boot.info.host() == irqlab_abi::boot_info::HostKind::Pvm;
    priorities(pvm);
    tpr::run();
    hazard::run(rounds);

    // Put everything back with interrupts off; a vector still pending (only after a failed
    // check) then arrives on its usual IST stack and, disarmed, just logs itself.
    irq_off();
    ARMED.store(false, Ordering::Relaxed);
    for v in ON_CURRENT_STACK {
        idt::set_ist(v, idt::ist_for(v));
    }
    lapic_write(TPR, tpr_before);
    let gates_back = ON_CURRENT_STACK
        .iter()
        .all(|&v| idt::gate(v).is_some_and(|g| g.ist == idt::ist_for(v)));
    let ours = [
        NEST_LOW,
        NEST_HIGH,
        NEST_HIGHER,
        NEST_SAME,
        NEST_LOWER,
        NEST_TPR_HELD,
        NEST_TPR_ABOVE,
        NEST_HAZARD,
        NEST_HAZARD_NESTED,
    ];
    let left = ours
        .iter()
        .filter(|&&v| pending(v) || in_service(v))
        .count();
    crate::check!(
        gates_back && lapic_read(TPR) == tpr_before && left == 0 && gdt::stacks_intact(),
        "nesting-restored",
        "gates of {:#x} {:#x} {:#x} {:#x} {:#x} back on IST {}: {}, TPR back to {:#x}, {} of the experiment's vectors left in IRR or ISR, stack canaries intact",
        NEST_LOW,
        NEST_HIGH,
        NEST_HIGHER,
        NEST_HAZARD,
        NEST_HAZARD_NESTED,
        Dec(gdt::IST_IRQ.into()),
        if gates_back { "yes" } else { "no" },
        tpr_before,
        Dec(left as u64)
    );
    irq_on();
}

/// Scenario 1: 0x31 → 0x51 → 0x61 nested, 0x32 and 0x21 held until 0x31's EOI. `pvm`: the
/// host is kvm-pvm, whose LAPIC does not show (nor always keep) the in-service state.
fn priorities(pvm: bool) {
    log_reset();
    MAX_DEPTH.store(0, Ordering::Relaxed);
    let main_rsp = rsp();
    // Interrupts are off: 0x31 arrives in the spin below, on this (the boot) stack.
    LAPIC.self_ipi(NEST_LOW);
    irq_on();
    let finished = spin_until(|| done(NEST_LOWER));
    irq_off();

    print_log("order");
    let max = MAX_DEPTH.load(Ordering::Relaxed);
    crate::println!("nesting: maximum depth {}", Dec(max.into()));
    let ppr = |v: u8| PPR_AT[usize::from(v)].load(Ordering::Relaxed);
    const PREEMPT: [(u8, u32, u32); 5] = [
        (NEST_LOW, ENTER, 1),
        (NEST_HIGH, ENTER, 2),
        (NEST_HIGHER, ENTER, 3),
        (NEST_HIGHER, EXIT, 0),
        (NEST_HIGH, EXIT, 0),
    ];
    let preempt_ok = log_starts_with(&PREEMPT);
    let order_ok = log_is(&[
        PREEMPT[0],
        PREEMPT[1],
        PREEMPT[2],
        PREEMPT[3],
        PREEMPT[4],
        (NEST_SAME, HELD, 1),
        (NEST_LOWER, HELD, 1),
        (NEST_LOW, EXIT, 0),
        (NEST_SAME, ENTER, 1),
        (NEST_SAME, EXIT, 0),
        (NEST_LOWER, ENTER, 1),
        (NEST_LOWER, EXIT, 0),
    ]);
    // What the LAPIC shows of it: PPR at each entry = the entering vector's class, and the
    // ISR at depth 3 = all three. Not judged on kvm-pvm when it shows nothing: that host keeps
    // the in-service state out of the register page (ISR and PPR read 0 in every handler),
    // while its priority logic, which the order shows, mostly works (see below).
    let isr = ISR_AT_DEPTH_3.load(Ordering::Relaxed);
    let pprs = [NEST_LOW, NEST_HIGH, NEST_HIGHER].map(ppr);
    let visible = !pvm || isr != 0 || pprs.iter().any(|&p| p != 0);
    let ppr_ok = [NEST_LOW, NEST_HIGH, NEST_HIGHER]
        .iter()
        .all(|&v| ppr(v) == u32::from(v & 0xf0));
    let registers_ok = !visible || (isr == 0b111 && ppr_ok);
    crate::check!(
        finished && preempt_ok && max == 3 && registers_ok,
        "nesting-preempt",
        "{:#x} (class 3) enabled interrupts and was preempted by {:#x} (class 5), itself preempted by {:#x} (class 6): depth {}, order {}; PPR at their entries {:#x} {:#x} {:#x}, ISR at depth 3 {}",
        NEST_LOW,
        NEST_HIGH,
        NEST_HIGHER,
        Dec(max.into()),
        if preempt_ok { "as expected" } else { "wrong (see the order line)" },
        pprs[0],
        pprs[1],
        pprs[2],
        match (visible, isr == 0b111) {
            (false, _) => "empty: this host does not show the in-service state",
            (true, true) => "holds all three",
            (true, false) => "does not hold all three",
        }
    );
    // On kvm-pvm the in-service state is sometimes lost (here in about one boot in ten on a
    // quiet host, up to every other one with both cores busy): 0x32 and even 0x21 then run
    // nested inside 0x31, which a LAPIC must never do (PPR is 0x30). That exact lapse is reported as a SKIP there; anywhere else,
    // and any other deviation, fails.
    let early: [bool; 2] =
        [NEST_SAME, NEST_LOWER].map(|v| DEPTH_AT[usize::from(v)].load(Ordering::Relaxed) > 1);
    let once = [NEST_SAME, NEST_LOWER]
        .iter()
        .all(|&v| DONE[usize::from(v)].load(Ordering::Relaxed) == 1);
    if pvm && finished && preempt_ok && !order_ok && once && (early[0] || early[1]) {
        crate::skip!(
            "nesting-same-class-waits",
            "kvm-pvm delivered {}{}{} inside {:#x} while {:#x} was in service, which PPR 0x30 forbids: this host's LAPIC shows no in-service vector (ISR and PPR read 0 in every handler) and does not always honour it; see the order line",
            if early[0] { "0x32 (same class)" } else { "" },
            if early[0] && early[1] { " and " } else { "" },
            if early[1] { "0x21 (lower class)" } else { "" },
            NEST_LOW,
            NEST_LOW
        );
    } else {
        crate::check!(
            finished && order_ok,
            "nesting-same-class-waits",
            "{:#x} (same class) and {:#x} (lower class), raised inside {:#x} with interrupts on, stayed in the IRR until its EOI, then ran {:#x} first (higher class first): order {}",
            NEST_SAME,
            NEST_LOWER,
            NEST_LOW,
            NEST_SAME,
            if order_ok { "as expected" } else { "wrong (see the order line)" }
        );
    }

    // The frames: 0x31, 0x51 and 0x61 (IST 0) each below the one they interrupted, on the
    // boot stack; 0x32 and 0x21 (IST 1) on the IRQ stack, which was free.
    let at = |v: u8| RSP_AT[usize::from(v)].load(Ordering::Relaxed);
    let boot = crate::BOOT_STACK.bottom()..crate::BOOT_STACK.top();
    let ist = &gdt::IST_STACKS[usize::from(gdt::IST_IRQ) - 1];
    let ist = ist.bottom()..ist.top();
    let (r31, r51, r61) = (at(NEST_LOW), at(NEST_HIGH), at(NEST_HIGHER));
    let nested_ok =
        boot.contains(&main_rsp) && boot.contains(&r61) && r61 < r51 && r51 < r31 && r31 < main_rsp;
    let ist_ok = ist.contains(&at(NEST_SAME)) && ist.contains(&at(NEST_LOWER));
    crate::check!(
        finished && nested_ok && ist_ok,
        "nesting-stack",
        "IST 0: {:#x}, {:#x}, {:#x} ran on the boot stack, {} / {} / {} bytes below the experiment's RSP, each frame below the one it interrupted; {:#x} and {:#x} (IST {}) on the IRQ stack: {}",
        NEST_LOW,
        NEST_HIGH,
        NEST_HIGHER,
        Dec(main_rsp.wrapping_sub(r31)),
        Dec(main_rsp.wrapping_sub(r51)),
        Dec(main_rsp.wrapping_sub(r61)),
        NEST_SAME,
        NEST_LOWER,
        Dec(gdt::IST_IRQ.into()),
        if ist_ok { "yes" } else { "no" }
    );
}
