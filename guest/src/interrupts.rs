//! Vectors 32–255: device interrupts (handlers registered by drivers and experiments), the
//! per-CPU, per-vector counts `/proc/interrupts` would show, and everything unexpected.

use crate::percpu::MAX_CPUS;
use crate::vectors;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// An interrupt handler. It runs with interrupts off on an IST stack; the dispatcher sends the
/// EOI after it returns. Device interrupts enter through `idt`'s lean path, which saves only
/// the registers a Rust function may clobber, so handlers get no register frame.
pub type Handler = fn();

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static COUNTS: [[AtomicU64; 256]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 256] }; MAX_CPUS];

/// Vectors that arrived with no handler registered.
pub static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
/// The last unexpected vector.
pub static LAST_UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Installs `handler` for `vector`.
pub fn register(vector: u8, handler: Handler) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

/// Removes the handler of `vector`.
pub fn unregister(vector: u8) {
    HANDLERS[usize::from(vector)].store(0, Ordering::Release);
}

/// How many times `vector` was taken on `cpu`.
pub fn count(cpu: usize, vector: u8) -> u64 {
    COUNTS
        .get(cpu)
        .map_or(0, |c| c[usize::from(vector)].load(Ordering::Relaxed))
}

/// Handles a device interrupt (vectors 32–254 but `int 0x80`), called from the lean entry
/// path with the entry timestamp it took (0 when tracing is off) and the interrupted RIP.
///
/// The untraced path is kept small (count, handler, EOI) so that it needs no callee-saved
/// registers: every instruction here runs once per interrupt, and kvm-pvm emulates each.
pub extern "C" fn handle(vector: u64, stub_tsc: u64, rip: u64) {
    if stub_tsc != 0 || crate::trace::enabled() {
        return handle_traced(vector as u8, stub_tsc, rip);
    }
    deliver(crate::percpu::cpu_index(), vector as u8, rip);
}

/// Counts, runs the handler, sends the EOI.
#[inline(always)]
fn deliver(cpu: usize, vector: u8, rip: u64) {
    if !run_handler(cpu, vector) {
        unexpected(vector, rip);
    }
    crate::apic::LAPIC.eoi();
}

#[cold]
#[inline(never)]
fn unexpected(vector: u8, rip: u64) {
    LAST_UNEXPECTED.store(u64::from(vector), Ordering::Relaxed);
    // Never spin on the console here: the interrupted code may hold it (the count and the
    // last vector are kept either way).
    crate::serial::try_print(format_args!(
        "unexpected interrupt: vector {} at rip={:#x}\n",
        vector, rip
    ));
}

/// [`handle`] with a trace record (entry and post-EOI timestamps).
#[inline(never)]
fn handle_traced(vector: u8, stub_tsc: u64, rip: u64) {
    let tsc_entry = if stub_tsc != 0 {
        stub_tsc
    } else {
        crate::cpu::rdtsc()
    };
    let cpu = crate::percpu::cpu_index();
    deliver(cpu, vector, rip);
    // A tick whose handler asked for a reschedule preempts the task it interrupted.
    let preempts = crate::percpu::work() & crate::percpu::WORK_NEED_RESCHED != 0;
    let kind = match vector {
        vectors::LAPIC_TIMER | vectors::PIT if preempts => irqlab_abi::trace::KIND_PREEMPT_TICK,
        vectors::LAPIC_TIMER | vectors::WAKE => irqlab_abi::trace::KIND_LAPIC_TIMER,
        _ => irqlab_abi::trace::KIND_DEVICE,
    };
    crate::trace::record(vector, cpu as u8, kind, tsc_entry, crate::cpu::rdtsc());
}

/// Runs the handler of a vector harvested from a posted-interrupt descriptor (no EOI: the
/// notification takes the only one). Counted like a delivered vector.
pub fn dispatch_posted(cpu: usize, vector: u8) {
    run_handler(cpu, vector);
}

/// Counts `vector` on `cpu` and runs its registered handler; false (and counted as
/// unexpected) if there is none.
#[inline(always)]
fn run_handler(cpu: usize, vector: u8) -> bool {
    if let Some(c) = COUNTS.get(cpu) {
        c[usize::from(vector)].fetch_add(1, Ordering::Relaxed);
    }
    let h = HANDLERS[usize::from(vector)].load(Ordering::Acquire);
    if h == 0 {
        UNEXPECTED.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    // SAFETY: only `register` stores non-zero values, and it stores `Handler`s.
    let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(h) };
    handler();
    true
}

/// Prints the non-zero counts of `vectors` per CPU, like `/proc/interrupts`.
pub fn print_table(cpus: usize, vectors: &[(u8, &str)]) {
    use crate::fmt::Dec;
    crate::print!("interrupts: vector");
    for cpu in 0..cpus.min(MAX_CPUS) {
        crate::print!(" cpu{}", Dec(cpu as u64));
    }
    crate::println!("");
    for &(v, name) in vectors {
        crate::print!("interrupts: {:#x}", v);
        for cpu in 0..cpus.min(MAX_CPUS) {
            crate::print!(" {}", Dec(count(cpu, v)));
        }
        crate::println!(" {}", name);
    }
}
