//! Kernel image loading, one module per boot format.

pub mod elf;
pub mod linux;
pub mod multiboot;

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
    /// Reads a kernel file.
    pub fn from_file(path: &Path) -> Result<Self, elf::LoadError> {
        let bytes = std::fs::read(path).map_err(|source| elf::LoadError::Read {
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
