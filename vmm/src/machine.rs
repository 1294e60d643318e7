//! Builds a VM from a [`VmConfig`] and runs it to its end.
//!
//! Setup order: stop signals blocked (before any thread exists, see [`crate::stop`]) → open
//! KVM → create the VM with its interrupt model → guest memory → load the kernel → boot
//! structures (GDT, page tables, boot info) → vCPUs (CPUID, entry registers) → devices → vCPU
//! threads. The calling thread then runs the event loop (event-manager) that waits for the end
//! of the run: a guest exit or fault reported by a vCPU thread, the watchdog timer, or a stop
//! signal (SIGHUP, SIGINT, SIGQUIT, SIGTERM). Then the vCPUs are stopped and joined
//! ([`VcpuThreads`]), the trace is written, and a signal that arrived meanwhile is reported too
//! ([`RunReport::signal_after_end`]).

use crate::arch::x86_64::{boot_info, cpuid, gdt, paging, BootError};
use crate::config::{IrqchipMode, KernelSource, VmConfig};
use crate::console::ConsoleOut;
use crate::device_manager::{Board, DeviceError, Devices, IrqWiring};
use crate::interrupts::{KvmGsiLine, KvmInterrupts};
use crate::loader::KernelImage;
use crate::outcome::Outcome;
use crate::pit_timer::PitTicker;
use crate::sandbox::{RunFacts, Sandbox, SandboxError, SandboxScope, ThreadKind};
use crate::stats::{ExitCounts, Mark};
use crate::stop::{StopSignals, VcpuThreads};
use crate::trace::ring::RingReader;
use crate::trace::{Source as TraceSource, TraceDrain, TraceMode, TracedLine, TracedSink, Tracer};
use crate::vcpu::{StopControl, Vcpu};
use crate::{boot, host, memory, vm};
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use irqlab_devices::ioapic::PinStats;
use irqlab_devices::pit::TickStats;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

