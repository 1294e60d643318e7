//! CPUID for each vCPU: KVM's supported set, with the APIC IDs set per vCPU and the
//! hypervisor bit kept so guests know they are virtualised.

use kvm_bindings::CpuId;

/// Adjusts KVM's supported CPUID for vCPU `id` of `count`.
pub fn for_vcpu(mut cpuid: CpuId, id: u8, count: u8) -> CpuId {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            // Leaf 1: EBX[31:24] initial APIC ID, EBX[23:16] logical processor count.
            1 => {
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                // ECX bit 31: running under a hypervisor.
                entry.ecx |= 1 << 31;
            }
            // Leaf 0xB / 0x1F: x2APIC ID in EDX.
            0xb | 0x1f => entry.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}
