//! Reference measurements for `irqlab bench`: a bare kvm-ioctls `KVM_RUN` loop that does
//! nothing but re-enter after each port write, to compare irqlab's vCPU loop against.
//!
//! The bare guest uses irqlab's own long-mode set-up (so both guests run the same mode and
//! paging) and executes `mov dx, 0xf8; mov rcx, -1; 1: out dx, al; loop 1b`, the same two
//! instructions per exit as the irqlab guest's `run=pio-loop` (on kvm-pvm every guest
//! instruction is emulated, so the guest loops must match instruction for instruction). The
//! host loop matches the exit, counts it and re-enters: no device bus, no locks, no
//! bookkeeping.

use crate::arch::x86_64::{cpuid, gdt, paging, regs, BootError};
use crate::{memory, vm};
use kvm_ioctls::VcpuExit;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress};

/// Where the bare loop's code goes.
const CODE: u64 = 0x10_0000;
/// `mov dx, 0xf8` ; `mov rcx, -1` ; `1: out dx, al` ; `loop 1b`.
const PIO_LOOP: [u8; 14] = [
    0x66, 0xba, 0xf8, 0x00, // mov dx, 0xf8
    0x48, 0xc7, 0xc1, 0xff, 0xff, 0xff, 0xff, // mov rcx, -1
    0xee, // out dx, al
    0xe2, 0xfd, // loop -3
];

/// Bare-loop errors.
#[derive(Debug, thiserror::Error)]
pub enum BareLoopError {
    /// VM creation.
    #[error(transparent)]
    Vm(#[from] vm::VmError),
    /// Memory.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Long-mode set-up.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// An ioctl on the bare vCPU.
    #[error("{0}: {1}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// The guest did something other than the expected port write.
    #[error("unexpected exit in the bare loop: {0}")]
    Unexpected(String),
}

/// Runs `exits` PIO exits through a bare `KVM_RUN` loop; returns the time from the first to
/// the last exit divided by `exits - 1`.
pub fn bare_pio_exit(exits: u64) -> Result<Duration, BareLoopError> {
    let kvm = vm::open_kvm()?;
    let vm_fd = vm::create(&kvm, crate::config::IrqchipMode::Split)?;
    let mem = memory::create(4 << 20)?;
    vm::register_memory(&vm_fd, &mem)?;
    mem.write_slice(&PIO_LOOP, GuestAddress(CODE))
        .map_err(|source| BootError::Memory {
            what: "bare loop code",
            addr: CODE,
            source,
        })?;
    let gdt_limit = gdt::write(&mem)?;
    let cr3 = paging::write(&mem)?;
    let vcpu = vm_fd
        .create_vcpu(0)
        .map_err(|e| BareLoopError::Kvm("KVM_CREATE_VCPU", e))?;
    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| BareLoopError::Kvm("KVM_GET_SUPPORTED_CPUID", e))?;
    vcpu.set_cpuid2(&cpuid::for_vcpu(
        supported,
        0,
        1,
        cpuid::HostFeatures::default(),
    ))
    .map_err(|e| BareLoopError::Kvm("KVM_SET_CPUID2", e))?;
    regs::set_long_mode(&vcpu, 0, CODE, cr3, gdt_limit)?;

    let mut vcpu = vcpu;
    let mut first = None;
    for n in 0..exits {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(0xf8, _)) => {
                if n == 0 {
                    first = Some(Instant::now());
                }
            }
            Ok(other) => return Err(BareLoopError::Unexpected(format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR => {}
            Err(e) => return Err(BareLoopError::Kvm("KVM_RUN", e)),
        }
    }
    let span = first.map_or(Duration::ZERO, |f| f.elapsed());
    Ok(span / (exits.max(2) - 1) as u32)
}

/// What the vCPU thread's seccomp filters cost one system call: `ioctl(-1, KVM_RUN)` — the
/// request the filter checks first on every exit, refused by the kernel at once (`EBADF`) —
/// timed `calls` times on a fresh thread without the filters and on one with them, `rounds`
/// times alternating. Returns the nanoseconds per call of each round: (without, with).
pub fn seccomp_syscall_cost(calls: u32, rounds: u32) -> std::io::Result<Vec<(f64, f64)>> {
    use crate::sandbox::{RunFacts, Sandbox, ThreadKind};
    let wake = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK)?;
    let sandbox = Sandbox::new(&RunFacts {
        wake_fd: std::os::fd::AsRawFd::as_raw_fd(&wake),
        serial_log_fd: None,
        tracing: false,
    })
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let time = |filtered: bool| -> std::io::Result<f64> {
        let sandbox = sandbox.clone();
        std::thread::spawn(move || {
            if filtered {
                sandbox
                    .enter(ThreadKind::Vcpu, 0)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            let request = crate::sandbox::ioctls::KVM_RUN as libc::c_ulong;
            let start = Instant::now();
            for _ in 0..calls {
                // SAFETY: an ioctl on an invalid descriptor touches no memory (EBADF).
                unsafe { libc::ioctl(-1, request, 0) };
            }
            Ok(start.elapsed().as_nanos() as f64 / f64::from(calls.max(1)))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the timing thread panicked")))
    };
    let mut out = Vec::new();
    for _ in 0..rounds {
        let without = time(false)?;
        let with = time(true)?;
        out.push((without, with));
    }
    sandbox.disarm();
    Ok(out)
}
