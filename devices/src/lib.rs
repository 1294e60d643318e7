//! Device models for irqlab.
//!
//! Every model is pure: it sees register reads and writes at an offset inside its own window
//! (`read(offset, &mut [u8])` / `write(offset, &[u8])`), owns no file descriptors and knows
//! nothing about KVM. What leaves a device — an interrupt, a request to end the VM — goes
//! through the small traits in this file, which the VMM implements with KVM ioctls and the
//! tests implement with recording fakes.
#![deny(missing_docs)]

pub mod bench_port;
pub mod debug_exit;
pub mod fw_cfg;
pub mod ioapic;
pub mod mark;
pub mod msi_source;
pub mod nic;
pub mod pit;
pub mod posted;
pub mod reset;
pub mod testdev;
pub mod uart;

/// A device on the port-I/O or MMIO bus.
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `offset` inside the device window. Bytes the
    /// device does not define are left as the bus filled them (0xff).
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset` inside the device window.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Where a request to end the VM goes (debug-exit port, reset registers, …).
pub trait ExitSink: Send + Sync {
    /// The guest asked to stop the VM with `status`.
    fn request_exit(&self, status: u32);
    /// The guest asked for a reboot through `source`.
    fn request_reset(&self, source: reset::ResetSource);
}

/// An interrupt line out of a device (an IO-APIC input pin, for instance).
pub trait IrqLine: Send + Sync {
    /// Drives the line to `level`. Edge-triggered consumers act on the 0 → 1 transition;
    /// level-triggered ones on the level.
    fn set_level(&self, level: bool);
}

/// A line connected to nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _level: bool) {}
}

/// A message-signalled interrupt: the address/data pair a device writes (Intel SDM vol. 3
/// §11.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsiMessage {
    /// Address (0xFEEx_xxxx: destination and mode bits).
    pub address: u64,
    /// Data (vector, delivery mode, trigger bits).
    pub data: u32,
}

/// What became of one MSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiOutcome {
    /// A local APIC accepted it.
    Delivered,
    /// No local APIC accepted it (`KVM_SIGNAL_MSI` returned 0: the destination matched
    /// nobody). KVM reports a fixed interrupt that merged into an already pending IRR bit as
    /// [`MsiOutcome::Delivered`]; only the guest can count those.
    Blocked,
    /// The sink could not send it (the errno, for the VMM's KVM sink).
    Failed(i32),
}

/// Where MSIs go: `KVM_SIGNAL_MSI` in the VMM, a recorder in tests.
pub trait MsiSink: Send + Sync {
    /// Sends one message.
    fn send(&self, msg: MsiMessage) -> MsiOutcome;
    /// Sends one message on behalf of IO-APIC input `pin` (a tracing sink records where it
    /// came from). The default just sends.
    fn send_from_pin(&self, _pin: u8, msg: MsiMessage) -> MsiOutcome {
        self.send(msg)
    }
    /// The IO-APIC's routes changed (the VMM mirrors level-triggered vectors into KVM so that
    /// their EOIs exit to userspace). The default ignores it.
    fn routes_changed(&self, _routes: &[ioapic::PinRoute]) {}
}

/// Little-endian value of a 1-, 2-, 4- or 8-byte access, `None` for any other width.
pub fn le_value(data: &[u8]) -> Option<u64> {
    match data.len() {
        1 | 2 | 4 | 8 => {
            let mut buf = [0u8; 8];
            buf[..data.len()].copy_from_slice(data);
            Some(u64::from_le_bytes(buf))
        }
        _ => None,
    }
}
