//! Owns the devices, their port and MMIO windows, and the order they are set up in.
//!
//! | device      | window            | interrupt            |
//! |-------------|-------------------|----------------------|
//! | IO-APIC     | MMIO 0xfec00000 (4 KiB) | MSIs via `KVM_SIGNAL_MSI` (split irqchip) |
//! | 8254 PIT    | ports 0x40–0x43   | IO-APIC pin 2 (split irqchip) |
//! | COM1 16550  | ports 0x3f8–0x3ff | IO-APIC pin 4        |
//! | debug-exit  | ports 0xf4–0xf7   | –                    |
//! | bench port  | port 0xf8         | –                    |
//! | mark port   | ports 0xf9–0xfc   | –                    |
//! | MSI source  | MMIO 0xd0000000 (4 KiB) | MSIs via `KVM_SIGNAL_MSI` |
//! | NIC RX ring | MMIO 0xd0002000 (4 KiB) | MSIs via `KVM_SIGNAL_MSI`, or posted |
//! | i8042 (reset only), reset control | ports 0x64, 0xcf9 | – |
//! | ACPI PM1a blocks | ports 0x600–0x605 | – |
//! | fw_cfg      | ports 0x510–0x511 | –                    |
//! | pc-testdev (with `testdev`) | ports 0xe0–0xe4, 0x2000–0x2017, MMIO 0xff000000 (64 KiB) | drives GSIs 0–23 |
//!
//! With `irqchip = "kernel"` KVM models the IO-APIC, the PICs and the PIT; the UART and the
//! test device then drive GSIs with `KVM_IRQ_LINE`.

use crate::console::ConsoleOut;
use crate::interrupts::{IoApicPin, KvmIrqErrors};
use crate::pit_timer::{new_timer, HostClock, HostPitTimer, SharedTimer};
use crate::stats::{ExitCounters, ExitCounts, FailureCounts, Mark, MarkPort};
use crate::trace::{Source as TraceSource, TracedLine, Tracer};
use irqlab_abi::layout::{IOAPIC_BASE, MSI_SOURCE_BASE, NIC_BASE};
use irqlab_abi::ports;
use irqlab_devices::bench_port::BenchPort;
use irqlab_devices::debug_exit::{self, DebugExit};
use irqlab_devices::fw_cfg::{self, FwCfg};
use irqlab_devices::ioapic::{self, IoApic, PinStats};
use irqlab_devices::msi_source::{DmaWriter, MsiSource};
use irqlab_devices::nic::Nic;
use irqlab_devices::pit::{self, Pit, TickStats};
use irqlab_devices::reset;
use irqlab_devices::testdev;
use irqlab_devices::uart::{self, Uart};
use irqlab_devices::{BusDevice, ExitSink, IrqLine, MsiSink};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A device shared between vCPU threads.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Device setup failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A window could not be placed on its bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The PIT's host timer could not be created.
    #[error("PIT host timer (timerfd): {0}")]
    Timer(#[source] std::io::Error),
}

/// Why [`Bus::insert`] refused a window.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The window has no addresses.
    #[error("{what} window at {base:#x} has length 0")]
    ZeroLength {
        /// Device name.
        what: &'static str,
        /// Window base.
        base: u64,
    },
    /// The window's last address is past the end of the address space.
    #[error("{what} window {base:#x}+{len:#x} runs past the end of the address space")]
    Overflow {
        /// Device name.
        what: &'static str,
        /// Window base.
        base: u64,
        /// Window length.
        len: u64,
    },
    /// The window shares addresses with another device's.
    #[error("{what} window {base:#x}+{len:#x} overlaps the {other} window")]
    Overlap {
        /// Device name.
        what: &'static str,
        /// Window base.
        base: u64,
        /// Window length.
        len: u64,
        /// The device already there.
        other: &'static str,
    },
}

/// One device's window: `[base, last]`, both inclusive, so a window may end at the very
/// top of the address space.
struct Window {
    what: &'static str,
    base: u64,
    last: u64,
    dev: SharedDevice,
}

/// An address-ordered set of device windows (ports or MMIO).
#[derive(Default)]
pub struct Bus {
    windows: Vec<Window>,
    unhandled: AtomicU64,
}

