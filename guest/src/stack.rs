//! Statically allocated, page-aligned kernel stacks with a canary at the bottom.
//!
//! Every stack is preceded by a guard page that `paging::init` leaves unmapped, so an overflow
//! faults instead of silently corrupting the neighbour; the canary catches overflows that
//! happened before paging was set up.

use core::cell::UnsafeCell;

/// Value written at the lowest 8 bytes of every stack.
pub const CANARY: u64 = 0x5afe_57ac_c0ff_ee00;

/// A guard page followed by `N` bytes of stack.
#[repr(C, align(4096))]
pub struct Stack<const N: usize> {
    guard: UnsafeCell<[u8; 4096]>,
    bytes: UnsafeCell<[u8; N]>,
}

// SAFETY: each stack is used by exactly one CPU context at a time (the owning vCPU and IST
// slot); the kernel never creates references into the bytes, only the top pointer.
unsafe impl<const N: usize> Sync for Stack<N> {}

impl<const N: usize> Stack<N> {
    /// A zeroed stack.
    pub const fn new() -> Self {
        Stack {
            guard: UnsafeCell::new([0; 4096]),
            bytes: UnsafeCell::new([0; N]),
        }
    }

    /// Address of the guard page.
    pub fn guard_page(&self) -> u64 {
        self.guard.get() as u64
    }

    /// Lowest usable address.
    pub fn bottom(&self) -> u64 {
        self.bytes.get() as u64
    }

    /// Initial stack pointer (16-byte aligned, one past the highest byte).
    pub fn top(&self) -> u64 {
        self.bottom() + N as u64
    }

    /// Writes the canary.
    pub fn arm(&self) {
        // SAFETY: the bottom 8 bytes are inside this stack and 8-byte aligned; nothing runs on
        // a stack before it is armed.
        unsafe { core::ptr::write_volatile(self.bottom() as *mut u64, CANARY) };
    }

    /// Whether the canary is intact.
    pub fn canary_ok(&self) -> bool {
        // SAFETY: as in `arm`.
        unsafe { core::ptr::read_volatile(self.bottom() as *const u64) == CANARY }
    }
}
