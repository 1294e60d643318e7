//! Builds irqlab's boot info inside the guest, for entries where no irqlab VMM wrote one
//! (PVH). The structures live in statics; `finish` returns the address `kmain` expects.

use core::cell::UnsafeCell;
use irqlab_abi::boot_info::{self as bi, BootInfo, Devices, HostKind, MemMapEntry};
use irqlab_abi::{layout, ports};

const MAX_ENTRIES: usize = 32;

struct Storage {
    info: UnsafeCell<BootInfo>,
    map: UnsafeCell<[MemMapEntry; MAX_ENTRIES]>,
    cmdline: UnsafeCell<[u8; layout::CMDLINE_MAX]>,
}
// SAFETY: filled once on the boot CPU before anything else runs, then only read.
unsafe impl Sync for Storage {}

static STORAGE: Storage = Storage {
    info: UnsafeCell::new(BootInfo {
        magic: 0,
        version: 0,
        size: 0,
        host_kind: 0,
        vcpus: 0,
        flags: 0,
        tsc_khz: 0,
        cmdline_addr: 0,
        cmdline_len: 0,
        mem_map_addr: 0,
        mem_map_entries: 0,
        kernel_start: 0,
        kernel_end: 0,
        devices: Devices {
            present: 0,
            uart_port: 0,
            debug_exit_port: 0,
            bench_port: 0,
            pit_port: 0,
            uart_gsi: 0,
            pit_gsi: 0,
            reserved0: [0; 6],
            ioapic_base: 0,
            lapic_base: 0,
            msi_source_base: 0,
        },
        trace_ring_addr: 0,
        trace_ring_size: 0,
        posted_desc_addr: 0,
        posted_desc_stride: 0,
        reserved: [0; 8],
    }),
    map: UnsafeCell::new(
        [MemMapEntry {
            addr: 0,
            size: 0,
            kind: 0,
            reserved: 0,
        }; MAX_ENTRIES],
    ),
    cmdline: UnsafeCell::new([0; layout::CMDLINE_MAX]),
};

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Collects what the loader said.
pub struct BootInfoBuilder {
    entries: usize,
    cmdline_len: usize,
}

impl BootInfoBuilder {
    /// Empty.
    pub fn new() -> Self {
        BootInfoBuilder {
            entries: 0,
            cmdline_len: 0,
        }
    }

    fn push(&mut self, addr: u64, size: u64, kind: u32) {
        if size == 0 || self.entries == MAX_ENTRIES {
            return;
        }
        // SAFETY: single-threaded boot; index checked above.
        unsafe {
            (*STORAGE.map.get())[self.entries] = MemMapEntry {
                addr,
                size,
                kind,
                reserved: 0,
            }
        };
        self.entries += 1;
    }

    /// A RAM range; the part the kernel image occupies is reported as the kernel.
    pub fn ram(&mut self, addr: u64, size: u64) {
        let (ks, ke) = kernel_range();
        let end = addr.saturating_add(size);
        if end <= ks || addr >= ke {
            self.push(addr, size, bi::MEM_RAM);
            return;
        }
        if addr < ks {
            self.push(addr, ks - addr, bi::MEM_RAM);
        }
        if end > ke {
            self.push(ke, end - ke, bi::MEM_RAM);
        }
    }

    /// Copies a NUL-terminated command line.
    ///
    /// # Safety
    /// `addr` must point at a readable NUL-terminated string (or one longer than the limit).
    pub unsafe fn cmdline_from_c(&mut self, addr: u64) {
        // SAFETY: single-threaded boot.
        let buf = unsafe { &mut *STORAGE.cmdline.get() };
        let mut n = 0;
        while n < buf.len() - 1 {
            // SAFETY: the caller guarantees the string is readable up to its NUL.
            let b = unsafe { core::ptr::read_volatile((addr + n as u64) as *const u8) };
            if b == 0 {
                break;
            }
            buf[n] = b;
            n += 1;
        }
        self.cmdline_len = n;
    }

    /// Completes the boot info; returns its address.
    pub fn finish(mut self) -> u64 {
        let (ks, ke) = kernel_range();
        self.push(ks, ke - ks, bi::MEM_KERNEL);
        // SAFETY: single-threaded boot; nothing references the statics yet.
        let (info, cmdline) = unsafe { (&mut *STORAGE.info.get(), &*STORAGE.cmdline.get()) };
        let text = core::str::from_utf8(&cmdline[..self.cmdline_len]).unwrap_or("");
        let host = text
            .split(' ')
            .find_map(|w| w.strip_prefix("host="))
            .map_or(HostKind::Unknown, |h| match h {
                "pvm" => HostKind::Pvm,
                "vmx" => HostKind::Vmx,
                "svm" => HostKind::Svm,
                _ => HostKind::Unknown,
            });
        // The MSI source exists only under irqlab: probe its ID register (an unclaimed MMIO
        // read elsewhere returns all zeros or all ones).
        // SAFETY: an uncached, identity-mapped MMIO read with no side effects.
        let msi_id = unsafe {
            core::ptr::read_volatile(
                (layout::MSI_SOURCE_BASE + irqlab_abi::msi_source::ID) as *const u32,
            )
        };
        let msi_source = msi_id == irqlab_abi::msi_source::ID_VALUE;
        *info = BootInfo {
            magic: bi::MAGIC,
            version: bi::VERSION,
            size: core::mem::size_of::<BootInfo>() as u32,
            host_kind: host as u32,
            vcpus: 1,
            flags: 0,
            tsc_khz: crate::pit::calibrate_tsc_khz(ports::PIT_BASE),
            cmdline_addr: cmdline.as_ptr() as u64,
            cmdline_len: self.cmdline_len as u64,
            mem_map_addr: STORAGE.map.get() as u64,
            mem_map_entries: self.entries as u64,
            kernel_start: ks,
            kernel_end: ke,
            devices: Devices {
                present: bi::DEV_UART
                    | bi::DEV_DEBUG_EXIT
                    | bi::DEV_PIT
                    | bi::DEV_IOAPIC
                    | if msi_source { bi::DEV_MSI_SOURCE } else { 0 },
                uart_port: ports::COM1,
                debug_exit_port: ports::DEBUG_EXIT,
                bench_port: ports::BENCH,
                pit_port: ports::PIT_BASE,
                uart_gsi: ports::COM1_GSI,
                pit_gsi: ports::PIT_GSI,
                reserved0: [0; 6],
                ioapic_base: layout::IOAPIC_BASE,
                lapic_base: layout::LAPIC_BASE,
                msi_source_base: if msi_source {
                    layout::MSI_SOURCE_BASE
                } else {
                    0
                },
            },
            ..BootInfo::default()
        };
        info as *const BootInfo as u64
    }
}

fn kernel_range() -> (u64, u64) {
    // Linker symbols; only their addresses are used.
    (
        &raw const __kernel_start as u64,
        &raw const __kernel_end as u64,
    )
}
