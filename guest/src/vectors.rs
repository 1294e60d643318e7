//! Every interrupt vector the guest uses, in one table.
//!
//! | vector | what |
//! |--------|------|
//! | 0–31   | CPU exceptions (`irqlab_x86::error_code::Exception`) |
//! | 0x30   | [`PIT`] (IO-APIC pin 2) |
//! | 0x34   | [`UART`] (COM1, IO-APIC pin 4) |
//! | 0x40   | [`MSI`] (the MSI source device); [`UNHANDLED_PROBE`] before any experiment runs |
//! | 0x50   | [`LAPIC_TIMER`] |
//! | 0x5f   | [`WAKE`] (the experiments' backstop LAPIC timer) |
//! | 0x80   | [`SYSCALL`] (`int 0x80`, DPL 3) |
//! | 0xeb   | `irqlab_abi::vectors::POSTED_NOTIFICATION` (the VMM's choice: `posted` reads the NV from the descriptors) |
//! | 0xff   | [`SPURIOUS`] |
//!
//! Vectors the host names too (the VMM writes the posted-interrupt NV; its tests read the PIT
//! and MSI rows of the guest's interrupt table) are defined in `irqlab_abi::vectors`; the
//! device ones are re-exported here.

pub use irqlab_abi::vectors::{MSI, PIT};

/// The first vector that is not a CPU exception (0–31 are reserved for them).
pub const FIRST_EXTERNAL: u8 = 32;
/// COM1 (IO-APIC pin 4).
pub const UART: u8 = 0x34;
/// The LAPIC timer (the timer experiment's periodic and TSC-deadline modes).
pub const LAPIC_TIMER: u8 = 0x50;
/// The experiments' backstop wake-up timer (a LAPIC timer too).
pub const WAKE: u8 = 0x5f;
/// The legacy system call gate, `int 0x80` (DPL 3).
pub const SYSCALL: u8 = 0x80;
/// The LAPIC's spurious-interrupt vector (SVR bits 7:0).
pub const SPURIOUS: u8 = 0xff;
/// The self-test's self-IPI: a vector with no handler registered at that point (the MSI
/// experiment, which registers one here, runs later).
pub const UNHANDLED_PROBE: u8 = 0x40;
