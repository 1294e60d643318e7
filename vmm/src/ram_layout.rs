//! The top of guest RAM, shared by the guest and the VMM: planned once per run, here.
//!
//! ```text
//!     mem_size ┬──────────────────────────────┐
//!              │ trace ring (with tracing)    │ ring_bytes(ring_records), whole pages
//!              ├──────────────────────────────┤
//!              │ posted-interrupt descriptors │ one per vCPU, DESC_SIZE apart, whole pages
//!   usable_end ├──────────────────────────────┤
//!              │ RAM the guest owns: kernel,  │
//!              │ initrd, modules, free RAM    │
//!            0 ┴──────────────────────────────┘
//! ```
//!
//! [`crate::machine`] plans it ([`TopOfRam::plan`]), checks the ring against the loaded kernel
//! ([`TopOfRam::ring_clears`]) and writes the descriptors; the boot protocols
//! ([`crate::boot`], [`crate::arch::x86_64::boot_info`]) give the guest the RAM below
//! [`TopOfRam::usable_end`] and describe the regions above it as shared. The Linux loader
//! keeps a bzImage below the posted descriptors of the largest machine
//! ([`crate::loader::linux::TOP_RESERVED`]).

use irqlab_abi::posted::DESC_SIZE;

/// The page size the regions are aligned to and rounded up to.
pub const PAGE: u64 = 4096;

/// RAM the trace ring leaves free above the kernel's last page, at least.
pub const RING_KERNEL_GAP: u64 = 1 << 20;

/// A region of guest memory: (address, bytes).
pub type Region = (u64, u64);

/// Bytes the posted-interrupt descriptors of `vcpus` vCPUs take: whole pages.
pub const fn posted_bytes(vcpus: u8) -> u64 {
    (vcpus as u64 * DESC_SIZE).next_multiple_of(PAGE)
}

/// Where the regions shared with the VMM sit at the top of RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopOfRam {
    /// The trace ring (with tracing): at the top, page-aligned.
    pub trace_ring: Option<Region>,
    /// The posted-interrupt descriptors (NV = 0xeb, NDST = the vCPU's APIC ID), one per vCPU
    /// [`DESC_SIZE`] apart: just below the ring, or at the top without one.
    pub posted: Region,
}

impl TopOfRam {
    /// The layout for `mem_size` bytes of RAM, `vcpus` vCPUs and, with tracing, a ring of
    /// `ring_records` records.
    pub fn plan(mem_size: u64, vcpus: u8, ring_records: Option<u32>) -> TopOfRam {
        let trace_ring = ring_records.map(|records| {
            let bytes = irqlab_abi::trace::ring_bytes(records).next_multiple_of(PAGE);
            // A ring larger than RAM ends up at 0, where `ring_clears` refuses it.
            (mem_size.saturating_sub(bytes) & !(PAGE - 1), bytes)
        });
        let posted_bytes = posted_bytes(vcpus);
        let posted = (
            trace_ring
                .map_or(mem_size, |r| r.0)
                .saturating_sub(posted_bytes),
            posted_bytes,
        );
        TopOfRam { trace_ring, posted }
    }

    /// Whether the trace ring (if any) leaves [`RING_KERNEL_GAP`] free above a kernel that
    /// ends at `kernel_end`.
    pub fn ring_clears(&self, kernel_end: u64) -> bool {
        self.trace_ring
            .is_none_or(|(addr, _)| addr >= kernel_end.next_multiple_of(PAGE) + RING_KERNEL_GAP)
    }

    /// The address of vCPU `vcpu`'s posted-interrupt descriptor.
    pub fn posted_desc(&self, vcpu: u8) -> u64 {
        self.posted.0 + u64::from(vcpu) * DESC_SIZE
    }

    /// The regions shared with the VMM, lowest first: the descriptors, then the ring.
    pub fn shared(&self) -> impl Iterator<Item = Region> {
        std::iter::once(self.posted).chain(self.trace_ring)
    }

    /// One past the last byte of RAM the guest owns: the start of the lowest shared region,
    /// the descriptors.
    pub fn usable_end(&self) -> u64 {
        self.posted.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_ring_larger_than_ram_does_not_wrap_and_is_refused() {
        // 1 Mi records in 4 MiB of RAM: the ring alone is larger than RAM.
        let top = TopOfRam::plan(4 * MIB, 1, Some(1 << 20));
        assert_eq!(top.trace_ring.unwrap().0, 0);
        assert_eq!(top.posted.0, 0);
        assert!(!top.ring_clears(0));
    }

    #[test]
    fn without_tracing_the_descriptors_take_the_top_page() {
        let top = TopOfRam::plan(64 * MIB, 1, None);
        assert_eq!(top.trace_ring, None);
        assert_eq!(top.posted, (64 * MIB - PAGE, PAGE));
        assert_eq!(top.usable_end(), 64 * MIB - PAGE);
        assert_eq!(top.shared().collect::<Vec<_>>(), [top.posted]);
        assert!(top.ring_clears(63 * MIB));
    }

    #[test]
    fn the_ring_is_at_the_top_and_the_descriptors_just_below() {
        let records = 32768;
        let top = TopOfRam::plan(64 * MIB, 4, Some(records));
        let (ring, ring_bytes) = top.trace_ring.unwrap();
        assert_eq!(ring % PAGE, 0);
        assert_eq!(ring_bytes % PAGE, 0);
        assert!(ring_bytes >= irqlab_abi::trace::ring_bytes(records));
        assert_eq!(ring + ring_bytes, 64 * MIB);
        assert_eq!(top.posted, (ring - PAGE, PAGE));
        assert_eq!(top.usable_end(), ring - PAGE);
        assert_eq!(
            top.shared().collect::<Vec<_>>(),
            [top.posted, top.trace_ring.unwrap()]
        );
    }

    #[test]
    fn every_vcpu_has_its_descriptor_inside_the_region() {
        let top = TopOfRam::plan(64 * MIB, crate::config::VCPUS_MAX, Some(16));
        for v in 0..crate::config::VCPUS_MAX {
            let at = top.posted_desc(v);
            assert_eq!(at, top.posted.0 + u64::from(v) * DESC_SIZE);
            assert!(at + DESC_SIZE <= top.posted.0 + top.posted.1);
        }
        // Whole pages: 8 descriptors take one.
        assert_eq!(posted_bytes(crate::config::VCPUS_MAX), PAGE);
        assert_eq!(posted_bytes(65), 2 * PAGE);
    }

    #[test]
    fn the_ring_must_leave_a_mebibyte_above_the_kernel() {
        let top = TopOfRam::plan(8 * MIB, 1, Some(32768));
        let ring = top.trace_ring.unwrap().0;
        // The kernel's end is rounded up to a page, then 1 MiB must remain below the ring.
        let last_fit = ring - RING_KERNEL_GAP;
        assert!(top.ring_clears(last_fit));
        assert!(top.ring_clears(last_fit - PAGE + 1));
        assert!(!top.ring_clears(last_fit + 1));
    }

    #[test]
    fn the_linux_loader_keeps_clear_of_the_largest_machine_s_descriptors() {
        let top = TopOfRam::plan(64 * MIB, crate::config::VCPUS_MAX, None);
        assert_eq!(
            64 * MIB - top.usable_end(),
            crate::loader::linux::TOP_RESERVED
        );
    }
}
