//! CPUID for each vCPU: KVM's supported set, with the APIC IDs set per vCPU, the hypervisor
//! bit kept so guests know they are virtualised, and the TSC-deadline bit where KVM has the
//! timer.

use kvm_bindings::CpuId;

/// CPUID.1:ECX bit 24: the LAPIC timer has TSC-deadline mode.
pub const TSC_DEADLINE_BIT: u32 = 1 << 24;

/// What the host offers beyond `KVM_GET_SUPPORTED_CPUID`.
#[derive(Clone, Copy, Debug)]
pub struct HostFeatures {
    /// `KVM_CAP_TSC_DEADLINE_TIMER`: KVM's in-kernel LAPIC implements TSC-deadline mode.
    /// KVM leaves CPUID.1:ECX.TSC_DEADLINE out of its supported set (the timer lives in the
    /// in-kernel LAPIC, not the CPU), so a VMM sets it itself, as QEMU and Firecracker do.
    pub tsc_deadline: bool,
    /// Offer x2APIC mode (CPUID.1:ECX bit 21) as KVM supports it; `false` clears it.
    pub x2apic: bool,
}

/// CPUID.1:ECX.x2APIC.
pub const X2APIC_BIT: u32 = 1 << 21;

impl Default for HostFeatures {
    /// No TSC-deadline capability; x2APIC offered as KVM supports it.
    fn default() -> Self {
        HostFeatures {
            tsc_deadline: false,
            x2apic: true,
        }
    }
}

/// Adjusts KVM's supported CPUID for vCPU `id` of `count`.
pub fn for_vcpu(mut cpuid: CpuId, id: u8, count: u8, host: HostFeatures) -> CpuId {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            // Leaf 1: EBX[31:24] initial APIC ID, EBX[23:16] logical processor count.
            1 => {
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                // ECX bit 31: running under a hypervisor.
                entry.ecx |= 1 << 31;
                if host.tsc_deadline {
                    entry.ecx |= TSC_DEADLINE_BIT;
                }
                if !host.x2apic {
                    entry.ecx &= !X2APIC_BIT;
                }
            }
            // Leaf 0xB / 0x1F: x2APIC ID in EDX.
            0xb | 0x1f => entry.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn leaf1(host: HostFeatures) -> kvm_cpuid_entry2 {
        let cpuid = CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: 1,
            ..Default::default()
        }])
        .unwrap();
        for_vcpu(cpuid, 3, 4, host).as_slice()[0]
    }

    #[test]
    fn tsc_deadline_bit_follows_the_capability() {
        let with = leaf1(HostFeatures {
            tsc_deadline: true,
            ..HostFeatures::default()
        });
        assert_ne!(with.ecx & TSC_DEADLINE_BIT, 0);
        let without = leaf1(HostFeatures::default());
        assert_eq!(without.ecx & TSC_DEADLINE_BIT, 0);
        assert_eq!(with.ebx >> 24, 3, "APIC ID");
        assert_eq!((with.ebx >> 16) & 0xff, 4, "logical processors");
        assert_ne!(with.ecx & (1 << 31), 0, "hypervisor bit");
    }

    #[test]
    fn x2apic_is_kept_or_cleared() {
        let leaf1_with_x2apic = |x2apic| {
            let cpuid = CpuId::from_entries(&[kvm_cpuid_entry2 {
                function: 1,
                ecx: X2APIC_BIT,
                ..Default::default()
            }])
            .unwrap();
            let host = HostFeatures {
                x2apic,
                ..HostFeatures::default()
            };
            for_vcpu(cpuid, 0, 1, host).as_slice()[0].ecx
        };
        assert_ne!(leaf1_with_x2apic(true) & X2APIC_BIT, 0);
        assert_eq!(leaf1_with_x2apic(false) & X2APIC_BIT, 0);
    }
}
