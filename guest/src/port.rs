//! x86 port I/O (`in`/`out`). Each access to a port irqlab emulates is one VM exit.

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
/// Port writes have device side effects; the caller must own the device behind `port`.
#[inline(always)]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller owns the device; `out` touches no memory.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes `bytes` to an I/O port, one byte after the other (`rep outsb`).
///
/// # Safety
/// As [`outb`].
#[inline(always)]
pub unsafe fn outsb(port: u16, bytes: &[u8]) {
    // SAFETY: the caller owns the device; `rep outsb` reads exactly `bytes` (DF is clear per
    // the ABI).
    unsafe {
        asm!(
            "rep outsb",
            in("dx") port,
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            options(readonly, nostack, preserves_flags)
        )
    }
}

/// Writes a doubleword to an I/O port.
///
/// # Safety
/// As [`outb`].
#[inline(always)]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Port reads can have device side effects (e.g. popping a FIFO).
#[inline(always)]
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller owns the device; `in` touches no memory.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// The index of the first `byte` in `bytes` (`repne scasb`). Not port I/O, but it exists for
/// the console: on hosts that emulate every guest instruction (kvm-pvm) KVM runs a string
/// instruction's iterations without decoding it again, where a scanning loop costs several
/// emulated instructions per byte (it was a third of a quiet boot's instructions).
#[inline(always)]
pub fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    let left: usize;
    let found: u8;
    // SAFETY: reads exactly `bytes` (DF is clear per the ABI); writes only registers.
    unsafe {
        asm!(
            "repne scasb",
            "sete {found}",
            found = out(reg_byte) found,
            in("al") byte,
            inout("rdi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => left,
            options(readonly, nostack)
        )
    };
    (found != 0).then(|| bytes.len() - left - 1)
}
