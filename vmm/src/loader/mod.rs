//! Kernel image loading, one module per boot format.

pub mod elf;

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
    /// The image carries irqlab's ABI note (native entry).
    pub irqlab_note: bool,
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
