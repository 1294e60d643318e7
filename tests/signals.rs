//! SIGHUP, SIGINT, SIGQUIT and SIGTERM at any moment end `irqlab run` with 128 + the signal's
//! number (129/130/131/143), one `irqlab:` line naming it, the terminal as it was, and a
//! complete trace — with stdin a pseudo-terminal (also the controlling terminal, so Ctrl-C and
//! Ctrl-\ typed into it, and the terminal hanging up, are tested too), a pipe held open, or
//! /dev/null.
//!
//! The moments are found by observation, never by timing: "setup" is as soon as
//! /proc/PID/status shows the four signals blocked (the first thing `irqlab run` does);
//! "run" is after the guest's banner line; "trace writing" is while irqlab is writing
//! `interrupts.jsonl` into a FIFO the test has shrunk to one page and does not read until the
//! signal is sent, so irqlab cannot get past it before the signal is pending.

mod common;
use common::*;
use irqlab::outcome::code;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;

/// A guest that runs far longer than any test (the watchdog ends it if a test goes wrong).
const LONG: &str = "run=timer timer=pit hz=100 ticks=100000";
/// A guest that ends by itself with status 0 after a few hundred traced interrupts.
const SHORT_TRACED: &str = "run=timer timer=pit hz=1000 ticks=300 tolerance=100";

fn check(rc: libc::c_int, what: &str) -> libc::c_int {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
    rc
}

