//! Limits the VMM enforces and the guest sizes its tables by.

/// Most vCPUs a VM may have: the VMM refuses more, so `BootInfo::vcpus` never exceeds it, and
/// the irqlab guest keeps its per-CPU tables (GDT/TSS, per-CPU data, interrupt counts, AP
/// stacks) this long. Eight is also what the guest's flat logical APIC destinations
/// (`1 << cpu` in the LDR) can address.
pub const MAX_VCPUS: u8 = 8;

// Flat logical destinations: one LDR bit (of eight) per CPU.
const _: () = assert!(MAX_VCPUS != 0 && MAX_VCPUS <= 8);