/// Errors before the guest starts running. Each maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Kernel image problems (exit code 66).
    #[error(transparent)]
    Kernel(#[from] crate::loader::LoadError),
    /// Host/KVM problems (exit code 69).
    #[error(transparent)]
    Vm(#[from] vm::VmError),
    /// Guest memory allocation (exit code 69).
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Boot structure setup (exit code 70).
    #[error(transparent)]
    Boot(#[from] BootError),
    /// Device setup (exit code 70).
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// Trace output directory (exit code 65: it is a config value).
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceIoError),
    /// The trace ring does not fit in guest memory.
    #[error("trace ring does not fit in {} MiB of guest memory next to the kernel; raise mem_mib or lower trace.ring_records", mem_size >> 20)]
    TraceTooBig {
        /// Guest memory.
        mem_size: u64,
    },
    /// An initrd or module could not be read (exit code 66: a kernel input).
    #[error("{}: cannot read initrd/module: {source}", path.display())]
    Initrd {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The initrd does not fit between the kernel and the end of RAM.
    #[error("{}: initrd of {size} bytes does not fit in guest memory; raise mem_mib", path.display())]
    InitrdTooBig {
        /// The file.
        path: std::path::PathBuf,
        /// Its size.
        size: u64,
    },
    /// Serial log file: not creatable, or not a regular file (a FIFO, device or directory;
    /// exit code 65: it is a config value).
    #[error("{}: cannot create serial log: {source}", path.display())]
    SerialLog {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The seccomp sandbox (exit code 69 without kernel support, else 70).
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// A host facility the run loop needs (eventfd, timerfd, signalfd, threads).
    #[error("{what}: {source}")]
    Os {
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SetupError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        use crate::outcome::code;
        match self {
            SetupError::Kernel(_) | SetupError::Initrd { .. } | SetupError::InitrdTooBig { .. } => {
                code::KERNEL
            }
            SetupError::Vm(_)
            | SetupError::Memory(_)
            | SetupError::Sandbox(SandboxError::Unsupported(_)) => code::HOST,
            SetupError::SerialLog { .. }
            | SetupError::Trace(_)
            | SetupError::TraceTooBig { .. } => code::CONFIG,
            SetupError::Boot(_)
            | SetupError::Devices(_)
            | SetupError::Sandbox(_)
            | SetupError::Os { .. } => code::INTERNAL,
        }
    }
}

/// How the run talks to the outside world.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Copy the guest console to stdout.
    pub console_stdout: bool,
    /// Keep the console in memory (returned in the report).
    pub capture_console: bool,
    /// Turn the stop signals (SIGHUP, SIGINT, SIGQUIT, SIGTERM: [`crate::stop::STOP_SIGNALS`])
    /// into a clean stop (the CLI does; library users may not want it). The run blocks them
    /// in the calling thread before it creates any thread and restores the mask when it
    /// returns. Threads the caller created earlier with the signals unblocked can still
    /// receive them (default action: the process dies), so a multi-threaded caller blocks
    /// them itself first, before creating any thread ([`StopSignals::block`]), as the CLI
    /// does.
    pub handle_signals: bool,
    /// Feed the process's stdin to COM1 (see [`crate::stdin`]).
    pub feed_stdin: bool,
    /// Which threads run under seccomp filters ([`crate::sandbox`]); `Off` whatever this
    /// says when the config's `seccomp` is false.
    pub sandbox: SandboxScope,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub outcome: Outcome,
    /// From the start of setup to the end of the run.
    pub elapsed: Duration,
    /// Guest memory resident in this process at the end (bytes).
    pub guest_resident: u64,
    /// Captured console output (with `capture_console`).
    pub console: Vec<u8>,
    /// Writes to the benchmark port, and the host time from the first to the last.
    pub bench_writes: (u64, Duration),
    /// Port or MMIO accesses no device claimed.
    pub unhandled_accesses: u64,
    /// Console bytes that never reached stdout: its reader stalled or closed it (the guest
    /// is never held up by a slow reader; see [`crate::console`]).
    pub console_dropped: u64,
    /// Userspace exits by reason over the whole run.
    pub exits: ExitCounts,
    /// Marks the guest wrote to the mark port.
    pub marks: Vec<Mark>,
    /// PIT channel 0 ticks and missed periods (split irqchip).
    pub pit: Option<TickStats>,
    /// IO-APIC counters of every pin that saw traffic (split irqchip).
    pub ioapic: Vec<(usize, PinStats)>,
    /// The trace summary (with tracing on).
    pub trace: Option<crate::trace::output::Summary>,
    /// Why the trace could not be written, if it could not.
    pub trace_error: Option<String>,
    /// A stop signal (with `handle_signals`) that arrived after the run had ended another way
    /// — while the vCPUs were being stopped or the trace written. `outcome` stays how the run
    /// ended; what the signal means is the caller's policy (the CLI reports the signal).
    pub signal_after_end: Option<i32>,
    /// vCPU threads that did not stop (see [`crate::stop::STOP_TIMEOUT`]), if any.
    pub stop_error: Option<String>,
}

/// How traces name the MSI source device.
const MSI_SOURCE_NAME: &str = "msi:source0";

/// State shared by the event loop and the vCPU threads.
struct Shared {
    stop: AtomicBool,
    outcome: Mutex<Option<Outcome>>,
    /// The first stop signal that arrived after `outcome` was set to something else.
    signal_after_end: Mutex<Option<i32>>,
    wake: EventFd,
}

impl Shared {
    /// A stop signal: ends the run, or, when it has already ended another way, is kept as
    /// [`RunReport::signal_after_end`]. A second signal after a first one changes nothing.
    fn signal(&self, signo: i32) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            None => {
                // Set under the lock, so a vCPU finishing at the same moment cannot make the
                // signal vanish between "no outcome yet" and `finish`.
                *slot = Some(Outcome::Signal(signo));
                drop(slot);
                self.stop.store(true, Ordering::Release);
                let _ = self.wake.write(1);
            }
            Some(Outcome::Signal(_)) => {}
            Some(_) => {
                self.signal_after_end
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(signo);
            }
        }
    }
}

impl StopControl for Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn finish(&self, outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
        }
        self.stop.store(true, Ordering::Release);
        // A full eventfd counter only means the loop is already awake.
        let _ = self.wake.write(1);
    }
}

impl irqlab_devices::ExitSink for Shared {
    fn request_exit(&self, status: u32) {
        self.finish(Outcome::GuestExit { status });
    }

    fn request_reset(&self, source: irqlab_devices::reset::ResetSource) {
        self.finish(Outcome::Reboot {
            via: source.to_string(),
        });
    }
}

