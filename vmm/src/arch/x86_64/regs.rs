//! Entry register state for 64-bit long mode (guest ABI "Entry state").

use super::{gdt, BootError};
use irqlab_abi::layout::{BOOT_GDT, BOOT_INFO, ENTRY_STACK_TOP};
use kvm_bindings::{kvm_fpu, kvm_regs};
use kvm_ioctls::VcpuFd;

/// CR0: PE | MP | ET | NE | WP | PG.
pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4: PAE | OSFXSR | OSXMMEXCPT.
pub const CR4: u64 = (1 << 5) | (1 << 9) | (1 << 10);
/// XCR0: x87 | SSE state components.
pub const XCR0: u64 = 0b11;
/// EFER: LME | LMA.
pub const EFER: u64 = (1 << 8) | (1 << 10);

/// Puts vCPU `id` into long mode at `entry` with the boot info in RDI.
pub fn set_long_mode(
    vcpu: &VcpuFd,
    id: u8,
    entry: u64,
    cr3: u64,
    gdt_limit: u16,
) -> Result<(), BootError> {
    let kvm = |ioctl| BootError::kvm(ioctl, id);
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let (code, data, tss) = gdt::entry_segments();
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = gdt_limit;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4;
    sregs.efer = EFER;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;

    let regs = kvm_regs {
        rip: entry,
        rsp: ENTRY_STACK_TOP,
        rbp: 0,
        rdi: BOOT_INFO,
        rsi: irqlab_abi::boot_info::MAGIC,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))?;

    // XCR0 = x87 | SSE. A fresh vCPU has XCR0 = x87 only; hosts that switch FPU state with
    // XSAVE (kvm-pvm among them) then cannot run the guest's SSE instructions natively and
    // fall back to KVM's emulator, which has no SSE.
    let mut xcrs = vcpu.get_xcrs().map_err(kvm("KVM_GET_XCRS"))?;
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = XCR0;
    vcpu.set_xcrs(&xcrs).map_err(kvm("KVM_SET_XCRS"))?;
    Ok(())
}

/// Puts vCPU `id` into 32-bit protected mode, paging off, at `entry` with EAX and EBX as
/// given (PVH: EBX = start info; Multiboot: EAX = 0x2BADB002, EBX = info). Flat 4 GiB code
/// and data segments; the kernel loads its own GDT.
pub fn set_protected_mode(
    vcpu: &VcpuFd,
    id: u8,
    entry: u64,
    eax: u32,
    ebx: u64,
) -> Result<(), BootError> {
    let kvm = |ioctl| BootError::kvm(ioctl, id);
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let flat = |selector: u16, type_: u8| kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    };
    sregs.cs = flat(0x08, 0xb);
    let data = flat(0x10, 0x3);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_bindings::kvm_segment {
        base: 0,
        limit: 0x67,
        selector: 0x18,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.cr0 = 0x11; // PE | ET
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rip: entry,
        rax: eax.into(),
        rbx: ebx,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))
}
