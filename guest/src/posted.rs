//! The consumer side of posted-interrupt notification (`docs/posted-interrupts.md`): one
//! descriptor per CPU announced in the boot info, harvested by the notification handler the
//! way Linux's `sysvec_posted_msi_notification()` does it.

use core::sync::atomic::{AtomicU64, Ordering};
use irqlab_abi::posted::{self as abi, CONTROL_WORD, ON, SN};

static BASE: AtomicU64 = AtomicU64::new(0);
static STRIDE: AtomicU64 = AtomicU64::new(0);
/// Notifications handled (all CPUs).
pub static NOTIFICATIONS: AtomicU64 = AtomicU64::new(0);
/// Vectors dispatched from the PIR (all CPUs).
pub static DISPATCHED: AtomicU64 = AtomicU64::new(0);

/// Picks up the descriptors and installs the notification handler at each descriptor's NV.
pub fn init(addr: u64, stride: u64) {
    if addr == 0 || stride < abi::DESC_SIZE || !addr.is_multiple_of(abi::DESC_SIZE) {
        return;
    }
    BASE.store(addr, Ordering::Relaxed);
    STRIDE.store(stride, Ordering::Relaxed);
    crate::interrupts::register(abi::nv(control(0).load(Ordering::Relaxed)), notification);
}

/// Whether the VMM provided descriptors.
pub fn available() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

/// Guest-physical address of `cpu`'s descriptor (identity-mapped).
pub fn descriptor_addr(cpu: usize) -> u64 {
    BASE.load(Ordering::Relaxed) + cpu as u64 * STRIDE.load(Ordering::Relaxed)
}

fn word(cpu: usize, i: usize) -> &'static AtomicU64 {
    // SAFETY: the VMM reserved the descriptors (memory-map kind "shared"), 64-byte aligned;
    // the words are only ever accessed atomically, by this kernel and the VMM.
    unsafe { &*((descriptor_addr(cpu) + 8 * i as u64) as *const AtomicU64) }
}

fn control(cpu: usize) -> &'static AtomicU64 {
    word(cpu, CONTROL_WORD)
}

/// Takes every posted vector of `cpu` (atomic exchange per word, as the PIR is shared with
/// producers) and runs its handler; returns how many vectors were pending.
pub fn harvest(cpu: usize) -> u64 {
    let mut n = 0;
    for w in 0..4 {
        let mut bits = word(cpu, w).swap(0, Ordering::AcqRel);
        while bits != 0 {
            let b = bits.trailing_zeros() as u64;
            bits &= bits - 1;
            n += 1;
            crate::interrupts::dispatch_posted(cpu, (w as u64 * 64 + b) as u8);
        }
    }
    DISPATCHED.fetch_add(n, Ordering::Relaxed);
    n
}

/// The notification handler: harvest, clear ON, harvest again (a post that found ON set
/// before the clear sent no notification; its PIR bit is caught here), then the common
/// path sends the single EOI.
fn notification() {
    let cpu = crate::percpu::cpu_index();
    NOTIFICATIONS.fetch_add(1, Ordering::Relaxed);
    harvest(cpu);
    control(cpu).fetch_and(!ON, Ordering::AcqRel);
    harvest(cpu);
}

/// Poll mode on `cpu`: producers post without notifying.
pub fn suppress(cpu: usize, on: bool) {
    if on {
        control(cpu).fetch_or(SN, Ordering::AcqRel);
    } else {
        control(cpu).fetch_and(!SN, Ordering::AcqRel);
    }
}
