//! Ending a run by construction: the stop signals, the terminal, and the vCPU threads.
//!
//! * [`StopSignals`] blocks the stop signals ([`STOP_SIGNALS`]: SIGHUP, SIGINT, SIGQUIT,
//!   SIGTERM) in the calling thread and receives them through a signalfd. Threads inherit the
//!   mask of the thread that creates them, so when it is taken while the process has one
//!   thread (the CLI takes it first thing), no thread ever has the signals unblocked and a
//!   signal can only end up in the signalfd: it can no longer kill the process with its
//!   default action while, say, the stdin thread sits in `read`. Dropping it restores the
//!   previous mask (on every path: early `?` returns, panics).
//! * [`Session`] is what `irqlab run` holds for its whole life: the stop signals first, then
//!   the terminal in raw mode ([`RawMode`]); dropped the other way round, so the terminal is
//!   always restored while the signals are still blocked.
//! * [`VcpuThreads`] owns the vCPU threads. [`VcpuThreads::stop`] stops them as Firecracker
//!   does: set the stop flag, set `immediate_exit` in each vCPU's `kvm_run` (through a second
//!   mapping of it, from a duplicate of the vCPU fd), fence, kick the thread with
//!   [`kick_signal`], and wait — with a deadline — for the thread to acknowledge by exiting.
//!   Dropping `VcpuThreads` does the same, so an early return after the threads were spawned
//!   cannot leave them running.
//!
//! Why the kick cannot be lost: the stop flag is set before `immediate_exit` and the signal.
//! A vCPU thread checks the flag before every `KVM_RUN`. If it checked before the flag was set,
//! `KVM_RUN` either has not started yet — then `immediate_exit` makes it return `EINTR` at once
//! — or it is running, and the signal makes it return `EINTR`. Either way the thread clears
//! `immediate_exit`, loops back to the flag (set before `immediate_exit`, so it is seen) and
//! returns. (Firecracker's `VcpuHandle` sets `immediate_exit` the same way, through a copy of
//! the vCPU fd; the vCPU fd itself moves into its thread.)

use crate::stdin::RawMode;
use crate::vcpu::{kick_signal, Vcpu};
use kvm_ioctls::{VcpuFd, VmFd};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::signal::Killable;

/// The signals that stop a run, each ending it with exit code 128 + its number: SIGHUP (the
/// terminal was closed: 129), SIGINT (Ctrl-C: 130), SIGQUIT (`Ctrl-\`: 131), SIGTERM (143).
/// Left to their default actions they would kill the process with the terminal still raw, the
/// trace unfinished and (SIGQUIT) a core dump.
pub const STOP_SIGNALS: [i32; 4] = [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

/// The stop signals ([`STOP_SIGNALS`]) blocked in this thread (and every thread it creates
/// from now on), and a signalfd that receives them. Dropping it restores the signal mask it
/// found.
pub struct StopSignals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl StopSignals {
    /// Blocks the stop signals in the calling thread and opens the signalfd.
    ///
    /// Call it before the process creates any thread: a thread created earlier keeps the
    /// signals unblocked, and the kernel may deliver a process-directed signal to it (default
    /// action: the process dies). Nested use is fine: an inner guard finds the signals
    /// already blocked and leaves them blocked when dropped.
    pub fn block() -> std::io::Result<StopSignals> {
        let set = stop_set();
        // SAFETY: sigset_t is plain data; pthread_sigmask fills it in below.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid sigset_t values.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: `old` came from pthread_sigmask just above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
            return Err(e);
        }
        // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(StopSignals { fd, old })
    }

    /// The signalfd (readable when a signal is pending; read it with [`read_signal`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Takes every pending stop signal and returns one of them (`None` when none is pending).
    /// When several are pending the kernel hands out the lowest number first (SIGHUP, then
    /// SIGINT, SIGQUIT, SIGTERM).
    pub fn take_pending(&self) -> Option<i32> {
        let first = read_signal(self.fd());
        while read_signal(self.fd()).is_some() {}
        first
    }

    /// Keeps the signals blocked for the rest of the process's life: for a program that is
    /// about to exit and has already reported how it ended. A signal arriving from now on is
    /// discarded when the process exits, instead of killing it (with its default action) after
    /// it printed an outcome and chose an exit code that the kill would then contradict.
    pub fn keep_blocked_until_exit(self) {
        std::mem::forget(self);
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        // SAFETY: `old` came from pthread_sigmask in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for signo in STOP_SIGNALS {
        // SAFETY: `set` is a valid sigset_t and `signo` a valid signal number.
        unsafe { libc::sigaddset(&mut set, signo) };
    }
    set
}

