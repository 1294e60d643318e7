//! vCPU threads: run `KVM_RUN`, hand every exit to [`handle_exit`], stop when the machine
//! stops.
//!
//! A vCPU thread is in one of three states: running guest code (inside `KVM_RUN`), handling an
//! exit, or exited. The machine stops it by setting the shared stop flag and kicking the thread
//! with [`KICK_SIGNAL`], whose no-op handler makes `KVM_RUN` return `EINTR`.

use crate::cpu_state;
use crate::device_manager::Devices;
use crate::kvm_stats::VcpuStats;
use crate::memory::GuestMemory;
use crate::outcome::{CpuState, LastExit, Outcome, VcpuAtStop};
use crate::stats::ExitKind;
use crate::trace::{host_tsc, ExitRecord, Sample, TraceMode, Tracer, TscOffset};
use irqlab_abi::trace::DOORBELL_PORT;
use irqlab_devices::le_value;
use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};

/// IA32_TIME_STAMP_COUNTER.
const MSR_IA32_TSC: u32 = 0x10;
use std::sync::Arc;

/// Signal used to kick vCPU threads out of `KVM_RUN`.
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

/// Installs the no-op handler for [`kick_signal`] (once per process).
pub fn install_kick_handler() -> Result<(), vmm_sys_util::errno::Error> {
    static ONCE: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    (*ONCE.get_or_init(|| {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), noop).map_err(|e| e.errno())
    }))
    .map_err(vmm_sys_util::errno::Error::new)
}

/// What the run loop does after an exit.
#[derive(Debug, PartialEq)]
pub enum ExitAction {
    /// Enter the guest again.
    Continue,
    /// The guest triple-faulted.
    Shutdown,
    /// KVM could not emulate or run the guest.
    InternalError,
    /// Hardware refused VM entry.
    FailEntry(u64),
    /// The guest asked for a reboot (KVM reset system event).
    Reboot(String),
    /// Something irqlab does not handle.
    Unhandled(String),
    /// `KVM_RUN` returned before entering or finishing guest code (`EINTR`: a signal, e.g.
    /// the stop kick; `EAGAIN`): clear `immediate_exit` and enter the guest again.
    Retry,
    /// `KVM_RUN` itself failed: the vCPU cannot go on.
    RunFailed(String),
}

/// Handles one exit against the devices. Pure with respect to KVM: tests feed it made-up
/// exits.
pub fn handle_exit(devices: &Devices, exit: VcpuExit) -> ExitAction {
    handle_exit_sized(devices, exit, None)
}

/// [`handle_exit`] with the width of one port access (`kvm_run.io.size`). KVM batches a
/// `rep ins`/`rep outs` into one `KVM_EXIT_IO` of `count` accesses of `size` bytes each
/// (`data.len() == size * count`); the bus must see `count` separate accesses, as QEMU's
/// `kvm_handle_io` does, not one access of `size * count` bytes. `None`: one access.
pub fn handle_exit_sized(devices: &Devices, exit: VcpuExit, io_size: Option<usize>) -> ExitAction {
    devices.exits.count(match &exit {
        VcpuExit::IoOut(..) | VcpuExit::IoIn(..) => ExitKind::Pio,
        VcpuExit::MmioRead(..) | VcpuExit::MmioWrite(..) => ExitKind::Mmio,
        VcpuExit::IoapicEoi(_) => ExitKind::IoapicEoi,
        _ => ExitKind::Other,
    });
    match exit {
        VcpuExit::IoOut(port, data) => {
            let size = io_size.filter(|&n| n > 0).unwrap_or(data.len().max(1));
            for access in data.chunks(size) {
                devices.pio.write(port.into(), access);
            }
            ExitAction::Continue
        }
        VcpuExit::IoIn(port, data) => {
            let size = io_size.filter(|&n| n > 0).unwrap_or(data.len().max(1));
            for access in data.chunks_mut(size) {
                devices.pio.read(port.into(), access);
            }
            ExitAction::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            devices.mmio.write(addr, data);
            ExitAction::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            devices.mmio.read(addr, data);
            ExitAction::Continue
        }
        // The EOI broadcast of a level-triggered vector (split irqchip).
        VcpuExit::IoapicEoi(vector) => {
            if let Some(ioapic) = &devices.ioapic {
                ioapic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .end_of_interrupt(vector);
            }
            ExitAction::Continue
        }
        // Signals and interrupt windows just re-enter.
        VcpuExit::Intr | VcpuExit::IrqWindowOpen => ExitAction::Continue,
        VcpuExit::Shutdown => ExitAction::Shutdown,
        VcpuExit::InternalError => ExitAction::InternalError,
        VcpuExit::FailEntry(reason, _cpu) => ExitAction::FailEntry(reason),
        VcpuExit::Hlt => {
            ExitAction::Unhandled("HLT exit (no in-kernel LAPIC to wake the vCPU)".into())
        }
        VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, _) => {
            ExitAction::Reboot("KVM_SYSTEM_EVENT_RESET".into())
        }
        VcpuExit::SystemEvent(kind, _) => {
            ExitAction::Unhandled(format!("system event {kind} (shutdown or crash request)"))
        }
        other => ExitAction::Unhandled(format!("unexpected exit {other:?}")),
    }
}

