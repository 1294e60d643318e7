//! The boot self-test: one check per mechanism, each printing `PASS`/`FAIL`/`SKIP name: detail`.

use crate::boot::Boot;
use crate::exceptions::{self, Seen};
use crate::fmt::{Dec, IDec};
use crate::user::{self, TaskEnd};
use crate::{apic, check, cpu, gdt, idt, interrupts, paging, pass, port, skip, vectors};
use core::sync::atomic::Ordering;
use irqlab_abi::syscall as nr;
use irqlab_x86::error_code::{Exception, PageFaultError};
use irqlab_x86::segment::Ring;

/// Runs every check.
pub fn run(boot: &Boot) {
    memory_map(boot);
    cpu_state();
    xsetbv(boot);
    tables();
    kernel_exceptions(boot);
    syscalls(boot);
    user_faults();
    external_interrupt();
    check!(
        gdt::stacks_intact() && crate::BOOT_STACK.canary_ok(),
        "stack-canaries",
        "all IST, RSP0 and boot stack canaries intact"
    );
}

fn memory_map(boot: &Boot) {
    use irqlab_abi::boot_info::{MEM_KERNEL, MEM_RAM};
    let map = boot.mem_map();
    let kernel = map.iter().any(|e| {
        e.kind == MEM_KERNEL && e.addr <= 0x10_0000 && e.addr + e.size >= paging::kernel_end()
    });
    let ram: u64 = map
        .iter()
        .filter(|e| e.kind == MEM_RAM)
        .map(|e| e.size)
        .sum();
    check!(
        kernel && ram > 0,
        "memory-map",
        "{} entries; the kernel entry covers the image up to {:#x}; {} KiB free RAM",
        Dec(map.len() as u64),
        paging::kernel_end(),
        Dec(ram >> 10)
    );
}

fn cpu_state() {
    let (cr0, cr4, efer) = (cpu::cr0(), cpu::cr4(), cpu::rdmsr(cpu::MSR_EFER));
    check!(
        cr0 & cpu::CR0_PG != 0 && efer & cpu::EFER_LMA != 0 && cr4 & cpu::CR4_PAE != 0,
        "long-mode",
        "CR0.PG, CR4.PAE and EFER.LMA set (cr0={cr0:#x} cr4={cr4:#x} efer={efer:#x})"
    );
    check!(
        cr4 & cpu::CR4_OSFXSR != 0 && cr0 & cpu::CR0_EM == 0,
        "fpu-state",
        "CR4.OSFXSR set and CR0.EM clear (SSE enabled for code that wants it)"
    );
}

/// XSETBV reaches the hypervisor: KVM intercepts it on VMX and SVM, keeps the guest's XCR0
/// across VM exits and makes CPUID.(0xD,0).EBX (the XSAVE area size for XCR0) follow it.
/// A hypervisor that never sees the write (QEMU 7.2's TCG does not honour SVM's XSETBV
/// intercept, so in the nested lane KVM does not) reloads its own idea of XCR0 at the next
/// VM entry: the guest's AVX state silently disappears. Linux then finds CPUID.(0xD,0).EBX
/// inconsistent ("XSAVE consistency problem") and its XRSTORs fault.
fn xsetbv(boot: &Boot) {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    const NAME: &str = "xsetbv";
    if !host_runs_fpu(boot) {
        skip!(
            NAME,
            "host is {}: KVM emulates the guest there and has no XSAVE",
            boot.info.host().name()
        );
        return;
    }
    if __cpuid(1).ecx & (1 << 26) == 0 {
        skip!(NAME, "CPUID.1:ECX.XSAVE is clear");
        return;
    }
    let components = __cpuid_count(0xd, 0).eax;
    if components & 0b111 != 0b111 {
        skip!(
            NAME,
            "no AVX state component (CPUID.(0xD,0).EAX={components:#x})"
        );
        return;
    }
    let avx = __cpuid_count(0xd, 2);
    // Legacy area (512) + XSAVE header (64), then the AVX component at its offset.
    let want_size = 576u32.max(avx.ebx + avx.eax);
    let cr4 = cpu::cr4();
    // SAFETY: CR4.OSXSAVE only enables XSETBV/XGETBV; XCR0 = x87|SSE|AVX is supported
    // (checked above) and keeps the x87/SSE state this kernel uses; both are restored below.
    let (before, kept, size) = unsafe {
        cpu::set_cr4(cr4 | cpu::CR4_OSXSAVE);
        let before = cpu::xcr0();
        cpu::set_xcr0(0b111);
        // CPUID always exits to the hypervisor: the read below comes after a VM exit.
        let size = __cpuid_count(0xd, 0).ebx;
        let kept = cpu::xcr0();
        cpu::set_xcr0(before);
        cpu::set_cr4(cr4);
        (before, kept, size)
    };
    crate::println!(
        "xsetbv: XCR0 {before:#x} -> 0x7; after a VM exit (CPUID): XCR0 = {kept:#x}, CPUID.(0xD,0).EBX = {size:#x} (want {want_size:#x})"
    );
    // The FAIL details name no value that depends on the VMM (its initial XCR0): the line is
    // the gap's signature, compared across VMMs on the same /dev/kvm (docs/nested-svm.md).
    if kept != 0b111 {
        crate::fail!(
            NAME,
            "XCR0 = 0x7 was lost at the next VM exit: the hypervisor never saw the xsetbv"
        );
    } else if size != want_size {
        crate::fail!(NAME, "CPUID.(0xD,0).EBX did not follow XCR0 = 0x7");
    } else {
        pass!(
            NAME,
            "XCR0 = 0x7 (x87|SSE|AVX) kept across a VM exit; CPUID.(0xD,0).EBX = {size:#x} follows it"
        );
    }
}

