//! Where the guest's serial console goes: the VMM's stdout, a log file, an in-memory capture
//! (tests, benchmarks), in any combination.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// The console output stream handed to the UART.
#[derive(Default)]
pub struct ConsoleOut {
    stdout: bool,
    file: Option<io::BufWriter<File>>,
    capture: Option<Arc<Mutex<Vec<u8>>>>,
}

impl ConsoleOut {
    /// A console that writes to stdout when `stdout` is set.
    pub fn new(stdout: bool) -> Self {
        ConsoleOut {
            stdout,
            ..Default::default()
        }
    }

    /// Also writes everything to `file`.
    pub fn with_file(mut self, file: File) -> Self {
        self.file = Some(io::BufWriter::new(file));
        self
    }

    /// Also appends everything to `buf`.
    pub fn with_capture(mut self, buf: Arc<Mutex<Vec<u8>>>) -> Self {
        self.capture = Some(buf);
        self
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stdout {
            io::stdout().lock().write_all(buf)?;
        }
        if let Some(f) = &mut self.file {
            f.write_all(buf)?;
        }
        if let Some(c) = &self.capture {
            c.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    /// Flushing stdout per byte would cost a syscall per guest byte; line buffering on stdout
    /// and the final flush at exit are enough.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ConsoleOut {
    /// Pushes everything buffered to its destination (called on every exit path).
    pub fn flush_all(&mut self) -> io::Result<()> {
        if self.stdout {
            io::stdout().flush()?;
        }
        if let Some(f) = &mut self.file {
            f.flush()?;
        }
        Ok(())
    }
}
