//! Guest status values written to the debug-exit port, and how irqlab turns them into its own
//! process exit code.
//!
//! | guest writes | meaning                          | `irqlab run` exits with |
//! |--------------|----------------------------------|-------------------------|
//! | 0            | every self-test passed           | 0                       |
//! | 1            | at least one self-test failed    | 1                       |
//! | 2            | the guest rejected its boot info | 2                       |
//! | 3            | guest kernel panic               | 3                       |
//! | 4            | double fault (#DF handler ran)   | 4                       |
//! | 5            | unexpected kernel-mode exception | 5                       |
//! | 6..=63       | guest-defined                    | the same value          |
//! | 64..         | out of range                     | [`GUEST_STATUS_MAX`] (63), the value is printed |
//!
//! Exit codes 64 and up belong to the VMM itself (see the README's exit-code table).

/// All checks passed.
pub const PASS: u32 = 0;
/// At least one check failed.
pub const FAIL: u32 = 1;
/// The boot info was missing, had the wrong magic, or an unsupported version.
pub const BAD_BOOT_INFO: u32 = 2;
/// The guest kernel panicked.
pub const PANIC: u32 = 3;
/// The #DF handler ran; it reports and stops.
pub const DOUBLE_FAULT: u32 = 4;
/// An exception in kernel mode that no self-test expected.
pub const KERNEL_FAULT: u32 = 5;
/// Largest guest status passed through unchanged as the process exit code.
pub const GUEST_STATUS_MAX: u32 = 63;

/// The process exit code `irqlab run` uses for a guest status.
pub const fn exit_code_for(status: u32) -> u8 {
    if status > GUEST_STATUS_MAX {
        GUEST_STATUS_MAX as u8
    } else {
        status as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_exit_codes_below_the_vmm_range() {
        assert_eq!(exit_code_for(PASS), 0);
        assert_eq!(exit_code_for(FAIL), 1);
        assert_eq!(exit_code_for(63), 63);
        assert_eq!(exit_code_for(64), 63);
        assert_eq!(exit_code_for(u32::MAX), 63);
    }
}