/// A vCPU and what its thread needs.
pub struct Vcpu {
    /// Index (= APIC ID).
    pub id: u8,
    /// The KVM vCPU.
    pub fd: VcpuFd,
    /// The run's tracer, if tracing.
    pub tracer: Option<Arc<Tracer>>,
}

/// How many times the guest's TSC is sampled (`KVM_GET_MSRS`) to measure its offset.
const TSC_OFFSET_SAMPLES: usize = 16;

/// Per-vCPU tracing state: the KVM statistics file and the baseline sample.
struct VcpuTrace {
    tracer: Arc<Tracer>,
    stats: Option<VcpuStats>,
    start: Vec<u64>,
    lockstep: bool,
}

impl VcpuTrace {
    /// Measures the TSC offset and takes the baseline statistics (before the first entry).
    fn start(tracer: Arc<Tracer>, fd: &VcpuFd, vcpu: u8) -> VcpuTrace {
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .ok();
        if let Some(m) = msrs.as_mut() {
            // The offset is known to within half the ioctl's round trip. One sample can be
            // far off on a loaded or emulated host (a preempted ioctl: 5 ms under the nested
            // lane's TCG, where the trace then paired interrupts wrongly), so keep the
            // tightest of several.
            let mut best: Option<TscOffset> = None;
            for _ in 0..TSC_OFFSET_SAMPLES {
                let before = host_tsc();
                let ok = fd.get_msrs(m).is_ok_and(|n| n == 1);
                let after = host_tsc();
                if !ok {
                    break;
                }
                let guest = m.as_slice()[0].data;
                let mid = before + after.saturating_sub(before) / 2;
                let sample = TscOffset {
                    vcpu,
                    offset: guest.wrapping_sub(mid) as i64,
                    uncertainty: after.saturating_sub(before).div_ceil(2),
                };
                if best
                    .as_ref()
                    .is_none_or(|b| sample.uncertainty < b.uncertainty)
                {
                    best = Some(sample);
                }
            }
            if let Some(o) = best {
                tracer.tsc_offset(o);
            }
        }
        let stats = VcpuStats::open(fd).ok();
        if let Some(s) = &stats {
            tracer.stat_layout(s.descriptors());
        }
        let start = stats
            .as_ref()
            .and_then(|s| s.sample().ok())
            .unwrap_or_default();
        tracer.stat_start(vcpu, &start);
        let lockstep = tracer.config.mode == TraceMode::Lockstep;
        VcpuTrace {
            tracer,
            stats,
            start,
            lockstep,
        }
    }

    /// The guest rang the doorbell for record `seq`.
    fn doorbell(&self, vcpu: u8, seq: u32, userspace: crate::stats::ExitCounts) {
        if !self.lockstep {
            return;
        }
        if let Some(values) = self.stats.as_ref().and_then(|s| s.sample().ok()) {
            self.tracer.sample(Sample {
                vcpu,
                seq,
                tsc: host_tsc(),
                values,
                userspace,
            });
        }
    }

    /// Takes the closing statistics.
    fn finish(self, vcpu: u8) {
        if let Some(end) = self.stats.as_ref().and_then(|s| s.sample().ok()) {
            self.tracer
                .stat_totals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((vcpu, self.start, end));
        }
    }
}

