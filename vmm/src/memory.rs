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

use irqlab_devices::posted::{DescriptorMemory, WORDS};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Device access to guest RAM (the MSI source's event-counter write-back, the NIC's RX
/// descriptors, posted-interrupt descriptors).
pub struct GuestDma(pub GuestMemory);

/// Why no posted-interrupt descriptor can be used at a guest-physical address.
#[derive(Debug, thiserror::Error)]
enum DescriptorError {
    /// No RAM region contains the address.
    #[error("no guest RAM at {gpa:#x}")]
    NoRam { gpa: u64 },
    /// vm-memory refused an atomic reference to one of the words (out of the region, or not
    /// aligned for an `AtomicU64`).
    #[error("word {word} of the descriptor at {gpa:#x}: {source}")]
    Word {
        gpa: u64,
        word: usize,
        #[source]
        source: vm_memory::volatile_memory::Error,
    },
    /// The words are accessible, but the descriptor is not where the ABI allows one.
    #[error("descriptor at {gpa:#x} is not {align}-byte aligned", align = irqlab_abi::posted::DESC_SIZE)]
    Misaligned { gpa: u64 },
}

/// Word `i` of the descriptor at `gpa`, through vm-memory's checked atomic accessor (bounds
/// within one region and `AtomicU64` alignment are vm-memory's checks).
fn descriptor_word(mem: &GuestMemory, gpa: u64, i: usize) -> Result<&AtomicU64, DescriptorError> {
    use vm_memory::{GuestAddress, VolatileMemory};
    let (region, offset) = mem
        .to_region_addr(GuestAddress(gpa))
        .ok_or(DescriptorError::NoRam { gpa })?;
    // `GuestRegionMmap` derefs to its `MmapRegion`, whose `VolatileMemory` impl hands out
    // references that live as long as `mem`.
    let mapping: &vm_memory::MmapRegion<()> = region;
    let at = offset.0 as usize + i * size_of::<u64>();
    mapping
        .get_atomic_ref::<AtomicU64>(at)
        .map_err(|source| DescriptorError::Word {
            gpa,
            word: i,
            source,
        })
}

/// A posted-interrupt descriptor in guest RAM, shared with the guest through atomics.
struct GuestDescriptor {
    /// A handle on guest memory: keeps the mapping alive while the descriptor is in use.
    mem: GuestMemory,
    /// Guest-physical address of word 0.
    gpa: u64,
}

impl GuestDescriptor {
    /// The descriptor at `gpa`, if all of its words are guest RAM that vm-memory lets us
    /// access atomically and `gpa` is 64-byte aligned as the ABI requires.
    fn new(mem: GuestMemory, gpa: u64) -> Result<Self, DescriptorError> {
        for i in 0..WORDS {
            descriptor_word(&mem, gpa, i)?;
        }
        if !gpa.is_multiple_of(irqlab_abi::posted::DESC_SIZE) {
            return Err(DescriptorError::Misaligned { gpa });
        }
        Ok(GuestDescriptor { mem, gpa })
    }
}

impl DescriptorMemory for GuestDescriptor {
    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS, "descriptor word {i} out of range");
        // `new` checked every word, and `self.mem` is an immutable handle on the same
        // regions, so the lookup cannot fail now.
        descriptor_word(&self.mem, self.gpa, i)
            .unwrap_or_else(|e| panic!("descriptor checked at creation: {e}"))
    }
}

