//! vCPU threads: run `KVM_RUN`, hand every exit to [`handle_exit`], stop when the machine
//! stops.
//!
//! A vCPU thread is in one of three states: running guest code (inside `KVM_RUN`), handling an
//! exit, or exited. The machine stops it by setting the shared stop flag and kicking the thread
//! with [`KICK_SIGNAL`], whose no-op handler makes `KVM_RUN` return `EINTR`.

use crate::device_manager::Devices;
use crate::kvm_stats::VcpuStats;
use crate::memory::GuestMemory;
use crate::outcome::{CpuSnapshot, CpuState, LastExit, Outcome};
use crate::stats::ExitKind;
use crate::trace::{host_tsc, ExitRecord, Sample, TraceMode, Tracer, TscOffset};
use irqlab_abi::trace::DOORBELL_PORT;
use irqlab_devices::le_value;
use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd};

/// IA32_TIME_STAMP_COUNTER.
const MSR_IA32_TSC: u32 = 0x10;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress};

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
    };
}

/// Why the registers read after `KVM_EXIT_SHUTDOWN` are not the guest's, if they are not.
///
/// On AMD SVM the VMCB is undefined after a SHUTDOWN intercept, so KVM INITs the vCPU before
/// it returns to userspace (`shutdown_interception` in arch/x86/kvm/svm/svm.c): what
/// `KVM_GET_REGS` then returns is the INIT state, not the state at the fault. On VMX and
/// kvm-pvm the state is kept. The INIT signature (real mode, CS 0xf000, RIP 0xfff0) is checked
/// too, so a host irqlab cannot name is not misreported either.
pub fn discarded_at_shutdown(
    host: irqlab_abi::boot_info::HostKind,
    cpu: &CpuSnapshot,
) -> Option<&'static str> {
    let init_state = cpu.cr0 & 1 == 0 && cpu.cs == 0xf000 && cpu.rip == 0xfff0;
    if host == irqlab_abi::boot_info::HostKind::Svm {
        Some("on AMD SVM, KVM INITs the vCPU at the SHUTDOWN intercept (the VMCB is undefined after it), so the state at the fault is gone")
    } else if init_state {
        Some("KVM returned the INIT state (real mode at f000:fff0), not the state at the fault")
    } else {
        None
    }
}

/// What a vCPU thread shares with the machine.
pub trait StopControl: Send + Sync {
    /// Whether the machine is stopping.
    fn stopping(&self) -> bool;
    /// Ends the run with `outcome` (first caller wins).
    fn finish(&self, outcome: Outcome);
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
            let action = match result {
                Ok(exit) => {
                    note_exit(&mut last_exit, &exit);
                    match trace {
                        None => handle_exit_sized(devices, exit, io_size),
                        Some(tr) => {
                            let mut rec = describe(&exit, id, t_exit);
                            if let VcpuExit::IoOut(DOORBELL_PORT, data) = &exit {
                                tr.doorbell(
                                    id,
                                    le_value(data).unwrap_or(0) as u32,
                                    devices.exits.snapshot(),
                                );
                            }
                            let action = handle_exit_sized(devices, exit, io_size);
                            rec.vmm_cycles = host_tsc() - t_exit;
                            tr.tracer.exit(&rec);
                            action
                        }
                    }
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    continue;
                }
                Err(e) => {
                    ctl.finish(Outcome::VcpuFailed {
                        vcpu: self.id,
                        what: format!("KVM_RUN: {e}"),
                    });
                    return;
                }
            };
            let outcome = match action {
                ExitAction::Continue => continue,
                ExitAction::Shutdown => {
                    let cpu = self.snapshot(mem);
                    let host = crate::host::host_kind();
                    Outcome::TripleFault {
                        vcpu: self.id,
                        cpu: match discarded_at_shutdown(host, &cpu) {
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
                        cpu: self.snapshot(mem),
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

    /// Registers and the instruction bytes at RIP (translated through the guest's own page
    /// tables with `KVM_TRANSLATE`).
    fn snapshot(&self, mem: &GuestMemory) -> CpuSnapshot {
        let mut cpu = CpuSnapshot::default();
        if let Ok(regs) = self.fd.get_regs() {
            cpu.rip = regs.rip;
            cpu.rsp = regs.rsp;
            cpu.rflags = regs.rflags;
        }
        if let Ok(s) = self.fd.get_sregs() {
            (cpu.cr0, cpu.cr2, cpu.cr3, cpu.cr4, cpu.efer, cpu.cs) =
                (s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector);
        }
        let gpa = match self.fd.translate_gva(cpu.rip) {
            Ok(t) if t.valid != 0 => Some(t.physical_address),
            _ if cpu.cr0 & (1 << 31) == 0 => Some(cpu.rip),
            _ => None,
        };
        if let Some(gpa) = gpa {
            let mut code = [0u8; 15];
            for (i, b) in code.iter_mut().enumerate() {
                match mem.read_obj::<u8>(GuestAddress(gpa + i as u64)) {
                    Ok(v) => *b = v,
                    Err(_) => {
                        cpu.code = code[..i].to_vec();
                        return cpu;
                    }
                }
            }
            cpu.code = code.to_vec();
        }
        cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use irqlab_abi::boot_info::HostKind;

    fn init_state() -> CpuSnapshot {
        CpuSnapshot {
            rip: 0xfff0,
            cs: 0xf000,
            cr0: 0x6000_0010,
            ..Default::default()
        }
    }

    #[test]
    fn svm_shutdown_state_is_never_reported_as_the_guests() {
        let long_mode = CpuSnapshot {
            rip: 0x10_2000,
            cs: 0x8,
            cr0: 0x8000_0011,
            ..Default::default()
        };
        // SVM: KVM INITs the vCPU whatever registers it then returns.
        assert!(discarded_at_shutdown(HostKind::Svm, &init_state()).is_some());
        assert!(discarded_at_shutdown(HostKind::Svm, &long_mode).is_some());
        // Elsewhere the state is kept, unless it is the INIT signature.
        assert!(discarded_at_shutdown(HostKind::Vmx, &long_mode).is_none());
        assert!(discarded_at_shutdown(HostKind::Pvm, &long_mode).is_none());
        assert!(discarded_at_shutdown(HostKind::Unknown, &init_state()).is_some());
    }

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

    #[test]
    fn exits_map_to_actions() {
        let d = devices();
        let mut b = [0u8; 1];
        assert_eq!(handle_exit(&d, VcpuExit::Shutdown), ExitAction::Shutdown);
        assert_eq!(
            handle_exit(&d, VcpuExit::InternalError),
            ExitAction::InternalError
        );
        assert_eq!(
            handle_exit(&d, VcpuExit::FailEntry(7, 0)),
            ExitAction::FailEntry(7)
        );
        assert_eq!(handle_exit(&d, VcpuExit::Intr), ExitAction::Continue);
        assert_eq!(
            handle_exit(&d, VcpuExit::IoIn(0x1234, &mut b)),
            ExitAction::Continue
        );
        assert_eq!(b, [0xff], "an unclaimed port reads as a floating bus");
        assert!(matches!(
            handle_exit(&d, VcpuExit::Hlt),
            ExitAction::Unhandled(_)
        ));
        assert_eq!(
            handle_exit(
                &d,
                VcpuExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, &[])
            ),
            ExitAction::Reboot("KVM_SYSTEM_EVENT_RESET".into())
        );
    }
}
