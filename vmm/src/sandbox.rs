//! The seccomp sandbox: once set up, every irqlab thread runs under its own seccomp filter
//! (built with rust-vmm's `seccompiler`, as Firecracker's are) and with `PR_SET_NO_NEW_PRIVS`.
//!
//! A guest kernel downloaded from anywhere runs next to this process; the filters bound what
//! a bug in irqlab's exit handling could be made to do. Each thread installs its filter itself
//! (seccomp filters are per thread) as soon as its setup is done:
//!
//! | thread | when | may (besides the common set below) |
//! |--------|------|------------------------------------|
//! | `vcpuN` | before its first `KVM_RUN` | the vCPU's KVM ioctls (`KVM_RUN`, `KVM_GET_REGS`, `KVM_GET_SREGS`, `KVM_TRANSLATE`; with tracing `KVM_GET_MSRS`, `KVM_GET_STATS_FD` and `pread64`), the VM's interrupt ioctls (`KVM_SIGNAL_MSI`, `KVM_IRQ_LINE`, `KVM_SET_GSI_ROUTING`), `timerfd_settime` (the PIT), writes to the serial log (and, with tracing, to `exits.jsonl`), and start the MSI source's worker thread (`clone` with exactly the flags of a thread) |
//! | `console` | before its first write | write stdout |
//! | `stdin` | before its first read | read stdin, sleep, raise the UART's interrupt (`KVM_SIGNAL_MSI`, `KVM_IRQ_LINE`) |
//! | `msi-source` | when the guest starts the device | sleep, `KVM_SIGNAL_MSI` (under the vCPU filters it inherits) |
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
//! The one exception to trapping: a vCPU thread's `clone3` (it starts the MSI source's worker)
//! is answered `ENOSYS` by a second, two-rule filter stacked on the vCPU's (the kernel takes
//! the strictest answer of all filters, and `ERRNO` is stricter than `ALLOW`), so that glibc
//! falls back to `clone`, whose flags a filter can check (seccomp cannot read `clone3`'s
//! arguments). It cannot be trapped and reported: glibc blocks every signal around the
//! `clone`, and the kernel kills a process whose filter traps while SIGSYS is blocked. The same
//! holds for any forbidden call made inside glibc's own signal-blocked sections (thread
//! creation and exit, `abort`): the process then dies by SIGSYS (status 159, "Bad system
//! call") instead of exiting 76 — the allowlists cover everything those sections call.
//!
//! glibc's allocator reads `/proc/sys/vm/overcommit_memory` the first time it shrinks a
//! thread's heap, on whichever thread frees the memory; with the sandbox on, heap trimming is
//! turned off (`M_TRIM_THRESHOLD`) so that no thread ever opens a file for it.
//!
//! Test hook: `IRQLAB_SANDBOX_SELFTEST=<main|vcpu|console|stdin|msi-source|trace-writer>` makes
//! that thread call `getppid` (in no allowlist) right after installing its filter.

use crate::syscall_names::syscall_name;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The environment variable of the test hook (see the module documentation).
pub const SELFTEST_ENV: &str = "IRQLAB_SANDBOX_SELFTEST";

/// Which threads of a run are confined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SandboxScope {
    /// None (library default; `seccomp = false` / `--no-seccomp`).
    #[default]
    Off,
    /// The threads the run creates (vCPUs, console, stdin feeder, MSI source worker, trace
    /// writer); the calling thread stays unconfined, so it can go on with other work (benchmarks that run
    /// many guests in one process).
    Threads,
    /// Those and the calling thread, from the event loop on, for the rest of its life: it can
    /// then only finish the run, print, and exit (`irqlab run`).
    Process,
}

