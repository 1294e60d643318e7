//! Booting a kernel: loading its image, then writing what its entry ([`crate::entry`]) needs
//! and putting the boot CPU there. No file I/O: the initrd and modules arrive as bytes
//! ([`BootFiles`], read by the machine builder before anything is loaded).
//!
//! | protocol  | images                         | entry state                                   |
//! |-----------|--------------------------------|-----------------------------------------------|
//! | native    | ELF64 (irqlab note)            | long mode, irqlab boot info in RDI            |
//! | pvh       | ELF64 with a PVH note          | 32-bit protected mode, `hvm_start_info` in EBX |
//! | multiboot | ELF32 / a.out kludge           | 32-bit protected mode, Multiboot info in EBX  |
//! | linux     | bzImage, vmlinux (Linux note)  | long mode, zero page (`boot_params`) in RSI   |
//!
//! PVH and Linux kernels also get the platform tables a PC firmware would leave: an MP table
//! and ACPI (RSDP, XSDT, FADT, DSDT, MADT) describing the CPUs, the IO-APIC and the ISA IRQ
//! wiring. The irqlab guest needs neither (its boot info says it all).

use crate::arch::x86_64::{acpi, boot_info, linux, mptable, pvh, regs, BootError};
use crate::entry::{choose, refuses_input, BootProtocol, Entry};
use crate::loader::{self, elf, multiboot, Format, KernelImage, LoadError, LoadedKernel};
use crate::memory::GuestMemory;
use kvm_ioctls::VcpuFd;
use std::path::PathBuf;

/// Why a loaded kernel could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The kernel cannot take what the run gives it (an input its protocol has no place for,
    /// a command line longer than its setup header allows, modules that do not fit).
    #[error(transparent)]
    Kernel(#[from] LoadError),
    /// Writing a boot structure or setting the boot CPU's registers failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The initrd does not fit between the kernel and the end of RAM.
    #[error("{}: initrd of {size} bytes does not fit in guest memory; raise mem_mib", path.display())]
    InitrdTooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// One file handed to the kernel, read before the boot starts.
#[derive(Clone, Debug)]
pub struct BootFile {
    /// Where it came from (for errors, and a Multiboot module's string).
    pub path: PathBuf,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// The files a kernel gets besides its image: an initrd (Linux, PVH) or Multiboot modules.
#[derive(Clone, Debug, Default)]
pub struct BootFiles {
    /// The initrd.
    pub initrd: Option<BootFile>,
    /// Multiboot modules, in order.
    pub modules: Vec<BootFile>,
}

/// A loaded kernel and how it will be entered.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// The image format.
    pub format: Format,
    /// Where it landed.
    pub kernel: LoadedKernel,
    /// How the boot CPU enters it.
    pub entry: Entry,
}

/// Detects the format, validates the image against `mem_size` bytes of RAM, loads it into
/// `mem` and picks the entry for `protocol`. Touches no KVM state: `irqlab inspect` runs it
/// on scratch memory.
pub fn load(
    image: &KernelImage,
    protocol: BootProtocol,
    mem: &GuestMemory,
    mem_size: u64,
) -> Result<Plan, LoadError> {
    let format = loader::detect(image, protocol == BootProtocol::Multiboot);
    let (kernel, bz_header) = match format {
        Format::Elf64 => (elf::load(image, mem, mem_size)?, None),
        Format::Multiboot => (multiboot::load(image, mem, mem_size)?, None),
        Format::BzImage => {
            let (k, hdr) = loader::linux::load(image, mem, mem_size)?;
            (k, Some(hdr))
        }
    };
    let entry = choose(protocol, format, &kernel, bz_header, &image.name)?;
    Ok(Plan {
        format,
        kernel,
        entry,
    })
}

/// What entering a kernel needs besides the entry itself.
pub struct EntryContext<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemory,
    /// The boot CPU.
    pub vcpu: &'a VcpuFd,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// The initrd and modules.
    pub files: &'a BootFiles,
    /// Memory layout and the loaded kernel.
    pub facts: &'a boot_info::BootFacts<'a>,
    /// The kernel image's name, for errors.
    pub kernel_name: &'a str,
    /// The identity-mapping page tables.
    pub cr3: u64,
    /// irqlab's boot GDT limit.
    pub gdt_limit: u16,
}

