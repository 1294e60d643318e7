//! Guest memory: one anonymous mapping from guest-physical 0 up to `mem_mib` (always below
//! the 32-bit MMIO hole), registered with KVM as slot 0.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The guest memory type used throughout irqlab.
pub type GuestMemory = GuestMemoryMmap<()>;

/// Memory errors.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// mmap failed.
    #[error("cannot allocate {mib} MiB of guest memory: {source}")]
    Allocate {
        /// Requested size.
        mib: u64,
        /// Why.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// Allocates `bytes` of guest memory at guest-physical 0.
pub fn create(bytes: u64) -> Result<GuestMemory, MemoryError> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), bytes as usize)]).map_err(|source| {
        MemoryError::Allocate {
            mib: bytes >> 20,
            source,
        }
    })
}

/// Bytes of guest memory that are resident in the VMM process (pages the guest or the VMM
/// touched), measured with `mincore(2)`.
pub fn resident_bytes(mem: &GuestMemory) -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let mut total = 0u64;
    for region in mem.iter() {
        let len = region.len() as usize;
        let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
            continue;
        };
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: `host` is the start of a live mapping of `len` bytes owned by `mem`, and
        // `vec` has one byte per page of it, as mincore requires.
        let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
        if rc == 0 {
            total += vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page as u64;
        }
    }
    total
}

use irqlab_devices::posted::DescriptorMemory;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Device access to guest RAM (the MSI source's event-counter write-back and posted-interrupt
/// descriptors).
pub struct GuestDma(pub GuestMemory);

/// A posted-interrupt descriptor in guest RAM, shared with the guest through atomics.
struct GuestDescriptor {
    words: *const [AtomicU64; 8],
    /// Keeps the mapping alive as long as the descriptor is in use.
    _mem: GuestMemory,
}

// SAFETY: the pointer targets guest RAM that `_mem` keeps mapped; it is only used through
// atomics, which is how the guest shares these words too.
unsafe impl Send for GuestDescriptor {}
// SAFETY: as above.
unsafe impl Sync for GuestDescriptor {}

impl DescriptorMemory for GuestDescriptor {
    fn words(&self) -> &[AtomicU64; 8] {
        // SAFETY: `words` is 64-byte aligned, inside one mapped region (checked in
        // `descriptor`), and lives as long as `_mem`, which `self` owns.
        unsafe { &*self.words }
    }
}

impl irqlab_devices::msi_source::DmaWriter for GuestDma {
    fn descriptor(&self, gpa: u64) -> Option<Arc<dyn DescriptorMemory>> {
        use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
        if !gpa.is_multiple_of(64) {
            return None;
        }
        let region = self.0.find_region(GuestAddress(gpa))?;
        let offset = gpa - region.start_addr().0;
        if offset + 64 > region.len() {
            return None;
        }
        let host = region.get_host_address(MemoryRegionAddress(offset)).ok()?;
        Some(Arc::new(GuestDescriptor {
            words: host.cast::<[AtomicU64; 8]>(),
            _mem: self.0.clone(),
        }))
    }

    fn write_u32(&self, gpa: u64, value: u32) -> bool {
        use vm_memory::{Bytes, GuestAddress};
        // An atomic store with release ordering: the guest never sees a torn value, and sees
        // it before the MSI that follows.
        self.0
            .store(
                value,
                GuestAddress(gpa),
                std::sync::atomic::Ordering::Release,
            )
            .is_ok()
    }
}