/// The kinds of irqlab threads, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The thread that called [`crate::machine::run`]: the event loop, then stopping the
    /// vCPUs, writing the trace and the report.
    Main,
    /// A vCPU thread.
    Vcpu,
    /// The console writer ([`crate::console`]).
    Console,
    /// The stdin feeder ([`crate::stdin`]).
    Stdin,
    /// The MSI source's worker (`irqlab_devices::msi_source`).
    MsiSource,
    /// The trace writer (`crate::trace::stream`), with tracing on.
    TraceWriter,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 6] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Console,
        ThreadKind::Stdin,
        ThreadKind::MsiSource,
        ThreadKind::TraceWriter,
    ];

    /// The name used in reports and by the test hook (a vCPU thread adds its index).
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Console => "console",
            ThreadKind::Stdin => "stdin",
            ThreadKind::MsiSource => "msi-source",
            ThreadKind::TraceWriter => "trace-writer",
        }
    }

    fn from_name(s: &str) -> Option<ThreadKind> {
        ThreadKind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the filters need to know about the run.
#[derive(Clone, Debug)]
pub struct RunFacts {
    /// The event loop's wake-up eventfd (the SIGSYS handler writes it; every thread may).
    pub wake_fd: RawFd,
    /// The serial log, if any (the vCPUs write it; the main thread flushes it).
    pub serial_log_fd: Option<RawFd>,
    /// Whether the run traces (trace files written by vCPU threads and the main thread).
    pub tracing: bool,
}

/// A forbidden system call, as the SIGSYS handler recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The system call number (x86-64).
    pub syscall: i64,
    /// The thread that made it (`vcpu0`, `console`, `stdin`, `msi-source`, `main`).
    pub thread: String,
    /// Forbidden calls trapped so far in this run (the first is the one reported).
    pub count: u64,
}

impl Violation {
    /// The system call's name, if known.
    pub fn syscall_name(&self) -> Option<&'static str> {
        syscall_name(self.syscall)
    }
}

/// The sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel has no seccomp filter support.
    #[error("seccomp filters are not available on this kernel ({0}); run with --no-seccomp (or seccomp = false) to run without the sandbox")]
    Unsupported(std::io::Error),
    /// Building a filter failed (a bug in an allowlist).
    #[error("building the {thread} seccomp filter: {error}")]
    Build {
        /// Which thread kind.
        thread: &'static str,
        /// Why.
        error: String,
    },
    /// Installing the SIGSYS handler failed.
    #[error("SIGSYS handler: {0}")]
    Handler(std::io::Error),
    /// Installing a thread's filter failed.
    #[error("installing the seccomp filter of thread {thread}: {error}")]
    Install {
        /// The thread.
        thread: String,
        /// Why.
        error: String,
    },
}

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

// State the SIGSYS handler touches: atomics only.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The first trap claims the record (later ones only count) ...
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// ... and publishes it once the fields are stored.
static TRAPPED: AtomicBool = AtomicBool::new(false);
static TRAPPED_SYSCALL: AtomicI64 = AtomicI64::new(-1);
static TRAPPED_THREAD: AtomicU32 = AtomicU32::new(NOBODY);
static TRAPS: AtomicU64 = AtomicU64::new(0);
/// Thread identity: kind << 8 | index.
const NOBODY: u32 = u32::MAX;

thread_local! {
    /// Set when the thread installs its filter; read by the SIGSYS handler. A `const`
    /// thread-local without a destructor is a plain TLS slot: reading it is signal-safe.
    static WHO: Cell<u32> = const { Cell::new(NOBODY) };
}

/// `si_code` of a seccomp SIGSYS.
const SYS_SECCOMP: i32 = 1;

/// The SIGSYS part of `siginfo_t` on x86-64 (`_sigsys` in the kernel's union, at offset 16).
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t, whose layout for SIGSYS is SigsysInfo.
    let info = unsafe { &*(info as *const SigsysInfo) };
    if info.code != SYS_SECCOMP || ctx.is_null() {
        // A SIGSYS someone sent with kill(2): nothing was trapped.
        return;
    }
    let nr = i64::from(info.syscall);
    let ret = {
        TRAPS.fetch_add(1, Ordering::SeqCst);
        if CLAIMED
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            TRAPPED_SYSCALL.store(nr, Ordering::SeqCst);
            TRAPPED_THREAD.store(WHO.with(Cell::get), Ordering::SeqCst);
            TRAPPED.store(true, Ordering::SeqCst);
        }
        let fd = WAKE_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: errno is thread-local; saved and restored around the write.
            let saved = unsafe { *libc::__errno_location() };
            let one = 1u64.to_ne_bytes();
            // SAFETY: write(2) is async-signal-safe; the buffer is 8 valid bytes. A full
            // eventfd counter only means the loop is already awake.
            unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = saved };
        }
        -libc::EPERM
    };
    // SAFETY: for SA_SIGINFO handlers `ctx` is the interrupted thread's ucontext_t; setting
    // RAX sets the trapped system call's return value (the kernel skipped the call).
    unsafe {
        let uc = &mut *(ctx as *mut libc::ucontext_t);
        uc.uc_mcontext.gregs[libc::REG_RAX as usize] = i64::from(ret);
    }
}

