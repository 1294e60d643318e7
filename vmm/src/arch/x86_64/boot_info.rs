//! Writes the boot info, memory map and command line (guest ABI "Boot info").

use super::BootError;
use crate::loader::LoadedKernel;
use crate::ram_layout::TopOfRam;
use irqlab_abi::boot_info::{self as bi, BootInfo, Devices, HostKind, MemMapEntry};
use irqlab_abi::layout::{BOOT_GDT, BOOT_INFO, CMDLINE, KERNEL_MIN_ADDR};
use irqlab_abi::ports;
use std::mem::size_of;
use vm_memory::{Bytes, GuestAddress};

/// What the boot info describes.
pub struct BootFacts<'a> {
    /// Host kind.
    pub host: HostKind,
    /// vCPUs.
    pub vcpus: u8,
    /// Split irqchip?
    pub split_irqchip: bool,
    /// TSC frequency (0 = unknown).
    pub tsc_khz: u64,
    /// Guest memory size.
    pub mem_size: u64,
    /// The kernel.
    pub kernel: LoadedKernel,
    /// Command line.
    pub cmdline: &'a str,
    /// The regions shared with the VMM at the top of RAM: the trace ring (if tracing) and
    /// the posted-interrupt descriptors.
    pub top: TopOfRam,
}

/// The memory map for `facts`.
pub fn mem_map(facts: &BootFacts) -> Vec<MemMapEntry> {
    let entry = |addr, size, kind| MemMapEntry {
        addr,
        size,
        kind,
        reserved: 0,
    };
    let k = facts.kernel;
    let mut map = vec![
        entry(BOOT_GDT, KERNEL_MIN_ADDR - BOOT_GDT, bi::MEM_BOOT),
        entry(k.start, k.end - k.start, bi::MEM_KERNEL),
    ];
    let free_from = k.end.next_multiple_of(4096);
    let ram_end = facts.top.usable_end();
    if free_from < ram_end {
        map.push(entry(free_from, ram_end - free_from, bi::MEM_RAM));
    }
    for (addr, size) in facts.top.shared() {
        map.push(entry(addr, size, bi::MEM_SHARED));
    }
    map
}

/// Writes everything; the guest finds it through RDI = `layout::BOOT_INFO`.
pub fn write(mem: &crate::memory::GuestMemory, facts: &BootFacts) -> Result<BootInfo, BootError> {
    let err = |what, addr| move |source| BootError::Memory { what, addr, source };
    let map = mem_map(facts);
    let map_addr = BOOT_INFO + size_of::<BootInfo>() as u64;
    for (i, e) in map.iter().enumerate() {
        let addr = map_addr + (i * size_of::<MemMapEntry>()) as u64;
        mem.write_obj(*e, GuestAddress(addr))
            .map_err(err("memory map", addr))?;
    }
    let mut cmdline = facts.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    mem.write_slice(&cmdline, GuestAddress(CMDLINE))
        .map_err(err("command line", CMDLINE))?;

    let split = facts.split_irqchip;
    let info = BootInfo {
        magic: bi::MAGIC,
        version: bi::VERSION,
        size: size_of::<BootInfo>() as u32,
        host_kind: facts.host as u32,
        vcpus: u32::from(facts.vcpus),
        flags: if split { bi::FLAG_SPLIT_IRQCHIP } else { 0 },
        tsc_khz: facts.tsc_khz,
        cmdline_addr: CMDLINE,
        cmdline_len: facts.cmdline.len() as u64,
        mem_map_addr: map_addr,
        mem_map_entries: map.len() as u64,
        kernel_start: facts.kernel.start,
        kernel_end: facts.kernel.end,
        devices: Devices {
            // With the kernel irqchip KVM provides the PIT and IO-APIC at the same places.
            present: bi::DEV_UART
                | bi::DEV_DEBUG_EXIT
                | bi::DEV_BENCH
                | bi::DEV_PIT
                | bi::DEV_IOAPIC
                | bi::DEV_MSI_SOURCE,
            uart_port: ports::COM1,
            debug_exit_port: ports::DEBUG_EXIT,
            bench_port: ports::BENCH,
            pit_port: ports::PIT_BASE,
            uart_gsi: ports::COM1_GSI,
            pit_gsi: ports::PIT_GSI,
            ioapic_base: irqlab_abi::layout::IOAPIC_BASE,
            lapic_base: irqlab_abi::layout::LAPIC_BASE,
            msi_source_base: irqlab_abi::layout::MSI_SOURCE_BASE,
            ..Default::default()
        },
        trace_ring_addr: facts.top.trace_ring.map_or(0, |r| r.0),
        trace_ring_size: facts.top.trace_ring.map_or(0, |r| r.1),
        posted_desc_addr: facts.top.posted.0,
        posted_desc_stride: irqlab_abi::posted::DESC_SIZE,
        ..Default::default()
    };
    mem.write_obj(info, GuestAddress(BOOT_INFO))
        .map_err(err("boot info", BOOT_INFO))?;
    Ok(info)
}
