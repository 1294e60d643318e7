//! The irqlab guest's own system-call ABI (ring 3 → ring 0 with `syscall`, Linux register
//! convention): number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9, result in RAX,
//! negative errno on failure. `int 0x80` and the trap gate ([`TRAP_GATE_MARKER`]) use the
//! same numbers and registers.
//!
//! Besides the calls, this module defines the memory layouts user code shares with the kernel
//! for the cost table's system-call designs: the [`Iovec`] array of [`WRITEV`], the
//! submission ring of [`RING_ENTER`] ([`Sqe`] entries, [`ring_pending`] bounding its
//! indices) and the vDSO-style clock page ([`Vclock`], read with [`vclock_ns`]).

/// `write(buf, len, fd) -> len`: `len` bytes at user address `buf` to `fd`: [`FD_CONSOLE`]
/// (0, what every caller that passes no third argument gets) prints them on the console,
/// [`FD_SINK`] copies them into the kernel's memory sink; another `fd` is `-EBADF`.
pub const WRITE: u64 = 0;
/// `counter() -> n`: the number of system calls this CPU has served so far.
pub const COUNTER: u64 = 1;
/// `time() -> tsc`: the time-stamp counter read in the kernel.
pub const TIME: u64 = 2;
/// `yield_() -> 0`: return immediately (the cheapest round trip; used by cost experiments).
pub const YIELD: u64 = 3;
/// `exit(code) -> !`: end the ring-3 task with `code`.
pub const EXIT: u64 = 4;
/// `sum6(a, b, c, d, e, f) -> a + 2b + 3c + 4d + 5e + 6f`: proves all six argument registers
/// arrive in order.
pub const SUM6: u64 = 5;
/// `getpid() -> pid`: the calling task's process id (1.. for scheduled tasks, 0 otherwise).
pub const GETPID: u64 = 6;
/// `sleep(ticks) -> 0`: block for at least `ticks` timer ticks (`run=sched|signals`).
pub const SLEEP: u64 = 7;
/// `alarm(ticks) -> ticks left of the previous alarm`: SIGALRM after `ticks` timer ticks
/// (0 cancels).
pub const ALARM: u64 = 8;
/// `kill(pid, sig) -> 0`: make `sig` pending for task `pid`.
pub const KILL: u64 = 9;
/// `sigaction(sig, handler, restorer) -> 0`: `handler` 0 = default action, 1 = ignore,
/// otherwise a user address; `restorer` is the user code the handler returns to, which calls
/// `sigreturn` (Linux's `sa_restorer`).
pub const SIGACTION: u64 = 10;
/// `sigreturn() -> !`: restore the context saved in the signal frame at the user RSP.
pub const SIGRETURN: u64 = 11;
/// `sigprocmask(how, set) -> old mask`: `how` 0 = block, 1 = unblock, 2 = set.
pub const SIGPROCMASK: u64 = 12;
/// `writev(iov, count, fd) -> bytes`: the `count` buffers [`Iovec`] array `iov` describes,
/// written to `fd` (as [`WRITE`]) in one call. All or nothing: the kernel reads the array once,
/// checks it and every buffer before writing a byte: `-EFAULT` for an array or a buffer outside
/// user memory (or one whose end overflows), `-EINVAL` for `count` above [`IOV_MAX`], `-EBADF`
/// for an unknown `fd`.
pub const WRITEV: u64 = 13;
/// `ring_enter(ring, to_submit) -> consumed`: consume up to `to_submit` entries of the
/// submission ring at user address `ring` (layout: [`RING_HEAD`], [`RING_TAIL`],
/// [`RING_ENTRIES`] [`Sqe`]s at [`RING_SQES`]; the io_uring idea without its completion
/// queue: each entry's result is written back into its `result` field). The kernel treats the
/// ring as hostile: `-EFAULT` if the ring is not in user memory, `-EINVAL` if it is misaligned
/// or `tail - head` (free-running u64 indices, wrapping) exceeds [`RING_ENTRIES`]; entries are
/// indexed `index % RING_ENTRIES`, each is read once, its pointers are checked like
/// [`WRITE`]'s. Returns the number consumed and stores `head + consumed` into the head.
pub const RING_ENTER: u64 = 14;
/// `op(opcode, arg0, arg1) -> result`: one ring operation ([`OP_NOP`], [`OP_ADD`],
/// [`OP_SINK_WRITE`]) as a system call of its own: what [`RING_ENTER`] is compared with.
pub const OP: u64 = 15;
/// Number of defined system calls.
pub const COUNT: u64 = 16;

