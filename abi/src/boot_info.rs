//! The boot info structure: what the VMM tells the guest at entry.
//!
//! The VMM writes one [`BootInfo`] at [`crate::layout::BOOT_INFO`], immediately followed by
//! `mem_map_entries` [`MemMapEntry`] records, and passes its address in RDI. A guest checks
//! `magic`, then `version` (same major = compatible; fields are only ever appended), then uses
//! `size` to know which appended fields exist. Every field is little-endian and naturally
//! aligned; the structure has no implicit padding.

use core::mem::size_of;

/// `"IRQLABBI"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IRQLABBI");
/// Current ABI version. Guests accept any version with the same value; later versions only
/// append fields (and grow `size`).
pub const VERSION: u32 = 1;

/// What kind of host the VMM runs on, as far as the guest needs to know: some instructions
/// cannot be emulated on software-virtualization hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HostKind {
    /// The VMM could not tell.
    Unknown = 0,
    /// Intel VT-x (`kvm_intel`).
    Vmx = 1,
    /// AMD-V (`kvm_amd`).
    Svm = 2,
    /// Software virtualization (`kvm_pvm`): `int n` and `int3` end in KVM emulation failures.
    Pvm = 3,
}

impl HostKind {
    /// Decodes the `host_kind` field; unknown values are [`HostKind::Unknown`].
    pub const fn from_raw(raw: u32) -> HostKind {
        match raw {
            1 => HostKind::Vmx,
            2 => HostKind::Svm,
            3 => HostKind::Pvm,
            _ => HostKind::Unknown,
        }
    }

    /// Lower-case name as used in configs and reports.
    pub const fn name(self) -> &'static str {
        match self {
            HostKind::Unknown => "unknown",
            HostKind::Vmx => "vmx",
            HostKind::Svm => "svm",
            HostKind::Pvm => "pvm",
        }
    }

    /// Whether the host can run `int n` / `int3` in a guest.
    pub const fn can_run_software_interrupts(self) -> bool {
        !matches!(self, HostKind::Pvm)
    }
}

/// `flags` bit: the IO-APIC (and PIT) are emulated by the VMM in userspace; the LAPIC is in
/// the kernel (`KVM_CAP_SPLIT_IRQCHIP`). Clear: everything is in-kernel.
pub const FLAG_SPLIT_IRQCHIP: u64 = 1 << 0;

/// `devices.present` bit: COM1 16550 UART.
pub const DEV_UART: u64 = 1 << 0;
/// `devices.present` bit: debug-exit port.
pub const DEV_DEBUG_EXIT: u64 = 1 << 1;
/// `devices.present` bit: benchmark port.
pub const DEV_BENCH: u64 = 1 << 2;
/// `devices.present` bit: 8254 PIT.
pub const DEV_PIT: u64 = 1 << 3;
/// `devices.present` bit: IO-APIC.
pub const DEV_IOAPIC: u64 = 1 << 4;
/// `devices.present` bit: MSI source device.
pub const DEV_MSI_SOURCE: u64 = 1 << 5;

/// Where the devices are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Devices {
    /// Bit set of `DEV_*`.
    pub present: u64,
    /// COM1 base port.
    pub uart_port: u16,
    /// Debug-exit port.
    pub debug_exit_port: u16,
    /// Benchmark port.
    pub bench_port: u16,
    /// PIT base port.
    pub pit_port: u16,
    /// IO-APIC pin of the UART.
    pub uart_gsi: u8,
    /// IO-APIC pin of PIT channel 0.
    pub pit_gsi: u8,
    /// Zero.
    pub reserved0: [u8; 6],
    /// IO-APIC MMIO base.
    pub ioapic_base: u64,
    /// Local APIC MMIO base.
    pub lapic_base: u64,
    /// MSI source device MMIO base (0 = absent).
    pub msi_source_base: u64,
}

/// The boot info structure (version [`VERSION`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BootInfo {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// `size_of::<BootInfo>()` as written by the VMM.
    pub size: u32,
    /// A [`HostKind`] value.
    pub host_kind: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// TSC frequency in kHz as KVM reports it (0 = unknown).
    pub tsc_khz: u64,
    /// Guest-physical address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// Command line length in bytes, without the NUL.
    pub cmdline_len: u64,
    /// Guest-physical address of the memory map.
    pub mem_map_addr: u64,
    /// Number of [`MemMapEntry`] records.
    pub mem_map_entries: u64,
    /// Lowest address of the loaded kernel image.
    pub kernel_start: u64,
    /// One past the highest address of the loaded kernel image (including .bss).
    pub kernel_end: u64,
    /// Device locations.
    pub devices: Devices,
    /// Guest-physical address of the interrupt trace ring (0 = tracing off).
    pub trace_ring_addr: u64,
    /// Size of the trace ring in bytes.
    pub trace_ring_size: u64,
    /// Guest-physical address of vCPU 0's posted-interrupt descriptor (0 = none).
    pub posted_desc_addr: u64,
    /// Bytes between consecutive vCPUs' posted-interrupt descriptors.
    pub posted_desc_stride: u64,
    /// Zero; room for later fields without changing `size` semantics.
    pub reserved: [u64; 8],
}

