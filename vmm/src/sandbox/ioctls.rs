//! KVM ioctls the filters allow, by request number (asm-generic/ioctl.h; KVMIO = 0xAE).

use kvm_bindings as kb;
use std::mem::size_of;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: u64 = ioc(0, 0x80, 0);
/// `_IOR(KVMIO, 0x81, struct kvm_regs)`.
pub const KVM_GET_REGS: u64 = ioc(IOC_READ, 0x81, size_of::<kb::kvm_regs>());
/// `_IOR(KVMIO, 0x83, struct kvm_sregs)`.
pub const KVM_GET_SREGS: u64 = ioc(IOC_READ, 0x83, size_of::<kb::kvm_sregs>());
/// `_IOR(KVMIO, 0x98, struct kvm_mp_state)`.
pub const KVM_GET_MP_STATE: u64 = ioc(IOC_READ, 0x98, size_of::<kb::kvm_mp_state>());
/// `_IOWR(KVMIO, 0x85, struct kvm_translation)`.
pub const KVM_TRANSLATE: u64 = ioc(IOC_READ | IOC_WRITE, 0x85, size_of::<kb::kvm_translation>());
/// `_IOWR(KVMIO, 0x88, struct kvm_msrs)`.
pub const KVM_GET_MSRS: u64 = ioc(IOC_READ | IOC_WRITE, 0x88, size_of::<kb::kvm_msrs>());
/// `_IOW(KVMIO, 0x61, struct kvm_irq_level)`.
pub const KVM_IRQ_LINE: u64 = ioc(IOC_WRITE, 0x61, size_of::<kb::kvm_irq_level>());
/// `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)`.
pub const KVM_SET_GSI_ROUTING: u64 = ioc(IOC_WRITE, 0x6a, size_of::<kb::kvm_irq_routing>());
/// `_IOW(KVMIO, 0xa5, struct kvm_msi)`.
pub const KVM_SIGNAL_MSI: u64 = ioc(IOC_WRITE, 0xa5, size_of::<kb::kvm_msi>());
/// `_IO(KVMIO, 0xce)`.
pub const KVM_GET_STATS_FD: u64 = ioc(0, 0xce, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_TRANSLATE, 0xc018_ae85);
        assert_eq!(KVM_GET_MP_STATE, 0x8004_ae98);
        assert_eq!(KVM_GET_MSRS, 0xc008_ae88);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(KVM_SET_GSI_ROUTING, 0x4008_ae6a);
        assert_eq!(KVM_SIGNAL_MSI, 0x4020_aea5);
        assert_eq!(KVM_GET_STATS_FD, 0xaece);
    }
}