/// A pseudo-terminal pair.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    // SAFETY: posix_openpt opens a new master; the result is checked.
    let m = check(
        unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) },
        "posix_openpt",
    );
    // SAFETY: `m` was just opened and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: `m` is a pty master.
    check(unsafe { libc::grantpt(m) }, "grantpt");
    // SAFETY: as above.
    check(unsafe { libc::unlockpt(m) }, "unlockpt");
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` is a writable buffer of the given length.
    let rc = unsafe { libc::ptsname_r(m, name.as_mut_ptr(), name.len()) };
    assert_eq!(rc, 0, "ptsname_r");
    // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
    let s = check(
        unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        },
        "open pty slave",
    );
    // SAFETY: `s` was just opened and is owned by nobody else.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Pty { master, slave }
}

fn termios(fd: &OwnedFd) -> libc::termios {
    // SAFETY: termios is plain data that tcgetattr fills in.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid termios for tcgetattr to write.
    check(
        unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) },
        "tcgetattr",
    );
    t
}

/// Every field of a termios, for comparing and printing.
fn termios_fields(t: &libc::termios) -> String {
    format!(
        "iflag={:#x} oflag={:#x} cflag={:#x} lflag={:#x} line={} cc={:?} ispeed={} ospeed={}",
        t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_line, t.c_cc, t.c_ispeed, t.c_ospeed
    )
}

#[derive(Clone, Copy, Debug)]
enum Input {
    /// A pseudo-terminal, also the child's controlling terminal (in a new session).
    Pty,
    /// A pipe whose write end the test holds open.
    Pipe,
    /// /dev/null.
    Null,
}

#[derive(Clone, Copy, Debug)]
enum Send {
    Hup,
    Int,
    Quit,
    Term,
    /// Ctrl-C typed into the terminal: the line discipline sends SIGINT.
    CtrlC,
    /// Ctrl-\ typed into the terminal: the line discipline sends SIGQUIT.
    CtrlBackslash,
}

impl Send {
    fn signo(self) -> i32 {
        match self {
            Send::Hup => libc::SIGHUP,
            Send::Int | Send::CtrlC => libc::SIGINT,
            Send::Quit | Send::CtrlBackslash => libc::SIGQUIT,
            Send::Term => libc::SIGTERM,
        }
    }
}

/// The signals irqlab handles: (number, name, exit code).
const STOP_SIGNALS: [(i32, &str, u8); 4] = [
    (libc::SIGHUP, "SIGHUP", code::SIGHUP),
    (libc::SIGINT, "SIGINT", code::SIGINT),
    (libc::SIGQUIT, "SIGQUIT", code::SIGQUIT),
    (libc::SIGTERM, "SIGTERM", code::SIGTERM),
];

/// A running irqlab and what the test holds for it.
struct Running {
    child: Child,
    pty: Option<Pty>,
    /// Keeps the stdin pipe open.
    _stdin_pipe: Option<OwnedFd>,
    /// The pty's settings before the child started.
    before: Option<libc::termios>,
    stdout_rx: mpsc::Receiver<Vec<u8>>,
    stdout: String,
    stderr: std::thread::JoinHandle<String>,
}

fn start(input: Input, args: &[&str]) -> Running {
    let mut cmd = irqlab();
    cmd.arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut pty, mut pipe, mut before) = (None, None, None);
    match input {
        Input::Pty => {
            let p = open_pty();
            before = Some(termios(&p.slave));
            cmd.stdin(Stdio::from(p.slave.try_clone().unwrap()));
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) < 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            pty = Some(p);
        }
        Input::Pipe => {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors.
            check(
                unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
                "pipe2",
            );
            // SAFETY: both were just created and are owned by nobody else.
            let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            cmd.stdin(Stdio::from(r));
            pipe = Some(w);
        }
        Input::Null => {
            cmd.stdin(Stdio::null());
        }
    }
    let mut child = cmd.spawn().expect("spawn irqlab");
    let mut out = child.stdout.take().unwrap();
    let (tx, stdout_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running {
        child,
        pty,
        _stdin_pipe: pipe,
        before,
        stdout_rx,
        stdout: String::new(),
        stderr,
    }
}

/// A PIT run that outlasts any test (until a signal ends it).
const LONG_PIT: &str = "run=timer timer=pit hz=1000 ticks=1000000 tolerance=100";

/// [`start`] under a pty with guest command line `cmdline`, traced into `dir`, 60 s watchdog.
fn start_traced(cmdline: &str, dir: &std::path::Path) -> Running {
    start(
        Input::Pty,
        &[
            "--cmdline",
            cmdline,
            "--trace",
            dir.to_str().unwrap(),
            "--timeout",
            "60",
        ],
    )
}

/// The signals blocked in a process's main thread (`SigBlk` of /proc/PID/status).
fn blocked_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

impl Running {
    /// Returns once irqlab has blocked SIGHUP, SIGINT, SIGQUIT and SIGTERM: the earliest
    /// moment at which it promises to handle them.
    fn wait_until_signals_blocked(&mut self) {
        let want = STOP_SIGNALS
            .iter()
            .fold(0u64, |m, (signo, _, _)| m | 1u64 << (signo - 1));
        while blocked_signals(self.child.id()) & want != want {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "irqlab ended ({status:?}) before blocking the stop signals: {}",
                    self.stdout
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Returns once the guest has written `needle` to the console.
    fn wait_for_output(&mut self, needle: &str) {
        while !self.stdout.contains(needle) {
            match self.stdout_rx.recv() {
                Ok(chunk) => self.stdout.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("guest output ended before {needle:?}: {}", self.stdout),
            }
        }
    }

    fn send(&self, how: Send) {
        match how {
            Send::CtrlC | Send::CtrlBackslash => {
                let pty = self.pty.as_ref().expect("typing needs the pty");
                let key: &[u8] = if matches!(how, Send::CtrlC) {
                    b"\x03"
                } else {
                    b"\x1c"
                };
                // SAFETY: writing one byte from a valid buffer to the pty master.
                let n = unsafe { libc::write(pty.master.as_raw_fd(), key.as_ptr().cast(), 1) };
                assert_eq!(n, 1, "write {how:?}: {}", std::io::Error::last_os_error());
            }
            _ => send_signal(&self.child, how.signo()),
        }
    }

    /// Asserts that irqlab has put the terminal in raw mode (a test of restoring it would
    /// prove nothing otherwise).
    fn assert_terminal_raw(&self) {
        let pty = self.pty.as_ref().expect("a raw terminal needs the pty");
        let raw = termios(&pty.slave);
        assert_eq!(raw.c_lflag & (libc::ICANON | libc::ECHO), 0, "not raw");
    }

    /// Sends `how` and checks that it stopped the run (see [`Running::expect_stopped_by`]).
    fn stop_with(self, how: Send, context: &str) -> (String, String) {
        self.send(how);
        self.expect_stopped_by(how.signo(), context)
    }

    /// Closes the terminal (the pty master), as when a terminal window is closed: the kernel
    /// hangs the terminal up and sends SIGHUP to irqlab, its session leader. The terminal is
    /// gone, so there are no settings left to compare afterwards.
    fn hang_up(&mut self) {
        let pty = self.pty.take().expect("hanging up needs the pty");
        self.before = None;
        drop(pty);
    }

    /// Waits for the exit and checks the signal's contract: exit code 128 + signo (never a
    /// death by signal), exactly one `irqlab:` line and it names the signal, no panic, and the
    /// terminal exactly as before. Returns (stdout, the irqlab: line).
    fn expect_stopped_by(mut self, signo: i32, context: &str) -> (String, String) {
        let status = self.child.wait().unwrap();
        while let Ok(chunk) = self.stdout_rx.recv() {
            self.stdout.push_str(&String::from_utf8_lossy(&chunk));
        }
        let err = self.stderr.join().unwrap();
        let ctx = format!(
            "{context}\nstatus: {status:?}\nstderr:\n{err}\nstdout:\n{}",
            self.stdout
        );
        assert_eq!(
            status.signal(),
            None,
            "irqlab was killed by a signal: {ctx}"
        );
        let (_, name, want) = STOP_SIGNALS
            .into_iter()
            .find(|s| s.0 == signo)
            .expect("a stop signal");
        assert_eq!(i32::from(want), 128 + signo);
        assert_eq!(status.code(), Some(i32::from(want)), "{ctx}");
        assert!(!err.contains("panicked"), "{ctx}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("irqlab: ")).collect();
        assert_eq!(lines.len(), 1, "one irqlab: line: {ctx}");
        assert!(
            lines[0].contains(&format!("stopped by signal {signo} ({name})")),
            "{ctx}"
        );
        if let (Some(pty), Some(before)) = (&self.pty, &self.before) {
            let after = termios(&pty.slave);
            assert_eq!(
                termios_fields(&after),
                termios_fields(before),
                "terminal settings changed: {ctx}"
            );
        }
        (self.stdout, lines[0].to_string())
    }
}

fn long_run(input: Input, vcpus: u8) -> Running {
    let vcpus = vcpus.to_string();
    start(
        input,
        &["--cmdline", LONG, "--vcpus", &vcpus, "--timeout", "60"],
    )
}

/// As soon as the signals are blocked (setup), 50 times, rotating SIGINT, SIGTERM and Ctrl-C,
/// with one and two vCPUs.
#[test]
fn pty_signal_during_setup_50_times() {
    if !kvm_or_skip("pty_signal_during_setup_50_times") {
        return;
    }
    for i in 0..50 {
        let how = [Send::Int, Send::Term, Send::CtrlC][i % 3];
        let mut r = long_run(Input::Pty, 1 + (i % 2) as u8);
        r.wait_until_signals_blocked();
        r.stop_with(how, &format!("repetition {i}, {how:?} during setup"));
    }
}

/// While the guest runs (on one, two and four vCPUs), with the terminal in raw mode.
#[test]
fn pty_signal_during_the_run() {
    if !kvm_or_skip("pty_signal_during_the_run") {
        return;
    }
    for (i, how) in [Send::Int, Send::Term, Send::CtrlC].into_iter().enumerate() {
        let mut r = long_run(Input::Pty, [1, 2, 4][i]);
        r.wait_for_output("irqlab guest");
        // The test would prove nothing if irqlab had not changed the terminal.
        r.assert_terminal_raw();
        r.stop_with(how, &format!("repetition {i}, {how:?} during the run"));
    }
}

/// SIGHUP and SIGQUIT — sent, and SIGQUIT typed as Ctrl-\ — during setup and during the run
/// (terminal raw), on one and two vCPUs: exit 129/131, one line naming the signal, the
/// terminal restored. Their default actions would kill irqlab with the terminal left raw.
#[test]
fn pty_sighup_and_sigquit_during_setup_and_the_run() {
    if !kvm_or_skip("pty_sighup_and_sigquit_during_setup_and_the_run") {
        return;
    }
    for i in 0..12 {
        let how = [Send::Hup, Send::Quit, Send::CtrlBackslash][i % 3];
        let during_setup = i < 6;
        let mut r = long_run(Input::Pty, 1 + (i % 2) as u8);
        if during_setup {
            r.wait_until_signals_blocked();
        } else {
            r.wait_for_output("irqlab guest");
            r.assert_terminal_raw();
        }
        r.stop_with(
            how,
            &format!(
                "repetition {i}, {how:?} during {}",
                if during_setup { "setup" } else { "the run" }
            ),
        );
    }
}

/// SIGHUP and SIGQUIT with stdin a pipe or /dev/null (no terminal to restore).
#[test]
fn pipe_and_null_stdin_sighup_and_sigquit() {
    if !kvm_or_skip("pipe_and_null_stdin_sighup_and_sigquit") {
        return;
    }
    for (i, input) in [Input::Pipe, Input::Pipe, Input::Null, Input::Null]
        .into_iter()
        .enumerate()
    {
        let how = [Send::Hup, Send::Quit][i % 2];
        let mut r = long_run(input, 1);
        r.wait_for_output("irqlab guest");
        r.stop_with(how, &format!("{how:?}, stdin {input:?}"));
    }
}

/// The terminal goes away mid-run (its window is closed: the pty master is closed), with
/// tracing on: the hangup's SIGHUP ends the run with 129 and one line, and the trace is
/// complete.
#[test]
fn pty_hangup_ends_a_traced_run_with_129_and_a_complete_trace() {
    if !kvm_or_skip("pty_hangup_ends_a_traced_run_with_129_and_a_complete_trace") {
        return;
    }
    let dir = scratch("sig-hangup").join("trace");
    let mut r = start_traced(LONG_PIT, &dir);
    r.wait_for_output("PASS pit-latch");
    r.hang_up();
    let (_, line) = r.expect_stopped_by(libc::SIGHUP, "terminal hung up during a traced run");
    assert!(!line.contains("already ended"), "{line}");
    let interrupts = std::fs::read_to_string(dir.join("interrupts.jsonl")).unwrap();
    assert_trace_complete(&dir, &interrupts);
}

/// With stdin `input` (named `stdin` in failure messages), SIGINT and SIGTERM in turn, on one
/// and two vCPUs: four times during setup, twice during the run.
fn signal_during_setup_and_run(input: Input, stdin: &str) {
    for i in 0..6 {
        let how = [Send::Int, Send::Term][i % 2];
        let mut r = long_run(input, 1 + (i % 2) as u8);
        if i < 4 {
            r.wait_until_signals_blocked();
        } else {
            r.wait_for_output("irqlab guest");
        }
        r.stop_with(how, &format!("repetition {i}, {how:?}, stdin {stdin}"));
    }
}

#[test]
fn pipe_stdin_signal_during_setup_and_run() {
    if !kvm_or_skip("pipe_stdin_signal_during_setup_and_run") {
        return;
    }
    signal_during_setup_and_run(Input::Pipe, "a pipe");
}

#[test]
fn null_stdin_signal_during_setup_and_run() {
    if !kvm_or_skip("null_stdin_signal_during_setup_and_run") {
        return;
    }
    signal_during_setup_and_run(Input::Null, "/dev/null");
}

/// A trace directory whose `interrupts.jsonl` is a one-page FIFO, opened for reading (without
/// blocking) so irqlab's open succeeds and its writes stall once the page is full.
fn fifo_trace_dir(name: &str) -> (std::path::PathBuf, OwnedFd) {
    let dir = scratch(name).join("trace");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = std::ffi::CString::new(dir.join("interrupts.jsonl").to_str().unwrap()).unwrap();
    // SAFETY: `fifo` is a NUL-terminated path.
    check(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, "mkfifo");
    // SAFETY: as above; a non-blocking read open of a FIFO succeeds without a writer.
    let fd = check(
        unsafe {
            libc::open(
                fifo.as_ptr(),
                libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        },
        "open fifo",
    );
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETPIPE_SZ on a FIFO this process opened.
    check(
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) },
        "F_SETPIPE_SZ",
    );
    (dir, fd)
}

/// Blocks until the FIFO has data (irqlab is writing `interrupts.jsonl`) or its writer closed
/// it. With `child`, fails if irqlab ends without ever opening it.
fn wait_readable(fd: &OwnedFd, mut child: Option<&mut Running>) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd. The timeout only paces the check on the child below.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if n > 0 {
            return;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
        }
        if let Some(r) = child.as_deref_mut() {
            if let Some(status) = r.child.try_wait().unwrap() {
                panic!("irqlab ended ({status:?}) before writing the trace");
            }
        }
    }
}

/// Everything irqlab writes into the FIFO, up to its close.
fn drain(fd: OwnedFd) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        wait_readable(&fd, None);
        // SAFETY: reading into a buffer of buf.len() bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => break,
            n if n > 0 => data.extend_from_slice(&buf[..n as usize]),
            _ => {
                let e = std::io::Error::last_os_error();
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ),
                    "read fifo: {e}"
                );
            }
        }
    }
    String::from_utf8(data).unwrap()
}

/// The trace is complete: every record parses, and so do the summary and the Chrome trace.
fn assert_trace_complete(dir: &Path, interrupts: &str) {
    for l in interrupts.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
    for f in ["summary.json", "trace.json"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    for l in std::fs::read_to_string(dir.join("exits.jsonl"))
        .unwrap()
        .lines()
    {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

/// The guest exits by itself (trace directory `scratch_name`); `how` arrives while the trace
/// is written. The signal decides the exit code, the line says how the run had ended, and the
/// trace is complete. `context` names the case in failure messages.
fn signal_while_the_trace_is_written_after_the_guest_exited(
    how: Send,
    scratch_name: &str,
    context: &str,
) {
    let (dir, fifo) = fifo_trace_dir(scratch_name);
    let mut r = start_traced(SHORT_TRACED, &dir);
    wait_readable(&fifo, Some(&mut r));
    r.send(how);
    let interrupts = drain(fifo);
    // More than the FIFO's page: irqlab could not finish the trace before the test read it,
    // so the signal was pending before the run's end was reported.
    assert!(interrupts.len() > 4096, "{} bytes", interrupts.len());
    let (_, line) = r.expect_stopped_by(how.signo(), context);
    assert!(line.contains("the run had already ended: "), "{line}");
    assert_trace_complete(&dir, &interrupts);
}

/// The guest exits by itself; SIGTERM arrives while the trace is written. The signal decides
/// the exit code and the line says how the run had ended.
#[test]
fn pty_sigterm_while_the_trace_is_written_after_the_guest_exited() {
    if !kvm_or_skip("pty_sigterm_while_the_trace_is_written_after_the_guest_exited") {
        return;
    }
    signal_while_the_trace_is_written_after_the_guest_exited(
        Send::Term,
        "sig-trace-exit",
        "SIGTERM during trace writing",
    );
}

/// As above with SIGHUP and SIGQUIT: either, arriving while the trace is written after the
/// guest exited, decides the exit code (129/131), and the trace is complete.
#[test]
fn pty_sighup_or_sigquit_while_the_trace_is_written_after_the_guest_exited() {
    if !kvm_or_skip("pty_sighup_or_sigquit_while_the_trace_is_written_after_the_guest_exited") {
        return;
    }
    for how in [Send::Hup, Send::Quit] {
        signal_while_the_trace_is_written_after_the_guest_exited(
            how,
            &format!("sig-trace-exit-{how:?}"),
            &format!("{how:?} during trace writing"),
        );
    }
}

/// Ctrl-C stops the guest; SIGTERM arrives while the trace is written: the first signal is
/// the outcome, and the second does not kill irqlab.
#[test]
fn pty_second_signal_while_the_trace_is_written() {
    if !kvm_or_skip("pty_second_signal_while_the_trace_is_written") {
        return;
    }
    let (dir, fifo) = fifo_trace_dir("sig-trace-twice");
    let mut r = start_traced(LONG_PIT, &dir);
    r.wait_for_output("PASS pit-latch");
    r.send(Send::CtrlC);
    // Whether this lands while the trace is written (it does when there is more than a page
    // of records) or after, the first signal is the outcome.
    wait_readable(&fifo, Some(&mut r));
    r.send(Send::Term);
    let interrupts = drain(fifo);
    let (_, line) = r.expect_stopped_by(libc::SIGINT, "Ctrl-C, then SIGTERM during trace writing");
    assert!(!line.contains("already ended"), "{line}");
    assert_trace_complete(&dir, &interrupts);
}
