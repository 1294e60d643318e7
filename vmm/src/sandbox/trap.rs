//! Trapping a forbidden system call: the SIGSYS handler (async-signal-safe: atomics and one
//! eventfd write), the record it keeps of the first violation, and reading that record back
//! as a [`Violation`].

use super::error::SandboxError;
use super::thread::{thread_name, NOBODY, WHO};
use crate::syscall_names::syscall_name;
use std::cell::Cell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

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

// State the SIGSYS handler touches: atomics only.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The first trap claims the record (later ones only count) ...
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// ... and publishes it once the fields are stored.
static TRAPPED: AtomicBool = AtomicBool::new(false);
static TRAPPED_SYSCALL: AtomicI64 = AtomicI64::new(-1);
static TRAPPED_THREAD: AtomicU32 = AtomicU32::new(NOBODY);
static TRAPS: AtomicU64 = AtomicU64::new(0);

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

pub(super) fn install_sigsys_handler() -> Result<(), SandboxError> {
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

/// The first forbidden call trapped since the last [`Sandbox::new`](super::Sandbox::new), if
/// any.
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

/// Forgets an earlier run's violation and makes the handler wake the event loop through
/// `wake_fd`.
pub(super) fn arm(wake_fd: RawFd) {
    TRAPPED.store(false, Ordering::SeqCst);
    CLAIMED.store(false, Ordering::SeqCst);
    TRAPPED_SYSCALL.store(-1, Ordering::SeqCst);
    TRAPPED_THREAD.store(NOBODY, Ordering::SeqCst);
    TRAPS.store(0, Ordering::SeqCst);
    WAKE_FD.store(wake_fd, Ordering::SeqCst);
}

/// Stops the handler from waking through `wake_fd` (if it still does); a violation is still
/// recorded.
pub(super) fn disarm(wake_fd: RawFd) {
    let _ = WAKE_FD.compare_exchange(wake_fd, -1, Ordering::SeqCst, Ordering::SeqCst);
}
