//! The VM file descriptor: creation, guest memory registration and the interrupt controller
//! model.

use crate::config::IrqchipMode;
use crate::memory::GuestMemory;
use kvm_bindings::{
    kvm_enable_cap, kvm_pit_config, kvm_userspace_memory_region, KVM_CAP_SPLIT_IRQCHIP,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

/// IO-APIC input pins irqlab models (82093AA: 24): the device model's count.
pub const IOAPIC_PINS: u64 = irqlab_devices::ioapic::NUM_PINS as u64;
/// Where KVM may put the three-page TSS it needs for real-mode emulation on VMX.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// VM setup errors (all are host errors for the exit code).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm could not be opened.
    #[error("{0}")]
    Open(String),
    /// A capability is missing.
    #[error("KVM lacks {cap}, needed for {needed_for}")]
    MissingCap {
        /// Capability name.
        cap: &'static str,
        /// What for.
        needed_for: &'static str,
    },
    /// An ioctl failed.
    #[error("{ioctl} failed: {source}")]
    Ioctl {
        /// Which one.
        ioctl: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
}

fn ioctl(ioctl: &'static str) -> impl Fn(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { ioctl, source }
}

/// Opens /dev/kvm.
pub fn open_kvm() -> Result<Kvm, VmError> {
    Kvm::new().map_err(|e| VmError::Open(crate::host::describe_open_error(e.errno())))
}

/// Creates the VM with the chosen interrupt model. Must run before any vCPU exists.
pub fn create(kvm: &Kvm, irqchip: IrqchipMode) -> Result<VmFd, VmError> {
    let need = |cap: Cap, name: &'static str, needed_for: &'static str| {
        if kvm.check_extension(cap) {
            Ok(())
        } else {
            Err(VmError::MissingCap {
                cap: name,
                needed_for,
            })
        }
    };
    need(Cap::UserMemory, "KVM_CAP_USER_MEMORY", "guest memory")?;
    let vm = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
    // Only VMX needs it; other hosts may not implement it, which is harmless.
    let _ = vm.set_tss_address(KVM_TSS_ADDRESS);
    match irqchip {
        IrqchipMode::Split => {
            need(
                Cap::SplitIrqchip,
                "KVM_CAP_SPLIT_IRQCHIP",
                "irqchip = \"split\"",
            )?;
            let mut cap = kvm_enable_cap {
                cap: KVM_CAP_SPLIT_IRQCHIP,
                ..Default::default()
            };
            cap.args[0] = IOAPIC_PINS;
            vm.enable_cap(&cap)
                .map_err(ioctl("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)"))?;
        }
        IrqchipMode::Kernel => {
            need(Cap::Irqchip, "KVM_CAP_IRQCHIP", "irqchip = \"kernel\"")?;
            need(Cap::Pit2, "KVM_CAP_PIT2", "irqchip = \"kernel\"")?;
            vm.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            vm.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))?;
        }
    }
    Ok(vm)
}

/// Registers every region of `mem` with KVM, slot by slot.
pub fn register_memory(vm: &VmFd, mem: &GuestMemory) -> Result<(), VmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|_| VmError::Ioctl {
                ioctl: "KVM_SET_USER_MEMORY_REGION",
                source: kvm_ioctls::Error::new(libc::EFAULT),
            })?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: `host` points to a live mapping of `region.len()` bytes owned by `mem`,
        // which the caller keeps alive for as long as the VM exists.
        unsafe { vm.set_user_memory_region(r) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}
