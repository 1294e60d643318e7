//! Linux bzImage kernels through the 64-bit boot protocol (Documentation/arch/x86/boot.rst,
//! "64-bit Boot Protocol"): linux-loader places the protected-mode kernel, irqlab writes the
//! zero page (`boot_params`: the image's setup header, command line, E820 map, initrd) and
//! enters `startup_64` (load address + 0x200) in long mode with RSI = the zero page.

use super::LoadError;
use super::{le_u16, le_u32, le_u64, KernelImage, LoadedKernel};
use crate::memory::GuestMemory;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, KernelLoader};
use std::io::Cursor;

/// `boot_flag` at 0x1fe of a bzImage.
pub const BOOT_FLAG: u16 = 0xaa55;
/// `"HdrS"`.
pub const HDRS: u32 = u32::from_le_bytes(*b"HdrS");

/// `xloadflags` bit: the kernel has the legacy 64-bit entry point at 0x200.
const XLF_KERNEL_64: u16 = 1 << 0;

/// Whether the image looks like a bzImage (boot sector flag and `HdrS`).
pub fn is_bzimage(b: &[u8]) -> bool {
    le_u16(b, 0x1fe) == Some(BOOT_FLAG) && le_u32(b, 0x202) == Some(HDRS)
}

/// The top of guest RAM holds irqlab's posted-interrupt descriptors (one per vCPU; a page for
/// the largest machine, see [`crate::ram_layout`]): a kernel must end below them.
pub const TOP_RESERVED: u64 = crate::ram_layout::posted_bytes(irqlab_abi::limits::MAX_VCPUS);

/// Where a bzImage goes in guest memory, from its setup header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where linux-loader puts the protected-mode kernel (`code32_start`).
    pub load: u64,
    /// One past its last byte.
    pub load_end: u64,
    /// The buffer the decompressor works in and the kernel runs from, `start..end` (boot
    /// protocol 2.10+: `init_size` bytes from the load address rounded up to
    /// `kernel_alignment` but no lower than `pref_address`, as `startup_64` computes it for a
    /// relocatable kernel; at `pref_address` for one that is not); `None` when the header does
    /// not say (older protocol, `init_size` 0).
    pub decompress: Option<(u64, u64)>,
}

impl Layout {
    /// One past the last byte the kernel uses before it reads the memory map.
    pub fn end(&self) -> u64 {
        self.decompress
            .map_or(self.load_end, |d| d.1.max(self.load_end))
    }

    /// The least guest memory, in MiB, that holds [`Layout::end`] and irqlab's reserved top
    /// page.
    pub fn min_mem_mib(&self) -> u64 {
        self.end().saturating_add(TOP_RESERVED).div_ceil(1 << 20)
    }
}

