//! The PVH boot ABI (Xen `arch-x86/hvm/start_info.h`, used by QEMU `-kernel` and by
//! irqlab with `boot = "pvh"`): the kernel's ELF carries a `XEN_ELFNOTE_PHYS32_ENTRY` note; the
//! loader enters that address in 32-bit protected mode, paging off, with EBX pointing at an
//! [`HvmStartInfo`].

/// `XEN_ELFNOTE_PHYS32_ENTRY`.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// `hvm_start_info.magic`.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Memory map entry type: RAM.
pub const HVM_MEMMAP_TYPE_RAM: u32 = 1;

/// `struct hvm_start_info` (version 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HvmStartInfo {
    /// [`HVM_START_MAGIC`].
    pub magic: u32,
    /// 0 or 1 (1 adds the memory map).
    pub version: u32,
    /// Flags.
    pub flags: u32,
    /// Modules.
    pub nr_modules: u32,
    /// Module list.
    pub modlist_paddr: u64,
    /// NUL-terminated command line (0 = none).
    pub cmdline_paddr: u64,
    /// ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Memory map (version 1).
    pub memmap_paddr: u64,
    /// Memory map entries.
    pub memmap_entries: u32,
    /// Zero.
    pub reserved: u32,
}

/// `struct hvm_memmap_table_entry`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HvmMemmapEntry {
    /// Start.
    pub addr: u64,
    /// Length.
    pub size: u64,
    /// `HVM_MEMMAP_TYPE_*` (E820 values).
    pub kind: u32,
    /// Zero.
    pub reserved: u32,
}