fn install_sigsys_handler() -> Result<(), SandboxError> {
    static ONCE: OnceLock<Result<(), i32>> = OnceLock::new();
    let r = *ONCE.get_or_init(|| {
        // SAFETY: sigaction is plain data; every field that matters is set below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `sa.sa_mask` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: installs a handler that only touches atomics and calls write(2).
        let rc = unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    });
    r.map_err(|e| SandboxError::Handler(std::io::Error::from_raw_os_error(e)))
}

/// The first forbidden call trapped since the last [`Sandbox::new`], if any.
pub fn violation() -> Option<Violation> {
    if !TRAPPED.load(Ordering::SeqCst) {
        return None;
    }
    let who = TRAPPED_THREAD.load(Ordering::SeqCst);
    Some(Violation {
        syscall: TRAPPED_SYSCALL.load(Ordering::SeqCst),
        thread: thread_name(who),
        count: TRAPS.load(Ordering::SeqCst),
    })
}

fn thread_name(who: u32) -> String {
    if who == NOBODY {
        return "unknown".into();
    }
    let kind = ThreadKind::ALL
        .get((who >> 8) as usize)
        .copied()
        .unwrap_or(ThreadKind::Main);
    match kind {
        ThreadKind::Vcpu => format!("vcpu{}", who & 0xff),
        k => k.name().into(),
    }
}

// ---- ioctl request numbers (asm-generic/ioctl.h; KVMIO = 0xAE) ----

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// KVM ioctls the filters allow, by request number.
pub mod ioctls {
    use super::{ioc, IOC_READ, IOC_WRITE};
    use kvm_bindings as kb;
    use std::mem::size_of;
    /// `_IO(KVMIO, 0x80)`.
    pub const KVM_RUN: u64 = ioc(0, 0x80, 0);
    /// `_IOR(KVMIO, 0x81, struct kvm_regs)`.
    pub const KVM_GET_REGS: u64 = ioc(IOC_READ, 0x81, size_of::<kb::kvm_regs>());
    /// `_IOR(KVMIO, 0x83, struct kvm_sregs)`.
    pub const KVM_GET_SREGS: u64 = ioc(IOC_READ, 0x83, size_of::<kb::kvm_sregs>());
    /// `_IOWR(KVMIO, 0x85, struct kvm_translation)`.
    pub const KVM_TRANSLATE: u64 =
        ioc(IOC_READ | IOC_WRITE, 0x85, size_of::<kb::kvm_translation>());
    /// `_IOWR(KVMIO, 0x88, struct kvm_msrs)`.
    pub const KVM_GET_MSRS: u64 = ioc(IOC_READ | IOC_WRITE, 0x88, size_of::<kb::kvm_msrs>());
    /// `_IOW(KVMIO, 0x61, struct kvm_irq_level)`.
    pub const KVM_IRQ_LINE: u64 = ioc(IOC_WRITE, 0x61, size_of::<kb::kvm_irq_level>());
    /// `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)`.
    pub const KVM_SET_GSI_ROUTING: u64 = ioc(IOC_WRITE, 0x6a, size_of::<kb::kvm_irq_routing>());
    /// `_IOW(KVMIO, 0xa5, struct kvm_msi)`.
    pub const KVM_SIGNAL_MSI: u64 = ioc(IOC_WRITE, 0xa5, size_of::<kb::kvm_msi>());
    /// `_IO(KVMIO, 0xce)`.
    pub const KVM_GET_STATS_FD: u64 = ioc(0, 0xce, 0);
}

// ---- allowlists ----

/// Syscall number → `None` (always allowed) or the rules of which one must match.
#[derive(Default)]
struct Allow(BTreeMap<i64, Option<Vec<SeccompRule>>>);

fn cond(arg: u8, len: Len, op: Op, value: u64) -> Cond {
    Cond::new(arg, len, op, value).expect("argument index below 6")
}

impl Allow {
    fn all(&mut self, nrs: &[i64]) -> &mut Self {
        for nr in nrs {
            self.0.insert(*nr, None);
        }
        self
    }

