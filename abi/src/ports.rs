//! I/O ports of irqlab's devices.

/// COM1 16550 UART base port (8 registers).
pub const COM1: u16 = 0x3f8;
/// IO-APIC input pin (= GSI) of COM1's interrupt.
pub const COM1_GSI: u8 = 4;
/// Debug-exit port (QEMU `isa-debug-exit` at iobase 0xf4, iosize 4): a write of 1, 2 or 4
/// bytes ends the VM with the written value as the guest status (see [`crate::status`]).
pub const DEBUG_EXIT: u16 = 0xf4;
/// Width of the debug-exit port window in bytes.
pub const DEBUG_EXIT_SIZE: u16 = 4;
/// Benchmark port: writes are counted by the VMM and otherwise ignored. The guest's PIO cost
/// experiment and `irqlab bench` use it to measure a bare PIO exit round trip.
pub const BENCH: u16 = 0xf8;
/// Mark port (4 bytes): a write of `v` makes the VMM record `v` with the host time and its
/// exit counters, so benchmarks can count exits between two points of the guest's timeline.
pub const MARK: u16 = 0xf9;
/// Width of the mark port window.
pub const MARK_SIZE: u16 = 4;
/// 8254 PIT channel 0 data port (channels 1 and 2 at +1, +2; control word at +3).
pub const PIT_BASE: u16 = 0x40;
/// IO-APIC input pin (= GSI) the PIT's channel 0 drives, as on real boards (ISA IRQ 0 is
/// overridden to pin 2).
pub const PIT_GSI: u8 = 2;
/// Legacy 8259 PIC master command/data ports; guests mask it (write 0xff to 0x21 and 0xa1).
pub const PIC_MASTER: u16 = 0x20;
/// Legacy 8259 PIC slave command/data ports.
pub const PIC_SLAVE: u16 = 0xa0;

/// i8042 keyboard-controller command/status port. irqlab models only what a reboot needs:
/// status reads 0 (input buffer empty), and command 0xFE (pulse the CPU reset line) ends the
/// run as "guest requested reboot".
pub const I8042_COMMAND: u16 = 0x64;
/// The i8042 command that pulses the CPU reset line.
pub const I8042_RESET_PULSE: u8 = 0xfe;
/// PC reset control register (PIIX/ICH "RST_CNT"): a write with bit 2 (RST_CPU) set resets
/// the machine. The FADT's reset register points here too (value [`RESET_VALUE`]).
pub const RESET_CONTROL: u16 = 0xcf9;
/// RST_CPU bit of [`RESET_CONTROL`].
pub const RESET_CPU: u8 = 1 << 2;
/// What the FADT tells the OS to write to [`RESET_CONTROL`] (SYS_RST | RST_CPU, as on a PC).
pub const RESET_VALUE: u8 = 0x06;
/// ACPI PM1a event block (PM1_STS at +0, PM1_EN at +2), described in the FADT.
pub const PM1A_EVT: u16 = 0x600;
/// ACPI PM1a control block (PM1_CNT, 2 bytes), described in the FADT.
pub const PM1A_CNT: u16 = 0x604;
/// ISA IRQ (= GSI) of the ACPI system control interrupt, described in the FADT (level,
/// active high, as the MADT's override says). Nothing raises it: irqlab has no ACPI events.
pub const SCI_IRQ: u8 = 9;
