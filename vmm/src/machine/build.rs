//! [`Machine::build`]: everything set up, in an order whose constraints the comments give;
//! the vCPUs are created and the boot CPU placed at the kernel's entry, but no vCPU thread
//! exists yet.

use super::run_end::{RunEnd, StopWatcher};
use super::{os, Machine, RunOptions, SetupError};
use crate::arch::x86_64::{boot_info, cpuid, gdt, paging, BootError};
use crate::config::{IrqchipMode, KernelSource, VmConfig};
use crate::console::ConsoleOut;
use crate::device_manager::{Board, Devices, IrqWiring};
use crate::interrupts::{KvmGsiLine, KvmInterrupts, KvmIrqErrors};
use crate::loader::KernelImage;
use crate::memory::GuestMemory;
use crate::ram_layout::TopOfRam;
use crate::sandbox::{RunFacts, Sandbox, SandboxScope, ThreadKind};
use crate::stop::StopSignals;
use crate::trace::ring::RingReader;
use crate::trace::{Source as TraceSource, TraceMode, TracedLine, TracedSink, Tracer};
use crate::vcpu::Vcpu;
use crate::{boot, host, memory, vm};
use kvm_ioctls::{Kvm, VmFd};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::timerfd::TimerFd;

/// Reads the config's initrd and Multiboot modules: regular files, none larger than guest
/// memory (`input::read_regular`, which refuses FIFOs and devices).
fn read_boot_files(config: &VmConfig, mem_size: u64) -> Result<boot::BootFiles, SetupError> {
    let limit = format!("guest memory ({} MiB)", mem_size >> 20);
    let read = |path: &std::path::PathBuf| {
        crate::input::read_regular(path, mem_size, &limit)
            .map(|bytes| boot::BootFile {
                path: path.clone(),
                bytes,
            })
            .map_err(|source| SetupError::Initrd {
                path: path.clone(),
                source,
            })
    };
    Ok(boot::BootFiles {
        initrd: config.initrd.as_ref().map(read).transpose()?,
        modules: config.modules.iter().map(read).collect::<Result<_, _>>()?,
    })
}

/// How traces name the MSI source device.
const MSI_SOURCE_NAME: &str = "msi:source0";
/// How traces name the NIC's interrupts (MSIs, or posted-mode notifications).
const NIC_NAME: &str = "msi:nic0";