/// [`WRITE`]/[`WRITEV`] target: the console (COM1).
pub const FD_CONSOLE: u64 = 0;
/// [`WRITE`]/[`WRITEV`] target: the kernel's memory sink. It keeps the bytes in a kernel
/// buffer (overwritten round-robin) and counts writes, bytes and their sum, so a test can
/// check that the kernel consumed everything without flooding the console.
pub const FD_SINK: u64 = 1;
/// Most buffers one [`WRITEV`] takes.
pub const IOV_MAX: u64 = 64;

/// One [`WRITEV`] buffer (Linux's `struct iovec`): 16 bytes, 8-byte aligned in user memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iovec {
    /// User address of the buffer.
    pub base: u64,
    /// Its length in bytes.
    pub len: u64,
}

/// Entries in a [`RING_ENTER`] submission ring (a power of two).
pub const RING_ENTRIES: u64 = 64;
/// Byte offset of the ring's head (u64, the next entry the kernel consumes; written by the
/// kernel).
pub const RING_HEAD: u64 = 0;
/// Byte offset of the ring's tail (u64, one past the last entry user code filled; written by
/// user code after the entries).
pub const RING_TAIL: u64 = 8;
/// Byte offset of the first [`Sqe`] (the header is 64 bytes: head, tail, reserved).
pub const RING_SQES: u64 = 64;
/// Size of the whole ring: header and entries.
pub const RING_BYTES: u64 = RING_SQES + RING_ENTRIES * core::mem::size_of::<Sqe>() as u64;

/// One submission-ring entry: an operation and its arguments, and the result the kernel
/// writes back (the value [`OP`] would have returned).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sqe {
    /// [`OP_NOP`], [`OP_ADD`] or [`OP_SINK_WRITE`]; another value completes with `-EINVAL`.
    pub opcode: u64,
    /// First argument.
    pub arg0: u64,
    /// Second argument.
    pub arg1: u64,
    /// Written by the kernel: the operation's result (negative errno on failure).
    pub result: u64,
}

/// Operation: nothing; result 0.
pub const OP_NOP: u64 = 0;
/// Operation: add `arg0` to the kernel's operation counter; result the new value.
pub const OP_ADD: u64 = 1;
/// Operation: `write(arg0, arg1, FD_SINK)`; result as [`WRITE`]'s.
pub const OP_SINK_WRITE: u64 = 2;

/// How many entries a ring with these indices holds, or `None` when they cannot be right
/// (`tail` more than [`RING_ENTRIES`] ahead of `head`, or behind it): the kernel refuses such
/// a ring with `-EINVAL` instead of trusting it.
pub const fn ring_pending(head: u64, tail: u64) -> Option<u64> {
    let pending = tail.wrapping_sub(head);
    if pending <= RING_ENTRIES {
        Some(pending)
    } else {
        None
    }
}

/// The vDSO-style clock page the kernel keeps in user memory (readable from ring 3; user code
/// reads it without a system call). A seqlock: the kernel makes `seq` odd, updates the other
/// fields, makes it even again; a reader retries while `seq` is odd or changed under it.
/// Time in nanoseconds at TSC value `tsc` is [`vclock_ns`] of the fields (Linux's
/// `vdso_data`: `cycle_last`, `mult`, `shift` and a base time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vclock {
    /// Sequence count (odd while the kernel writes).
    pub seq: u64,
    /// TSC at the last refresh.
    pub tsc_base: u64,
    /// Nanoseconds (since the clock started) at `tsc_base`.
    pub ns_base: u64,
    /// Nanoseconds per TSC cycle, times 2^[`VCLOCK_SHIFT`].
    pub mult: u64,
    /// Refreshes so far (the kernel's own tick of this clock).
    pub refreshes: u64,
}

/// The fixed-point shift of [`Vclock::mult`].
pub const VCLOCK_SHIFT: u32 = 32;

/// [`Vclock::mult`] for a TSC of `tsc_khz` kHz (0 if unknown).
pub const fn vclock_mult(tsc_khz: u64) -> u64 {
    match tsc_khz {
        0 => 0,
        khz => (1_000_000u64 << VCLOCK_SHIFT) / khz,
    }
}

/// Nanoseconds at TSC value `tsc` from a clock page's fields (a TSC before `tsc_base` counts
/// as `tsc_base`, as Linux's vDSO does). Inlined: ring-3 code calls it and must not call
/// into kernel text.
#[inline(always)]
pub const fn vclock_ns(tsc: u64, tsc_base: u64, ns_base: u64, mult: u64) -> u64 {
    let delta = tsc.saturating_sub(tsc_base);
    ns_base.wrapping_add(((delta as u128 * mult as u128) >> VCLOCK_SHIFT) as u64)
}