/// Writes the boot structures `entry` needs and puts the boot CPU at the kernel's entry.
pub fn enter(entry: Entry, cx: &EntryContext) -> Result<(), EntryError> {
    let facts = cx.facts;
    let kernel = facts.kernel;
    // `VmConfig::check_inputs` refuses these before the run (exit 65); this catches library
    // callers that built a config by hand, instead of ignoring the files silently.
    for (key, given) in [
        ("initrd", cx.files.initrd.is_some()),
        ("modules", !cx.files.modules.is_empty()),
    ] {
        if let Some(why) = refuses_input(&entry, key, "the kernel").filter(|_| given) {
            return Err(LoadError::Unsupported {
                name: cx.kernel_name.to_string(),
                problem: format!("`{key}` {why}"),
            }
            .into());
        }
    }
    match entry {
        Entry::Native => {
            boot_info::write(cx.mem, facts)?;
            regs::set_long_mode(cx.vcpu, 0, kernel.entry, cx.cr3, cx.gdt_limit)?;
        }
        Entry::Pvh(at) => {
            // PVH has no field for the host kind; the irqlab guest reads `host=` from its
            // command line (appended for kernels with irqlab's note, unless the user gave one).
            let mut cmdline = cx.cmdline.to_string();
            if kernel.notes.irqlab && !cmdline.split(' ').any(|w| w.starts_with("host=")) {
                cmdline = format!("{cmdline} host={}", facts.host.name())
                    .trim()
                    .to_string();
            }
            let rsdp = platform_tables(cx.mem, facts.vcpus)?;
            // The initrd is the first module of the start info's list (Linux's PVH entry
            // takes it from there), placed like the Linux protocol's.
            let initrd = match &cx.files.initrd {
                Some(file) => Some(load_initrd(
                    cx.mem,
                    file,
                    kernel.end,
                    facts.top.usable_end(),
                )?),
                None => None,
            };
            let start_info = pvh::write(cx.mem, &pvh_mem_map(facts), &cmdline, rsdp, initrd)?;
            regs::set_protected_mode(cx.vcpu, 0, at, 0, start_info)?;
        }
        Entry::Multiboot => enter_multiboot(cx)?,
        Entry::Linux(hdr) => {
            let cmdline_max = hdr.cmdline_size as usize;
            if cmdline_max != 0 && cx.cmdline.len() > cmdline_max {
                return Err(LoadError::Unsupported {
                    name: cx.kernel_name.to_string(),
                    problem: format!(
                        "the command line is {} bytes; this kernel takes at most {cmdline_max} (setup header cmdline_size)",
                        cx.cmdline.len()
                    ),
                }
                .into());
            }
            let ram_end = facts.top.usable_end();
            // The kernel reads the initrd only below its `initrd_addr_max` (protocol 2.03+).
            let initrd_end = match hdr.initrd_addr_max {
                0 => ram_end,
                max => ram_end.min(u64::from(max) + 1),
            };
            let initrd = match &cx.files.initrd {
                Some(file) => Some(load_initrd(cx.mem, file, kernel.end, initrd_end)?),
                None => None,
            };
            let ram = [(0, 0x9_fc00), (1 << 20, ram_end - (1 << 20))];
            let input = linux::BootParamsInput {
                cmdline: cx.cmdline,
                ram: &ram,
                initrd,
                rsdp: platform_tables(cx.mem, facts.vcpus)?,
            };
            let limit = linux::write_boot(cx.mem, hdr, &input)?;
            linux::set_regs(cx.vcpu, kernel.entry, cx.cr3, limit)?;
        }
    }
    Ok(())
}

/// The tables a kernel from elsewhere reads to find CPUs and interrupt routing: an MP table
/// (for kernels built with MP-table parsing) and ACPI (for the rest); returns the RSDP.
fn platform_tables(mem: &GuestMemory, vcpus: u8) -> Result<u64, BootError> {
    mptable::write(mem, vcpus)?;
    acpi::write(mem, vcpus)
}