/// Reads one signal from a (non-blocking) signalfd: its number, or `None` when none is pending.
pub fn read_signal(fd: BorrowedFd<'_>) -> Option<i32> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: `info` is a valid, writable buffer of `size` bytes.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        };
        if n == size as isize {
            return Some(info.ssi_signo as i32);
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

/// What `irqlab run` holds from its first instruction to its exit code: the stop signals
/// blocked (taken first, while the process has one thread), then the terminal in raw mode if
/// stdin is one. Fields drop in declaration order: the terminal is restored first, while the
/// signals are still blocked, so no signal can end the process with the terminal left raw.
pub struct Session {
    raw: Option<RawMode>,
    signals: StopSignals,
}

impl Session {
    /// Blocks the stop signals, then puts a terminal stdin in raw mode.
    pub fn start() -> std::io::Result<Session> {
        let signals = StopSignals::block()?;
        let raw = RawMode::enable_if_tty();
        Ok(Session { raw, signals })
    }

    /// See [`StopSignals::take_pending`].
    pub fn take_pending(&self) -> Option<i32> {
        self.signals.take_pending()
    }

    /// Restores the terminal and keeps the signals blocked until the process exits (see
    /// [`StopSignals::keep_blocked_until_exit`]). Call it once the outcome is printed.
    pub fn end(self) {
        let Session { raw, signals } = self;
        drop(raw);
        signals.keep_blocked_until_exit();
    }
}

/// How long [`VcpuThreads::stop`] waits for all vCPU threads to acknowledge the stop. A thread
/// in `KVM_RUN` or handling an exit leaves within microseconds; one that has not after this
/// long is blocked outside KVM (e.g. writing the console to a stdout nobody reads).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

struct VcpuThread {
    id: u8,
    handle: JoinHandle<()>,
    /// Disconnects when the thread's body returns or unwinds: the acknowledgement.
    done: mpsc::Receiver<()>,
    /// The same vCPU through a duplicate fd: its own mapping of the same `kvm_run`.
    kick: VcpuFd,
}

/// What [`VcpuThreads::stop`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    /// vCPUs whose thread panicked.
    pub panicked: Vec<u8>,
    /// vCPUs whose thread did not exit within [`STOP_TIMEOUT`] (left running, detached).
    pub stuck: Vec<u8>,
}

/// The running vCPU threads. Dropping it stops and joins them (see [`VcpuThreads::stop`]).
pub struct VcpuThreads {
    threads: Vec<VcpuThread>,
    request_stop: Box<dyn Fn() + Send + Sync>,
}

impl VcpuThreads {
    /// No threads yet. `request_stop` sets the flag the vCPU threads check before each
    /// `KVM_RUN` (it must not need an outcome: an early return has none).
    pub fn new(request_stop: impl Fn() + Send + Sync + 'static) -> VcpuThreads {
        VcpuThreads {
            threads: Vec::new(),
            request_stop: Box::new(request_stop),
        }
    }

    /// Runs `body(vcpu)` on a new thread named `vcpuN`. The kick signal handler must be
    /// installed ([`crate::vcpu::install_kick_handler`]).
    pub fn spawn(
        &mut self,
        vm: &VmFd,
        vcpu: Vcpu,
        body: impl FnOnce(Vcpu) + Send + 'static,
    ) -> std::io::Result<()> {
        let id = vcpu.id;
        // SAFETY: duplicating a descriptor this process owns; the result is checked.
        let dup = unsafe { libc::dup(vcpu.fd.as_raw_fd()) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `dup` is a valid vCPU descriptor that nothing else owns; the VcpuFd built on
        // it maps the vCPU's kvm_run a second time and is only used to set `immediate_exit`.
        let kick = unsafe { vm.create_vcpu_from_rawfd(dup) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        let (ack, done) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                // Dropped when `body` returns or unwinds: that disconnects `done`.
                let _ack = ack;
                body(vcpu);
            })?;
        self.threads.push(VcpuThread {
            id,
            handle,
            done,
            kick,
        });
        Ok(())
    }

    /// Stops every thread and waits for each to exit (all within [`STOP_TIMEOUT`]); joins the
    /// ones that did. Idempotent: a second call finds no threads.
    pub fn stop(&mut self) -> Stopped {
        let mut stopped = Stopped::default();
        if self.threads.is_empty() {
            return stopped;
        }
        (self.request_stop)();
        for t in &mut self.threads {
            t.kick.set_kvm_immediate_exit(1);
        }
        // The flag and `immediate_exit` are visible before any kick lands.
        fence(Ordering::Release);
        for t in &self.threads {
            // ESRCH only means the thread has already returned.
            let _ = t.handle.kill(kick_signal());
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for t in self.threads.drain(..) {
            let acked = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match t.done.recv_timeout(left) {
                    Err(RecvTimeoutError::Disconnected) => break true,
                    Err(RecvTimeoutError::Timeout) => break false,
                    // Nothing is ever sent; keep waiting for the disconnect.
                    Ok(()) => continue,
                }
            };
            if !acked {
                // Detached: it holds only Arcs, and ends with the process.
                stopped.stuck.push(t.id);
            } else if t.handle.join().is_err() {
                stopped.panicked.push(t.id);
            }
        }
        stopped
    }
}

impl Drop for VcpuThreads {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn blocked(signo: i32) -> bool {
        // SAFETY: sigset_t is plain data that pthread_sigmask fills in.
        let mut cur: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new set only reads the current mask into `cur`.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) };
        // SAFETY: `cur` is a valid sigset_t.
        unsafe { libc::sigismember(&cur, signo) == 1 }
    }

    fn stop_signals_blocked() -> [bool; 4] {
        STOP_SIGNALS.map(blocked)
    }

    #[test]
    fn signals_are_blocked_read_from_the_fd_and_the_mask_restored() {
        let before = stop_signals_blocked();
        let outer = StopSignals::block().unwrap();
        assert_eq!(stop_signals_blocked(), [true; 4]);
        let inner = StopSignals::block().unwrap();
        // Thread-directed, so only this thread (and its signalfd) sees it.
        // SAFETY: signalling the calling thread, which has the signal blocked.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGTERM) };
        // SAFETY: as above.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGINT) };
        // Either descriptor reads it; the first signal is returned, the rest consumed.
        assert_eq!(inner.take_pending(), Some(libc::SIGINT));
        assert_eq!(outer.take_pending(), None);
        // SIGHUP and SIGQUIT too: read from the fd, never their default actions.
        // SAFETY: as above.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGQUIT) };
        assert_eq!(inner.take_pending(), Some(libc::SIGQUIT));
        // SAFETY: as above.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) };
        assert_eq!(outer.take_pending(), Some(libc::SIGHUP));
        drop(inner);
        assert_eq!(
            stop_signals_blocked(),
            [true; 4],
            "the inner guard restores the outer mask"
        );
        drop(outer);
        assert_eq!(stop_signals_blocked(), before);
    }

    /// A vCPU to hand to `VcpuThreads` (its thread never runs it), or `None` without KVM.
    fn vcpus(n: u8) -> Option<(VmFd, Vec<Vcpu>)> {
        let vm = kvm_ioctls::Kvm::new().ok()?.create_vm().ok()?;
        let v = (0..n)
            .map(|id| Vcpu {
                id,
                fd: vm.create_vcpu(id.into()).unwrap(),
                tracer: None,
            })
            .collect();
        Some((vm, v))
    }

    #[test]
    fn dropping_the_threads_stops_and_joins_them() {
        crate::vcpu::install_kick_handler().unwrap();
        let Some((vm, list)) = vcpus(3) else {
            println!("SKIP: no /dev/kvm");
            return;
        };
        let flag = Arc::new(AtomicBool::new(false));
        let exited = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut threads = VcpuThreads::new({
            let flag = flag.clone();
            move || flag.store(true, Ordering::SeqCst)
        });
        for v in list {
            let (flag, exited) = (flag.clone(), exited.clone());
            threads
                .spawn(&vm, v, move |_| {
                    while !flag.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    exited.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap();
        }
        // As on an early `?` return: no explicit stop.
        drop(threads);
        assert!(flag.load(Ordering::SeqCst));
        assert_eq!(
            exited.load(Ordering::SeqCst),
            3,
            "joined before drop returned"
        );
    }

    #[test]
    fn a_panicking_thread_is_reported_and_stop_is_idempotent() {
        crate::vcpu::install_kick_handler().unwrap();
        let Some((vm, list)) = vcpus(2) else {
            println!("SKIP: no /dev/kvm");
            return;
        };
        let mut threads = VcpuThreads::new(|| {});
        for v in list {
            threads
                .spawn(&vm, v, |v| {
                    if v.id == 1 {
                        panic!("vCPU 1 test panic");
                    }
                })
                .unwrap();
        }
        let stopped = threads.stop();
        assert_eq!(
            stopped,
            Stopped {
                panicked: vec![1],
                stuck: vec![]
            }
        );
        assert_eq!(threads.stop(), Stopped::default());
    }
}
