//! Every interrupt vector the guest uses, in one table.
//!
//! | vector | what |
//! |--------|------|
//! | 0–31   | CPU exceptions (`irqlab_x86::error_code::Exception`) |
//! | 0x30   | [`PIT`] (IO-APIC pin 2) |
//! | 0x34   | [`UART`] (COM1, IO-APIC pin 4) |
//! | 0x40   | [`MSI`] (the MSI source device); [`UNHANDLED_PROBE`] before any experiment runs |
//! | 0x48   | [`NIC`] (the NIC-like RX ring device: `run=napi`, `run=softirq`) |
//! | 0x50   | [`LAPIC_TIMER`] |
//! | 0x5f   | [`WAKE`] (the experiments' backstop LAPIC timer) |
//! | 0x80   | [`SYSCALL`] (`int 0x80`, DPL 3) |
//! | 0xeb   | `irqlab_abi::vectors::POSTED_NOTIFICATION` (the VMM's choice: `posted` reads the NV from the descriptors) |
//! | 0xff   | [`SPURIOUS`] |
//! | 0x21, 0x31–0x33, 0x41, 0x51–0x53, 0x61 | `run=nesting`'s self-IPIs, chosen by priority class (`vector >> 4`): [`NEST_LOWER`], [`NEST_LOW`], [`NEST_SAME`], [`NEST_HAZARD`], [`NEST_TPR_HELD`], [`NEST_HIGH`], [`NEST_TPR_ABOVE`], [`NEST_HAZARD_NESTED`], [`NEST_HIGHER`] |
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

/// `run=nesting`, class 2: raised inside [`NEST_LOW`]'s handler, waits for its EOI.
pub const NEST_LOWER: u8 = 0x21;
/// `run=nesting`, class 3: the handler that enables interrupts and is preempted.
pub const NEST_LOW: u8 = 0x31;
/// `run=nesting`, class 3: raised inside [`NEST_LOW`]'s handler, waits for its EOI.
pub const NEST_SAME: u8 = 0x32;
/// `run=nesting`, class 3: the handler with the read-modify-write (reentrancy hazard).
pub const NEST_HAZARD: u8 = 0x33;
/// `run=nesting`, class 4: held in the IRR by TPR = 0x40.
pub const NEST_TPR_HELD: u8 = 0x41;
/// `run=nesting`, class 5: preempts [`NEST_LOW`] (depth 2).
pub const NEST_HIGH: u8 = 0x51;
/// `run=nesting`, class 5: runs while TPR = 0x40 holds [`NEST_TPR_HELD`].
pub const NEST_TPR_ABOVE: u8 = 0x52;
/// `run=nesting`, class 5: arrives inside [`NEST_HAZARD`]'s read-modify-write.
pub const NEST_HAZARD_NESTED: u8 = 0x53;
/// `run=nesting`, class 6: preempts [`NEST_HIGH`] (depth 3).
pub const NEST_HIGHER: u8 = 0x61;
/// The NIC-like RX ring device's MSI (or posted vector): class 4, below the LAPIC timer.
pub const NIC: u8 = 0x48;