/// Wakes the event loop for anything that ends the run.
struct StopWatcher {
    shared: Arc<Shared>,
    timer: Option<(TimerFd, Duration)>,
    signals: Option<OwnedFd>,
    sandbox: Option<Arc<Sandbox>>,
}

/// How the sandbox ends the run, if it does: a forbidden system call (its SIGSYS handler
/// wrote the wake-up eventfd), or a thread whose filter could not be installed.
fn sandbox_outcome(sandbox: Option<&Sandbox>) -> Option<Outcome> {
    let sandbox = sandbox?;
    if let Some(v) = crate::sandbox::violation() {
        return Some(Outcome::SandboxViolation {
            thread: v.thread,
            syscall: v.syscall,
        });
    }
    sandbox.failure().map(Outcome::SandboxSetup)
}

impl MutEventSubscriber for StopWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.shared.wake, event_manager::EventSet::IN));
        if let Some((t, _)) = &self.timer {
            let _ = ops.add(Events::new(t, event_manager::EventSet::IN));
        }
        if let Some(s) = &self.signals {
            let _ = ops.add(Events::new_raw(s.as_raw_fd(), event_manager::EventSet::IN));
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.shared.wake.as_raw_fd() {
            let _ = self.shared.wake.read();
            if let Some(o) = sandbox_outcome(self.sandbox.as_deref()) {
                self.shared.finish(o);
            }
        } else if let Some((t, after)) = self.timer.as_mut().filter(|(t, _)| t.as_raw_fd() == fd) {
            let _ = t.wait();
            self.shared.finish(Outcome::Timeout(*after));
        } else if let Some(s) = self.signals.as_ref().filter(|s| s.as_raw_fd() == fd) {
            while let Some(signo) = crate::stop::read_signal(s.as_fd()) {
                self.shared.signal(signo);
            }
        }
    }
}

