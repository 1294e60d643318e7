//! How a PC guest asks for a reboot, and the ACPI fixed-hardware registers an OS reads.
//!
//! * [`I8042`]: the keyboard controller's command port 0x64. Status reads return 0 (input
//!   buffer empty, so `kb_wait` loops end at once) and command 0xFE, "pulse output port bit 0",
//!   which is wired to the CPU's reset line, asks for a reboot. Linux's `reboot=k` path.
//! * [`ResetControl`]: port 0xCF9, the chipset's reset control register. A write with RST_CPU
//!   (bit 2) set asks for a reboot; the other bits read back. Linux's `reboot=pci` path, and
//!   the register irqlab's FADT names as the ACPI reset register (`reboot=acpi`, Linux's
//!   default first try).
//! * [`AcpiPm`]: PM1a event and control blocks, so that an OS using the FADT's
//!   fixed-hardware model (rather than the hardware-reduced one) finds SCI_EN set (ACPI mode
//!   is always on; there is no SMI command port) and status and enable registers that behave.
//!   irqlab raises no ACPI events, so PM1_STS always reads 0.
//!
//! Requests leave through [`ExitSink::request_reset`]; the VMM ends the run with the exit code
//! for "guest requested reboot".

use crate::{le_value, BusDevice, ExitSink};
use irqlab_abi::ports::{I8042_RESET_PULSE, RESET_CPU};
use std::sync::Arc;

/// Which register a reboot request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetSource {
    /// i8042 command 0xFE on port 0x64.
    I8042,
    /// RST_CPU written to port 0xCF9 (also the FADT reset register).
    ResetControl,
}

impl std::fmt::Display for ResetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResetSource::I8042 => "i8042 reset pulse: port 0x64 <- 0xfe",
            ResetSource::ResetControl => {
                "reset control register: port 0xcf9 <- RST_CPU (also the FADT reset register)"
            }
        })
    }
}

/// The i8042 command port, as far as a reboot needs it.
pub struct I8042 {
    sink: Arc<dyn ExitSink>,
}

impl I8042 {
    /// A controller whose reset pulse goes to `sink`.
    pub fn new(sink: Arc<dyn ExitSink>) -> Self {
        I8042 { sink }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status: output buffer empty, input buffer empty, no errors.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&I8042_RESET_PULSE) {
            self.sink.request_reset(ResetSource::I8042);
        }
    }
}

/// The reset control register at 0xCF9.
pub struct ResetControl {
    sink: Arc<dyn ExitSink>,
    value: u8,
}

impl ResetControl {
    /// A register whose RST_CPU writes go to `sink`.
    pub fn new(sink: Arc<dyn ExitSink>) -> Self {
        ResetControl { sink, value: 0 }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = self.value;
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 || data.len() != 1 {
            return;
        }
        // RST_CPU is self-clearing; the other bits (SYS_RST, full reset) are kept.
        self.value = data[0] & !RESET_CPU;
        if data[0] & RESET_CPU != 0 {
            self.sink.request_reset(ResetSource::ResetControl);
        }
    }
}

/// PM1_CNT.SCI_EN: the platform is in ACPI mode.
const SCI_EN: u16 = 1;

/// The ACPI PM1a event block (4 bytes: PM1_STS, PM1_EN) and control block (2 bytes: PM1_CNT),
/// mapped at one base with the control block at `cnt_offset`.
#[derive(Debug)]
pub struct AcpiPm {
    cnt_offset: u64,
    enable: u16,
    control: u16,
}

impl AcpiPm {
    /// Registers with the control block `cnt_offset` bytes after the event block.
    pub fn new(cnt_offset: u64) -> Self {
        AcpiPm {
            cnt_offset,
            enable: 0,
            control: SCI_EN,
        }
    }

    fn register(&mut self, offset: u64) -> Option<(&mut u16, u64)> {
        match offset {
            2..=3 => Some((&mut self.enable, offset - 2)),
            o if (self.cnt_offset..self.cnt_offset + 2).contains(&o) => {
                Some((&mut self.control, o - self.cnt_offset))
            }
            _ => None,
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            // PM1_STS (offsets 0-1) has no events to report.
            *b = match self.register(at) {
                Some((reg, byte)) => reg.to_le_bytes()[byte as usize],
                None => 0,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(value) = le_value(data) else { return };
        for (i, b) in value.to_le_bytes().iter().take(data.len()).enumerate() {
            let at = offset + i as u64;
            if let Some((reg, byte)) = self.register(at) {
                let mut bytes = reg.to_le_bytes();
                bytes[byte as usize] = *b;
                *reg = u16::from_le_bytes(bytes);
            }
        }
        // ACPI mode cannot be left (there is no legacy mode to go to).
        self.control |= SCI_EN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<ResetSource>>);
    impl ExitSink for Record {
        fn request_exit(&self, _status: u32) {}
        fn request_reset(&self, source: ResetSource) {
            self.0.lock().unwrap().push(source);
        }
    }

    #[test]
    fn i8042_reset_pulse_requests_a_reboot_and_status_reads_idle() {
        let sink = Arc::new(Record::default());
        let mut kbd = I8042::new(sink.clone());
        let mut status = [0xffu8];
        kbd.read(0, &mut status);
        assert_eq!(status[0] & 0x02, 0, "input buffer empty");
        kbd.write(0, &[0xd1]); // another command: nothing
        assert!(sink.0.lock().unwrap().is_empty());
        kbd.write(0, &[0xfe]);
        assert_eq!(*sink.0.lock().unwrap(), vec![ResetSource::I8042]);
    }

    #[test]
    fn reset_control_resets_on_rst_cpu_only() {
        let sink = Arc::new(Record::default());
        let mut rc = ResetControl::new(sink.clone());
        rc.write(0, &[0x02]); // SYS_RST alone: prepares, no reset
        assert!(sink.0.lock().unwrap().is_empty());
        let mut v = [0u8];
        rc.read(0, &mut v);
        assert_eq!(v[0], 0x02);
        rc.write(0, &[irqlab_abi::ports::RESET_VALUE]);
        assert_eq!(*sink.0.lock().unwrap(), vec![ResetSource::ResetControl]);
        rc.read(0, &mut v);
        assert_eq!(v[0], 0x02, "RST_CPU self-clears");
        rc.write(0, &[0x06, 0x06]); // wrong width: ignored
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn pm1_registers_keep_acpi_mode_and_report_no_events() {
        let mut pm = AcpiPm::new(4);
        let mut w = [0u8; 2];
        pm.read(4, &mut w);
        assert_eq!(u16::from_le_bytes(w) & SCI_EN, 1, "SCI_EN");
        pm.write(4, &0u16.to_le_bytes());
        pm.read(4, &mut w);
        assert_eq!(u16::from_le_bytes(w) & SCI_EN, 1, "ACPI mode stays on");
        pm.write(2, &0x0121u16.to_le_bytes());
        pm.read(2, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0121, "PM1_EN reads back");
        pm.write(0, &0xffffu16.to_le_bytes());
        pm.read(0, &mut w);
        assert_eq!(w, [0, 0], "PM1_STS: no events");
        // Every offset and width, in and out of the window, never panics.
        for off in 0..16 {
            for width in [1usize, 2, 3, 4, 8] {
                let mut buf = vec![0xffu8; width];
                pm.read(off, &mut buf);
                pm.write(off, &buf);
            }
        }
    }
}
