//! Boot protocols: which one enters a loaded kernel, and writing what it needs.
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
use crate::config::{BootProtocol, VmConfig};
use crate::loader::LoadError;
use crate::loader::{self, elf, multiboot, Format, KernelImage, LoadedKernel};
use crate::machine::SetupError;
use crate::memory::GuestMemory;
use kvm_ioctls::VcpuFd;
use linux_loader::loader::bootparam::setup_header;

/// How the boot CPU enters the kernel.
#[derive(Clone, Copy, Debug)]
pub enum Entry {
    /// irqlab's own ABI.
    Native,
    /// PVH at this 32-bit entry point.
    Pvh(u64),
    /// Multiboot v1.
    Multiboot,
    /// Linux's 64-bit boot protocol with this setup header (a bzImage's own, or a synthesized
    /// one for a vmlinux).
    Linux(setup_header),
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

/// Picks the entry for `protocol` (`Auto` decides from the image), or names why the image
/// cannot be entered that way.
pub fn choose(
    protocol: BootProtocol,
    format: Format,
    kernel: &LoadedKernel,
    bz_header: Option<setup_header>,
    name: &str,
) -> Result<Entry, LoadError> {
    let refuse = |problem: &str| {
        Err(LoadError::Unsupported {
            name: name.to_string(),
            problem: problem.to_string(),
        })
    };
    let linux = || Entry::Linux(bz_header.unwrap_or_else(linux::vmlinux_header));
    match (protocol, format) {
        // `loader::detect` returns Multiboot whenever it is asked for.
        (_, Format::Multiboot) | (BootProtocol::Multiboot, _) => Ok(Entry::Multiboot),
        (BootProtocol::Auto | BootProtocol::Linux, Format::BzImage) => Ok(linux()),
        (_, Format::BzImage) => {
            refuse("a bzImage boots only through the Linux boot protocol (boot = \"linux\")")
        }
        (BootProtocol::Linux, Format::Elf64) => Ok(linux()),
        (BootProtocol::Native, Format::Elf64) => Ok(Entry::Native),
        (BootProtocol::Pvh, Format::Elf64) => match kernel.pvh_entry {
            Some(e) => Ok(Entry::Pvh(e)),
            None => refuse(
                "boot = \"pvh\" needs a PVH entry (XEN_ELFNOTE_PHYS32_ENTRY note); the image has none",
            ),
        },
        (BootProtocol::Auto, Format::Elf64) => Ok(if kernel.notes.irqlab {
            Entry::Native
        } else if kernel.notes.linux {
            linux()
        } else if let Some(e) = kernel.pvh_entry {
            Entry::Pvh(e)
        } else {
            Entry::Native
        }),
    }
}

/// How `image` would be entered under `protocol`, decided from its bytes alone (nothing is
/// loaded; the PVH entry is taken from the note's presence): for checks before the run, such
/// as [`VmConfig::check_inputs`]. `None` when the image would not load — the run names why.
pub fn entry_of(image: &KernelImage, protocol: BootProtocol) -> Option<Entry> {
    let format = loader::detect(image, protocol == BootProtocol::Multiboot);
    let notes = match format {
        Format::Elf64 => elf::notes(&image.bytes),
        _ => elf::Notes::default(),
    };
    let kernel = LoadedKernel {
        entry: 0,
        start: 0,
        end: 0,
        pvh_entry: notes.pvh.then_some(0),
        notes,
    };
    choose(protocol, format, &kernel, None, &image.name).ok()
}

/// The protocol an entry uses, in words.
pub fn entry_name(entry: &Entry) -> &'static str {
    match entry {
        Entry::Native => "irqlab's native boot protocol",
        Entry::Pvh(_) => "PVH",
        Entry::Multiboot => "Multiboot v1",
        Entry::Linux(_) => "the Linux boot protocol",
    }
}

/// Why `key` (`"initrd"` or `"modules"`) cannot be given to `kernel` (a name for the message)
/// entered with `entry`: only the Linux boot protocol and PVH take an initrd, only Multiboot
/// takes modules. The words follow the key: "is only for …". `None` if it can.
pub fn refuses_input(entry: &Entry, key: &str, kernel: &str) -> Option<String> {
    let (takes, kernels, instead) = match key {
        "initrd" => (
            matches!(entry, Entry::Linux(_) | Entry::Pvh(_)),
            "kernels entered through the Linux boot protocol (bzImage, vmlinux) or PVH",
            matches!(entry, Entry::Multiboot).then_some("modules"),
        ),
        _ => (
            matches!(entry, Entry::Multiboot),
            "Multiboot kernels",
            matches!(entry, Entry::Linux(_)).then_some("initrd"),
        ),
    };
    (!takes).then(|| {
        let mut why = format!(
            "is only for {kernels}; {kernel} boots through {}",
            entry_name(entry)
        );
        if let Some(other) = instead {
            why.push_str(&format!(", which takes `{other}` instead"));
        }
        why
    })
}

