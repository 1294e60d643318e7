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

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{kvm_irqchip, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// /dev/kvm, or `None` (with a note) where it is not accessible.
    fn kvm() -> Option<Kvm> {
        match open_kvm() {
            Ok(kvm) => Some(kvm),
            Err(e) => {
                println!("SKIP: /dev/kvm not accessible: {e}");
                None
            }
        }
    }

    /// A VM in `mode`, or `None` (with a note) where this KVM lacks what `mode` needs.
    fn vm(kvm: &Kvm, mode: IrqchipMode) -> Option<VmFd> {
        match create(kvm, mode) {
            Ok(vm) => Some(vm),
            Err(e @ VmError::MissingCap { .. }) => {
                println!("SKIP: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn chip(vm: &VmFd, id: u32) -> Result<kvm_irqchip, kvm_ioctls::Error> {
        let mut c = kvm_irqchip {
            chip_id: id,
            ..Default::default()
        };
        vm.get_irqchip(&mut c).map(|()| c)
    }

    #[test]
    fn constants_fit_the_board() {
        assert_eq!(IOAPIC_PINS, 24, "the 82093AA has 24 pins");
        // KVM's TSS takes three pages: below 4 GiB, inside the MMIO hole, clear of the
        // IO-APIC and local APIC pages.
        let tss = KVM_TSS_ADDRESS as u64..KVM_TSS_ADDRESS as u64 + 3 * 4096;
        assert!(tss.end <= 1 << 32);
        assert!(tss.start >= irqlab_abi::layout::MMIO_HOLE_START);
        for page in [
            irqlab_abi::layout::IOAPIC_BASE,
            irqlab_abi::layout::LAPIC_BASE,
        ] {
            assert!(page + 4096 <= tss.start || page >= tss.end, "{page:#x}");
        }
    }

    #[test]
    fn errors_name_the_ioctl_and_the_capability() {
        let e = ioctl("KVM_CREATE_VM")(kvm_ioctls::Error::new(libc::ENOMEM));
        assert!(matches!(
            &e,
            VmError::Ioctl {
                ioctl: "KVM_CREATE_VM",
                source
            } if source.errno() == libc::ENOMEM
        ));
        assert!(e.to_string().starts_with("KVM_CREATE_VM failed: "), "{e}");
        let e = VmError::MissingCap {
            cap: "KVM_CAP_SPLIT_IRQCHIP",
            needed_for: "irqchip = \"split\"",
        };
        assert_eq!(
            e.to_string(),
            "KVM lacks KVM_CAP_SPLIT_IRQCHIP, needed for irqchip = \"split\""
        );
    }

    #[test]
    fn split_irqchip_vm_has_no_in_kernel_pic_or_ioapic() {
        let Some(kvm) = kvm() else { return };
        let Some(vm) = vm(&kvm, IrqchipMode::Split) else {
            return;
        };
        // The LAPICs are in KVM already (a second irqchip is refused); the PIC and IO-APIC
        // are not.
        assert_eq!(
            vm.create_irq_chip().map_err(|e| e.errno()),
            Err(libc::EEXIST)
        );
        assert!(chip(&vm, KVM_IRQCHIP_PIC_MASTER).is_err());
        assert!(chip(&vm, KVM_IRQCHIP_IOAPIC).is_err());
        assert!(vm.get_pit2().is_err(), "no in-kernel PIT");
    }

    #[test]
    fn kernel_irqchip_vm_has_pic_ioapic_and_pit() {
        let Some(kvm) = kvm() else { return };
        let Some(vm) = vm(&kvm, IrqchipMode::Kernel) else {
            return;
        };
        assert!(chip(&vm, KVM_IRQCHIP_PIC_MASTER).is_ok());
        assert!(chip(&vm, KVM_IRQCHIP_IOAPIC).is_ok());
        assert!(vm.get_pit2().is_ok());
        assert_eq!(
            vm.create_irq_chip().map_err(|e| e.errno()),
            Err(libc::EEXIST)
        );
    }

    #[test]
    fn every_region_is_registered_at_its_guest_address() {
        let Some(kvm) = kvm() else { return };
        let vm = kvm.create_vm().unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 1 << 20),
            (GuestAddress(2 << 20), 1 << 20),
        ])
        .unwrap();
        register_memory(&vm, &mem).unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        // A new slot of one page at `gpa`: KVM refuses it (EEXIST) where a slot is already.
        let probe = |slot: u32, gpa: u64| {
            let r = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: gpa,
                memory_size: 4096,
                userspace_addr: host,
            };
            // SAFETY: `host` is the first page of `mem`'s first mapping, which outlives `vm`.
            unsafe { vm.set_user_memory_region(r) }.map_err(|e| e.errno())
        };
        assert_eq!(probe(8, 0x1000), Err(libc::EEXIST), "slot 0 at 0");
        assert_eq!(
            probe(8, (3 << 20) - 4096),
            Err(libc::EEXIST),
            "slot 1 at 2 MiB"
        );
        assert_eq!(probe(8, 1 << 20), Ok(()), "nothing in the gap");
        assert_eq!(probe(9, 3 << 20), Ok(()), "nothing past the end");
    }
}
