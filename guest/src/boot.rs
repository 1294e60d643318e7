//! The boot info the VMM handed us (see `irqlab_abi::boot_info`) and the command line.
//!
//! Reading guest memory is here; parsing the command line and naming a rejection are pure
//! and live (with host tests) in `irqlab_guest_core::cmdline`.

use irqlab_abi::boot_info::{BootInfo, Invalid, MemMapEntry};
pub use irqlab_guest_core::cmdline::{describe, Cmdline};

/// Validated boot info plus the pieces derived from it.
pub struct Boot {
    /// The structure itself (copied out of guest memory).
    pub info: BootInfo,
    /// The command line.
    pub cmdline: Cmdline<'static>,
    mem_map: &'static [MemMapEntry],
}

impl Boot {
    /// Reads and validates the boot info at `addr`.
    ///
    /// # Safety
    /// `addr` must be the pointer the VMM passed in RDI (identity-mapped, readable).
    pub unsafe fn from_addr(addr: u64) -> Result<Boot, Invalid> {
        if addr == 0 || !addr.is_multiple_of(8) {
            return Err(Invalid::Magic(0));
        }
        // SAFETY: the caller guarantees `addr` is readable; alignment was checked.
        let info = unsafe { core::ptr::read_volatile(addr as *const BootInfo) };
        info.validate()?;
        // SAFETY: `validate` bounded the entry count to the boot-info page and the command
        // line to CMDLINE_MAX; both regions were written by the VMM and stay untouched.
        let mem_map = unsafe {
            core::slice::from_raw_parts(
                info.mem_map_addr as *const MemMapEntry,
                info.mem_map_entries as usize,
            )
        };
        // SAFETY: as above; the length excludes the NUL.
        let bytes = unsafe {
            core::slice::from_raw_parts(info.cmdline_addr as *const u8, info.cmdline_len as usize)
        };
        Ok(Boot {
            info,
            cmdline: Cmdline::from_bytes(bytes),
            mem_map,
        })
    }

    /// The memory map.
    pub fn mem_map(&self) -> &'static [MemMapEntry] {
        self.mem_map
    }
}