/// What entering a kernel needs besides the entry itself.
pub struct EntryContext<'a> {
    /// Guest memory.
    pub mem: &'a GuestMemory,
    /// The boot CPU.
    pub vcpu: &'a VcpuFd,
    /// The run's config (command line, initrd, modules).
    pub config: &'a VmConfig,
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
pub fn enter(entry: Entry, cx: &EntryContext) -> Result<(), SetupError> {
    let facts = cx.facts;
    let kernel = facts.kernel;
    // `VmConfig::check_inputs` refuses these before the run (exit 65); this catches library
    // callers that built a config by hand, instead of ignoring the files silently.
    for (key, given) in [
        ("initrd", cx.config.initrd.is_some()),
        ("modules", !cx.config.modules.is_empty()),
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
            let mut cmdline = cx.config.cmdline.clone();
            if kernel.notes.irqlab && !cmdline.split(' ').any(|w| w.starts_with("host=")) {
                cmdline = format!("{cmdline} host={}", facts.host.name())
                    .trim()
                    .to_string();
            }
            let rsdp = platform_tables(cx.mem, facts.vcpus)?;
            // The initrd is the first module of the start info's list (Linux's PVH entry
            // takes it from there), placed like the Linux protocol's.
            let initrd = match &cx.config.initrd {
                Some(path) => Some(load_initrd(
                    cx.mem,
                    facts.mem_size,
                    path,
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
            if cmdline_max != 0 && cx.config.cmdline.len() > cmdline_max {
                return Err(LoadError::Unsupported {
                    name: cx.kernel_name.to_string(),
                    problem: format!(
                        "the command line is {} bytes; this kernel takes at most {cmdline_max} (setup header cmdline_size)",
                        cx.config.cmdline.len()
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
            let initrd = match &cx.config.initrd {
                Some(path) => Some(load_initrd(
                    cx.mem,
                    facts.mem_size,
                    path,
                    kernel.end,
                    initrd_end,
                )?),
                None => None,
            };
            let ram = [(0, 0x9_fc00), (1 << 20, ram_end - (1 << 20))];
            let input = linux::BootParamsInput {
                cmdline: &cx.config.cmdline,
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

/// Loads the initrd (a regular file, read no further than `mem_size` bytes) at
/// [`initrd_addr`].
fn load_initrd(
    mem: &GuestMemory,
    mem_size: u64,
    path: &std::path::Path,
    kernel_end: u64,
    end: u64,
) -> Result<(u64, u64), SetupError> {
    let limit = format!("guest memory ({} MiB)", mem_size >> 20);
    let bytes = crate::input::read_regular(path, mem_size, &limit).map_err(|source| {
        SetupError::Initrd {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let size = bytes.len() as u64;
    let Some(addr) = initrd_addr(size, kernel_end, end) else {
        return Err(SetupError::InitrdTooBig {
            path: path.to_path_buf(),
            size,
        });
    };
    vm_memory::Bytes::write_slice(mem, &bytes, vm_memory::GuestAddress(addr)).map_err(
        |source| BootError::Memory {
            what: "initrd",
            addr,
            source,
        },
    )?;
    Ok((addr, size))
}

fn enter_multiboot(cx: &EntryContext) -> Result<(), SetupError> {
    let (facts, config) = (cx.facts, cx.config);
    // Conventional memory, and one contiguous range from 1 MiB (kernel + RAM) up to the
    // regions shared with the VMM, for mem_lower/mem_upper and the memory map. (The kernel
    // may sit in either.)
    let upper_end = facts.top.usable_end().max(1 << 20);
    let ram = [
        (0, multiboot::LOW_RAM_END),
        (1 << 20, upper_end - (1 << 20)),
    ];
    let mut files = Vec::new();
    let limit = format!("guest memory ({} MiB)", facts.mem_size >> 20);
    for path in &config.modules {
        let bytes = crate::input::read_regular(path, facts.mem_size, &limit).map_err(|source| {
            SetupError::Initrd {
                path: path.clone(),
                source,
            }
        })?;
        files.push((path.display().to_string(), bytes));
    }
    // Module names go after the command line, inside the command-line page.
    let strings_at = irqlab_abi::layout::CMDLINE + config.cmdline.len() as u64 + 1;
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
        &config.cmdline,
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
    use crate::loader::elf::Notes;

    fn kernel(irqlab: bool, linux: bool, pvh: Option<u64>) -> LoadedKernel {
        LoadedKernel {
            entry: 0x100_0000,
            start: 0x100_0000,
            end: 0x200_0000,
            pvh_entry: pvh,
            notes: Notes {
                irqlab,
                linux,
                pvh: pvh.is_some(),
            },
        }
    }

    fn pick(p: BootProtocol, f: Format, k: LoadedKernel) -> Result<&'static str, String> {
        choose(p, f, &k, None, "k")
            .map(|e| match e {
                Entry::Native => "native",
                Entry::Pvh(_) => "pvh",
                Entry::Multiboot => "multiboot",
                Entry::Linux(_) => "linux",
            })
            .map_err(|e| e.to_string())
    }

    fn entry_name_of(bytes: Vec<u8>, p: BootProtocol) -> Option<&'static str> {
        let image = KernelImage {
            name: "k".into(),
            bytes: bytes.into(),
        };
        entry_of(&image, p).as_ref().map(entry_name)
    }

    #[test]
    fn the_entry_is_known_before_anything_is_loaded() {
        let guest = || crate::BUILTIN_GUEST.to_vec();
        let native = Some("irqlab's native boot protocol");
        assert_eq!(entry_name_of(guest(), BootProtocol::Auto), native);
        assert_eq!(entry_name_of(guest(), BootProtocol::Pvh), Some("PVH"));
        assert_eq!(
            entry_name_of(guest(), BootProtocol::Linux),
            Some("the Linux boot protocol")
        );
        assert_eq!(
            entry_name_of(multiboot::tiny_kernel(true), BootProtocol::Auto),
            Some("Multiboot v1")
        );
        let plain = || elf::tiny_elf(2, 62, 0x10_0000, 0, &[0xf4]);
        assert_eq!(entry_name_of(plain(), BootProtocol::Auto), native);
        // No PVH note: `--boot pvh` would fail to load, and the run says why.
        assert_eq!(entry_name_of(plain(), BootProtocol::Pvh), None);
    }

    #[test]
    fn only_linux_and_pvh_take_an_initrd_and_only_multiboot_modules() {
        let linux = Entry::Linux(linux::vmlinux_header());
        assert_eq!(refuses_input(&linux, "initrd", "k"), None);
        assert_eq!(refuses_input(&Entry::Multiboot, "modules", "k"), None);
        assert_eq!(
            refuses_input(&Entry::Multiboot, "initrd", "mb.elf").unwrap(),
            "is only for kernels entered through the Linux boot protocol (bzImage, vmlinux) or \
             PVH; mb.elf boots through Multiboot v1, which takes `modules` instead"
        );
        assert_eq!(
            refuses_input(&linux, "modules", "vmlinux").unwrap(),
            "is only for Multiboot kernels; vmlinux boots through the Linux boot protocol, \
             which takes `initrd` instead"
        );
        let pvh = Entry::Pvh(0x10_0000);
        assert_eq!(refuses_input(&pvh, "initrd", "k"), None);
        assert!(refuses_input(&pvh, "modules", "k").is_some());
        for key in ["initrd", "modules"] {
            assert!(refuses_input(&Entry::Native, key, "k").is_some());
        }
    }

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

    #[test]
    fn auto_follows_the_image() {
        use BootProtocol::Auto;
        let elf = Format::Elf64;
        // The irqlab guest has both its own note and a PVH note: native wins.
        assert_eq!(
            pick(Auto, elf, kernel(true, false, Some(0x10_0000))),
            Ok("native")
        );
        // A vmlinux has a Linux note and (often) a PVH note: the Linux boot protocol wins.
        assert_eq!(
            pick(Auto, elf, kernel(false, true, Some(0x10_0000))),
            Ok("linux")
        );
        assert_eq!(
            pick(Auto, elf, kernel(false, false, Some(0x10_0000))),
            Ok("pvh")
        );
        assert_eq!(pick(Auto, elf, kernel(false, false, None)), Ok("native"));
        assert_eq!(
            pick(Auto, Format::BzImage, kernel(false, false, None)),
            Ok("linux")
        );
        assert_eq!(
            pick(Auto, Format::Multiboot, kernel(false, false, None)),
            Ok("multiboot")
        );
    }

    #[test]
    fn an_explicit_protocol_wins_or_names_the_problem() {
        let vmlinux = kernel(false, true, Some(0x10_0000));
        assert_eq!(pick(BootProtocol::Pvh, Format::Elf64, vmlinux), Ok("pvh"));
        assert_eq!(
            pick(BootProtocol::Native, Format::Elf64, vmlinux),
            Ok("native")
        );
        assert_eq!(
            pick(
                BootProtocol::Linux,
                Format::Elf64,
                kernel(false, false, None)
            ),
            Ok("linux")
        );
        let no_pvh = pick(BootProtocol::Pvh, Format::Elf64, kernel(false, false, None));
        assert!(no_pvh.unwrap_err().contains("XEN_ELFNOTE_PHYS32_ENTRY"));
        let bz = pick(
            BootProtocol::Pvh,
            Format::BzImage,
            kernel(false, false, None),
        );
        assert!(bz.unwrap_err().starts_with("k: a bzImage boots only"));
    }
}
