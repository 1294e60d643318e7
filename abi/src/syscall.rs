//! The irqlab guest's own system-call ABI (ring 3 → ring 0 with `syscall`, Linux register
//! convention): number in RAX, arguments in RDI, RSI, RDX, R10, R8, R9, result in RAX,
//! negative errno on failure. `int 0x80` uses the same numbers and registers.

/// `write(buf, len) -> len`: print `len` bytes at user address `buf` on the console.
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
/// `writev(iov, count) -> bytes`: `count` (address, length) pairs written in one call.
pub const WRITEV: u64 = 13;
/// `ring_enter(to_submit) -> completed`: consume `to_submit` entries of the task's
/// shared-memory submission ring (the cost table's io_uring-style row).
pub const RING_ENTER: u64 = 14;
/// Number of defined system calls.
pub const COUNT: u64 = 15;

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
    fn sum6_weights_each_register() {
        assert_eq!(sum6(1, 1, 1, 1, 1, 1), 21);
        assert_eq!(sum6(1, 0, 0, 0, 0, 0), 1);
        assert_eq!(sum6(0, 0, 0, 0, 0, 1), 6);
    }
}