/// Whether this host can execute FPU/SSE instructions in the guest.
fn host_runs_fpu(boot: &Boot) -> bool {
    boot.info.host() != irqlab_abi::boot_info::HostKind::Pvm
}

fn tables() {
    let cs: u16;
    let tr: u16;
    // SAFETY: reading CS and TR has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, cs", "str {1:x}", out(reg) cs, out(reg) tr) };
    check!(
        cs == gdt::KERNEL_CS && tr == gdt::TSS,
        "gdt-tss",
        "CS={cs:#x} TR={tr:#x} loaded from the kernel's own GDT"
    );

    let mut bad = None;
    for v in 0..=255u8 {
        let ok = match idt::gate(v) {
            Some(g) => {
                let want = idt::gate_for(v);
                g == want
                    && g.ist != 0
                    && (g.dpl == Ring::Ring3)
                        == (v == Exception::Breakpoint as u8 || v == vectors::SYSCALL)
            }
            None => false,
        };
        if !ok && bad.is_none() {
            bad = Some(v);
        }
    }
    match bad {
        None => pass!(
            "idt",
            "256 gates present, each with an IST stack; DPL 3 only on 3 (#BP) and {:#x}",
            vectors::SYSCALL
        ),
        Some(v) => crate::fail!("idt", "gate {} is wrong", Dec(v.into())),
    }

    let (us, ue) = paging::user_window();
    check!(
        paging::is_user(us)
            && paging::is_user(ue - 1)
            && !paging::is_user(crate::kmain as *const () as u64)
            && !paging::is_user(ue),
        "paging",
        "user window {us:#x}..{ue:#x} is U=1, kernel text is U=0"
    );
}

/// Runs `f` with `vector` expected and returns what the handler saw.
fn provoke(vector: Exception, skip: u64, f: impl FnOnce()) -> Seen {
    exceptions::expect(vector as u8, skip);
    f();
    exceptions::seen()
}

