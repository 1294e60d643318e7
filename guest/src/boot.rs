//! The boot info the VMM handed us (see `irqlab_abi::boot_info`) and the command line.

use irqlab_abi::boot_info::{BootInfo, Invalid, MemMapEntry};

/// Validated boot info plus the pieces derived from it.
pub struct Boot {
    /// The structure itself (copied out of guest memory).
    pub info: BootInfo,
    /// The command line.
    pub cmdline: Cmdline,
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
        let raw = core::str::from_utf8(bytes).unwrap_or("");
        Ok(Boot {
            info,
            cmdline: Cmdline { raw },
            mem_map,
        })
    }

    /// The memory map.
    pub fn mem_map(&self) -> &'static [MemMapEntry] {
        self.mem_map
    }
}

/// `key=value` words separated by spaces; a bare word is a flag.
#[derive(Clone, Copy)]
pub struct Cmdline {
    /// The text as the VMM passed it.
    pub raw: &'static str,
}

impl Cmdline {
    /// The value of the last `key=value` word for `key`.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        self.raw
            .rsplit(' ')
            .filter_map(|w| w.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// A numeric value, or `default` when absent or malformed.
    pub fn get_u64(&self, key: &str, default: u64) -> u64 {
        self.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// Why the boot info was rejected, in words (no `Debug`: see `fmt`).
pub fn describe(why: Invalid) -> &'static str {
    match why {
        Invalid::Magic(_) => "bad magic",
        Invalid::Version(_) => "unsupported version",
        Invalid::Size(_) => "structure too small",
        Invalid::MemMap(_) => "memory map too long",
        Invalid::Cmdline(_) => "command line too long",
    }
}
