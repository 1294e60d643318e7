//! x86-64 boot state: the boot GDT, identity page tables, CPUID, entry registers and the boot
//! info structure, written exactly as `docs/guest-abi.md` specifies.

pub mod acpi;
pub mod boot_info;
pub mod cpuid;
pub mod gdt;
pub mod linux;
pub mod mptable;
pub mod paging;
pub mod pvh;
pub mod regs;

/// Errors while writing boot structures into guest memory.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A write into guest memory failed.
    #[error("cannot write {what} at guest address {addr:#x}: {source}")]
    Memory {
        /// Which structure.
        what: &'static str,
        /// Where.
        addr: u64,
        /// Why.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// linux-loader could not write the PVH start info or its memory map.
    #[error("cannot write the PVH start info at guest address {at:#x}: {0}", at = irqlab_abi::layout::BOOT_INFO)]
    StartInfo(linux_loader::configurator::Error),
    /// linux-loader could not write the Linux zero page.
    #[error("cannot write the Linux zero page at guest address {zero_page:#x}: {0}", zero_page = linux::ZERO_PAGE)]
    ZeroPage(linux_loader::configurator::Error),
    /// A KVM vCPU ioctl failed while setting up registers.
    #[error("{ioctl} failed on vCPU {vcpu}: {source}")]
    Kvm {
        /// Which ioctl.
        ioctl: &'static str,
        /// Which vCPU.
        vcpu: u8,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
}

impl BootError {
    /// A `map_err` adapter for a failed vCPU `ioctl` on `vcpu`.
    pub fn kvm(ioctl: &'static str, vcpu: u8) -> impl Fn(kvm_ioctls::Error) -> BootError {
        move |source| BootError::Kvm {
            ioctl,
            vcpu,
            source,
        }
    }
}