/// The memory map a PVH kernel gets: irqlab's, except that conventional memory between
/// irqlab's boot structures (GDT, start info, command line, page tables: 0x1000..0xa000) and
/// the MP table / EBDA (0x9fc00) is RAM. A kernel needs RAM below 1 MiB for its real-mode
/// trampoline: Linux through PVH panicked ("Real mode trampoline was not allocated") when all
/// of it was reserved.
fn pvh_mem_map(facts: &boot_info::BootFacts) -> Vec<irqlab_abi::boot_info::MemMapEntry> {
    use irqlab_abi::boot_info::{MemMapEntry, MEM_BOOT, MEM_RAM};
    let low_ram = (irqlab_abi::layout::PAGE_TABLES_END, mptable::MPTABLE_START);
    let entry = |addr: u64, end: u64, kind| MemMapEntry {
        addr,
        size: end - addr,
        kind,
        reserved: 0,
    };
    boot_info::mem_map(facts)
        .into_iter()
        .flat_map(|e| {
            if e.kind == MEM_BOOT && e.addr < low_ram.0 && e.addr + e.size >= 1 << 20 {
                vec![
                    entry(e.addr, low_ram.0, MEM_BOOT),
                    entry(low_ram.0, low_ram.1, MEM_RAM),
                    entry(low_ram.1, e.addr + e.size, MEM_BOOT),
                ]
            } else {
                vec![e]
            }
        })
        .collect()
}

/// Where an initrd of `size` bytes goes: page-aligned, as high as it fits below `end`, above
/// the kernel; `None` if it does not fit.
fn initrd_addr(size: u64, kernel_end: u64, end: u64) -> Option<u64> {
    let addr = end.checked_sub(size)? & !0xfff;
    (addr >= kernel_end.next_multiple_of(4096)).then_some(addr)
}

/// Copies the initrd to [`initrd_addr`]; returns its address and size.
fn load_initrd(
    mem: &GuestMemory,
    file: &BootFile,
    kernel_end: u64,
    end: u64,
) -> Result<(u64, u64), EntryError> {
    let size = file.bytes.len() as u64;
    let Some(addr) = initrd_addr(size, kernel_end, end) else {
        return Err(EntryError::InitrdTooBig {
            path: file.path.clone(),
            size,
        });
    };
    vm_memory::Bytes::write_slice(mem, &file.bytes, vm_memory::GuestAddress(addr)).map_err(
        |source| BootError::Memory {
            what: "initrd",
            addr,
            source,
        },
    )?;
    Ok((addr, size))
}

fn enter_multiboot(cx: &EntryContext) -> Result<(), EntryError> {
    let facts = cx.facts;
    // Conventional memory, and one contiguous range from 1 MiB (kernel + RAM) up to the
    // regions shared with the VMM, for mem_lower/mem_upper and the memory map. (The kernel
    // may sit in either.)
    let upper_end = facts.top.usable_end().max(1 << 20);
    let ram = [
        (0, multiboot::LOW_RAM_END),
        (1 << 20, upper_end - (1 << 20)),
    ];
    let files: Vec<(String, &[u8])> = cx
        .files
        .modules
        .iter()
        .map(|m| (m.path.display().to_string(), m.bytes.as_slice()))
        .collect();
    // Module names go after the command line, inside the command-line page.
    let strings_at = irqlab_abi::layout::CMDLINE + cx.cmdline.len() as u64 + 1;
    // Modules go above the kernel and never below 1 MiB (a kernel may load low).
    let modules_from = facts.kernel.end.max(1 << 20);
    let modules = multiboot::load_modules(cx.mem, &files, modules_from, strings_at, upper_end)
        .map_err(|problem| LoadError::Unsupported {
            name: cx.kernel_name.to_string(),
            problem,
        })?;
    let info = multiboot::write_info(
        cx.mem,
        irqlab_abi::layout::BOOT_INFO,
        irqlab_abi::layout::CMDLINE,
        cx.cmdline,
        &ram,
        &modules,
    )
    .map_err(|source| BootError::Memory {
        what: "Multiboot information",
        addr: irqlab_abi::layout::BOOT_INFO,
        source,
    })?;
    regs::set_protected_mode(
        cx.vcpu,
        0,
        facts.kernel.entry,
        multiboot::BOOTLOADER_MAGIC,
        info,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initrd_goes_high_but_below_the_limit_and_above_the_kernel() {
        let mib = 1u64 << 20;
        assert_eq!(initrd_addr(5000, 16 * mib, 64 * mib), Some(64 * mib - 8192));
        // A 3 GiB machine, a kernel that reads initrds below 2 GiB only.
        assert_eq!(
            initrd_addr(4096, 16 * mib, 0x8000_0000),
            Some(0x8000_0000 - 4096)
        );
        assert_eq!(initrd_addr(60 * mib, 16 * mib, 64 * mib), None);
        assert_eq!(initrd_addr(u64::MAX, 0, 64 * mib), None);
    }
}
