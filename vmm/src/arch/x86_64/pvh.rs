//! The PVH start info (`hvm_start_info`, version 1) and its memory map, for kernels entered
//! through their `XEN_ELFNOTE_PHYS32_ENTRY` note.

use super::BootError;
use irqlab_abi::boot_info::MemMapEntry;
use irqlab_abi::layout::{BOOT_INFO, CMDLINE};
use irqlab_abi::pvh::{HVM_MEMMAP_TYPE_RAM, HVM_START_MAGIC};
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use std::mem::size_of;
use vm_memory::{Bytes, GuestAddress};

/// E820 type of memory the guest must leave alone.
const E820_RESERVED: u32 = 2;

/// Writes the start info at `BOOT_INFO`, its memory map right after, the command line at
/// `CMDLINE`; returns the start info's address (for EBX). `map` is irqlab's memory map: RAM
/// and the kernel become E820 RAM, boot structures and shared regions reserved. `rsdp` is the
/// ACPI RSDP's address (0: none). `initrd` (address, size), if any, is the one module of the
/// list after the map (Linux's PVH entry takes its first module as the initrd). The start
/// info, the map and the list are written by linux-loader's `PvhBootConfigurator`.
pub fn write(
    mem: &crate::memory::GuestMemory,
    map: &[MemMapEntry],
    cmdline: &str,
    rsdp: u64,
    initrd: Option<(u64, u64)>,
) -> Result<u64, BootError> {
    let table = BOOT_INFO + size_of::<hvm_start_info>() as u64;
    let entries: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: match e.kind {
                irqlab_abi::boot_info::MEM_RAM | irqlab_abi::boot_info::MEM_KERNEL => {
                    HVM_MEMMAP_TYPE_RAM
                }
                _ => E820_RESERVED,
            },
            reserved: 0,
        })
        .collect();
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.write_slice(&c, GuestAddress(CMDLINE))
        .map_err(|source| BootError::Memory {
            what: "command line",
            addr: CMDLINE,
            source,
        })?;
    let modules: Vec<hvm_modlist_entry> = initrd
        .iter()
        .map(|&(paddr, size)| hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        })
        .collect();
    let modlist = table + (entries.len() * size_of::<hvm_memmap_table_entry>()) as u64;
    let info = hvm_start_info {
        magic: HVM_START_MAGIC,
        version: 1,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() { 0 } else { modlist },
        cmdline_paddr: CMDLINE,
        rsdp_paddr: rsdp,
        memmap_paddr: table,
        memmap_entries: entries.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&info, GuestAddress(BOOT_INFO));
    params.set_sections(&entries, GuestAddress(table));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(modlist));
    }
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(BootError::StartInfo)?;
    Ok(BOOT_INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use irqlab_abi::pvh::{HvmMemmapEntry, HvmStartInfo};

    #[test]
    fn the_guest_abi_and_linux_loader_agree_on_the_layout() {
        assert_eq!(size_of::<HvmStartInfo>(), size_of::<hvm_start_info>());
        assert_eq!(
            size_of::<HvmMemmapEntry>(),
            size_of::<hvm_memmap_table_entry>()
        );
    }

    #[test]
    fn start_info_map_and_command_line_land_where_it_says() {
        let mem = crate::memory::create(16 << 20).unwrap();
        let map = [
            MemMapEntry {
                addr: 0x10_0000,
                size: 0x20_0000,
                kind: irqlab_abi::boot_info::MEM_KERNEL,
                reserved: 0,
            },
            MemMapEntry {
                addr: 0x30_0000,
                size: 0x1000,
                kind: irqlab_abi::boot_info::MEM_SHARED,
                reserved: 0,
            },
        ];
        let at = write(&mem, &map, "run=none", 0xe_0000, Some((0x80_0000, 0x1234))).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!((info.magic, info.version), (HVM_START_MAGIC, 1));
        // The initrd: the one module, its list right after the map.
        assert_eq!(info.nr_modules, 1);
        assert_eq!(info.modlist_paddr, info.memmap_paddr + 2 * 24);
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((m.paddr, m.size, m.cmdline_paddr), (0x80_0000, 0x1234, 0));
        assert!(
            info.modlist_paddr + 32 <= CMDLINE,
            "inside the boot-info page"
        );
        assert_eq!((info.rsdp_paddr, info.memmap_entries), (0xe_0000, 2));
        let e: hvm_memmap_table_entry = mem.read_obj(GuestAddress(info.memmap_paddr + 24)).unwrap();
        assert_eq!((e.addr, e.type_), (0x30_0000, E820_RESERVED));
        let mut c = [0u8; 9];
        mem.read_slice(&mut c, GuestAddress(info.cmdline_paddr))
            .unwrap();
        assert_eq!(&c, b"run=none\0");
        // Without an initrd: no module list.
        let at = write(&mem, &map, "run=none", 0, None).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }
}