    /// Allowed when every condition of one of the rules holds.
    fn when(&mut self, nr: i64, conds: Vec<Cond>) -> &mut Self {
        let rule = SeccompRule::new(conds).expect("at least one condition");
        // `None`: already allowed unconditionally.
        if let Some(rules) = self.0.entry(nr).or_insert_with(|| Some(Vec::new())) {
            rules.push(rule);
        }
        self
    }

    /// `nr(fd, ...)` on one of `fds` (compared as the kernel's 32-bit int).
    fn on_fds(&mut self, nr: i64, fds: &[RawFd]) -> &mut Self {
        for fd in fds {
            self.when(nr, vec![cond(0, Len::Dword, Op::Eq, *fd as u32 as u64)]);
        }
        self
    }

    /// `ioctl(_, request)` for each request (the kernel takes the request as 32 bits).
    fn ioctls(&mut self, requests: &[u64]) -> &mut Self {
        for r in requests {
            self.when(
                libc::SYS_ioctl,
                vec![cond(1, Len::Dword, Op::Eq, *r & 0xffff_ffff)],
            );
        }
        self
    }

    fn compile(self, kind: ThreadKind) -> Result<(BpfProgram, usize), SandboxError> {
        let build = |error: String| SandboxError::Build {
            thread: kind.name(),
            error,
        };
        let count = self.0.len();
        let rules = self
            .0
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Trap,
            SeccompAction::Allow,
            TargetArch::x86_64,
        )
        .map_err(|e| build(e.to_string()))?;
        let prog: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| build(e.to_string()))?;
        Ok((prog, count))
    }
}

/// The flags glibc's `pthread_create` passes to `clone(2)`.
const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// `openat(AT_FDCWD, path, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC)`: what `File::create` does, and
/// the only file opening any filter allows (the trace outputs).
fn create_for_writing() -> Vec<Cond> {
    let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32;
    vec![
        cond(0, Len::Dword, Op::Eq, libc::AT_FDCWD as u32 as u64),
        cond(2, Len::Dword, Op::Eq, u64::from(flags)),
    ]
}

/// Writing trace outputs: create them (`File::create` only), write them; an output that is not
/// a regular file (a FIFO, /dev/null) is spooled and copied into it at the end by std's
/// `io::copy` (fd metadata, then `sendfile`/`copy_file_range`/`splice` or `read` + `write`).
fn trace_output(a: &mut Allow) {
    a.all(&[
        libc::SYS_write,
        libc::SYS_read,
        libc::SYS_lseek,
        libc::SYS_fstat,
        libc::SYS_sendfile,
        libc::SYS_copy_file_range,
        libc::SYS_splice,
    ]);
    // Metadata of an open descriptor: `statx(fd, "", AT_EMPTY_PATH)` (with the flag a path
    // given instead is still looked up: metadata, never contents).
    a.when(
        libc::SYS_statx,
        vec![cond(
            2,
            Len::Dword,
            Op::MaskedEq(libc::AT_EMPTY_PATH as u64),
            libc::AT_EMPTY_PATH as u64,
        )],
    );
    a.when(libc::SYS_openat, create_for_writing());
}

