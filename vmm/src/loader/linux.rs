//! Linux bzImage kernels through the 64-bit boot protocol (Documentation/arch/x86/boot.rst,
//! "64-bit Boot Protocol"): linux-loader places the protected-mode kernel, irqlab writes the
//! zero page (`boot_params`: the image's setup header, command line, E820 map, initrd) and
//! enters `startup_64` (load address + 0x200) in long mode with RSI = the zero page.

use super::elf::LoadError;
use super::{le_u16, le_u32, KernelImage, LoadedKernel};
use crate::arch::x86_64::linux::{BOOT_FLAG, HDRS};
use crate::memory::GuestMemory;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, KernelLoader};
use std::io::Cursor;

/// `xloadflags` bit: the kernel has the legacy 64-bit entry point at 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;

/// Whether the image looks like a bzImage (boot sector flag and `HdrS`).
pub fn is_bzimage(b: &[u8]) -> bool {
    le_u16(b, 0x1fe) == Some(BOOT_FLAG) && le_u32(b, 0x202) == Some(HDRS)
}

/// Checks what irqlab needs before any KVM work: boot protocol ≥ 2.12 with a 64-bit entry.
pub fn validate(image: &KernelImage) -> Result<(), LoadError> {
    let b = &image.bytes[..];
    let bad = |problem: String| LoadError::Unsupported {
        name: image.name.clone(),
        problem: format!("bzImage: {problem}"),
    };
    if !is_bzimage(b) {
        return Err(bad("no boot sector flag 0xaa55 / \"HdrS\" header".into()));
    }
    let version = le_u16(b, 0x206).unwrap_or(0);
    if version < 0x020c {
        return Err(bad(format!(
            "boot protocol {}.{:02} predates the 64-bit entry irqlab uses (2.12)",
            version >> 8,
            version & 0xff
        )));
    }
    if le_u16(b, 0x236).unwrap_or(0) & XLF_KERNEL_64 == 0 {
        return Err(bad(
            "xloadflags lacks XLF_KERNEL_64: no 64-bit entry point".into()
        ));
    }
    Ok(())
}

/// Loads the kernel; returns where it landed and its setup header.
pub fn load(
    image: &KernelImage,
    mem: &GuestMemory,
) -> Result<(LoadedKernel, setup_header), LoadError> {
    validate(image)?;
    let mut cursor = Cursor::new(&image.bytes[..]);
    let r = BzImage::load(mem, None, &mut cursor, None).map_err(|source| LoadError::Loader {
        name: image.name.clone(),
        source,
    })?;
    let hdr = r.setup_header.ok_or_else(|| LoadError::Unsupported {
        name: image.name.clone(),
        problem: "bzImage: linux-loader found no setup header".into(),
    })?;
    let start = r.kernel_load.0;
    Ok((
        LoadedKernel {
            entry: start + 0x200,
            start,
            end: r.kernel_end,
            pvh_entry: None,
            notes: super::elf::Notes::default(),
        },
        hdr,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x400];
        b[0x1fe..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        b
    }

    fn check(b: Vec<u8>) -> Result<(), String> {
        validate(&KernelImage {
            name: "bz".into(),
            bytes: b.into(),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn header_checks_name_the_problem() {
        assert!(check(header(0x020f, XLF_KERNEL_64)).is_ok());
        assert!(check(header(0x0206, XLF_KERNEL_64))
            .unwrap_err()
            .contains("2.06"));
        assert!(check(header(0x020f, 0))
            .unwrap_err()
            .contains("XLF_KERNEL_64"));
        assert!(check(vec![0; 16]).unwrap_err().contains("HdrS"));
        assert!(!is_bzimage(&[]));
    }
}