impl irqlab_devices::msi_source::DmaWriter for GuestDma {
    fn descriptor(&self, gpa: u64) -> Option<Arc<dyn DescriptorMemory>> {
        let desc = GuestDescriptor::new(self.0.clone(), gpa).ok()?;
        Some(Arc::new(desc))
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

    fn write_u64(&self, gpa: u64, value: u64) -> bool {
        use vm_memory::{Bytes, GuestAddress};
        // One atomic 8-byte store (the NIC's descriptor timestamps): never torn.
        self.0
            .store(
                value,
                GuestAddress(gpa),
                std::sync::atomic::Ordering::Release,
            )
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irqlab_abi::posted as abi;
    use irqlab_devices::msi_source::DmaWriter;
    use std::sync::atomic::Ordering;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn descriptor_in_guest_ram_is_shared_with_guest_memory() {
        let mem = create(1 << 20).unwrap();
        let gpa = 0x4000;
        let desc = GuestDescriptor::new(mem.clone(), gpa).unwrap();
        // Written through the atomic accessor, read back as the guest's RAM at that address.
        desc.word(1).fetch_or(1 << 1, Ordering::SeqCst);
        desc.word(abi::CONTROL_WORD)
            .store(abi::control(0xeb, 3), Ordering::SeqCst);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(gpa + 8)).unwrap(), 1 << 1);
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(gpa + 8 * abi::CONTROL_WORD as u64))
                .unwrap(),
            abi::control(0xeb, 3)
        );
        // And the other way round: RAM written by "the guest" is what the accessor sees.
        mem.write_obj(0xdead_beef_u64, GuestAddress(gpa + 7 * 8))
            .unwrap();
        assert_eq!(desc.word(7).swap(0, Ordering::SeqCst), 0xdead_beef);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(gpa + 7 * 8)).unwrap(), 0);
        // The device path hands out the same words.
        let dma = GuestDma(mem.clone());
        let shared = dma.descriptor(gpa).expect("descriptor in RAM");
        assert_eq!(shared.word(1).load(Ordering::SeqCst), 1 << 1);
        // The descriptor's handle keeps the mapping alive after every other one is gone.
        drop((mem, dma, desc));
        shared.word(0).store(u64::MAX, Ordering::SeqCst);
        assert_eq!(shared.word(0).load(Ordering::SeqCst), u64::MAX);
    }

    #[test]
    fn unusable_descriptor_addresses_are_refused() {
        let mem = create(1 << 20).unwrap();
        let refuse = |gpa: u64| match GuestDescriptor::new(mem.clone(), gpa) {
            Ok(_) => panic!("descriptor at {gpa:#x} accepted"),
            Err(e) => e,
        };
        // Not aligned for an AtomicU64: vm-memory refuses the reference.
        assert!(matches!(
            refuse(0x1004),
            DescriptorError::Word {
                word: 0,
                source: vm_memory::volatile_memory::Error::Misaligned { .. },
                ..
            }
        ));
        // Atomically accessible but not where the ABI puts a descriptor.
        assert!(matches!(refuse(0x1008), DescriptorError::Misaligned { .. }));
        // Outside RAM, and straddling its end: the last words are not in the region.
        assert!(matches!(refuse(1 << 20), DescriptorError::NoRam { .. }));
        assert!(matches!(
            refuse(u64::MAX - 63),
            DescriptorError::NoRam { .. }
        ));
        assert!(matches!(
            refuse((1 << 20) - 32),
            DescriptorError::Word {
                word: 4,
                source: vm_memory::volatile_memory::Error::OutOfBounds { .. },
                ..
            }
        ));
        // The device path gets no descriptor instead of a panic.
        let dma = GuestDma(mem.clone());
        assert!(dma.descriptor(0x1004).is_none());
        assert!(dma.descriptor(1 << 20).is_none());
        assert!(dma.descriptor((1 << 20) - 64).is_some(), "last slot of RAM");
    }

    #[test]
    fn dma_writes_land_in_ram_or_report_failure() {
        let mem = create(1 << 20).unwrap();
        let dma = GuestDma(mem.clone());
        assert!(dma.write_u64(0x2010, 0x1122_3344_5566_7788));
        assert!(dma.write_u32(0x2008, 7));
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(0x2010)).unwrap(),
            0x1122_3344_5566_7788
        );
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x2008)).unwrap(), 7);
        // Outside RAM, straddling its end, or not aligned for one atomic store: refused.
        for gpa in [1 << 20, (1 << 20) - 4, u64::MAX - 3, 0x2004] {
            assert!(!dma.write_u64(gpa, 1), "{gpa:#x}");
        }
        assert!(!dma.write_u32(1 << 20, 1));
    }
}