impl Machine {
    /// Sets up the VM described by `config`: the errors a run can meet before the guest
    /// starts, in the order given in [`crate::machine`] (image errors before host errors,
    /// config errors found on the way before host errors too). Starts the console thread and,
    /// with `feed_stdin`, the stdin feeder: the UART's two ends.
    pub fn build(config: &VmConfig, opts: &RunOptions) -> Result<Machine, SetupError> {
        let started = Instant::now();
        // First, before this run creates any thread (the stdin feeder, the vCPUs, device
        // workers all inherit the mask): a stop signal can then only reach the signalfd.
        // Restored when the run returns (or the machine is dropped unrun), on every path:
        // declared first, so dropped last on an early return here, and the last field of
        // `Machine`.
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
        let boot::Plan {
            format,
            kernel,
            entry,
        } = boot::load(&image, config.boot, &mem, mem_size)?;
        log::info!(
            "kernel {}: {format:?} at {:#x}..{:#x}, entry {:#x}, boots through {}",
            image.name,
            kernel.start,
            kernel.end,
            kernel.entry,
            crate::entry::entry_name(&entry)
        );
        // The initrd and modules: kernel inputs, read before KVM like the image.
        let files = read_boot_files(config, mem_size)?;
        for f in files.initrd.iter().chain(&files.modules) {
            log::info!("read {} ({} bytes)", f.path.display(), f.bytes.len());
        }
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
        log::info!(
            "KVM API {}, host kind {}",
            kvm.get_api_version(),
            host_kind.name()
        );
        let vm_fd = Arc::new(vm::create(&kvm, config.irqchip)?);
        vm::register_memory(&vm_fd, &mem)?;
        log::info!(
            "VM: {} MiB of guest memory, {} irqchip, {} vCPU(s)",
            mem_size >> 20,
            config.irqchip.name(),
            config.vcpus
        );

        let gdt_limit = gdt::write(&mem)?;
        // A Multiboot kernel is entered with paging off and may load below 1 MiB, where the
        // long-mode page tables would go: they are written only for the entries that use them.
        let cr3 = if matches!(entry, crate::entry::Entry::Multiboot) {
            0
        } else {
            paging::write(&mem)?
        };
        let mut vcpus = create_vcpus(&kvm, &vm_fd, config.vcpus, config.x2apic)?;
        let tsc_khz = vcpus[0].fd.get_tsc_khz().map(u64::from).unwrap_or(0);
        // Shared with the VMM, at the top of RAM, page-aligned: the trace ring, and below it
        // one posted-interrupt descriptor per vCPU (NV = 0xeb, NDST = the vCPU's APIC ID).
        let top = TopOfRam::plan(
            mem_size,
            config.vcpus,
            config.trace.as_ref().map(|t| t.ring_records),
        );
        if !top.ring_clears(kernel.end) {
            return Err(SetupError::TraceTooBig { mem_size });
        }
        write_posted_descriptors(&mem, &top, config.vcpus)?;
        log::debug!(
            "top of RAM: trace ring {:x?}, posted descriptors {:#x}+{:#x}, usable RAM ends at {:#x}; TSC {tsc_khz} kHz",
            top.trace_ring,
            top.posted.0,
            top.posted.1,
            top.usable_end()
        );
        let facts = boot_info::BootFacts {
            host: host_kind,
            vcpus: config.vcpus,
            split_irqchip: config.irqchip == IrqchipMode::Split,
            tsc_khz,
            mem_size,
            kernel,
            cmdline: &config.cmdline,
            top,
        };
        boot::enter(
            entry,
            &boot::EntryContext {
                mem: &mem,
                vcpu: &vcpus[0].fd,
                cmdline: &config.cmdline,
                files: &files,
                facts: &facts,
                kernel_name: &image.name,
                cr3,
                gdt_limit,
            },
        )?;
        let tracer = tracer(config, &mem, &top, tsc_khz)?;
        for v in vcpus.iter_mut() {
            v.tracer = tracer.clone();
        }

        let end = Arc::new(RunEnd::new().map_err(os("eventfd"))?);
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
                wake_fd: end.wake_fd(),
                serial_log_fd: serial_log.as_ref().map(AsRawFd::as_raw_fd),
                tracing: tracer.is_some(),
            })?),
        };
        let hook = |kind| sandbox.as_ref().map(|s| s.hook(kind));
        let mut console =
            ConsoleOut::new_with_start(opts.console_stdout, hook(ThreadKind::Console))
                .map_err(os("console thread"))?;
        if opts.capture_console {
            console = console.with_capture(capture.clone());
        }
        if let Some(file) = serial_log {
            console = console.with_file(file);
        }
        let wiring = irq_wiring(config, &vm_fd, tracer.as_ref())?;
        let devices = Arc::new(Devices::new(
            console,
            end.clone(),
            wiring,
            Arc::new(memory::GuestDma(mem.clone())),
            tracer.clone(),
            Board {
                vcpus: config.vcpus,
                mem_size,
                testdev: config.testdev.unwrap_or_else(|| {
                    crate::loader::kvm_unit_tests::is_kvm_unit_test(&image.bytes)
                }),
            },
        )?);
        if let Some(start) = hook(ThreadKind::MsiSource) {
            devices
                .msi_source
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_thread_start(start);
        }
        if let Some(start) = hook(ThreadKind::Nic) {
            devices
                .nic
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
        let timer = watchdog(config.timeout)?;
        let watcher = StopWatcher {
            end: end.clone(),
            timer,
            signals: signal_fd,
            sandbox: sandbox.clone(),
        };
        Ok(Machine {
            started,
            _kvm: kvm,
            vm_fd,
            mem,
            vcpus,
            tracer,
            end,
            capture,
            sandbox,
            scope,
            devices,
            watcher,
            signals,
        })
    }
}

