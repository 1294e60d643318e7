//! A vDSO-style clock: a page in user memory the kernel keeps current, from which ring-3 code
//! reads the time with `rdtsc` and no kernel entry (Linux's vvar page and
//! `clock_gettime` in the vDSO).
//!
//! The page is an [`irqlab_abi::syscall::Vclock`] behind a seqlock. The kernel's own copy of
//! the clock ([`KERNEL`]) is the authority: it never reads the user page back (ring 3 can
//! write it: the user window is mapped writable, unlike Linux's read-only vvar page), it only
//! publishes into it. [`refresh`] moves the base forward, as Linux's timekeeping tick does;
//! `run=cost` calls it before each time row.

use crate::boot_cell::BootCpuCell;
use crate::cpu;
use crate::user::UserMem;
use irqlab_abi::syscall::{vclock_mult, vclock_ns, Vclock};

/// The clock page (ring 3 reads it; see [`read`]).
#[link_section = ".user_data"]
pub static VCLOCK: UserMem<4096> = UserMem::new();
const _: () = assert!(core::mem::size_of::<Vclock>() <= 4096);

/// The kernel's copy of the clock (never read back from user memory).
/// Only the boot CPU touches it, between user tasks or inside a system call.
static KERNEL: BootCpuCell<Vclock> = BootCpuCell::new(Vclock {
    seq: 0,
    tsc_base: 0,
    ns_base: 0,
    mult: 0,
    refreshes: 0,
});

/// The page as the structure (inlined: ring-3 code calls it).
#[inline(always)]
fn page() -> *mut Vclock {
    VCLOCK.addr() as *mut Vclock
}

/// Copies the kernel's clock into the page under the seqlock (the sequence count is the
/// kernel's too: an odd value while the stores are in flight, the next even one after).
fn publish(k: &mut Vclock) {
    let p = page();
    k.seq = (k.seq | 1).wrapping_add(1);
    // SAFETY: the page is mapped, aligned user data; the stores are volatile so that the
    // sequence count brackets the field stores in program order (x86 keeps stores in order).
    unsafe {
        (&raw mut (*p).seq).write_volatile(k.seq.wrapping_sub(1));
        (&raw mut (*p).tsc_base).write_volatile(k.tsc_base);
        (&raw mut (*p).ns_base).write_volatile(k.ns_base);
        (&raw mut (*p).mult).write_volatile(k.mult);
        (&raw mut (*p).refreshes).write_volatile(k.refreshes);
        (&raw mut (*p).seq).write_volatile(k.seq);
    }
}

/// Starts the clock at 0 ns now, for a TSC of `tsc_khz` kHz (0: the clock stands still).
pub fn start(tsc_khz: u64) {
    // SAFETY: one CPU, no task running: nothing else holds a reference.
    let k = unsafe { KERNEL.get() };
    k.mult = vclock_mult(tsc_khz);
    k.tsc_base = cpu::rdtsc();
    k.ns_base = 0;
    k.refreshes = 0;
    publish(k);
}

/// Moves the clock's base to now (what a timer tick does), and publishes it.
pub fn refresh() {
    // SAFETY: as in `start`.
    let k = unsafe { KERNEL.get() };
    let now = cpu::rdtsc();
    k.ns_base = vclock_ns(now, k.tsc_base, k.ns_base, k.mult);
    k.tsc_base = now;
    k.refreshes += 1;
    publish(k);
}

/// The kernel's reading of TSC value `tsc` in the clock's nanoseconds.
pub fn ns_at(tsc: u64) -> u64 {
    // SAFETY: as in `start`; read only.
    let k = unsafe { KERNEL.get() };
    vclock_ns(tsc, k.tsc_base, k.ns_base, k.mult)
}

/// Reads the clock from ring 3 (the vDSO's `clock_gettime`): the page's fields under the
/// seqlock and `rdtsc`, no system call. Inlined into user code.
#[inline(always)]
pub fn read() -> u64 {
    let p = page();
    loop {
        // SAFETY: aligned u64 loads from the mapped clock page; volatile keeps them in
        // program order around `rdtsc` (x86 does not reorder loads with loads).
        let (s0, base, ns, mult) = unsafe {
            (
                (&raw const (*p).seq).read_volatile(),
                (&raw const (*p).tsc_base).read_volatile(),
                (&raw const (*p).ns_base).read_volatile(),
                (&raw const (*p).mult).read_volatile(),
            )
        };
        let tsc = cpu::rdtsc_ordered();
        // SAFETY: as above.
        let s1 = unsafe { (&raw const (*p).seq).read_volatile() };
        if s0 == s1 && s0 & 1 == 0 {
            return vclock_ns(tsc, base, ns, mult);
        }
        core::hint::spin_loop();
    }
}
