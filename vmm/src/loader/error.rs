//! Why a kernel image cannot be loaded: one error type for every format's loader.

/// Why a kernel image cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{name}: cannot read kernel image: {source}")]
    Read {
        /// Image name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not an ELF file at all.
    #[error("{name}: not an ELF file (bad magic {magic:02x?}), nor a Multiboot kernel or Linux bzImage; irqlab boots ELF64 x86-64 (native, PVH, Linux vmlinux), Multiboot v1 and bzImage kernels")]
    NotElf {
        /// Image name.
        name: String,
        /// The first bytes.
        magic: Vec<u8>,
    },
    /// ELF, but not one irqlab can run.
    #[error("{name}: {problem}")]
    Unsupported {
        /// Image name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A segment does not fit in guest memory or overlaps the boot area.
    #[error("{name}: segment {index} needs guest memory {start:#x}..{end:#x}, but {problem}")]
    Segment {
        /// Image name.
        name: String,
        /// Program header index.
        index: usize,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// What is wrong.
        problem: String,
    },
    /// linux-loader refused the image.
    #[error("{name}: loading failed: {source}")]
    Loader {
        /// Image name.
        name: String,
        /// The loader's error.
        #[source]
        source: linux_loader::loader::Error,
    },
}
