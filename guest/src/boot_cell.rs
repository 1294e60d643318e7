//! State only the boot CPU touches: the experiments' and the scheduler's globals.
//!
//! The guest has no allocator and no locks around such state: each of these lives in a
//! `static` that one CPU uses, and whose users keep interrupt handlers from running into a
//! half-done update themselves (interrupts off, or fields the handler never writes). This
//! cell says so once instead of a `Sync` wrapper per module.

use core::cell::UnsafeCell;

/// A `static`'s value that only the boot CPU reaches (see the module).
pub struct BootCpuCell<T>(UnsafeCell<T>);

// SAFETY: every user runs on the boot CPU only (the APs never call the modules holding these),
// so no two CPUs reach the value; what an interrupt handler on that CPU may touch is each
// user's contract, stated where it calls `get`.
unsafe impl<T> Sync for BootCpuCell<T> {}

impl<T> BootCpuCell<T> {
    /// A cell holding `value`.
    pub const fn new(value: T) -> Self {
        BootCpuCell(UnsafeCell::new(value))
    }

    /// The value.
    ///
    /// # Safety
    /// The caller runs on the boot CPU, and no other reference to the value is used while the
    /// returned one is: not by the caller, nor by an interrupt handler that may run meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.0.get() }
    }
}
