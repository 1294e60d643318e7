//! Entering a Linux kernel through the 64-bit boot protocol (Documentation/arch/x86/boot.rst):
//! its own GDT layout (`__BOOT_CS` = 0x10, `__BOOT_DS` = 0x18), the zero page written by
//! linux-loader's `LinuxBootConfigurator`, and long-mode registers with RSI = the zero page.

use super::gdt::kvm_segment_in;
use super::BootError;
use crate::loader::linux::{BOOT_FLAG, HDRS};
use irqlab_abi::layout::{BOOT_GDT, BOOT_INFO, CMDLINE};
use irqlab_x86::segment::{self, Ring};
use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuFd;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress};

/// The zero page goes where irqlab's boot info would (4 KiB, below the command line).
pub const ZERO_PAGE: u64 = BOOT_INFO;
/// Linux's `__BOOT_CS` in the GDT irqlab builds for it (irqlab's own guests use
/// `irqlab_abi::layout::BOOT_CS` = 0x08 in another GDT).
const LINUX_BOOT_CS: u16 = 0x10;
/// Linux's `__BOOT_DS`.
const LINUX_BOOT_DS: u16 = 0x18;
const BOOT_TR: u16 = 0x20;
/// `type_of_loader`: "undefined" (0xff).
const LOADER_UNDEFINED: u8 = 0xff;
/// `loadflags`: CAN_USE_HEAP.
const CAN_USE_HEAP: u8 = 0x80;
const E820_RAM: u32 = 1;
/// x86-64 kernels are aligned (and, unless relocated, linked) at 16 MiB.
const KERNEL_ALIGNMENT: u32 = 0x100_0000;

/// Boot protocol 2.15: new enough that the kernel reads `acpi_rsdp_addr` (2.14).
const VMLINUX_PROTOCOL: u16 = 0x020f;
/// What an x86-64 bzImage's header says (and the kernel enforces): initrds below 2 GiB
/// (unless XLF_CAN_BE_LOADED_ABOVE_4G, which a vmlinux cannot tell us), command lines up to
/// `COMMAND_LINE_SIZE` - 1.
const VMLINUX_INITRD_ADDR_MAX: u32 = 0x7fff_ffff;
const VMLINUX_CMDLINE_SIZE: u32 = 2047;

/// The setup header a vmlinux would have had in front of it: a vmlinux has none, so the
/// loader supplies the fields the kernel checks (as a bzImage's would read); every other
/// field is zero, which the protocol defines as "not used".
pub fn vmlinux_header() -> setup_header {
    setup_header {
        boot_flag: BOOT_FLAG,
        header: HDRS,
        version: VMLINUX_PROTOCOL,
        kernel_alignment: KERNEL_ALIGNMENT,
        initrd_addr_max: VMLINUX_INITRD_ADDR_MAX,
        cmdline_size: VMLINUX_CMDLINE_SIZE,
        ..Default::default()
    }
}

fn gdt() -> [u64; 6] {
    let [tss_low, tss_high] = segment::tss64(0, 0x67, segment::SYSTEM_TYPE_TSS_BUSY);
    [
        0,
        0,
        segment::code64(Ring::Ring0),
        segment::data(Ring::Ring0),
        tss_low,
        tss_high,
    ]
}

/// What the zero page tells the kernel besides its own setup header.
pub struct BootParamsInput<'a> {
    /// The kernel command line.
    pub cmdline: &'a str,
    /// E820 RAM ranges (address, size).
    pub ram: &'a [(u64, u64)],
    /// (address, size) of the initrd, if one was loaded.
    pub initrd: Option<(u64, u64)>,
    /// The ACPI RSDP (`acpi_rsdp_addr`, boot protocol 2.14).
    pub rsdp: u64,
}

/// Writes the GDT, command line and zero page; returns the GDT limit.
pub fn write_boot(
    mem: &crate::memory::GuestMemory,
    hdr: setup_header,
    input: &BootParamsInput,
) -> Result<u16, BootError> {
    let BootParamsInput {
        cmdline,
        ram,
        initrd,
        rsdp,
    } = *input;
    let err = |what, addr| move |source| BootError::Memory { what, addr, source };
    let table = gdt();
    for (i, e) in table.iter().enumerate() {
        let at = BOOT_GDT + 8 * i as u64;
        mem.write_obj(*e, GuestAddress(at))
            .map_err(err("Linux GDT", at))?;
    }
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.write_slice(&c, GuestAddress(CMDLINE))
        .map_err(err("command line", CMDLINE))?;
    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: rsdp,
        ..Default::default()
    };
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.loadflags |= CAN_USE_HEAP;
    params.hdr.heap_end_ptr = 0xfe00;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = c.len() as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    for (i, &(addr, size)) in ram.iter().take(params.e820_table.len()).enumerate() {
        params.e820_table[i].addr = addr;
        params.e820_table[i].size = size;
        params.e820_table[i].r#type = E820_RAM;
        params.e820_entries = i as u8 + 1;
    }
    LinuxBootConfigurator::write_bootparams(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE)),
        mem,
    )
    .map_err(BootError::ZeroPage)?;
    Ok((table.len() * 8 - 1) as u16)
}

/// Long mode at `entry` with Linux's selectors and RSI = the zero page.
pub fn set_regs(vcpu: &VcpuFd, entry: u64, cr3: u64, gdt_limit: u16) -> Result<(), BootError> {
    let kvm = |ioctl| BootError::kvm(ioctl, 0);
    let table = gdt();
    let mut sregs = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let data = kvm_segment_in(&table, LINUX_BOOT_DS);
    sregs.cs = kvm_segment_in(&table, LINUX_BOOT_CS);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = kvm_segment_in(&table, BOOT_TR);
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = gdt_limit;
    sregs.cr0 = super::regs::CR0;
    sregs.cr3 = cr3;
    sregs.cr4 = super::regs::CR4;
    sregs.efer = super::regs::EFER;
    vcpu.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&kvm_regs {
        rip: entry,
        rsi: ZERO_PAGE,
        rsp: irqlab_abi::layout::ENTRY_STACK_TOP,
        rflags: 0x2,
        ..Default::default()
    })
    .map_err(kvm("KVM_SET_REGS"))
}