/// Reads the layout from a bzImage's header; `None` if the fields are missing or overflow.
pub fn layout(b: &[u8]) -> Option<Layout> {
    let setup_sects = match *b.get(0x1f1)? {
        0 => 4,
        n => u64::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    let load = u64::from(le_u32(b, 0x214)?);
    let load_end = load.checked_add((b.len() as u64).saturating_sub(setup_size))?;
    let version = le_u16(b, 0x206)?;
    let init_size = u64::from(le_u32(b, 0x260).unwrap_or(0));
    let decompress = if version >= 0x020a && init_size != 0 {
        let align = u64::from(le_u32(b, 0x230)?);
        let relocatable = *b.get(0x234)? != 0;
        let pref = le_u64(b, 0x258)?;
        let start = if relocatable {
            let aligned = if align.is_power_of_two() {
                load.checked_next_multiple_of(align)?
            } else {
                load
            };
            aligned.max(pref)
        } else {
            pref
        };
        Some((start, start.checked_add(init_size)?))
    } else {
        None
    };
    Some(Layout {
        load,
        load_end,
        decompress,
    })
}

/// Checks what irqlab needs before any KVM work: boot protocol ≥ 2.12 with a 64-bit entry,
/// and enough guest memory (`mem_size` bytes) for the kernel to decompress into — without it
/// the decompressor overwrites what lies beyond RAM's end and the guest triple-faults.
pub fn validate(image: &KernelImage, mem_size: u64) -> Result<Layout, LoadError> {
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
    let Some(layout) = layout(b) else {
        return Err(bad(
            "the setup header's load address, alignment or init_size overflow".into(),
        ));
    };
    if layout.end().saturating_add(TOP_RESERVED) > mem_size {
        let needs = match layout.decompress {
            Some((start, end)) => format!(
                "decompresses into {start:#x}..{end:#x} (setup header init_size {} from pref_address/kernel_alignment)",
                crate::input::bytes(end - start)
            ),
            None => format!("loads at {:#x}..{:#x}", layout.load, layout.load_end),
        };
        return Err(bad(format!(
            "the kernel {needs} and needs at least {} MiB of guest memory, but mem_mib is {}; raise mem_mib",
            layout.min_mem_mib(),
            mem_size >> 20
        )));
    }
    Ok(layout)
}

/// Loads the kernel into `mem_size` bytes of guest memory; returns where it landed (up to the
/// end of its decompression buffer, which nothing else may use) and its setup header.
pub fn load(
    image: &KernelImage,
    mem: &GuestMemory,
    mem_size: u64,
) -> Result<(LoadedKernel, setup_header), LoadError> {
    let layout = validate(image, mem_size)?;
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
            end: r.kernel_end.max(layout.end()),
            pvh_entry: None,
            notes: super::elf::Notes::default(),
        },
        hdr,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn header(version: u16, xloadflags: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x1f1] = 1; // setup_sects: the kernel starts at 0x400
        b[0x1fe..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        b[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        b
    }

    /// Debian 6.1's layout: relocatable, 2 MiB alignment, pref_address 16 MiB.
    fn with_init_size(init_size: u32, relocatable: bool) -> Vec<u8> {
        let mut b = header(0x020f, XLF_KERNEL_64);
        b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[0x234] = relocatable.into();
        b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
        b
    }

    fn check_in(b: Vec<u8>, mem_mib: u64) -> Result<Layout, String> {
        validate(
            &KernelImage {
                name: "bz".into(),
                bytes: b.into(),
            },
            mem_mib * MIB,
        )
        .map_err(|e| e.to_string())
    }

    fn check(b: Vec<u8>) -> Result<(), String> {
        check_in(b, 64).map(drop)
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

    #[test]
    fn the_decompression_buffer_starts_at_pref_address_or_the_aligned_load_address() {
        // Debian's 6.1 bzImage: init_size 0x3378000 from 16 MiB.
        let l = layout(&with_init_size(0x337_8000, true)).unwrap();
        assert_eq!(l.load, 0x10_0000);
        assert_eq!(l.load_end, 0x10_0000 + 0x1000 - 0x400);
        assert_eq!(l.decompress, Some((0x100_0000, 0x437_8000)));
        assert_eq!(l.min_mem_mib(), 68);
        // Loaded above pref_address: the load address rounded up to kernel_alignment.
        let mut b = with_init_size(0x10_0000, true);
        b[0x214..0x218].copy_from_slice(&0x210_0000u32.to_le_bytes());
        assert_eq!(
            layout(&b).unwrap().decompress,
            Some((0x220_0000, 0x230_0000))
        );
        // Not relocatable: at pref_address whatever the load address.
        let mut b = with_init_size(0x10_0000, false);
        b[0x214..0x218].copy_from_slice(&0x210_0000u32.to_le_bytes());
        assert_eq!(
            layout(&b).unwrap().decompress,
            Some((0x100_0000, 0x110_0000))
        );
        // No init_size: nothing to check beyond the image itself.
        assert_eq!(
            layout(&header(0x020f, XLF_KERNEL_64)).unwrap().decompress,
            None
        );
        // Overflowing fields are refused, never a panic.
        let mut b = with_init_size(u32::MAX, true);
        b[0x258..0x260].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(layout(&b), None);
        assert!(check(b).unwrap_err().contains("overflow"));
    }

    #[test]
    fn too_little_memory_for_init_size_names_the_minimum() {
        let bz = with_init_size(0x337_8000, true);
        let err = check_in(bz.clone(), 64).unwrap_err();
        assert_eq!(
            err,
            "bz: bzImage: the kernel decompresses into 0x1000000..0x4378000 (setup header \
             init_size 51.5 MiB from pref_address/kernel_alignment) and needs at least 68 MiB \
             of guest memory, but mem_mib is 64; raise mem_mib"
        );
        assert!(check_in(bz.clone(), 67).is_err());
        assert!(check_in(bz, 68).is_ok());
    }
}
