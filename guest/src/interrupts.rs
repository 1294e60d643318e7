//! Vectors 32–255: device interrupts (registered by drivers) and everything unexpected.

use crate::idt::Frame;
use core::sync::atomic::{AtomicU64, Ordering};

/// Vectors that arrived with no handler registered.
pub static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
/// The last unexpected vector.
pub static LAST_UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Handles vector 32–255.
pub fn handle(frame: &mut Frame) {
    if frame.vector == u64::from(crate::syscall::INT80_VECTOR) {
        crate::syscall::int80(frame);
        return;
    }
    if frame.vector == u64::from(crate::apic::SPURIOUS_VECTOR) {
        return; // spurious interrupts take no EOI (SDM §11.9)
    }
    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    LAST_UNEXPECTED.store(frame.vector, Ordering::Relaxed);
    crate::println!(
        "unexpected interrupt: vector {} at rip={:#x}",
        frame.vector,
        frame.rip
    );
    crate::apic::LAPIC.eoi();
}
