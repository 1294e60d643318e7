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
/// Number of defined system calls.
pub const COUNT: u64 = 6;

/// Bad address.
pub const EFAULT: i64 = 14;
/// Invalid argument.
pub const EINVAL: i64 = 22;
/// Function not implemented.
pub const ENOSYS: i64 = 38;

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
