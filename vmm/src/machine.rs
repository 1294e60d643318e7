//! Builds a VM from a [`VmConfig`] ([`Machine::build`]), then runs it to its end
//! ([`Machine::run`]); [`run`] does both.
//!
//! Setup order ([`Machine::build`], in `build.rs`): stop signals blocked (before any thread
//! exists, see [`crate::stop`]) → guest memory and the kernel loaded into it → serial log
//! opened (both before KVM: image and config errors win over host errors) → open KVM →
//! create the VM with its interrupt model, register the memory → boot structures (GDT, page
//! tables) → vCPUs (CPUID) → the top of RAM ([`crate::ram_layout`]) → the boot CPU's entry →
//! tracer → sandbox filters (before the first thread that installs one) → console thread,
//! devices, stdin feeder → kick handler, watchdog. No vCPU runs yet.
//!
//! The run ([`Machine::run`], in `run.rs`): the vCPU threads start, and the calling thread
//! runs the event loop (event-manager) that waits for the end of the run: a guest exit or
//! fault reported by a vCPU thread, the watchdog timer, or a stop signal (SIGHUP, SIGINT,
//! SIGQUIT, SIGTERM) — see `run_end.rs`. Then the vCPUs are stopped and joined
//! ([`VcpuThreads`](crate::stop::VcpuThreads)), the devices report what they counted
//! ([`Devices::report`]), the trace is written, and a signal that arrived meanwhile is
//! reported too ([`RunReport::signal_after_end`]).