/// What every thread may do.
fn common(facts: &RunFacts, pid: libc::pid_t) -> Allow {
    let mut a = Allow::default();
    a.all(&[
        libc::SYS_futex,
        libc::SYS_munmap,
        // glibc's realloc moves blocks over 128 KiB with mremap (a growing trace or console
        // buffer on any thread); it only remaps the caller's own anonymous memory.
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_close,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_clock_gettime,
        libc::SYS_sched_yield,
        libc::SYS_getrandom,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_exit,
    ]);
    // Anonymous memory, never executable.
    let no_exec = || cond(2, Len::Dword, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    a.when(
        libc::SYS_mmap,
        vec![
            no_exec(),
            cond(
                3,
                Len::Dword,
                Op::MaskedEq(libc::MAP_ANONYMOUS as u64),
                libc::MAP_ANONYMOUS as u64,
            ),
        ],
    );
    a.when(libc::SYS_mprotect, vec![no_exec()]);
    // Panic messages, the wake-up (also from the SIGSYS handler).
    a.on_fds(libc::SYS_write, &[libc::STDERR_FILENO, facts.wake_fd]);
    // abort(3).
    a.when(
        libc::SYS_tgkill,
        vec![
            cond(0, Len::Dword, Op::Eq, pid as u32 as u64),
            cond(2, Len::Dword, Op::Eq, libc::SIGABRT as u64),
        ],
    );
    a
}

fn allowlist(kind: ThreadKind, facts: &RunFacts, pid: libc::pid_t) -> Allow {
    use ioctls::*;
    let mut a = common(facts, pid);
    let serial: Vec<RawFd> = facts.serial_log_fd.into_iter().collect();
    match kind {
        ThreadKind::Vcpu => {
            a.ioctls(&[
                KVM_RUN,
                KVM_SIGNAL_MSI,
                KVM_SET_GSI_ROUTING,
                KVM_IRQ_LINE,
                KVM_GET_REGS,
                KVM_GET_SREGS,
                KVM_TRANSLATE,
            ]);
            a.all(&[libc::SYS_timerfd_settime]);
            // Starting the MSI source's worker: clone with a thread's flags (clone3 passes
            // this filter and is answered ENOSYS by the one stacked on it), and what the new
            // thread does before it installs its own filter.
            a.all(&[libc::SYS_clone3]);
            a.when(
                libc::SYS_clone,
                vec![cond(0, Len::Qword, Op::Eq, THREAD_CLONE_FLAGS)],
            );
            // The worker runs under this filter too (filters are inherited), so what it needs
            // is allowed here as well: sleeping.
            a.all(&[
                libc::SYS_set_robust_list,
                libc::SYS_rseq,
                libc::SYS_sched_getaffinity,
                libc::SYS_nanosleep,
                libc::SYS_clock_nanosleep,
            ]);
            a.when(
                libc::SYS_prctl,
                vec![cond(0, Len::Dword, Op::Eq, libc::PR_SET_NAME as u64)],
            );
            // The worker installs its own filter on top of this one (a filter can only take
            // away: stacked filters all apply).
            a.when(
                libc::SYS_prctl,
                vec![cond(
                    0,
                    Len::Dword,
                    Op::Eq,
                    libc::PR_SET_NO_NEW_PRIVS as u64,
                )],
            );
            a.when(
                libc::SYS_seccomp,
                vec![
                    cond(0, Len::Dword, Op::Eq, libc::SECCOMP_SET_MODE_FILTER as u64),
                    cond(1, Len::Dword, Op::Eq, 0),
                ],
            );
            if facts.tracing {
                a.ioctls(&[KVM_GET_MSRS, KVM_GET_STATS_FD]);
                a.all(&[libc::SYS_pread64, libc::SYS_write]);
            } else {
                a.on_fds(libc::SYS_write, &serial);
            }
        }
        ThreadKind::Console => {
            a.on_fds(libc::SYS_write, &[libc::STDOUT_FILENO]);
        }
        ThreadKind::Stdin => {
            a.on_fds(libc::SYS_read, &[libc::STDIN_FILENO]);
            a.all(&[libc::SYS_nanosleep, libc::SYS_clock_nanosleep]);
            a.ioctls(&[KVM_SIGNAL_MSI, KVM_IRQ_LINE]);
            // If the feeder outlives the run, dropping the UART flushes the serial log.
            a.on_fds(libc::SYS_write, &serial);
        }
        ThreadKind::MsiSource => {
            a.all(&[libc::SYS_nanosleep, libc::SYS_clock_nanosleep]);
            a.ioctls(&[KVM_SIGNAL_MSI]);
        }
        ThreadKind::TraceWriter => {
            // Writes interrupts.jsonl and trace.json as the run goes.
            trace_output(&mut a);
        }
        ThreadKind::Main => {
            a.all(&[
                libc::SYS_epoll_wait,
                libc::SYS_epoll_pwait,
                libc::SYS_read,
                libc::SYS_timerfd_settime,
                libc::SYS_mincore,
                libc::SYS_exit_group,
                libc::SYS_nanosleep,
                libc::SYS_clock_nanosleep,
            ]);
            a.ioctls(&[KVM_SIGNAL_MSI, KVM_IRQ_LINE]);
            // Restoring the terminal.
            a.when(
                libc::SYS_ioctl,
                vec![
                    cond(0, Len::Dword, Op::Eq, libc::STDIN_FILENO as u64),
                    cond(1, Len::Dword, Op::Eq, libc::TCSETS),
                ],
            );
            // Kicking the vCPU threads out of KVM_RUN.
            a.when(
                libc::SYS_tgkill,
                vec![
                    cond(0, Len::Dword, Op::Eq, pid as u32 as u64),
                    cond(2, Len::Dword, Op::Eq, crate::vcpu::kick_signal() as u64),
                ],
            );
            if facts.tracing {
                // The trace's last files (summary.json, latency.svg), and whatever the writer
                // did not stream.
                trace_output(&mut a);
            } else {
                a.on_fds(libc::SYS_write, &[libc::STDOUT_FILENO]);
                a.on_fds(libc::SYS_write, &serial);
            }
        }
    }
    a
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
            let (prog, n) = allowlist(kind, facts, pid).compile(kind)?;
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
        install_sigsys_handler()?;
        // No heap trimming: glibc would open /proc/sys/vm/overcommit_memory the first time it
        // shrinks a thread's heap (see the module documentation).
        // SAFETY: mallopt only changes an allocator parameter.
        unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) };
        TRAPPED.store(false, Ordering::SeqCst);
        CLAIMED.store(false, Ordering::SeqCst);
        TRAPPED_SYSCALL.store(-1, Ordering::SeqCst);
        TRAPPED_THREAD.store(NOBODY, Ordering::SeqCst);
        TRAPS.store(0, Ordering::SeqCst);
        WAKE_FD.store(facts.wake_fd, Ordering::SeqCst);
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
    /// spawn: the console, the stdin feeder, the MSI source's worker).
    pub fn hook(self: &Arc<Self>, kind: ThreadKind) -> Arc<dyn Fn() + Send + Sync> {
        let me = self.clone();
        Arc::new(move || me.enter_or_report(kind, 0))
    }

    /// Stops the SIGSYS handler from waking this run's event loop (its eventfd is about to
    /// be closed). A violation is still recorded.
    pub fn disarm(&self) {
        let _ = WAKE_FD.compare_exchange(self.wake_fd, -1, Ordering::SeqCst, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        assert_eq!(ioctls::KVM_RUN, 0xae80);
        assert_eq!(ioctls::KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(ioctls::KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(ioctls::KVM_TRANSLATE, 0xc018_ae85);
        assert_eq!(ioctls::KVM_GET_MSRS, 0xc008_ae88);
        assert_eq!(ioctls::KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(ioctls::KVM_SET_GSI_ROUTING, 0x4008_ae6a);
        assert_eq!(ioctls::KVM_SIGNAL_MSI, 0x4020_aea5);
        assert_eq!(ioctls::KVM_GET_STATS_FD, 0xaece);
    }

    #[test]
    fn every_filter_compiles() {
        for tracing in [false, true] {
            let facts = RunFacts {
                wake_fd: 9,
                serial_log_fd: Some(10),
                tracing,
            };
            for kind in ThreadKind::ALL {
                let (prog, n) = allowlist(kind, &facts, 1).compile(kind).unwrap();
                assert!(!prog.is_empty() && n > 10, "{kind:?}");
                println!(
                    "{} (tracing {tracing}): {n} system calls, {} BPF instructions",
                    kind.name(),
                    prog.len()
                );
            }
        }
    }

    #[test]
    fn no_filter_allows_opening_processes_sockets_or_exec() {
        let facts = RunFacts {
            wake_fd: 9,
            serial_log_fd: None,
            tracing: true,
        };
        for kind in ThreadKind::ALL {
            let a = allowlist(kind, &facts, 1);
            for nr in [
                libc::SYS_open,
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_ptrace,
                libc::SYS_getppid,
                libc::SYS_kill,
                libc::SYS_mount,
                libc::SYS_unshare,
                libc::SYS_setns,
            ] {
                assert!(
                    !a.0.contains_key(&nr),
                    "{kind:?} allows {:?}",
                    syscall_name(nr)
                );
            }
            // openat only as File::create does it, and only where trace files are written.
            match a.0.get(&libc::SYS_openat) {
                None => assert!(!matches!(kind, ThreadKind::Main | ThreadKind::TraceWriter)),
                Some(rules) => assert!(rules.as_ref().is_some_and(|r| r.len() == 1), "{kind:?}"),
            }
            // Memory is never mapped executable.
            assert!(a.0[&libc::SYS_mmap].is_some() && a.0[&libc::SYS_mprotect].is_some());
        }
    }
}
