//! Guest-physical memory layout at entry (all addresses identity-mapped).
//!
//! ```text
//! 0x0000_0000  null page (mapped, never used by irqlab)
//! 0x0000_1000  boot GDT               (BOOT_GDT)
//! 0x0000_2000  boot info + memory map (BOOT_INFO, 4 KiB)
//! 0x0000_3000  command line           (CMDLINE, CMDLINE_MAX bytes, NUL-terminated)
//! 0x0000_4000  PML4, PDPT, 4 x PD     (PAGE_TABLES, identity map of the low 4 GiB)
//! 0x0000_a000  ...free...
//! 0x0008_0000  top of the entry stack (ENTRY_STACK_TOP, grows down to 0x10000)
//! 0x0010_0000  kernel image           (KERNEL_MIN_ADDR: no PT_LOAD may start below)
//! kernel end   free RAM up to the end of guest memory (see the memory map)
//! 0xd000_0000  MSI source device      (MSI_SOURCE_BASE, uncached)
//! 0xd000_1000  ...unclaimed (a guard page: the hostile guest pokes it)...
//! 0xd000_2000  NIC-like RX ring device (NIC_BASE, uncached)
//! 0xfec0_0000  IO-APIC MMIO window    (uncached)
//! 0xfee0_0000  LAPIC MMIO window      (uncached)
//! ```

/// The VMM's boot GDT (null, 64-bit code, data, TSS).
pub const BOOT_GDT: u64 = 0x1000;
/// The boot info structure, followed by its memory map.
pub const BOOT_INFO: u64 = 0x2000;
/// Bytes reserved for the boot info and its memory map.
pub const BOOT_INFO_MAX: u64 = 0x1000;
/// The NUL-terminated kernel command line.
pub const CMDLINE: u64 = 0x3000;
/// Longest command line, including the terminating NUL.
pub const CMDLINE_MAX: usize = 0x1000;
/// PML4 at this address, PDPT one page above, then four page directories.
pub const PAGE_TABLES: u64 = 0x4000;
/// One past the last byte of the page tables.
pub const PAGE_TABLES_END: u64 = PAGE_TABLES + 6 * 0x1000;
/// Initial RSP (16-byte aligned).
pub const ENTRY_STACK_TOP: u64 = 0x8_0000;
/// Lowest guest-physical address a kernel PT_LOAD segment may use.
pub const KERNEL_MIN_ADDR: u64 = 0x10_0000;
/// Bytes identity-mapped by the entry page tables.
pub const IDENTITY_MAPPED: u64 = 4 << 30;
/// Base of the IO-APIC MMIO window (82093AA default).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Base of the local APIC MMIO window (architectural default of IA32_APIC_BASE).
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Start of the 32-bit MMIO hole: guest RAM never reaches it.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;

/// Base of the MSI source device's MMIO window (see [`crate::msi_source`]).
pub const MSI_SOURCE_BASE: u64 = 0xd000_0000;

/// Base of the NIC-like receive ring device's MMIO window (see [`crate::nic`]). The page
/// between it and the MSI source's window stays unclaimed.
pub const NIC_BASE: u64 = 0xd000_2000;

/// Selector of the 64-bit kernel code segment in the boot GDT.
pub const BOOT_CS: u16 = 0x08;
/// Selector of the kernel data segment in the boot GDT.
pub const BOOT_DS: u16 = 0x10;
/// Selector of the (dummy) TSS in the boot GDT.
pub const BOOT_TSS: u16 = 0x18;