use crate::arch::x86_64::BootError;
use crate::config::VmConfig;
use crate::device_manager::{DeviceError, Devices};
use crate::memory::GuestMemory;
use crate::outcome::Outcome;
use crate::sandbox::{Sandbox, SandboxError, SandboxScope};
use crate::stats::{ExitCounts, FailureCounts, Mark};
use crate::stop::StopSignals;
use crate::trace::Tracer;
use crate::vcpu::Vcpu;
use crate::{memory, vm};
use irqlab_devices::ioapic::PinStats;
use irqlab_devices::pit::TickStats;
use kvm_ioctls::{Kvm, VmFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod build;
mod run;
mod run_end;

use run_end::{RunEnd, StopWatcher};

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
    /// Entering the kernel: its inputs, boot structures, boot CPU registers.
    #[error(transparent)]
    Entry(#[from] crate::boot::EntryError),
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
        use crate::boot::EntryError;
        use crate::outcome::code;
        match self {
            SetupError::Kernel(_)
            | SetupError::Initrd { .. }
            | SetupError::Entry(EntryError::Kernel(_) | EntryError::InitrdTooBig { .. }) => {
                code::KERNEL
            }
            SetupError::Vm(_)
            | SetupError::Memory(_)
            | SetupError::Sandbox(SandboxError::Unsupported(_)) => code::HOST,
            SetupError::SerialLog { .. }
            | SetupError::Trace(_)
            | SetupError::TraceTooBig { .. } => code::CONFIG,
            SetupError::Boot(_)
            | SetupError::Entry(EntryError::Boot(_))
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
    /// Failed KVM interrupt calls and ignored IO-APIC accesses (the run went on; also in the
    /// trace's `summary.json`).
    pub failures: FailureCounts,
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

/// A VM set up and ready to run: the VM and its memory, the vCPUs (created, entry state set,
/// no thread yet), the devices, the tracer, the sandbox filters and the stop sources.
/// [`Machine::build`] makes it, [`Machine::run`] runs it once, on the thread that built it
/// (the stop signals are blocked in that thread's signal mask). The only threads a built
/// machine has started are the UART's two ends: the console writer and, with `feed_stdin`,
/// the (detached) stdin feeder.
pub struct Machine {
    /// When setup started.
    started: Instant,
    mem: GuestMemory,
    /// /dev/kvm, kept open for the whole run.
    _kvm: Kvm,
    vm_fd: Arc<VmFd>,
    /// Not running yet: [`Machine::run`] moves each onto its thread.
    vcpus: Vec<Vcpu>,
    tracer: Option<Arc<Tracer>>,
    end: Arc<RunEnd>,
    /// The console output, with `capture_console`.
    capture: Arc<Mutex<Vec<u8>>>,
    scope: SandboxScope,
    /// The seccomp filters, built (installed by each thread as it starts).
    sandbox: Option<Arc<Sandbox>>,
    devices: Arc<Devices>,
    /// What wakes the event loop for the end of the run: the wake-up eventfd, the watchdog,
    /// the stop signals.
    watcher: StopWatcher,
    /// The stop signals blocked (with `handle_signals`) from the start of
    /// [`Machine::build`]: declared last, so dropped last; [`Machine::run`] keeps it until
    /// everything else of the run is gone.
    signals: Option<StopSignals>,
}

/// A [`SetupError::Os`] for `what`.
fn os(what: &'static str) -> impl Fn(std::io::Error) -> SetupError {
    move |source| SetupError::Os { what, source }
}

/// Builds the VM described by `config` and runs it to its end: [`Machine::build`], then
/// [`Machine::run`].
pub fn run(config: &VmConfig, opts: &RunOptions) -> Result<RunReport, SetupError> {
    Machine::build(config, opts)?.run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::EntryError;
    use crate::config::KernelSource;
    use crate::loader::LoadError;
    use crate::outcome::code;
    use std::path::PathBuf;

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::ENOENT)
    }

    #[test]
    fn every_setup_error_has_its_exit_code() {
        let boot = || BootError::Memory {
            what: "GDT",
            addr: 0,
            source: vm_memory::GuestMemoryError::InvalidGuestAddress(vm_memory::GuestAddress(0)),
        };
        let path = PathBuf::from("x");
        let cases = [
            (
                SetupError::Kernel(LoadError::NotElf {
                    name: "k".into(),
                    magic: vec![0],
                }),
                code::KERNEL,
            ),
            (
                SetupError::Initrd {
                    path: path.clone(),
                    source: io(),
                },
                code::KERNEL,
            ),
            (
                SetupError::Entry(EntryError::InitrdTooBig {
                    path: path.clone(),
                    size: 1,
                }),
                code::KERNEL,
            ),
            (
                SetupError::Entry(EntryError::Kernel(LoadError::Unsupported {
                    name: "k".into(),
                    problem: "p".into(),
                })),
                code::KERNEL,
            ),
            (SetupError::Entry(EntryError::Boot(boot())), code::INTERNAL),
            (SetupError::Boot(boot()), code::INTERNAL),
            (
                SetupError::SerialLog {
                    path: path.clone(),
                    source: io(),
                },
                code::CONFIG,
            ),
            (SetupError::TraceTooBig { mem_size: 1 << 20 }, code::CONFIG),
            (
                SetupError::Sandbox(SandboxError::Unsupported(io())),
                code::HOST,
            ),
            (
                SetupError::Sandbox(SandboxError::Handler(io())),
                code::INTERNAL,
            ),
            (
                SetupError::Os {
                    what: "epoll",
                    source: io(),
                },
                code::INTERNAL,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.exit_code(), want, "{e}");
        }
    }

    /// A config for [`Machine::build`] that fails before KVM is opened, so these run on any
    /// host (no /dev/kvm needed).
    fn build_error(config: &VmConfig) -> SetupError {
        match Machine::build(config, &RunOptions::default()) {
            Ok(_) => panic!("built"),
            Err(e) => e,
        }
    }

    fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("irqlab-machine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn kernel_and_config_errors_come_before_the_host() {
        // Not a kernel: the image is checked before anything else.
        let config = VmConfig {
            kernel: KernelSource::File(scratch("garbage", b"definitely not a kernel")),
            ..VmConfig::default()
        };
        let e = build_error(&config);
        assert!(
            matches!(e, SetupError::Kernel(LoadError::NotElf { .. })),
            "{e:?}"
        );
        assert_eq!(e.exit_code(), code::KERNEL);

        // A missing initrd: read with the kernel inputs, before KVM.
        let missing = std::env::temp_dir().join("irqlab-machine-no-such-initrd");
        let config = VmConfig {
            initrd: Some(missing.clone()),
            ..VmConfig::default()
        };
        let e = build_error(&config);
        assert!(
            matches!(&e, SetupError::Initrd { path, .. } if *path == missing),
            "{e:?}"
        );

        // A serial log that cannot be a log (a directory): a config error, before KVM.
        let config = VmConfig {
            serial_log: Some(std::env::temp_dir()),
            ..VmConfig::default()
        };
        let e = build_error(&config);
        assert!(matches!(e, SetupError::SerialLog { .. }), "{e:?}");
        assert_eq!(e.exit_code(), code::CONFIG);
    }
}