/// Builds the VM described by `config` and runs it to its end.
pub fn run(config: &VmConfig, opts: &RunOptions) -> Result<RunReport, SetupError> {
    let started = Instant::now();
    let os = |what| move |source| SetupError::Os { what, source };
    // First, before this run creates any thread (the stdin feeder, the vCPUs, device workers
    // all inherit the mask): a stop signal can then only reach the signalfd. Restored when the
    // run returns, on every path; declared first, so dropped last.
    let signals = if opts.handle_signals {
        Some(StopSignals::block().map_err(os("signalfd"))?)
    } else {
        None
    };

    let image = match &config.kernel {
        KernelSource::Builtin => KernelImage::builtin(),
        KernelSource::File(path) => KernelImage::from_file_within(path, config.mem_bytes())?,
    };
    let mem_size = config.mem_bytes();
    // Load the image before touching KVM, so image errors win over host errors.
    let mem = memory::create(mem_size)?;
    let boot::Plan { kernel, entry, .. } = boot::load(&image, config.boot, &mem, mem_size)?;
    // A regular file or a new one: a FIFO without a reader is refused at once instead of
    // blocking the open, and a device or directory is refused too (see
    // `input::create_regular`). Opened before KVM: this config error wins over host errors.
    let serial_log = match &config.serial_log {
        Some(path) => {
            let log = crate::input::create_regular(path);
            Some(log.map_err(|source| SetupError::SerialLog {
                path: path.clone(),
                source,
            })?)
        }
        None => None,
    };

    let kvm = vm::open_kvm()?;
    let host_kind = host::host_kind();
    let vm_fd = Arc::new(vm::create(&kvm, config.irqchip)?);
    vm::register_memory(&vm_fd, &mem)?;

    let gdt_limit = gdt::write(&mem)?;
    // A Multiboot kernel is entered with paging off and may load below 1 MiB, where the
    // long-mode page tables would go: they are written only for the entries that use them.
    let cr3 = if matches!(entry, boot::Entry::Multiboot) {
        0
    } else {
        paging::write(&mem)?
    };
    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| vm::VmError::Ioctl {
            ioctl: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    let features = cpuid::HostFeatures {
        tsc_deadline: kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer),
    };
    let mut vcpus = Vec::with_capacity(config.vcpus.into());
    for id in 0..config.vcpus {
        let fd = vm_fd
            .create_vcpu(id.into())
            .map_err(|source| vm::VmError::Ioctl {
                ioctl: "KVM_CREATE_VCPU",
                source,
            })?;
        fd.set_cpuid2(&cpuid::for_vcpu(
            supported.clone(),
            id,
            config.vcpus,
            features,
        ))
        .map_err(BootError::kvm("KVM_SET_CPUID2", id))?;
        // Application processors stay in KVM's wait-for-SIPI state until the guest starts them;
        // the boot CPU is entered below, once the boot structures are written.
        vcpus.push(Vcpu {
            id,
            fd,
            tracer: None,
        });
    }
    let tsc_khz = vcpus[0].fd.get_tsc_khz().map(u64::from).unwrap_or(0);
    // Shared with the VMM, at the top of RAM, page-aligned: the trace ring, and below it one
    // posted-interrupt descriptor per vCPU (NV = 0xeb, NDST = the vCPU's APIC ID).
    let trace_ring = config.trace.as_ref().map(|t| {
        let bytes = irqlab_abi::trace::ring_bytes(t.ring_records).next_multiple_of(4096);
        ((mem_size - bytes) & !0xfff, bytes)
    });
    if let Some((addr, _)) = trace_ring {
        if addr < kernel.end.next_multiple_of(4096) + (1 << 20) {
            return Err(SetupError::TraceTooBig { mem_size });
        }
    }
    let posted_bytes =
        (u64::from(config.vcpus) * irqlab_abi::posted::DESC_SIZE).next_multiple_of(4096);
    let posted = (
        trace_ring.map_or(mem_size, |r| r.0) - posted_bytes,
        posted_bytes,
    );
    for v in 0..config.vcpus {
        let at = posted.0 + u64::from(v) * irqlab_abi::posted::DESC_SIZE;
        let control = irqlab_abi::posted::control(irqlab_abi::posted::DEFAULT_NV, v);
        vm_memory::Bytes::write_obj(
            &mem,
            control,
            vm_memory::GuestAddress(at + 8 * irqlab_abi::posted::CONTROL_WORD as u64),
        )
        .map_err(|source| BootError::Memory {
            what: "posted-interrupt descriptor",
            addr: at,
            source,
        })?;
    }
    let facts = boot_info::BootFacts {
        host: host_kind,
        vcpus: config.vcpus,
        split_irqchip: config.irqchip == IrqchipMode::Split,
        tsc_khz,
        mem_size,
        kernel,
        cmdline: &config.cmdline,
        trace_ring,
        posted: Some(posted),
    };
    boot::enter(
        entry,
        &boot::EntryContext {
            mem: &mem,
            vcpu: &vcpus[0].fd,
            config,
            facts: &facts,
            kernel_name: &image.name,
            cr3,
            gdt_limit,
        },
    )?;
    let tracer = match (&config.trace, trace_ring) {
        (Some(t), Some((addr, _))) => {
            let mode = match t.mode {
                TraceMode::Ring => irqlab_abi::trace::MODE_RING,
                TraceMode::Lockstep => irqlab_abi::trace::MODE_LOCKSTEP,
            };
            let ring = RingReader::setup(&mem, addr, t.ring_records, mode).map_err(|e| {
                SetupError::Os {
                    what: "trace ring",
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
            Some(Arc::new(Tracer::new(t.clone(), tsc_khz, ring)?))
        }
        _ => None,
    };
    for v in vcpus.iter_mut() {
        v.tracer = tracer.clone();
    }

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        outcome: Mutex::new(None),
        signal_after_end: Mutex::new(None),
        wake: EventFd::new(libc::EFD_NONBLOCK).map_err(os("eventfd"))?,
    });
    let capture = Arc::new(Mutex::new(Vec::new()));
    // The filters, built before the first thread that installs one exists.
    let scope = if config.seccomp {
        opts.sandbox
    } else {
        SandboxScope::Off
    };
    let sandbox = match scope {
        SandboxScope::Off => None,
        _ => Some(Sandbox::new(&RunFacts {
            wake_fd: shared.wake.as_raw_fd(),
            serial_log_fd: serial_log.as_ref().map(AsRawFd::as_raw_fd),
            tracing: tracer.is_some(),
        })?),
    };
    let hook = |kind| sandbox.as_ref().map(|s| s.hook(kind));
    let mut console = ConsoleOut::new_with_start(opts.console_stdout, hook(ThreadKind::Console))
        .map_err(os("console thread"))?;
    if opts.capture_console {
        console = console.with_capture(capture.clone());
    }
    if let Some(file) = serial_log {
        console = console.with_file(file);
    }
    let kvm_irqs = Arc::new(KvmInterrupts::new(vm_fd.clone()));
    // With tracing, every injection goes through a recording sink.
    let sink = |source: &str| -> Arc<dyn irqlab_devices::MsiSink> {
        match &tracer {
            Some(t) => Arc::new(TracedSink::new(
                kvm_irqs.clone(),
                t.clone(),
                TraceSource(source.into()),
            )),
            None => kvm_irqs.clone(),
        }
    };
    let wiring = match config.irqchip {
        IrqchipMode::Split => IrqWiring::Split {
            ioapic: sink("ioapic"),
            msi: sink(MSI_SOURCE_NAME),
        },
        IrqchipMode::Kernel => {
            kvm_irqs
                .route_kernel_irqchip()
                .map_err(|source| vm::VmError::Ioctl {
                    ioctl: "KVM_SET_GSI_ROUTING",
                    source,
                })?;
            // One KVM_IRQ_LINE line per GSI (the UART's, the test device's), each recorded
            // when tracing.
            let gsi_lines = (0..irqlab_devices::ioapic::NUM_PINS as u8)
                .map(|gsi| -> Arc<dyn irqlab_devices::IrqLine> {
                    let line = Arc::new(KvmGsiLine::new(vm_fd.clone(), gsi.into()));
                    match &tracer {
                        Some(t) => Arc::new(TracedLine::new(
                            line,
                            t.clone(),
                            TraceSource::for_pin(gsi),
                            Some(gsi),
                            true,
                        )),
                        None => line,
                    }
                })
                .collect();
            IrqWiring::Kernel {
                msi: sink(MSI_SOURCE_NAME),
                gsi_lines,
            }
        }
    };
    let devices = Arc::new(Devices::new(
        console,
        shared.clone(),
        wiring,
        Arc::new(memory::GuestDma(mem.clone())),
        tracer.clone(),
        Board {
            vcpus: config.vcpus,
            mem_size,
            testdev: config
                .testdev
                .unwrap_or_else(|| crate::loader::kvm_unit_tests::is_kvm_unit_test(&image.bytes)),
        },
    )?);
    if let Some(start) = hook(ThreadKind::MsiSource) {
        devices
            .msi_source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_thread_start(start);
    }
    if opts.feed_stdin {
        crate::stdin::spawn_feeder(devices.uart.clone(), hook(ThreadKind::Stdin))
            .map_err(os("stdin thread"))?;
    }

    let signal_fd = match &signals {
        Some(s) => Some(s.fd().try_clone_to_owned().map_err(os("signalfd"))?),
        None => None,
    };
    crate::vcpu::install_kick_handler().map_err(|e| SetupError::Os {
        what: "kick signal handler",
        source: e.into(),
    })?;
    let timer = match config.timeout {
        Some(after) => {
            let mut t = TimerFd::new().map_err(|e| SetupError::Os {
                what: "timerfd",
                source: e.into(),
            })?;
            t.reset(after, None).map_err(|e| SetupError::Os {
                what: "timerfd",
                source: e.into(),
            })?;
            Some((t, after))
        }
        None => None,
    };

    // Stopped and joined when dropped: an early return from here on cannot leave them running.
    let mut vcpu_threads = VcpuThreads::new({
        let shared = shared.clone();
        move || shared.stop.store(true, Ordering::SeqCst)
    });
    for vcpu in vcpus {
        let (devices, mem, ctl, sandbox) = (
            devices.clone(),
            mem.clone(),
            shared.clone() as Arc<dyn StopControl>,
            sandbox.clone(),
        );
        vcpu_threads
            .spawn(&vm_fd, vcpu, move |vcpu| {
                if let Some(s) = sandbox {
                    if let Err(e) = s.enter(ThreadKind::Vcpu, vcpu.id) {
                        ctl.finish(Outcome::SandboxSetup(e.to_string()));
                        return;
                    }
                }
                vcpu.run(devices, mem, ctl)
            })
            .map_err(os("spawn vCPU thread"))?;
    }

    let mut manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> = EventManager::new()
        .map_err(|e| SetupError::Os {
            what: "epoll",
            source: std::io::Error::other(format!("{e:?}")),
        })?;
    if let Some((pit, timer)) = &devices.pit {
        manager.add_subscriber(Arc::new(Mutex::new(PitTicker {
            pit: pit.clone(),
            timer: timer.clone(),
        })));
    }
    if let Some(t) = &tracer {
        manager.add_subscriber(Arc::new(Mutex::new(
            TraceDrain::with_thread_start(t.clone(), mem.clone(), hook(ThreadKind::TraceWriter))
                .map_err(|e| SetupError::Os {
                    what: "trace drain timer",
                    source: e,
                })?,
        )));
    }
    manager.add_subscriber(Arc::new(Mutex::new(StopWatcher {
        shared: shared.clone(),
        timer,
        signals: signal_fd,
        sandbox: sandbox.clone(),
    })));
    // Every thread of the run exists: the calling thread confines itself too, for the rest of
    // its life (the CLI's case; see crate::sandbox).
    if let Some(s) = sandbox.as_ref().filter(|_| scope == SandboxScope::Process) {
        s.enter_or_report(ThreadKind::Main, 0);
    }
    while !shared.stopping() {
        if let Err(e) = manager.run_with_timeout(100) {
            shared.finish(Outcome::VcpuFailed {
                vcpu: 0,
                what: format!("event loop: {e:?}"),
            });
        }
    }

    let stopped = vcpu_threads.stop();
    for vcpu in stopped.panicked {
        shared.finish(Outcome::VcpuFailed {
            vcpu,
            what: "vCPU thread panicked".into(),
        });
    }
    let stop_error = (!stopped.stuck.is_empty()).then(|| {
        format!(
            "vCPU {:?} did not stop within {} s of the stop request (thread left running)",
            stopped.stuck,
            crate::stop::STOP_TIMEOUT.as_secs()
        )
    });
    devices.shutdown();
    let console_dropped = devices
        .uart
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .writer_mut()
        .dropped();
    // Whatever ended the run, the trace is completed and written.
    let (trace, trace_error) = match &tracer {
        Some(t) => {
            t.ring.lock().unwrap_or_else(|p| p.into_inner()).drain(&mem);
            match crate::trace::output::write_all(t) {
                Ok(s) => (Some(s), None),
                Err(e) => (
                    None,
                    Some(format!("{}: writing the trace: {e}", t.dir().display())),
                ),
            }
        }
        None => (None, None),
    };
    // A signal that arrived while the vCPUs stopped or the trace was written. The mask is
    // restored when `signals` drops at the return: a signal after this look then has its
    // normal disposition (for the CLI, which blocked the signals itself, still blocked).
    if let Some(signo) = signals.as_ref().and_then(StopSignals::take_pending) {
        shared.signal(signo);
    }
    // A forbidden system call at any moment of the run decides how it ended, also one made
    // while the vCPUs stopped or the trace was written (after the outcome was set).
    if let Some(o) = sandbox_outcome(sandbox.as_deref()) {
        *shared.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(o);
    }
    if let Some(s) = &sandbox {
        s.disarm();
    }
    let signal_after_end = shared
        .signal_after_end
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let outcome = shared
        .outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or(Outcome::VcpuFailed {
            vcpu: 0,
            what: "run ended without an outcome".into(),
        });
    let marks = devices
        .marks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let bench = devices.bench.lock().unwrap_or_else(|p| p.into_inner());
    let pit = devices
        .pit
        .as_ref()
        .map(|(p, _)| p.lock().unwrap_or_else(|p| p.into_inner()).tick_stats());
    let ioapic = devices
        .ioapic
        .as_ref()
        .map(|io| {
            let io = io.lock().unwrap_or_else(|p| p.into_inner());
            (0..irqlab_devices::ioapic::NUM_PINS)
                .filter_map(|pin| io.stats(pin).map(|s| (pin, s)))
                .filter(|(_, s)| *s != PinStats::default())
                .collect()
        })
        .unwrap_or_default();
    let console = std::mem::take(&mut *capture.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(RunReport {
        outcome,
        elapsed: started.elapsed(),
        guest_resident: memory::resident_bytes(&mem),
        console,
        bench_writes: (bench.count(), bench.span()),
        console_dropped,
        unhandled_accesses: devices.pio.unhandled() + devices.mmio.unhandled(),
        exits: devices.exits.snapshot(),
        marks,
        pit,
        ioapic,
        trace,
        trace_error,
        signal_after_end,
        stop_error,
    })
}