/// The trace line of an exit (value filled for writes; reads are recorded before the VMM
/// answers them, so their value is 0).
fn describe(exit: &VcpuExit, vcpu: u8, tsc: u64) -> ExitRecord {
    let (reason, addr, size, write, value) = match exit {
        VcpuExit::IoOut(port, data) => ("pio", u64::from(*port), data.len(), true, le_value(data)),
        VcpuExit::IoIn(port, data) => ("pio", u64::from(*port), data.len(), false, None),
        VcpuExit::MmioWrite(addr, data) => ("mmio", *addr, data.len(), true, le_value(data)),
        VcpuExit::MmioRead(addr, data) => ("mmio", *addr, data.len(), false, None),
        VcpuExit::IoapicEoi(v) => ("ioapic_eoi", u64::from(*v), 0, false, None),
        VcpuExit::Hlt => ("hlt", 0, 0, false, None),
        VcpuExit::Intr => ("intr", 0, 0, false, None),
        VcpuExit::IrqWindowOpen => ("irq_window", 0, 0, false, None),
        VcpuExit::Shutdown => ("shutdown", 0, 0, false, None),
        VcpuExit::InternalError => ("internal_error", 0, 0, false, None),
        _ => ("other", 0, 0, false, None),
    };
    ExitRecord {
        vcpu,
        reason,
        addr,
        size: size as u8,
        write,
        value: value.unwrap_or(0),
        tsc,
        vmm_cycles: 0,
    }
}

/// Records `exit` as the vCPU's last exit to irqlab (cheap: no data is copied).
fn note_exit(last: &mut LastExit, exit: &VcpuExit) {
    let (reason, addr, write) = match exit {
        VcpuExit::IoOut(port, _) => ("pio", u64::from(*port), true),
        VcpuExit::IoIn(port, _) => ("pio", u64::from(*port), false),
        VcpuExit::MmioWrite(addr, _) => ("mmio", *addr, true),
        VcpuExit::MmioRead(addr, _) => ("mmio", *addr, false),
        VcpuExit::IoapicEoi(v) => ("ioapic_eoi", u64::from(*v), false),
        VcpuExit::Intr => ("signal (KVM_EXIT_INTR)", 0, false),
        VcpuExit::Shutdown => return,
        _ => ("other", 0, false),
    };
    *last = LastExit {
        reason,
        addr,
        write,
        count: last.count + 1,
        at: Some(std::time::Instant::now()),
    };
}

/// Handles what one `KVM_RUN` returned: an exit is recorded as the vCPU's last exit, traced
/// if `trace` is given (with the host TSC at the exit), and handed to [`handle_exit_sized`];
/// an error becomes [`ExitAction::Retry`] or [`ExitAction::RunFailed`]. Pure with respect to
/// KVM: tests feed it made-up results.
fn handle_run(
    devices: &Devices,
    result: Result<VcpuExit<'_>, kvm_ioctls::Error>,
    io_size: Option<usize>,
    last_exit: &mut LastExit,
    vcpu: u8,
    trace: Option<(&VcpuTrace, u64)>,
) -> ExitAction {
    let exit = match result {
        Ok(exit) => exit,
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
            return ExitAction::Retry
        }
        Err(e) => return ExitAction::RunFailed(format!("KVM_RUN: {e}")),
    };
    note_exit(last_exit, &exit);
    let Some((tr, t_exit)) = trace else {
        return handle_exit_sized(devices, exit, io_size);
    };
    let mut rec = describe(&exit, vcpu, t_exit);
    if let VcpuExit::IoOut(DOORBELL_PORT, data) = &exit {
        tr.doorbell(
            vcpu,
            le_value(data).unwrap_or(0) as u32,
            devices.exits.snapshot(),
        );
    }
    let action = handle_exit_sized(devices, exit, io_size);
    rec.vmm_cycles = host_tsc() - t_exit;
    tr.tracer.exit(&rec);
    action
}

/// What a vCPU thread shares with the machine.
pub trait StopControl: Send + Sync {
    /// Whether the machine is stopping.
    fn stopping(&self) -> bool;
    /// Ends the run with `outcome` (first caller wins).
    fn finish(&self, outcome: Outcome);
    /// Where this vCPU was when it saw the stop (kept for the watchdog's report).
    fn stopped(&self, _at: VcpuAtStop) {}
}

impl Vcpu {
    /// The run loop. Returns when the machine stops or this vCPU ends the run.
    pub fn run(mut self, devices: Arc<Devices>, mem: GuestMemory, ctl: Arc<dyn StopControl>) {
        let trace = self
            .tracer
            .clone()
            .map(|t| VcpuTrace::start(t, &self.fd, self.id));
        self.run_loop(&devices, &mem, ctl.as_ref(), trace.as_ref());
        if let Some(t) = trace {
            t.finish(self.id);
        }
    }

