//! Kernel image loading, one module per boot format.

pub mod elf;
mod error;
pub mod kvm_unit_tests;
pub mod linux;
pub mod multiboot;

pub use error::LoadError;

use std::path::Path;

/// Where the loaded kernel landed and where to enter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    /// Entry point (guest-physical = virtual under the identity map).
    pub entry: u64,
    /// Lowest loaded address.
    pub start: u64,
    /// One past the highest loaded address (including zero-filled memory).
    pub end: u64,
    /// The PVH 32-bit entry (`XEN_ELFNOTE_PHYS32_ENTRY`), if the image has one.
    pub pvh_entry: Option<u64>,
    /// The ELF notes that pick the boot protocol (none for other formats).
    pub notes: elf::Notes,
}

/// A kernel image's bytes and a name for error messages.
pub struct KernelImage<'a> {
    /// Path or "built-in guest".
    pub name: String,
    /// The file's contents.
    pub bytes: std::borrow::Cow<'a, [u8]>,
}

impl KernelImage<'static> {
    /// Reads a kernel file: a regular file (see [`crate::input`]) no larger than the most
    /// guest memory irqlab creates. [`KernelImage::from_file_within`] caps it at the guest
    /// memory of the run.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        Self::read(
            path,
            irqlab_abi::layout::MMIO_HOLE_START,
            "the most guest memory irqlab creates",
        )
    }

    /// Reads a kernel file that must fit in `mem_size` bytes of guest memory.
    pub fn from_file_within(path: &Path, mem_size: u64) -> Result<Self, LoadError> {
        Self::read(path, mem_size, "guest memory")
    }

    fn read(path: &Path, cap: u64, of: &str) -> Result<Self, LoadError> {
        let limit = format!("{of} ({} MiB)", cap >> 20);
        let bytes =
            crate::input::read_regular(path, cap, &limit).map_err(|source| LoadError::Read {
                name: path.display().to_string(),
                source,
            })?;
        Ok(KernelImage {
            name: path.display().to_string(),
            bytes: bytes.into(),
        })
    }

    /// The irqlab guest embedded in this binary.
    pub fn builtin() -> Self {
        KernelImage {
            name: "built-in guest".into(),
            bytes: crate::BUILTIN_GUEST.into(),
        }
    }
}

/// `N` bytes at `at` of an image, or `None` past its end (images are user input: no read
/// may panic, whatever offsets they claim).
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Little-endian u16 at `at`, `None` past the end.
pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    bytes_at(b, at).map(u16::from_le_bytes)
}

/// Little-endian u32 at `at`, `None` past the end.
pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    bytes_at(b, at).map(u32::from_le_bytes)
}

/// Little-endian u64 at `at`, `None` past the end.
pub(crate) fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    bytes_at(b, at).map(u64::from_le_bytes)
}

/// The image formats irqlab loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ELF64 x86-64 (irqlab native or PVH entry).
    Elf64,
    /// Multiboot v1 (ELF32 or a.out kludge).
    Multiboot,
    /// Linux bzImage (64-bit boot protocol).
    BzImage,
}

/// Decides the format: Multiboot when asked for, ELF64 when the file is one, else Multiboot
/// when it has a Multiboot header; else the ELF checks' error names the problem.
pub fn detect(image: &KernelImage, multiboot_requested: bool) -> Format {
    let b = &image.bytes[..];
    let elf64 = b.len() > 4 && &b[..4] == b"\x7fELF" && b[4] == 2;
    if multiboot_requested || (!elf64 && multiboot::find_header(b).is_some()) {
        Format::Multiboot
    } else if !elf64 && linux::is_bzimage(b) {
        Format::BzImage
    } else {
        Format::Elf64
    }
}

#[cfg(test)]
mod never_panic {
    //! Kernel images are user input: whatever the bytes, detection, validation and loading
    //! return a value or an error, never a panic.
    use super::*;
    use proptest::prelude::*;

    const MEM: u64 = 32 << 20;

    fn check(bytes: Vec<u8>) {
        let image = KernelImage {
            name: "fuzz".into(),
            bytes: bytes.into(),
        };
        let mem = crate::memory::create(MEM).expect("guest memory");
        for multiboot_requested in [false, true] {
            match detect(&image, multiboot_requested) {
                Format::Elf64 => {
                    if elf::validate(&image, MEM).is_ok() {
                        let _ = elf::load(&image, &mem, MEM);
                    }
                }
                Format::Multiboot => {
                    if multiboot::validate(&image, MEM).is_ok() {
                        let _ = multiboot::load(&image, &mem, MEM);
                    }
                }
                Format::BzImage => {
                    if linux::validate(&image, MEM).is_ok() {
                        let _ = linux::load(&image, &mem, MEM);
                    }
                }
            }
        }
        let _ = elf::notes(&image.bytes);
    }

    /// A bzImage-looking header: boot flag, "HdrS", protocol 2.15, 64-bit entry.
    fn bz_header() -> Vec<u8> {
        let mut b = vec![0u8; 0x1000];
        b[0x1f1] = 1; // setup_sects
        b[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&1u16.to_le_bytes());
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        #[test]
        fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            check(bytes);
        }

        #[test]
        fn mutated_images(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..24),
            cut in any::<usize>(),
        ) {
            let mut b = match which {
                0 => crate::BUILTIN_GUEST[..crate::BUILTIN_GUEST.len().min(8192)].to_vec(),
                1 => multiboot::tiny_kernel(true),
                2 => multiboot::tiny_kernel(false),
                3 => elf::tiny_elf(2, 62, 0x10_0000, 0x2000, &[0xf4; 64]),
                _ => bz_header(),
            };
            for (at, v) in edits {
                let n = b.len();
                b[at % n] = v;
            }
            // Sometimes truncated, too.
            if cut % 3 == 0 {
                let keep = cut % (b.len() + 1);
                b.truncate(keep);
            }
            check(b);
        }
    }
}