/// Creates the vCPUs with their CPUID (x2APIC offered or not). Application processors stay in
/// KVM's wait-for-SIPI state until the guest starts them; the boot CPU is entered later, once
/// the boot structures are written ([`boot::enter`]).
fn create_vcpus(kvm: &Kvm, vm_fd: &VmFd, count: u8, x2apic: bool) -> Result<Vec<Vcpu>, SetupError> {
    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| vm::VmError::Ioctl {
            ioctl: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    let features = cpuid::HostFeatures {
        tsc_deadline: kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer),
        x2apic,
    };
    let mut vcpus = Vec::with_capacity(count.into());
    for id in 0..count {
        let fd = vm_fd
            .create_vcpu(id.into())
            .map_err(|source| vm::VmError::Ioctl {
                ioctl: "KVM_CREATE_VCPU",
                source,
            })?;
        fd.set_cpuid2(&cpuid::for_vcpu(supported.clone(), id, count, features))
            .map_err(BootError::kvm("KVM_SET_CPUID2", id))?;
        vcpus.push(Vcpu {
            id,
            fd,
            tracer: None,
        });
    }
    Ok(vcpus)
}

/// Writes each vCPU's posted-interrupt descriptor control word (NV = 0xeb, NDST = its APIC
/// ID; ON, SN and the PIR clear).
fn write_posted_descriptors(mem: &GuestMemory, top: &TopOfRam, vcpus: u8) -> Result<(), BootError> {
    for v in 0..vcpus {
        let at = top.posted_desc(v);
        let control = irqlab_abi::posted::control(irqlab_abi::posted::DEFAULT_NV, v);
        vm_memory::Bytes::write_obj(
            mem,
            control,
            vm_memory::GuestAddress(at + 8 * irqlab_abi::posted::CONTROL_WORD as u64),
        )
        .map_err(|source| BootError::Memory {
            what: "posted-interrupt descriptor",
            addr: at,
            source,
        })?;
    }
    Ok(())
}

/// The tracer, with tracing on: its ring set up in guest memory where `top` puts it.
fn tracer(
    config: &VmConfig,
    mem: &GuestMemory,
    top: &TopOfRam,
    tsc_khz: u64,
) -> Result<Option<Arc<Tracer>>, SetupError> {
    let (Some(t), Some((addr, _))) = (&config.trace, top.trace_ring) else {
        return Ok(None);
    };
    let mode = match t.mode {
        TraceMode::Ring => irqlab_abi::trace::MODE_RING,
        TraceMode::Lockstep => irqlab_abi::trace::MODE_LOCKSTEP,
    };
    let ring = RingReader::setup(mem, addr, t.ring_records, mode).map_err(|e| SetupError::Os {
        what: "trace ring",
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Some(Arc::new(Tracer::new(t.clone(), tsc_khz, ring)?)))
}

/// Where the devices' interrupts go: the userspace IO-APIC's, the MSI source's and the NIC's
/// MSIs (split irqchip), or the MSI source's and the NIC's MSIs and one `KVM_IRQ_LINE` line
/// per GSI (kernel irqchip, after routing ISA IRQ 0 to pin 2). With tracing, every injection goes through a
/// recording sink.
fn irq_wiring(
    config: &VmConfig,
    vm_fd: &Arc<VmFd>,
    tracer: Option<&Arc<Tracer>>,
) -> Result<IrqWiring, SetupError> {
    let errors = Arc::new(KvmIrqErrors::default());
    let kvm_irqs = Arc::new(KvmInterrupts::new(vm_fd.clone(), errors.clone()));
    let sink = |source: &str| -> Arc<dyn irqlab_devices::MsiSink> {
        match tracer {
            Some(t) => Arc::new(TracedSink::new(
                kvm_irqs.clone(),
                t.clone(),
                TraceSource(source.into()),
            )),
            None => kvm_irqs.clone(),
        }
    };
    Ok(match config.irqchip {
        IrqchipMode::Split => IrqWiring::Split {
            ioapic: sink("ioapic"),
            msi: sink(MSI_SOURCE_NAME),
            nic: sink(NIC_NAME),
            errors,
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
                    let line = Arc::new(KvmGsiLine::new(vm_fd.clone(), gsi.into(), errors.clone()));
                    match tracer {
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
                nic: sink(NIC_NAME),
                gsi_lines,
                errors,
            }
        }
    })
}

/// The watchdog (`timeout_secs`), armed now.
fn watchdog(timeout: Option<Duration>) -> Result<Option<(TimerFd, Duration)>, SetupError> {
    let Some(after) = timeout else {
        return Ok(None);
    };
    let mut t = TimerFd::new().map_err(|e| SetupError::Os {
        what: "timerfd",
        source: e.into(),
    })?;
    t.reset(after, None).map_err(|e| SetupError::Os {
        what: "timerfd",
        source: e.into(),
    })?;
    Ok(Some((t, after)))
}
