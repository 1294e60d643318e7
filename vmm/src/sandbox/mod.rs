//! The seccomp sandbox: once set up, every irqlab thread runs under its own seccomp filter
//! (built with rust-vmm's `seccompiler`, as Firecracker's are) and with `PR_SET_NO_NEW_PRIVS`.
//!
//! A guest kernel downloaded from anywhere runs next to this process; the filters bound what
//! a bug in irqlab's exit handling could be made to do. Each thread installs its filter itself
//! (seccomp filters are per thread) as soon as its setup is done:
//!
//! | thread | when | may (besides the common set below) |
//! |--------|------|------------------------------------|
//! | `vcpuN` | before its first `KVM_RUN` | the vCPU's KVM ioctls (`KVM_RUN`, `KVM_GET_REGS`, `KVM_GET_SREGS`, `KVM_GET_MP_STATE`, `KVM_TRANSLATE`; with tracing `KVM_GET_MSRS`, `KVM_GET_STATS_FD` and `pread64`), the VM's interrupt ioctls (`KVM_SIGNAL_MSI`, `KVM_IRQ_LINE`, `KVM_SET_GSI_ROUTING`), `timerfd_settime` (the PIT), writes to the serial log (and, with tracing, to `exits.jsonl`), and start the MSI source's and the NIC's worker threads (`clone` with exactly the flags of a thread) |
//! | `console` | before its first write | write stdout |
//! | `stdin` | before its first read | read stdin, sleep, raise the UART's interrupt (`KVM_SIGNAL_MSI`, `KVM_IRQ_LINE`) |
//! | `msi-source` | when the guest starts the device | sleep, `KVM_SIGNAL_MSI` (under the vCPU filters it inherits) |
//! | `nic` | when the guest first starts the NIC (or its ITR timer first holds an interrupt); lives until the VM ends | as `msi-source` (it waits on a `futex`, in the common set) |
//! | `trace-writer` | before its first write (tracing only) | write the trace outputs, create them (`openat` with exactly `O_WRONLY\|O_CREAT\|O_TRUNC\|O_CLOEXEC`), copy a spooled output into a FIFO or device (`read`, `lseek`, `statx` of a descriptor, `fstat`, `sendfile`, `copy_file_range`, `splice`) |
//! | main | before the event loop ([`SandboxScope::Process`] only) | the event loop (`epoll_wait`, reading the eventfd, timerfds and signalfd, `timerfd_settime`, `KVM_SIGNAL_MSI`/`KVM_IRQ_LINE` for PIT ticks), stopping the vCPUs (`tgkill` with the kick signal to this process only), `mincore`, restoring the terminal (`TCSETS` on stdin), printing (stdout, stderr), `exit_group`; with tracing, what the trace writer may (the last trace files are written on this thread) |
//!
//! Common to all: memory management without `PROT_EXEC` (`mmap` of anonymous memory only,
//! `mprotect`, `munmap`, `madvise`, `brk`), `futex`, `close`, signal return and masks,
//! `sigaltstack`, clocks, `sched_yield`, `getrandom`, thread exit, `write` to stderr (panic
//! messages) and to the run's wake-up eventfd, and `tgkill(SIGABRT)` to this process (abort).
//! No thread can open a file for reading, a socket or a process, map executable memory, or
//! exec; only the trace writer and, with tracing, the main thread may create files (for
//! writing, as `File::create` does).
//!
//! The main thread's filter covers the rest of the process's life: the trace writer's thread
//! streams the trace during the run, and the main thread finishes it (`summary.json`,
//! `latency.svg`) after the vCPUs stopped, so with tracing its filter allows what the
//! writer's does. It is installed only with [`SandboxScope::Process`] (the CLI): a library
//! caller that goes on doing other things in its thread ([`SandboxScope::Threads`], the
//! in-process benchmarks) keeps that thread unconfined.
//!
//! **A forbidden system call** is trapped (`SECCOMP_RET_TRAP`): the kernel sends SIGSYS to the
//! thread, whose handler (async-signal-safe: atomics and one eventfd write) records the
//! syscall number and the thread, makes the call fail with `EPERM`, and wakes the event loop,
//! which ends the run: exit code 76 and one `irqlab:` line naming the syscall and the thread
//! ([`crate::outcome::Outcome::SandboxViolation`]). A violation at any moment of the run —
//! also while the vCPUs are stopped or the trace is written — decides the exit code.
//! The one exception to trapping: a vCPU thread's `clone3` (it starts the MSI source's and
//! the NIC's workers) is answered `ENOSYS` by a second, two-rule filter stacked on the vCPU's
//! (the kernel takes the strictest answer of all filters, and `ERRNO` is stricter than
//! `ALLOW`), so that glibc falls back to `clone`, whose flags a filter can check (seccomp
//! cannot read `clone3`'s arguments). It cannot be trapped and reported: glibc blocks every
//! signal around the `clone`, and the kernel kills a process whose filter traps while SIGSYS
//! is blocked. The same
//! holds for any forbidden call made inside glibc's own signal-blocked sections (thread
//! creation and exit, `abort`): the process then dies by SIGSYS (status 159, "Bad system
//! call") instead of exiting 76 — the allowlists cover everything those sections call.
//!
//! glibc's allocator reads `/proc/sys/vm/overcommit_memory` the first time it shrinks a
//! thread's heap, on whichever thread frees the memory; with the sandbox on, heap trimming is
//! turned off (`M_TRIM_THRESHOLD`) so that no thread ever opens a file for it.
//!
//! Test hook: `IRQLAB_SANDBOX_SELFTEST=<main|vcpu|console|stdin|msi-source|nic|trace-writer>` makes
//! that thread call `getppid` (in no allowlist) right after installing its filter.
//!
//! Modules: `scope` (which threads are confined, what the filters know of the run), `thread`
//! (the thread kinds and a thread's identity), `error`, `trap` (the SIGSYS handler and the
//! violation it records), `ioctls` (request numbers), `allow` (building a filter),
//! `allowlists` (what each thread kind may do).