/// The trap gate's marker: `ud2` followed by these three bytes is a system call (number and
/// arguments in the same registers as `syscall`), resumed after the marker. It is for hosts
/// where neither `syscall` nor `int 0x80` works from ring 3 (kvm-pvm); the idea is Xen's and
/// KVM's forced-emulation prefix, `ud2; .ascii "xen"` / `"kvm"`.
pub const TRAP_GATE_MARKER: [u8; 3] = *b"sys";
/// Length of the whole trap-gate instruction sequence (`ud2` + marker).
pub const TRAP_GATE_LEN: u64 = 5;

/// Bad address.
pub const EFAULT: i64 = 14;
/// Invalid argument.
pub const EINVAL: i64 = 22;
/// Function not implemented.
pub const ENOSYS: i64 = 38;
/// No such process.
pub const ESRCH: i64 = 3;
/// Bad file descriptor (a [`WRITE`]/[`WRITEV`] target that does not exist).
pub const EBADF: i64 = 9;

/// The `sum6` result the kernel must compute, for checking on both sides.
pub const fn sum6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    a.wrapping_add(b.wrapping_mul(2))
        .wrapping_add(c.wrapping_mul(3))
        .wrapping_add(d.wrapping_mul(4))
        .wrapping_add(e.wrapping_mul(5))
        .wrapping_add(f.wrapping_mul(6))
}

/// Whether `[addr, addr + len)` lies entirely inside the user window `[start, end)`, without
/// overflow. The kernel checks every user pointer with this before touching it, so a bad
/// pointer returns `-EFAULT` instead of faulting the kernel.
pub const fn user_range_ok(addr: u64, len: u64, start: u64, end: u64) -> bool {
    match addr.checked_add(len) {
        Some(last) => addr >= start && last <= end,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ranges_are_checked_without_overflow() {
        let (s, e) = (0x40_0000, 0x60_0000);
        assert!(user_range_ok(0x40_0000, 0x20_0000, s, e));
        assert!(user_range_ok(0x5f_ffff, 1, s, e));
        assert!(!user_range_ok(0x5f_ffff, 2, s, e));
        assert!(!user_range_ok(0x3f_ffff, 1, s, e));
        assert!(!user_range_ok(u64::MAX, 2, s, e));
        assert!(!user_range_ok(0xffff_8000_0000_0000, 8, s, e));
        assert!(user_range_ok(0x50_0000, 0, s, e));
    }

    #[test]
    fn ring_indices_are_bounded_and_wrap() {
        assert_eq!(ring_pending(0, 0), Some(0));
        assert_eq!(ring_pending(5, 5 + RING_ENTRIES), Some(RING_ENTRIES));
        assert_eq!(ring_pending(5, 6 + RING_ENTRIES), None);
        // Free-running indices wrap at 2^64, as io_uring's wrap at 2^32.
        assert_eq!(ring_pending(u64::MAX - 1, 2), Some(4));
        // Far apart either way: refused.
        assert_eq!(ring_pending(0, 1 << 40), None);
        assert_eq!(ring_pending(1 << 40, 0), None);
        assert_eq!(ring_pending(1, 0), None);
        assert_eq!(RING_BYTES, 64 + 64 * 32);
        assert_eq!(core::mem::size_of::<Iovec>(), 16);
    }

    #[test]
    fn vclock_converts_cycles_to_nanoseconds() {
        let mult = vclock_mult(2_600_000);
        // 2.6 GHz: 2,600,000,000 cycles are one second (to within the fixed-point error).
        let ns = vclock_ns(2_600_000_000 + 1000, 1000, 0, mult);
        assert!((999_999_990..=1_000_000_000).contains(&ns), "{ns}");
        assert_eq!(vclock_ns(500, 1000, 42, mult), 42, "a TSC before the base");
        assert_eq!(vclock_mult(0), 0);
        assert_eq!(vclock_ns(1 << 50, 0, 7, 0), 7);
        // No overflow an hour after the last refresh at 5 GHz.
        let hour = 3600 * 5_000_000_000u64;
        let ns = vclock_ns(hour, 0, 0, vclock_mult(5_000_000));
        assert!(
            (3_599_999_000_000..=3_600_000_000_000).contains(&ns),
            "{ns}"
        );
    }

    #[test]
    fn sum6_weights_each_register() {
        assert_eq!(sum6(1, 1, 1, 1, 1, 1), 21);
        assert_eq!(sum6(1, 0, 0, 0, 0, 0), 1);
        assert_eq!(sum6(0, 0, 0, 0, 0, 1), 6);
    }
}