fn kernel_exceptions(boot: &Boot) {
    let s = provoke(Exception::DivideError, 3, || {
        // SAFETY: `div rcx` (48 f7 f1) with RCX = 0 raises #DE; the handler skips it.
        unsafe {
            core::arch::asm!(".byte 0x48, 0xf7, 0xf1", in("rcx") 0u64, inout("rax") 1u64 => _, inout("rdx") 0u64 => _)
        };
    });
    check!(
        s.hits == 1,
        "exception-#DE",
        "div by zero caught at rip={:#x}, resumed after it",
        s.rip
    );

    let s = provoke(Exception::Debug, 0, || {
        // SAFETY: sets TF; the next instruction single-steps into #DB, whose handler clears TF.
        unsafe { core::arch::asm!("pushfq", "or qword ptr [rsp], 0x100", "popfq", "nop", "nop") };
    });
    check!(
        s.hits == 1,
        "exception-#DB",
        "single-step trap (RFLAGS.TF) caught once at rip={:#x}",
        s.rip
    );

    if boot.info.host().can_run_software_interrupts() {
        let s = provoke(Exception::Breakpoint, 0, || {
            // SAFETY: int3 traps to the #BP handler, which returns after it.
            unsafe { core::arch::asm!("int3") };
        });
        check!(
            s.hits == 1,
            "exception-#BP",
            "int3 caught, resumed at rip={:#x}",
            s.rip
        );
    } else {
        skip!(
            "exception-#BP",
            "host is {}: KVM cannot emulate int3 there (KVM_EXIT_INTERNAL_ERROR)",
            boot.info.host().name()
        );
    }

    let s = provoke(Exception::InvalidOpcode, 2, || {
        // SAFETY: ud2 raises #UD; the handler skips its two bytes.
        unsafe { core::arch::asm!("ud2") };
    });
    check!(
        s.hits == 1,
        "exception-#UD",
        "ud2 caught at rip={:#x}",
        s.rip
    );

    if host_runs_fpu(boot) {
        let s = provoke(Exception::DeviceNotAvailable, 0, || {
            // SAFETY: sets CR0.TS so the SSE instruction raises #NM; the handler clears TS and the
            // instruction is retried.
            unsafe {
                core::arch::asm!("mov {t}, cr0", "or {t}, 8", "mov cr0, {t}", "xorps xmm0, xmm0", t = out(reg) _, out("xmm0") _)
            };
        });
        check!(
            s.hits == 1 && cpu::cr0() & 8 == 0,
            "exception-#NM",
            "SSE with CR0.TS set caught; handler cleared TS and the instruction re-ran"
        );
    } else {
        skip!("exception-#NM", "host is {}: every FPU/SSE instruction in the guest ends in a KVM emulation failure there", boot.info.host().name());
    }

    let s = provoke(Exception::GeneralProtection, 3, || {
        // SAFETY: `mov rax, [rcx]` (48 8b 01) with a non-canonical RCX raises #GP(0).
        unsafe {
            core::arch::asm!(".byte 0x48, 0x8b, 0x01", in("rcx") 0x8000_0000_0000_0000u64, out("rax") _)
        };
    });
    check!(
        s.hits == 1 && s.error_code == 0,
        "exception-#GP",
        "non-canonical load caught, error code {:#x}",
        s.error_code
    );

    let guard = gdt::IST_STACKS[0].guard_page();
    let s = provoke(Exception::PageFault, 3, || {
        // SAFETY: the load from the unmapped guard page raises #PF; the handler skips it.
        unsafe { core::arch::asm!(".byte 0x48, 0x8b, 0x01", in("rcx") guard, out("rax") _) };
    });
    let (who, what, why) = PageFaultError(s.error_code).describe();
    check!(
        s.hits == 1 && s.cr2 == guard && s.error_code & 1 == 0,
        "exception-#PF",
        "stack guard page {guard:#x} is unmapped: cr2={:#x}, {who} {what}, {why}",
        s.cr2
    );

    let s = provoke(Exception::SegmentNotPresent, 2, || {
        // SAFETY: `mov ds, ax` (8e d8) with a not-present descriptor raises #NP(selector).
        unsafe { core::arch::asm!(".byte 0x8e, 0xd8", in("ax") gdt::NOT_PRESENT) };
    });
    check!(
        s.hits == 1 && s.error_code == u64::from(gdt::NOT_PRESENT),
        "exception-#NP",
        "loading DS with a not-present descriptor: error code {:#x} = GDT index {}",
        s.error_code,
        Dec(s.error_code >> 3)
    );

    let s = provoke(Exception::StackSegment, 2, || {
        // SAFETY: `mov ss, ax` (8e d0) with a not-present descriptor raises #SS(selector).
        unsafe { core::arch::asm!(".byte 0x8e, 0xd0", in("ax") gdt::NOT_PRESENT) };
    });
    check!(
        s.hits == 1 && s.error_code == u64::from(gdt::NOT_PRESENT),
        "exception-#SS",
        "loading SS with a not-present descriptor: error code {:#x}",
        s.error_code
    );

    if host_runs_fpu(boot) {
        let s = provoke(Exception::SimdFloat, 4, || {
            // SAFETY: unmasks divide-by-zero in MXCSR, runs `divss xmm0, xmm1` (f3 0f 5e c1) with
            // xmm1 = 0 to raise #XM (CR4.OSXMMEXCPT set), then restores MXCSR.
            unsafe {
                core::arch::asm!(
                "sub rsp, 8", "stmxcsr [rsp]", "mov eax, [rsp]", "mov [rsp + 4], eax",
                "and dword ptr [rsp], ~0x200", "ldmxcsr [rsp]",
                "xorps xmm1, xmm1", "mov eax, 1", "cvtsi2ss xmm0, eax",
                ".byte 0xf3, 0x0f, 0x5e, 0xc1",
                "ldmxcsr [rsp + 4]", "add rsp, 8",
                out("eax") _, out("xmm0") _, out("xmm1") _)
            };
        });
        check!(
            s.hits == 1,
            "exception-#XM",
            "unmasked SSE divide-by-zero caught at rip={:#x}",
            s.rip
        );
    } else {
        skip!("exception-#XM", "host is {}: every FPU/SSE instruction in the guest ends in a KVM emulation failure there", boot.info.host().name());
    }

    skip!("exception-#TS", "64-bit mode has no hardware task switch, so no instruction can raise #TS here; the handler is installed and decodes its selector error code");
    skip!("exception-#MC", "machine checks come from hardware (or KVM_X86_SET_MCE, which irqlab does not inject yet); the handler is installed on its own IST stack");
}