impl Bus {
    /// Adds a device at `[base, base + len)`. Refused: an empty window, one whose last
    /// address `base + len - 1` does not fit in a u64, and one that overlaps a window
    /// already on the bus.
    pub fn insert(
        &mut self,
        what: &'static str,
        base: u64,
        len: u64,
        dev: SharedDevice,
    ) -> Result<(), BusError> {
        let last = len
            .checked_sub(1)
            .ok_or(BusError::ZeroLength { what, base })?;
        let last = base
            .checked_add(last)
            .ok_or(BusError::Overflow { what, base, len })?;
        if let Some(other) = self
            .windows
            .iter()
            .find(|w| base <= w.last && w.base <= last)
        {
            return Err(BusError::Overlap {
                what,
                base,
                len,
                other: other.what,
            });
        }
        let at = self.windows.partition_point(|w| w.base < base);
        self.windows.insert(
            at,
            Window {
                what,
                base,
                last,
                dev,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        self.windows
            .iter()
            .find(|w| w.base <= addr && addr <= w.last)
            .map(|w| (addr - w.base, &w.dev))
    }

    /// A guest read; unclaimed addresses read as all ones, as on a real bus.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        data.fill(0xff);
        match self.find(addr) {
            Some((offset, dev)) => dev
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(offset, data),
            None => {
                self.unhandled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A guest write; writes to unclaimed addresses are dropped and counted.
    pub fn write(&self, addr: u64, data: &[u8]) {
        match self.find(addr) {
            Some((offset, dev)) => dev
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(offset, data),
            None => {
                self.unhandled.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Accesses no device claimed.
    pub fn unhandled(&self) -> u64 {
        self.unhandled.load(Ordering::Relaxed)
    }
}

/// How the devices' interrupts leave the device models.
pub enum IrqWiring {
    /// Userspace IO-APIC and PIT.
    Split {
        /// Where the IO-APIC sends its MSIs.
        ioapic: Arc<dyn MsiSink>,
        /// Where the MSI source device sends its MSIs.
        msi: Arc<dyn MsiSink>,
        /// Where the NIC sends its MSIs and posted-interrupt notifications.
        nic: Arc<dyn MsiSink>,
        /// Where the sinks count the KVM calls that failed.
        errors: Arc<KvmIrqErrors>,
    },
    /// In-kernel IO-APIC and PIT.
    Kernel {
        /// Where the MSI source device sends its MSIs.
        msi: Arc<dyn MsiSink>,
        /// Where the NIC sends its MSIs and posted-interrupt notifications.
        nic: Arc<dyn MsiSink>,
        /// GSIs 0–23 (index = GSI), for the UART (GSI 4) and the test device.
        gsi_lines: Vec<Arc<dyn IrqLine>>,
        /// Where the sink and the lines count the KVM calls that failed.
        errors: Arc<KvmIrqErrors>,
    },
}

/// What the board offers beyond the interrupt wiring.
#[derive(Clone, Copy, Debug)]
pub struct Board {
    /// vCPUs (fw_cfg `NB_CPUS`).
    pub vcpus: u8,
    /// Guest RAM in bytes (fw_cfg `RAM_SIZE`).
    pub mem_size: u64,
    /// Map the pc-testdev-compatible test device (kvm-unit-tests' harness device).
    pub testdev: bool,
}

/// What the devices counted over a run ([`Devices::report`]).
#[derive(Clone, Debug, Default)]
pub struct DevicesReport {
    /// Marks the guest wrote to the mark port.
    pub marks: Vec<Mark>,
    /// Writes to the benchmark port, and the host time from the first to the last.
    pub bench_writes: (u64, Duration),
    /// PIT channel 0 ticks and missed periods (split irqchip).
    pub pit: Option<TickStats>,
    /// IO-APIC counters of every pin that saw traffic (split irqchip).
    pub ioapic: Vec<(usize, PinStats)>,
    /// Console bytes that never reached stdout (see [`crate::console`]).
    pub console_dropped: u64,
    /// Port or MMIO accesses no device claimed.
    pub unhandled_accesses: u64,
    /// Failed KVM interrupt calls and ignored IO-APIC accesses.
    pub failures: FailureCounts,
    /// Userspace exits by reason.
    pub exits: ExitCounts,
}

/// A port that ignores its accesses.
struct Sink;

impl BusDevice for Sink {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// All devices of one VM.
pub struct Devices {
    /// Port-I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// The UART, kept to flush its output at exit.
    pub uart: Arc<Mutex<Uart<ConsoleOut>>>,
    /// The benchmark port.
    pub bench: Arc<Mutex<BenchPort>>,
    /// The userspace IO-APIC (split irqchip only).
    pub ioapic: Option<Arc<Mutex<IoApic>>>,
    /// The userspace PIT and its host timer (split irqchip only).
    pub pit: Option<(Arc<Mutex<Pit>>, SharedTimer)>,
    /// The MSI source device.
    pub msi_source: Arc<Mutex<MsiSource>>,
    /// The NIC-like RX ring device.
    pub nic: Arc<Mutex<Nic>>,
    /// Userspace exits by reason (counted by the vCPU threads).
    pub exits: Arc<ExitCounters>,
    /// Marks written by the guest.
    pub marks: Arc<Mutex<Vec<Mark>>>,
    /// The KVM interrupt calls that failed (from the wiring).
    irq_errors: Arc<KvmIrqErrors>,
}

impl Devices {
    /// Creates and places the devices. Order: the interrupt controller first (the others
    /// connect to its pins), then the console (so later failures can print), the debug-exit
    /// and benchmark ports, the PIT, the MSI source and the NIC.
    pub fn new(
        console: ConsoleOut,
        exit: Arc<dyn ExitSink>,
        irqs: IrqWiring,
        dma: Arc<dyn DmaWriter>,
        tracer: Option<Arc<Tracer>>,
        board: Board,
    ) -> Result<Devices, DeviceError> {
        // With tracing, every line a device drives records its rising edges.
        let traced = |line: Arc<dyn IrqLine>, pin: u8| -> Arc<dyn IrqLine> {
            match &tracer {
                Some(t) => Arc::new(TracedLine::new(
                    line,
                    t.clone(),
                    TraceSource::for_pin(pin),
                    Some(pin),
                    false,
                )),
                None => line,
            }
        };
        let mut pio = Bus::default();
        let mut mmio = Bus::default();
        let nic_sink = match &irqs {
            IrqWiring::Split { nic, .. } | IrqWiring::Kernel { nic, .. } => nic.clone(),
        };
        let (msi, ioapic, gsi_lines, irq_errors): (Arc<dyn MsiSink>, _, Vec<Arc<dyn IrqLine>>, _) =
            match irqs {
                IrqWiring::Split {
                    ioapic: sink,
                    msi,
                    errors,
                    ..
                } => {
                    let ioapic = Arc::new(Mutex::new(IoApic::new(sink)));
                    mmio.insert("IO-APIC", IOAPIC_BASE, ioapic::WINDOW, ioapic.clone())?;
                    let lines = (0..ioapic::NUM_PINS as u8)
                        .map(|pin| traced(Arc::new(IoApicPin::new(ioapic.clone(), pin)), pin))
                        .collect();
                    (msi, Some(ioapic), lines, errors)
                }
                IrqWiring::Kernel {
                    msi,
                    gsi_lines,
                    errors,
                    ..
                } => (msi, None, gsi_lines, errors),
            };
        let uart_line = gsi_lines
            .get(usize::from(ports::COM1_GSI))
            .cloned()
            .unwrap_or_else(|| Arc::new(irqlab_devices::NoIrq));

        let uart = Arc::new(Mutex::new(Uart::new(uart_line, console)));
        pio.insert("COM1", ports::COM1.into(), uart::WINDOW, uart.clone())?;
        pio.insert(
            "debug-exit",
            ports::DEBUG_EXIT.into(),
            debug_exit::WINDOW,
            Arc::new(Mutex::new(DebugExit::new(exit.clone()))),
        )?;
        // The ways a PC guest reboots, and the ACPI fixed-hardware registers the FADT names.
        pio.insert(
            "i8042",
            ports::I8042_COMMAND.into(),
            1,
            Arc::new(Mutex::new(reset::I8042::new(exit.clone()))),
        )?;
        pio.insert(
            "reset control",
            ports::RESET_CONTROL.into(),
            1,
            Arc::new(Mutex::new(reset::ResetControl::new(exit))),
        )?;
        pio.insert(
            "ACPI PM1a",
            ports::PM1A_EVT.into(),
            u64::from(ports::PM1A_CNT - ports::PM1A_EVT) + 2,
            Arc::new(Mutex::new(reset::AcpiPm::new(
                (ports::PM1A_CNT - ports::PM1A_EVT).into(),
            ))),
        )?;
        pio.insert(
            "fw_cfg",
            fw_cfg::SELECTOR_PORT.into(),
            fw_cfg::WINDOW,
            Arc::new(Mutex::new(FwCfg::new(board.vcpus.into(), board.mem_size))),
        )?;
        if board.testdev {
            pio.insert(
                "pc-testdev port",
                testdev::IOPORT.into(),
                4,
                Arc::new(Mutex::new(testdev::ScratchPort::default())),
            )?;
            pio.insert(
                "pc-testdev flush-page",
                testdev::FLUSH_PAGE_PORT.into(),
                4,
                Arc::new(Mutex::new(testdev::FlushPage::default())),
            )?;
            pio.insert(
                "pc-testdev IRQ lines",
                testdev::IRQ_PORT_BASE.into(),
                testdev::IRQ_LINES as u64,
                Arc::new(Mutex::new(testdev::IrqLines::new(gsi_lines.clone()))),
            )?;
            mmio.insert(
                "pc-testdev iomem",
                testdev::IOMEM_BASE,
                testdev::IOMEM_SIZE,
                Arc::new(Mutex::new(testdev::IoMem::default())),
            )?;
        }
        let bench = Arc::new(Mutex::new(BenchPort::default()));
        pio.insert("bench", ports::BENCH.into(), 1, bench.clone())?;
        // The trace doorbell: the vCPU loop samples KVM statistics there; the bus only has
        // to claim the port.
        pio.insert(
            "trace doorbell",
            irqlab_abi::trace::DOORBELL_PORT.into(),
            4,
            Arc::new(Mutex::new(Sink)),
        )?;
        let exits = Arc::new(ExitCounters::default());
        let marks = Arc::new(Mutex::new(Vec::new()));
        pio.insert(
            "mark",
            ports::MARK.into(),
            ports::MARK_SIZE.into(),
            Arc::new(Mutex::new(MarkPort::new(exits.clone(), marks.clone()))),
        )?;

        let pit = match &ioapic {
            Some(ioapic) => {
                let timer = new_timer().map_err(DeviceError::Timer)?;
                let pit = Arc::new(Mutex::new(Pit::new(
                    Box::new(HostClock::new()),
                    Box::new(HostPitTimer(timer.clone())),
                    traced(
                        Arc::new(IoApicPin::new(ioapic.clone(), ports::PIT_GSI)),
                        ports::PIT_GSI,
                    ),
                )));
                pio.insert("PIT", ports::PIT_BASE.into(), pit::WINDOW, pit.clone())?;
                Some((pit, timer))
            }
            None => None,
        };

        let msi_source = Arc::new(Mutex::new(MsiSource::new(msi).with_dma(dma.clone())));
        mmio.insert(
            "MSI source",
            MSI_SOURCE_BASE,
            irqlab_abi::msi_source::WINDOW,
            msi_source.clone(),
        )?;
        let nic = Arc::new(Mutex::new(Nic::new(nic_sink, dma)));
        mmio.insert("NIC", NIC_BASE, irqlab_abi::nic::WINDOW, nic.clone())?;
        Ok(Devices {
            pio,
            mmio,
            uart,
            bench,
            ioapic,
            pit,
            msi_source,
            nic,
            exits,
            marks,
            irq_errors,
        })
    }

    /// What the devices counted: read once the vCPUs have stopped and [`Devices::shutdown`]
    /// has flushed the console (after that the console's dropped bytes are final).
    pub fn report(&self) -> DevicesReport {
        DevicesReport {
            marks: self.marks.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            bench_writes: {
                let bench = self.bench.lock().unwrap_or_else(|p| p.into_inner());
                (bench.count(), bench.span())
            },
            pit: self
                .pit
                .as_ref()
                .map(|(p, _)| p.lock().unwrap_or_else(|p| p.into_inner()).tick_stats()),
            ioapic: self
                .ioapic
                .as_ref()
                .map(|io| {
                    let io = io.lock().unwrap_or_else(|p| p.into_inner());
                    (0..ioapic::NUM_PINS)
                        .filter_map(|pin| io.stats(pin).map(|s| (pin, s)))
                        .filter(|(_, s)| *s != PinStats::default())
                        .collect()
                })
                .unwrap_or_default(),
            console_dropped: self
                .uart
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .writer_mut()
                .dropped(),
            unhandled_accesses: self.pio.unhandled() + self.mmio.unhandled(),
            failures: FailureCounts {
                routing_errors: self.irq_errors.routing.load(Ordering::Relaxed),
                gsi_line_errors: self.irq_errors.gsi_lines.load(Ordering::Relaxed),
                ioapic_bad_accesses: self.ioapic.as_ref().map_or(0, |io| {
                    io.lock().unwrap_or_else(|p| p.into_inner()).bad_accesses()
                }),
            },
            exits: self.exits.snapshot(),
        }
    }

    /// Stops device threads and flushes the console.
    pub fn shutdown(&self) {
        self.msi_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown();
        self.nic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown();
        let _ = self
            .uart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .writer_mut()
            .flush_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo(Vec<(u64, Vec<u8>)>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_at_its_offset() {
        let mut bus = Bus::default();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert("echo", 0x100, 8, dev.clone()).unwrap();
        let mut b = [0u8; 2];
        bus.read(0x103, &mut b);
        assert_eq!(b, [3, 3]);
        bus.write(0x107, &[9]);
        assert_eq!(dev.lock().unwrap().0, vec![(7, vec![9])]);
        assert_eq!(bus.unhandled(), 0);
    }

    #[test]
    fn unclaimed_reads_are_all_ones_and_counted() {
        let bus = Bus::default();
        let mut b = [0u8; 4];
        bus.read(0x80, &mut b);
        bus.write(0x80, &[1]);
        assert_eq!(b, [0xff; 4]);
        assert_eq!(bus.unhandled(), 2);
    }

    /// Sinks that accept everything and record nothing.
    struct Nothing;
    impl MsiSink for Nothing {
        fn send(&self, _msg: irqlab_devices::MsiMessage) -> irqlab_devices::MsiOutcome {
            irqlab_devices::MsiOutcome::Delivered
        }
    }
    impl ExitSink for Nothing {
        fn request_exit(&self, _status: u32) {}
        fn request_reset(&self, _source: reset::ResetSource) {}
    }
    impl DmaWriter for Nothing {
        fn write_u32(&self, _gpa: u64, _value: u32) -> bool {
            false
        }
    }

    #[test]
    fn the_report_reads_what_the_devices_counted() {
        let devices = Devices::new(
            ConsoleOut::new(false).unwrap(),
            Arc::new(Nothing),
            IrqWiring::Split {
                ioapic: Arc::new(Nothing),
                msi: Arc::new(Nothing),
                nic: Arc::new(Nothing),
                errors: Arc::new(KvmIrqErrors::default()),
            },
            Arc::new(Nothing),
            None,
            Board {
                vcpus: 1,
                mem_size: 64 << 20,
                testdev: false,
            },
        )
        .unwrap();
        let quiet = devices.report();
        assert!(quiet.marks.is_empty());
        assert_eq!(quiet.bench_writes, (0, Duration::ZERO));
        assert_eq!(quiet.pit, Some(TickStats::default()));
        assert!(quiet.ioapic.is_empty());
        assert_eq!((quiet.console_dropped, quiet.unhandled_accesses), (0, 0));
        assert_eq!(quiet.failures, FailureCounts::default());
        assert_eq!(quiet.exits, ExitCounts::default());

        devices.exits.count(crate::stats::ExitKind::Pio);
        devices.pio.write(ports::BENCH.into(), &[0]);
        devices.pio.write(ports::BENCH.into(), &[0]);
        devices.pio.write(ports::MARK.into(), &7u32.to_le_bytes());
        devices.pio.write(0x80, &[0]);
        devices.mmio.read(0xe000_0000, &mut [0; 4]);
        // The NIC answers at its window.
        let mut id = [0; 4];
        devices.mmio.read(NIC_BASE + irqlab_abi::nic::ID, &mut id);
        assert_eq!(u32::from_le_bytes(id), irqlab_abi::nic::ID_VALUE);
        // THR-empty interrupts on: the UART raises its line, IO-APIC pin 4 (masked at reset).
        devices.pio.write(u64::from(ports::COM1) + 1, &[0x02]);
        // A 1-byte IOWIN write and an access past IOWIN: both undefined, both ignored.
        devices.mmio.write(IOAPIC_BASE + 0x10, &[1]);
        devices.mmio.read(IOAPIC_BASE + 0x20, &mut [0; 4]);
        devices.irq_errors.routing.fetch_add(3, Ordering::Relaxed);
        devices.irq_errors.gsi_lines.fetch_add(1, Ordering::Relaxed);
        let r = devices.report();
        assert_eq!(
            r.failures,
            FailureCounts {
                routing_errors: 3,
                gsi_line_errors: 1,
                ioapic_bad_accesses: 2,
            }
        );
        assert_eq!(r.marks.iter().map(|m| m.value).collect::<Vec<_>>(), [7]);
        assert_eq!(r.bench_writes.0, 2);
        assert_eq!(r.unhandled_accesses, 2);
        assert_eq!(r.exits.pio, 1);
        let pins: Vec<usize> = r.ioapic.iter().map(|(pin, _)| *pin).collect();
        assert_eq!(pins, [usize::from(ports::COM1_GSI)]);
        assert_eq!(r.ioapic[0].1.masked_edges, 1);
    }

    fn echo() -> SharedDevice {
        Arc::new(Mutex::new(Echo::default()))
    }

    #[test]
    fn overlapping_windows_are_refused() {
        let mut bus = Bus::default();
        bus.insert("a", 0x100, 8, echo()).unwrap();
        // The last byte of "a", one byte before it, a window around it, the same window.
        for (base, len) in [(0x107, 2), (0xff, 2), (0xf0, 0x20), (0x100, 8), (0x103, 1)] {
            assert_eq!(
                bus.insert("b", base, len, echo()),
                Err(BusError::Overlap {
                    what: "b",
                    base,
                    len,
                    other: "a"
                }),
                "{base:#x}+{len:#x}"
            );
        }
        // Adjacent on either side is fine.
        bus.insert("c", 0x108, 2, echo()).unwrap();
        bus.insert("d", 0xf8, 8, echo()).unwrap();
        // Kept in address order whatever the insertion order.
        let bases: Vec<u64> = bus.windows.iter().map(|w| w.base).collect();
        assert_eq!(bases, [0xf8, 0x100, 0x108]);
    }

    #[test]
    fn zero_length_windows_are_refused() {
        let mut bus = Bus::default();
        for base in [0, 0x100, u64::MAX] {
            assert_eq!(
                bus.insert("empty", base, 0, echo()),
                Err(BusError::ZeroLength {
                    what: "empty",
                    base
                })
            );
        }
        assert!(bus.windows.is_empty());
        // Nothing was placed: the address stays unclaimed.
        bus.write(0x100, &[1]);
        assert_eq!(bus.unhandled(), 1);
    }

    #[test]
    fn windows_past_the_end_of_the_address_space_are_refused() {
        let mut bus = Bus::default();
        for (base, len) in [(u64::MAX, 2), (2, u64::MAX), (u64::MAX - 0xfff, 0x1001)] {
            assert_eq!(
                bus.insert("wraps", base, len, echo()),
                Err(BusError::Overflow {
                    what: "wraps",
                    base,
                    len
                }),
                "{base:#x}+{len:#x}"
            );
        }
        assert!(bus.windows.is_empty());
        // A window whose last byte is the last address fits, and is reached there.
        bus.insert("top", u64::MAX - 0xfff, 0x1000, echo()).unwrap();
        let mut b = [0u8; 1];
        bus.read(u64::MAX, &mut b);
        assert_eq!((b, bus.unhandled()), ([0xff], 0));
        // The overlap check sees it too.
        assert!(matches!(
            bus.insert("top2", u64::MAX, 1, echo()),
            Err(BusError::Overlap { other: "top", .. })
        ));
    }

    #[test]
    fn a_refused_window_fails_device_setup_with_its_reason() {
        let e = DeviceError::from(BusError::ZeroLength {
            what: "PIT",
            base: 0x40,
        });
        assert_eq!(e.to_string(), "PIT window at 0x40 has length 0");
        let e = DeviceError::from(BusError::Overlap {
            what: "b",
            base: 0x107,
            len: 2,
            other: "a",
        });
        assert_eq!(e.to_string(), "b window 0x107+0x2 overlaps the a window");
    }
}
