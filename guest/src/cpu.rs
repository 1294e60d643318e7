//! Control registers, MSRs and the time-stamp counter.

use core::arch::asm;

/// IA32_EFER.
pub const MSR_EFER: u32 = 0xc000_0080;
/// IA32_STAR: SYSCALL/SYSRET segment selectors.
pub const MSR_STAR: u32 = 0xc000_0081;
/// IA32_LSTAR: SYSCALL entry point in 64-bit mode.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// IA32_FMASK: RFLAGS bits cleared on SYSCALL.
pub const MSR_FMASK: u32 = 0xc000_0084;
/// IA32_GS_BASE.
pub const MSR_GS_BASE: u32 = 0xc000_0101;
/// IA32_KERNEL_GS_BASE: swapped with GS_BASE by `swapgs`.
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

/// EFER.SCE: SYSCALL enable.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// CR0.EM.
pub const CR0_EM: u64 = 1 << 2;
/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR4.PAE.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.OSFXSR.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXSAVE: XSAVE and XSETBV/XGETBV enabled.
pub const CR4_OSXSAVE: u64 = 1 << 18;

/// Reads an MSR.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only architectural MSRs that exist on every x86-64 CPU are read by this kernel.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// Writing MSRs changes how the CPU behaves (syscall entry, segment bases, paging features).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// CR0.
pub fn cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR2 (the faulting address after a #PF).
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR3 (switches address space, flushes non-global TLB entries).
///
/// # Safety
/// `pml4` must be a valid PML4 that maps the running code, stack and data identically.
pub unsafe fn set_cr3(pml4: u64) {
    // SAFETY: the caller guarantees the new tables map everything in use.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// CR4.
pub fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR4.
///
/// # Safety
/// The new value must keep paging (PAE) and everything the running kernel relies on.
pub unsafe fn set_cr4(v: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// XCR0 (`xgetbv` with ECX = 0; needs CR4.OSXSAVE).
pub fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv reads XCR0; the callers set CR4.OSXSAVE first.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes XCR0 (`xsetbv`; needs CR4.OSXSAVE).
///
/// # Safety
/// The value must be one the CPU supports (CPUID.(0xD,0)), with x87 set, and must keep every
/// state component the kernel's code uses.
pub unsafe fn set_xcr0(v: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack, preserves_flags))
    };
}

/// Time-stamp counter (not serialising).
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc is allowed at CPL 0 (and at CPL 3 while CR4.TSD is clear).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Time-stamp counter read after all earlier instructions completed (`lfence; rdtsc;
/// lfence`). `rdtscp` would do the same, but kvm-pvm cannot run it (emulation failure).
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence/rdtsc have no side effects beyond ordering.
    unsafe {
        asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Enables interrupts. Not `nomem`: from here on interrupt handlers may change memory, so
/// the compiler must not keep values read before it in registers (a loop that waits for a
/// handler's update would otherwise never see it).
pub fn sti() {
    // SAFETY: the IDT is loaded before any caller enables interrupts.
    unsafe { asm!("sti", options(nostack)) };
}

/// Disables interrupts. Not `nomem` (see [`sti`]): a read-modify-write of state a handler
/// shares must not be moved above it, into the window where interrupts are still on.
pub fn cli() {
    // SAFETY: disabling interrupts is always safe for this kernel.
    unsafe { asm!("cli", options(nostack)) };
}

/// Enables interrupts and halts until one arrives; the interrupt shadow of `sti` makes the
/// pair atomic, so a wake-up interrupt cannot slip in between. Not `nomem` (see [`sti`]): the
/// interrupt that ends the halt has run its handler.
pub fn sti_hlt() {
    // SAFETY: the IDT is loaded before any caller enables interrupts.
    unsafe { asm!("sti", "hlt", options(nostack)) };
}

/// CR3.
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects at CPL 0.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