/// Memory map entry kind: usable RAM.
pub const MEM_RAM: u32 = 1;
/// Memory map entry kind: RAM the VMM uses for boot structures (GDT, boot info, page
/// tables); the guest may reuse it once it no longer needs them.
pub const MEM_BOOT: u32 = 2;
/// Memory map entry kind: the loaded kernel image.
pub const MEM_KERNEL: u32 = 3;
/// Memory map entry kind: shared with the VMM (trace ring, posted descriptors); never reuse.
pub const MEM_SHARED: u32 = 4;

/// One memory map record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemMapEntry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `MEM_*` kind.
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
}

const _: () = assert!(size_of::<Devices>() == 48);
const _: () = assert!(size_of::<BootInfo>() == 232);
const _: () = assert!(size_of::<MemMapEntry>() == 24);

/// Most memory map entries that fit after the boot info in its page.
pub const MEM_MAP_MAX: usize =
    (crate::layout::BOOT_INFO_MAX as usize - size_of::<BootInfo>()) / size_of::<MemMapEntry>();

/// Why a guest rejects a boot info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `magic` is not [`MAGIC`].
    Magic(u64),
    /// `version` is not [`VERSION`].
    Version(u32),
    /// `size` is smaller than this version's structure.
    Size(u32),
    /// The memory map does not fit in its page.
    MemMap(u64),
    /// The command line is longer than the VMM may write.
    Cmdline(u64),
}

impl BootInfo {
    /// Checks the header fields a guest must check before trusting anything else.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.magic != MAGIC {
            return Err(Invalid::Magic(self.magic));
        }
        if self.version != VERSION {
            return Err(Invalid::Version(self.version));
        }
        if (self.size as usize) < size_of::<BootInfo>() {
            return Err(Invalid::Size(self.size));
        }
        if self.mem_map_entries as usize > MEM_MAP_MAX {
            return Err(Invalid::MemMap(self.mem_map_entries));
        }
        if self.cmdline_len as usize >= crate::layout::CMDLINE_MAX {
            return Err(Invalid::Cmdline(self.cmdline_len));
        }
        Ok(())
    }

    /// The host kind.
    pub const fn host(&self) -> HostKind {
        HostKind::from_raw(self.host_kind)
    }
}

// SAFETY: all three are `repr(C)`, `Copy`, built only from integers with explicit padding
// fields (checked by the size assertions above), so every byte pattern is a valid value.
#[cfg(feature = "vm-memory")]
unsafe impl vm_memory::ByteValued for BootInfo {}
// SAFETY: see above.
#[cfg(feature = "vm-memory")]
unsafe impl vm_memory::ByteValued for MemMapEntry {}
// SAFETY: see above.
#[cfg(feature = "vm-memory")]
unsafe impl vm_memory::ByteValued for Devices {}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> BootInfo {
        BootInfo {
            magic: MAGIC,
            version: VERSION,
            size: size_of::<BootInfo>() as u32,
            ..Default::default()
        }
    }

    #[test]
    fn a_well_formed_boot_info_validates() {
        assert_eq!(good().validate(), Ok(()));
    }

    #[test]
    fn each_bad_header_field_is_named() {
        let mut b = good();
        b.magic = 1;
        assert_eq!(b.validate(), Err(Invalid::Magic(1)));
        let mut b = good();
        b.version = 2;
        assert_eq!(b.validate(), Err(Invalid::Version(2)));
        let mut b = good();
        b.size = 8;
        assert_eq!(b.validate(), Err(Invalid::Size(8)));
        let mut b = good();
        b.mem_map_entries = 1000;
        assert_eq!(b.validate(), Err(Invalid::MemMap(1000)));
        let mut b = good();
        b.cmdline_len = 4096;
        assert_eq!(b.validate(), Err(Invalid::Cmdline(4096)));
    }

    #[test]
    fn magic_spells_its_name() {
        assert_eq!(&MAGIC.to_le_bytes(), b"IRQLABBI");
    }

    #[test]
    fn host_kinds_round_trip() {
        for k in [
            HostKind::Unknown,
            HostKind::Vmx,
            HostKind::Svm,
            HostKind::Pvm,
        ] {
            assert_eq!(HostKind::from_raw(k as u32), k);
        }
        assert_eq!(HostKind::from_raw(99), HostKind::Unknown);
        assert!(!HostKind::Pvm.can_run_software_interrupts());
        assert!(HostKind::Vmx.can_run_software_interrupts());
    }
}