    fn run_loop(
        &mut self,
        devices: &Devices,
        mem: &GuestMemory,
        ctl: &dyn StopControl,
        trace: Option<&VcpuTrace>,
    ) {
        let id = self.id;
        let mut last_exit = LastExit::default();
        loop {
            if ctl.stopping() {
                ctl.stopped(cpu_state::at_stop(&self.fd, self.id, mem, &last_exit));
                return;
            }
            // The kvm_run page stays mapped at the same address for the vCPU's lifetime; the
            // access width of a (possibly batched) port exit is only there.
            let run_page: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
            let result = self.fd.run();
            let t_exit = if trace.is_some() { host_tsc() } else { 0 };
            let io_size = match &result {
                Ok(VcpuExit::IoIn(..)) | Ok(VcpuExit::IoOut(..)) => {
                    // SAFETY: `run_page` points into the vCPU's mmap'd kvm_run, valid while
                    // `self.fd` lives; for a port exit KVM filled the `io` union member, and
                    // this only reads it (the exit's data slice is another part of the page).
                    Some(unsafe { (*run_page).__bindgen_anon_1.io.size } as usize)
                }
                _ => None,
            };
            let action = handle_run(
                devices,
                result,
                io_size,
                &mut last_exit,
                id,
                trace.map(|tr| (tr, t_exit)),
            );
            let outcome = match action {
                ExitAction::Continue => continue,
                ExitAction::Retry => {
                    self.fd.set_kvm_immediate_exit(0);
                    continue;
                }
                ExitAction::RunFailed(what) => Outcome::VcpuFailed { vcpu: id, what },
                ExitAction::Shutdown => {
                    let cpu = cpu_state::snapshot(&self.fd, mem);
                    let host = crate::host::host_kind();
                    Outcome::TripleFault {
                        vcpu: self.id,
                        cpu: match cpu_state::discarded_at_shutdown(host, &cpu) {
                            Some(why) => CpuState::Discarded(why),
                            None => CpuState::Captured(cpu),
                        },
                        last_exit,
                    }
                }
                ExitAction::InternalError => {
                    // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the
                    // union member KVM filled in.
                    let suberror =
                        unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    Outcome::KvmInternalError {
                        vcpu: self.id,
                        suberror,
                        cpu: cpu_state::snapshot(&self.fd, mem),
                    }
                }
                ExitAction::FailEntry(reason) => Outcome::FailEntry {
                    vcpu: self.id,
                    reason,
                },
                ExitAction::Reboot(via) => Outcome::Reboot { via },
                ExitAction::Unhandled(what) => Outcome::GuestStopped {
                    vcpu: self.id,
                    what,
                },
            };
            ctl.finish(outcome);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ExitCounts;

    #[test]
    fn last_exit_counts_and_describes_exits() {
        let mut last = LastExit::default();
        let mut data = [0u8; 1];
        note_exit(&mut last, &VcpuExit::IoOut(0x3f8, b"x"));
        note_exit(&mut last, &VcpuExit::MmioRead(0xfec0_0010, &mut data));
        note_exit(&mut last, &VcpuExit::Shutdown);
        assert_eq!(last.count, 2);
        assert_eq!(
            last.to_string(),
            "last exit to irqlab: MMIO read 0xfec00010 (exit 2 of this vCPU)"
        );
    }

    struct Nothing;
    impl irqlab_devices::MsiSink for Nothing {
        fn send(&self, _: irqlab_devices::MsiMessage) -> irqlab_devices::MsiOutcome {
            irqlab_devices::MsiOutcome::Delivered
        }
    }
    impl irqlab_devices::ExitSink for Nothing {
        fn request_exit(&self, _: u32) {}
        fn request_reset(&self, _: irqlab_devices::reset::ResetSource) {}
    }
    impl irqlab_devices::msi_source::DmaWriter for Nothing {
        fn write_u32(&self, _: u64, _: u32) -> bool {
            false
        }
    }

    fn devices() -> Devices {
        Devices::new(
            crate::console::ConsoleOut::with_writer(None).unwrap(),
            Arc::new(Nothing),
            crate::device_manager::IrqWiring::Split {
                ioapic: Arc::new(Nothing),
                msi: Arc::new(Nothing),
                nic: Arc::new(Nothing),
                errors: Default::default(),
            },
            Arc::new(Nothing),
            None,
            crate::device_manager::Board {
                vcpus: 1,
                mem_size: 64 << 20,
                testdev: true,
            },
        )
        .unwrap()
    }

    #[test]
    fn batched_string_port_io_is_one_access_per_element() {
        let d = devices();
        // outw 0x9999 to the test device's scratch port, then `rep insb` of 4 from it: KVM
        // reports one exit with 4 bytes of size 1; each byte is a 1-byte read of port 0xe0.
        let out = 0x9999u16.to_le_bytes();
        assert_eq!(
            handle_exit_sized(&d, VcpuExit::IoOut(0xe0, &out), Some(2)),
            ExitAction::Continue
        );
        let mut data = [0u8; 4];
        handle_exit_sized(&d, VcpuExit::IoIn(0xe0, &mut data), Some(1));
        assert_eq!(data, [0x99; 4]);
        // Read as one 4-byte access it would have been the register's four bytes.
        let mut wide = [0u8; 4];
        handle_exit(&d, VcpuExit::IoIn(0xe0, &mut wide));
        assert_eq!(wide, [0x99, 0x99, 0, 0]);
    }

    /// Makes one `KVM_RUN` result; the buffer is the exit's data (`kvm_run`'s in the VMM).
    type MakeRun = for<'a> fn(&'a mut [u8; 4]) -> Result<VcpuExit<'a>, kvm_ioctls::Error>;

    /// One row of the exit table.
    struct Case {
        name: &'static str,
        run: MakeRun,
        io_size: Option<usize>,
        /// The exit's data before and after handling.
        data: ([u8; 4], [u8; 4]),
        action: ExitAction,
        /// What the exit counters gained.
        counted: ExitCounts,
        /// Whether the exit became the vCPU's last exit (`KVM_RUN` errors and shutdown do not).
        noted: bool,
        /// Accesses no device claimed, (port, MMIO), gained.
        unclaimed: (u64, u64),
    }

    const NONE: ExitCounts = ExitCounts {
        pio: 0,
        mmio: 0,
        ioapic_eoi: 0,
        other: 0,
    };
    const PIO: ExitCounts = ExitCounts { pio: 1, ..NONE };
    const MMIO: ExitCounts = ExitCounts { mmio: 1, ..NONE };
    const EOI: ExitCounts = ExitCounts {
        ioapic_eoi: 1,
        ..NONE
    };
    const OTHER: ExitCounts = ExitCounts { other: 1, ..NONE };

    fn errno(e: i32) -> kvm_ioctls::Error {
        kvm_ioctls::Error::new(e)
    }

    fn case(name: &'static str, run: MakeRun, action: ExitAction, counted: ExitCounts) -> Case {
        Case {
            name,
            run,
            io_size: None,
            data: ([0xaa; 4], [0xaa; 4]),
            action,
            counted,
            noted: true,
            unclaimed: (0, 0),
        }
    }

    /// Every kind of `KVM_RUN` result irqlab tells apart, in order against one set of devices
    /// (later rows read what earlier rows wrote).
    fn exit_table() -> Vec<Case> {
        use irqlab_abi::layout::IOAPIC_BASE;
        use irqlab_devices::ioapic::{IOWIN_OFFSET, VERSION_VALUE};
        use ExitAction::*;
        vec![
            Case {
                io_size: Some(2),
                data: ([0x99, 0x99, 0, 0], [0x99, 0x99, 0, 0]),
                ..case(
                    "IoOut: outw to the test device's scratch port",
                    |b| Ok(VcpuExit::IoOut(0xe0, &b[..2])),
                    Continue,
                    PIO,
                )
            },
            Case {
                io_size: Some(1),
                data: ([0; 4], [0x99; 4]),
                ..case(
                    "IoIn: rep insb of 4, one 1-byte access each",
                    |b| Ok(VcpuExit::IoIn(0xe0, b)),
                    Continue,
                    PIO,
                )
            },
            Case {
                data: ([0; 4], [0xff, 0, 0, 0]),
                unclaimed: (1, 0),
                ..case(
                    "IoIn: an unclaimed port floats high",
                    |b| Ok(VcpuExit::IoIn(0x1234, &mut b[..1])),
                    Continue,
                    PIO,
                )
            },
            Case {
                unclaimed: (1, 0),
                ..case(
                    "IoOut: an unclaimed port drops the write",
                    |b| Ok(VcpuExit::IoOut(0x1234, &b[..1])),
                    Continue,
                    PIO,
                )
            },
            Case {
                data: ([1, 0, 0, 0], [1, 0, 0, 0]),
                ..case(
                    "MmioWrite: IO-APIC IOREGSEL = version",
                    |b| Ok(VcpuExit::MmioWrite(IOAPIC_BASE, b)),
                    Continue,
                    MMIO,
                )
            },
            Case {
                data: ([0; 4], VERSION_VALUE.to_le_bytes()),
                ..case(
                    "MmioRead: IO-APIC IOWIN",
                    |b| Ok(VcpuExit::MmioRead(IOAPIC_BASE + IOWIN_OFFSET, b)),
                    Continue,
                    MMIO,
                )
            },
            Case {
                data: ([0; 4], [0xff; 4]),
                unclaimed: (0, 1),
                ..case(
                    "MmioRead: unclaimed MMIO floats high",
                    |b| Ok(VcpuExit::MmioRead(0xc000_0000, b)),
                    Continue,
                    MMIO,
                )
            },
            Case {
                unclaimed: (0, 1),
                ..case(
                    "MmioWrite: unclaimed MMIO drops the write",
                    |b| Ok(VcpuExit::MmioWrite(0xc000_0000, b)),
                    Continue,
                    MMIO,
                )
            },
            case(
                "IoapicEoi",
                |_| Ok(VcpuExit::IoapicEoi(0x30)),
                Continue,
                EOI,
            ),
            case(
                "Intr (KVM_EXIT_INTR)",
                |_| Ok(VcpuExit::Intr),
                Continue,
                OTHER,
            ),
            case(
                "IrqWindowOpen",
                |_| Ok(VcpuExit::IrqWindowOpen),
                Continue,
                OTHER,
            ),
            case(
                "Hlt",
                |_| Ok(VcpuExit::Hlt),
                Unhandled("HLT exit (no in-kernel LAPIC to wake the vCPU)".into()),
                OTHER,
            ),
            Case {
                noted: false,
                ..case("Shutdown", |_| Ok(VcpuExit::Shutdown), Shutdown, OTHER)
            },
            case(
                "SystemEvent(reset)",
                |_| {
                    Ok(VcpuExit::SystemEvent(
                        kvm_bindings::KVM_SYSTEM_EVENT_RESET,
                        &[],
                    ))
                },
                Reboot("KVM_SYSTEM_EVENT_RESET".into()),
                OTHER,
            ),
            case(
                "SystemEvent(shutdown)",
                |_| {
                    Ok(VcpuExit::SystemEvent(
                        kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN,
                        &[0],
                    ))
                },
                Unhandled("system event 1 (shutdown or crash request)".into()),
                OTHER,
            ),
            case(
                "FailEntry",
                |_| Ok(VcpuExit::FailEntry(7, 1)),
                FailEntry(7),
                OTHER,
            ),
            case(
                "InternalError",
                |_| Ok(VcpuExit::InternalError),
                InternalError,
                OTHER,
            ),
            case(
                "Unknown",
                |_| Ok(VcpuExit::Unknown),
                Unhandled("unexpected exit Unknown".into()),
                OTHER,
            ),
            case(
                "Exception",
                |_| Ok(VcpuExit::Exception),
                Unhandled("unexpected exit Exception".into()),
                OTHER,
            ),
            Case {
                noted: false,
                ..case(
                    "KVM_RUN EINTR (the stop kick)",
                    |_| Err(errno(libc::EINTR)),
                    Retry,
                    NONE,
                )
            },
            Case {
                noted: false,
                ..case("KVM_RUN EAGAIN", |_| Err(errno(libc::EAGAIN)), Retry, NONE)
            },
            Case {
                noted: false,
                ..case(
                    "KVM_RUN EFAULT",
                    |_| Err(errno(libc::EFAULT)),
                    RunFailed(format!("KVM_RUN: {}", errno(libc::EFAULT))),
                    NONE,
                )
            },
            Case {
                noted: false,
                ..case(
                    "KVM_RUN ENOEXEC",
                    |_| Err(errno(libc::ENOEXEC)),
                    RunFailed(format!("KVM_RUN: {}", errno(libc::ENOEXEC))),
                    NONE,
                )
            },
        ]
    }

    #[test]
    fn run_results_map_to_actions_and_counts() {
        let d = devices();
        let mut last = LastExit::default();
        let table = exit_table();
        let exits = table.iter().filter(|c| c.noted).count() as u64;
        for c in table {
            let before = d.exits.snapshot();
            let unclaimed = (d.pio.unhandled(), d.mmio.unhandled());
            let noted = last.count;
            let mut data = c.data.0;
            let action = handle_run(&d, (c.run)(&mut data), c.io_size, &mut last, 0, None);
            assert_eq!(action, c.action, "{}: action", c.name);
            assert_eq!(
                d.exits.snapshot().since(&before),
                c.counted,
                "{}: exit counters",
                c.name
            );
            assert_eq!(data, c.data.1, "{}: exit data", c.name);
            assert_eq!(
                last.count - noted,
                u64::from(c.noted),
                "{}: last exit",
                c.name
            );
            assert_eq!(
                (
                    d.pio.unhandled() - unclaimed.0,
                    d.mmio.unhandled() - unclaimed.1
                ),
                c.unclaimed,
                "{}: unclaimed accesses",
                c.name
            );
        }
        assert!(
            matches!(
                last,
                LastExit {
                    reason: "other",
                    ..
                }
            ) && last.count == exits,
            "{last:?}"
        );
    }

    #[test]
    fn run_errors_are_no_exits() {
        let d = devices();
        let mut last = LastExit::default();
        handle_run(
            &d,
            Ok(VcpuExit::IoOut(0x3f8, b"x")),
            None,
            &mut last,
            0,
            None,
        );
        let kept = (last.reason, last.addr, last.write, last.count);
        for e in [libc::EINTR, libc::EAGAIN, libc::EFAULT] {
            handle_run(&d, Err(errno(e)), None, &mut last, 0, None);
        }
        // The last exit stays the guest's last access, not the error.
        assert_eq!((last.reason, last.addr, last.write, last.count), kept);
        assert_eq!(d.exits.snapshot(), PIO);
    }

    #[test]
    fn ioapic_eoi_exit_clears_remote_irr_of_that_vector() {
        use irqlab_abi::layout::IOAPIC_BASE;
        use irqlab_devices::ioapic::IOWIN_OFFSET;
        let d = devices();
        let reg = |index: u32, value: u32| {
            let index = index.to_le_bytes();
            let value = value.to_le_bytes();
            assert_eq!(
                handle_exit(&d, VcpuExit::MmioWrite(IOAPIC_BASE, &index)),
                ExitAction::Continue
            );
            assert_eq!(
                handle_exit(&d, VcpuExit::MmioWrite(IOAPIC_BASE + IOWIN_OFFSET, &value)),
                ExitAction::Continue
            );
        };
        // Pin 5: vector 0x30, level-triggered, unmasked, to APIC 0.
        const PIN: usize = 5;
        reg(0x10 + 2 * PIN as u32 + 1, 0);
        reg(0x10 + 2 * PIN as u32, 0x30 | 1 << 15);
        let ioapic = d.ioapic.clone().expect("split irqchip has an IO-APIC");
        let entry = || ioapic.lock().unwrap().entry(PIN).unwrap();
        ioapic.lock().unwrap().set_irq(PIN, true);
        assert!(entry().remote_irr(), "delivered, awaiting EOI");
        // Another vector's EOI leaves it alone.
        assert_eq!(
            handle_exit(&d, VcpuExit::IoapicEoi(0x31)),
            ExitAction::Continue
        );
        assert!(entry().remote_irr());
        // Its own EOI with the line still asserted: cleared and delivered again.
        handle_exit(&d, VcpuExit::IoapicEoi(0x30));
        let stats = ioapic.lock().unwrap().stats(PIN).unwrap();
        assert_eq!((stats.eois, stats.redelivered_at_eoi), (1, 1));
        assert!(entry().remote_irr());
        // Line released: the next EOI leaves Remote IRR clear.
        ioapic.lock().unwrap().set_irq(PIN, false);
        handle_exit(&d, VcpuExit::IoapicEoi(0x30));
        assert!(!entry().remote_irr());
        assert_eq!(ioapic.lock().unwrap().stats(PIN).unwrap().eois, 2);
        assert_eq!(d.exits.snapshot().ioapic_eoi, 3);
    }
}