fn expect_exit(name: &str, end: TaskEnd, want: i64) -> bool {
    match end {
        TaskEnd::Exited(code) if code == want => true,
        other => {
            crate::fail!(
                name,
                "task ended with {other}, expected exit({})",
                IDec(want)
            );
            false
        }
    }
}

fn syscall_abi(name: &str, use_int80: u64) {
    let before = crate::percpu::syscalls();
    let end = user::enter(user::abi_program, use_int80);
    if end.is_pvm_syscall_fault() && use_int80 == 0 {
        skip!(name, "host delivered SYSCALL from ring 3 to LSTAR still at CPL 3 ({end}): kvm-pvm does not switch an unmodified guest to supervisor mode on SYSCALL");
        return;
    }
    if !expect_exit(name, end, 0) {
        return;
    }
    let r = user::results();
    let neg = |e: i64| (-e) as u64;
    let want = [
        20,
        nr::sum6(1, 2, 3, 4, 5, 6),
        neg(nr::ENOSYS),
        neg(nr::EFAULT),
        neg(nr::EFAULT),
        r[5],
        neg(nr::EFAULT),
    ];
    check!(
        r == want && (use_int80 != 0 || r[5] > before),
        name,
        "write -> {}, sum6(1..6) -> {}, nr 999 -> -ENOSYS, kernel/non-canonical/overflowing pointers -> -EFAULT, counter -> {}",
        IDec(r[0] as i64),
        Dec(r[1]),
        Dec(r[5])
    );
}

fn syscalls(boot: &Boot) {
    syscall_abi("syscall-abi", 0);
    if boot.info.host().can_run_software_interrupts() {
        syscall_abi("int80-abi", 1);
    } else {
        skip!("int80-abi", "host is {}: `int 0x80` from ring 3 raises #GP there instead of entering the DPL-3 gate", boot.info.host().name());
    }
}

fn user_faults() {
    let cases: [(&str, user::Program, u64, Exception); 5] = [
        (
            "user-#PF",
            user::read_kernel,
            0x10_0000,
            Exception::PageFault,
        ),
        (
            "user-#GP",
            user::privileged,
            0,
            Exception::GeneralProtection,
        ),
        (
            "user-#UD",
            user::invalid_opcode,
            0,
            Exception::InvalidOpcode,
        ),
        ("user-#DE", user::divide_by_zero, 0, Exception::DivideError),
        (
            "user-#AC",
            user::misaligned,
            paging::user_window().0 + 0x10,
            Exception::AlignmentCheck,
        ),
    ];
    for (name, program, arg, want) in cases {
        match user::enter(program, arg) {
            TaskEnd::Faulted {
                vector,
                rip,
                error_code,
            } if vector == want as u8 => {
                let (us, ue) = paging::user_window();
                let in_user = rip >= us && rip < ue;
                let detail_ok = want != Exception::PageFault || error_code & 0b101 == 0b101;
                check!(
                    in_user && detail_ok,
                    name,
                    "{} in ring 3 at rip={rip:#x} (error {error_code:#x}) ended the task; kernel continues",
                    want.mnemonic()
                );
            }
            other => crate::fail!(
                name,
                "expected a {} fault, task ended with {other}",
                want.mnemonic()
            ),
        }
    }
}

fn external_interrupt() {
    // Mask the legacy PIC: KVM resets LVT0 to ExtINT, so an unmasked PIC would deliver IRQ 0
    // at vector 0 in `irqchip = "kernel"` mode.
    // SAFETY: 0x21/0xa1 are the PIC data ports; 0xff masks all lines.
    unsafe {
        port::outb(irqlab_abi::ports::PIC_MASTER + 1, 0xff);
        port::outb(irqlab_abi::ports::PIC_SLAVE + 1, 0xff);
    }
    apic::LAPIC.enable();
    let before = interrupts::UNEXPECTED.load(Ordering::Relaxed);
    apic::LAPIC.self_ipi(vectors::UNHANDLED_PROBE);
    cpu::sti();
    for _ in 0..1000 {
        core::hint::spin_loop();
    }
    cpu::cli();
    let got = interrupts::UNEXPECTED.load(Ordering::Relaxed) - before;
    let last = interrupts::LAST_UNEXPECTED.load(Ordering::Relaxed);
    check!(
        got == 1 && last == u64::from(vectors::UNHANDLED_PROBE),
        "unexpected-vector",
        "LAPIC self-IPI at vector {:#x} with no handler was reported (count {}, vector {last:#x}) and EOIed", vectors::UNHANDLED_PROBE, Dec(got)
    );
}
