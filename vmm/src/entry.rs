//! How the boot CPU enters a kernel: the protocol a config asks for, the entry an image gets
//! under it, and which extra inputs (initrd, Multiboot modules) each entry takes. Decided
//! from the image alone, so configs are checked before anything is loaded ([`entry_of`]) and
//! [`crate::boot`] writes what the chosen entry needs.

use crate::arch::x86_64::linux;
use crate::loader::{self, elf, Format, KernelImage, LoadError, LoadedKernel};
use linux_loader::loader::bootparam::setup_header;
use serde::Deserialize;

/// How the kernel is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BootProtocol {
    /// From the image: a bzImage, or an ELF64 with a `"Linux"` note → linux; an ELF64 with
    /// irqlab's ABI note → native; else a PVH note → pvh; a Multiboot header → multiboot;
    /// else native.
    #[default]
    Auto,
    /// 64-bit long mode with irqlab's boot info in RDI (`docs/guest-abi.md`).
    Native,
    /// 32-bit protected mode at the `XEN_ELFNOTE_PHYS32_ENTRY` address, `hvm_start_info` in EBX.
    Pvh,
    /// Multiboot v1: 32-bit protected mode, EAX = 0x2BADB002, Multiboot info in EBX.
    Multiboot,
    /// Linux's 64-bit boot protocol (bzImage or vmlinux): long mode, zero page in RSI.
    Linux,
}

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
/// as [`crate::config::VmConfig::check_inputs`]. `None` when the image would not load — the run names why.
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
            entry_name_of(
                crate::loader::multiboot::tiny_kernel(true),
                BootProtocol::Auto
            ),
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
