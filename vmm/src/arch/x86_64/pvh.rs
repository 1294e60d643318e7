//! The PVH start info (`hvm_start_info`, version 1) and its memory map, for kernels entered
//! through their `XEN_ELFNOTE_PHYS32_ENTRY` note.

use super::BootError;
use irqlab_abi::boot_info::MemMapEntry;
use irqlab_abi::layout::{BOOT_INFO, CMDLINE};
use irqlab_abi::pvh::{HvmMemmapEntry, HvmStartInfo, HVM_START_MAGIC};
use std::mem::size_of;
use vm_memory::{Bytes, GuestAddress};

/// E820 type of memory the guest must leave alone.
const E820_RESERVED: u32 = 2;

/// Writes the start info at `BOOT_INFO`, its memory map right after, the command line at
/// `CMDLINE`; returns the start info's address (for EBX). `map` is irqlab's memory map: RAM
/// and the kernel become E820 RAM, boot structures and shared regions reserved. `rsdp` is the
/// ACPI RSDP's address (0: none).
pub fn write(
    mem: &crate::memory::GuestMemory,
    map: &[MemMapEntry],
    cmdline: &str,
    rsdp: u64,
) -> Result<u64, BootError> {
    let err = |what, addr| move |source| BootError::Memory { what, addr, source };
    let table = BOOT_INFO + size_of::<HvmStartInfo>() as u64;
    for (i, e) in map.iter().enumerate() {
        let kind = match e.kind {
            irqlab_abi::boot_info::MEM_RAM | irqlab_abi::boot_info::MEM_KERNEL => {
                irqlab_abi::pvh::HVM_MEMMAP_TYPE_RAM
            }
            _ => E820_RESERVED,
        };
        let at = table + (i * size_of::<HvmMemmapEntry>()) as u64;
        mem.write_slice(
            &[
                e.addr.to_le_bytes().as_slice(),
                e.size.to_le_bytes().as_slice(),
                kind.to_le_bytes().as_slice(),
                0u32.to_le_bytes().as_slice(),
            ]
            .concat(),
            GuestAddress(at),
        )
        .map_err(err("PVH memory map", at))?;
    }
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.write_slice(&c, GuestAddress(CMDLINE))
        .map_err(err("command line", CMDLINE))?;
    let info = HvmStartInfo {
        magic: HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE,
        memmap_paddr: table,
        memmap_entries: map.len() as u32,
        rsdp_paddr: rsdp,
        ..Default::default()
    };
    let bytes = [
        info.magic.to_le_bytes().as_slice(),
        info.version.to_le_bytes().as_slice(),
        info.flags.to_le_bytes().as_slice(),
        info.nr_modules.to_le_bytes().as_slice(),
        info.modlist_paddr.to_le_bytes().as_slice(),
        info.cmdline_paddr.to_le_bytes().as_slice(),
        info.rsdp_paddr.to_le_bytes().as_slice(),
        info.memmap_paddr.to_le_bytes().as_slice(),
        info.memmap_entries.to_le_bytes().as_slice(),
        info.reserved.to_le_bytes().as_slice(),
    ]
    .concat();
    mem.write_slice(&bytes, GuestAddress(BOOT_INFO))
        .map_err(err("PVH start info", BOOT_INFO))?;
    Ok(BOOT_INFO)
}
