//! Host stdin feeds COM1's receive FIFO.
//!
//! A thread reads stdin and queues the bytes into the UART (raising its RX interrupt when the
//! guest enabled it). When the FIFO is full it retries every millisecond, so nothing typed or
//! piped is dropped. End of input is delivered as one EOT byte (0x04, what a terminal sends
//! for Ctrl-D), the only way a 16550 can tell a guest "no more data".
//!
//! When stdin is a terminal, [`RawMode`] switches it to raw mode (no line buffering, no local
//! echo: the guest echoes) except that signals stay on, so Ctrl-C still stops irqlab; dropping
//! it restores the saved settings on every exit path of `irqlab run`.

use crate::console::ConsoleOut;
use irqlab_devices::uart::Uart;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// End-of-input marker queued after the last byte of stdin.
pub const EOT: u8 = 0x04;

/// Terminal settings to restore.
pub struct RawMode(libc::termios);

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal.
    pub fn enable_if_tty() -> Option<RawMode> {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return None;
        }
        // SAFETY: termios is plain data that tcgetattr fills in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid termios for tcgetattr to write.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        raw.c_lflag |= libc::ISIG;
        raw.c_oflag |= libc::OPOST | libc::ONLCR;
        // SAFETY: `raw` is a valid termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable_if_tty`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0) };
    }
}

/// Starts the feeder thread (detached: a read on stdin cannot be interrupted portably, and
/// the thread only holds a reference to the UART). It first runs `on_start` (the sandbox
/// installs the thread's seccomp filter there).
pub fn spawn_feeder(
    uart: Arc<Mutex<Uart<ConsoleOut>>>,
    on_start: Option<Arc<dyn Fn() + Send + Sync>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            if let Some(start) = on_start {
                start();
            }
            let mut buf = [0u8; 256];
            loop {
                // SAFETY: reading into a buffer of buf.len() bytes.
                let n =
                    unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
                let chunk: &[u8] = match n {
                    n if n > 0 => &buf[..n as usize],
                    0 => &[EOT],
                    _ if std::io::Error::last_os_error().kind()
                        == std::io::ErrorKind::Interrupted =>
                    {
                        continue
                    }
                    _ => &[EOT],
                };
                let mut rest = chunk;
                while !rest.is_empty() {
                    let taken = uart.lock().unwrap_or_else(|p| p.into_inner()).receive(rest);
                    rest = &rest[taken..];
                    if !rest.is_empty() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                if n <= 0 {
                    return;
                }
            }
        })
        .map(|_| ())
}