mod allow;
mod allowlists;
mod error;
pub mod ioctls;
mod scope;
mod thread;
mod trap;

pub use error::SandboxError;
pub use scope::{RunFacts, SandboxScope};
pub use thread::ThreadKind;
pub use trap::{violation, Violation};

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use thread::{thread_name, WHO};

/// The environment variable of the test hook (see the module documentation).
pub const SELFTEST_ENV: &str = "IRQLAB_SANDBOX_SELFTEST";

/// The filters of one run.
pub struct Sandbox {
    filters: Vec<BpfProgram>,
    /// `clone3` → `ENOSYS`, everything else allowed: stacked on the vCPU filter.
    no_clone3: BpfProgram,
    counts: Vec<usize>,
    selftest: Option<ThreadKind>,
    failure: Mutex<Option<SandboxError>>,
    wake_fd: RawFd,
}

impl Sandbox {
    /// Builds every thread kind's filter for a run and installs the SIGSYS handler. Clears
    /// the record of an earlier run's violation.
    pub fn new(facts: &RunFacts) -> Result<Arc<Sandbox>, SandboxError> {
        // SAFETY: PR_GET_SECCOMP takes no pointer; EINVAL means no seccomp support.
        if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } < 0 {
            return Err(SandboxError::Unsupported(std::io::Error::last_os_error()));
        }
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut filters = Vec::new();
        let mut counts = Vec::new();
        for kind in ThreadKind::ALL {
            let (prog, n) = allowlists::allowlist(kind, facts, pid).compile(kind)?;
            filters.push(prog);
            counts.push(n);
        }
        let no_clone3 = SeccompFilter::new(
            [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            TargetArch::x86_64,
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| SandboxError::Build {
            thread: "vcpu clone3",
            error: e.to_string(),
        })?;
        trap::install_sigsys_handler()?;
        // No heap trimming: glibc would open /proc/sys/vm/overcommit_memory the first time it
        // shrinks a thread's heap (see the module documentation).
        // SAFETY: mallopt only changes an allocator parameter.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) };
        trap::arm(facts.wake_fd);
        let selftest = std::env::var(SELFTEST_ENV)
            .ok()
            .and_then(|s| ThreadKind::from_name(&s));
        Ok(Arc::new(Sandbox {
            filters,
            no_clone3,
            counts,
            selftest,
            failure: Mutex::new(None),
            wake_fd: facts.wake_fd,
        }))
    }

    /// How many system calls `kind`'s filter allows (some only with given arguments).
    pub fn allowed(&self, kind: ThreadKind) -> usize {
        self.counts[kind.index()]
    }

    /// Confines the calling thread: `PR_SET_NO_NEW_PRIVS` and `kind`'s filter (`index`: the
    /// vCPU's, for reports).
    pub fn enter(&self, kind: ThreadKind, index: u8) -> Result<(), SandboxError> {
        WHO.with(|w| w.set(((kind.index() as u32) << 8) | u32::from(index)));
        let failed = |e: seccompiler::Error| SandboxError::Install {
            thread: thread_name(((kind.index() as u32) << 8) | u32::from(index)),
            error: e.to_string(),
        };
        if kind == ThreadKind::Vcpu {
            seccompiler::apply_filter(&self.no_clone3).map_err(failed)?;
        }
        // apply_filter sets PR_SET_NO_NEW_PRIVS first.
        seccompiler::apply_filter(&self.filters[kind.index()]).map_err(failed)?;
        if self.selftest == Some(kind) {
            // The test hook: a system call in no allowlist.
            // SAFETY: getppid has no preconditions (and is trapped here).
            unsafe { libc::getppid() };
        }
        Ok(())
    }

    /// [`Sandbox::enter`] for a thread that cannot report an error itself: a failure is kept
    /// for [`Sandbox::failure`] and the event loop woken.
    pub fn enter_or_report(&self, kind: ThreadKind, index: u8) {
        if let Err(e) = self.enter(kind, index) {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(e);
            let one = 1u64.to_ne_bytes();
            // SAFETY: writing 8 valid bytes to the run's eventfd.
            unsafe { libc::write(self.wake_fd, one.as_ptr().cast(), one.len()) };
        }
    }

    /// A thread whose filter could not be installed, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(ToString::to_string)
    }

    /// A hook that confines the thread it runs on as `kind` (for threads other modules
    /// spawn: the console, the stdin feeder, the MSI source's and the NIC's workers).
    pub fn hook(self: &Arc<Self>, kind: ThreadKind) -> Arc<dyn Fn() + Send + Sync> {
        let me = self.clone();
        Arc::new(move || me.enter_or_report(kind, 0))
    }

    /// Stops the SIGSYS handler from waking this run's event loop (its eventfd is about to
    /// be closed). A violation is still recorded.
    pub fn disarm(&self) {
        trap::disarm(self.wake_fd);
    }
}
