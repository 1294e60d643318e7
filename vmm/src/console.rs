//! Where the guest's serial console goes: the VMM's stdout, a log file, an in-memory capture
//! (tests, benchmarks), in any combination.
//!
//! **stdout never blocks a vCPU.** The UART's bytes go into a bounded queue
//! ([`QUEUE_BYTES`]) that a `console` thread writes to stdout. When whoever reads stdout
//! stalls (`irqlab run | sleep 20`), the queue fills, further bytes are dropped and counted,
//! and the guest, the watchdog and signal handling go on. At the end of the run
//! [`ConsoleOut::flush_all`] waits for the queue to drain while the writer makes progress and
//! gives up after [`STALL_LIMIT`] without any; what is still queued then is counted as dropped
//! too. A closed stdout (EPIPE) drops the rest the same way. [`ConsoleOut::dropped`] is
//! reported at the end of the run.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// At most this many console bytes wait for stdout.
pub const QUEUE_BYTES: usize = 1 << 20;
/// `flush_all` gives up on a writer that made no progress for this long.
pub const STALL_LIMIT: Duration = Duration::from_secs(2);

/// The queue between the UART (any vCPU thread) and the console thread.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when bytes arrive (for the writer) and when the writer made progress or
    /// went idle (for `flush_all`).
    changed: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct QueueState {
    bytes: VecDeque<u8>,
    /// The writer holds a chunk it has not finished writing.
    writing: bool,
    /// stdout failed (closed pipe): everything from now on is dropped.
    broken: bool,
    /// The console is gone: the writer exits once the queue is empty.
    closed: bool,
}

impl Queue {
    /// Queues what fits; counts the rest as dropped.
    fn push(&self, buf: &[u8]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.broken {
            self.dropped.fetch_add(buf.len() as u64, Ordering::Relaxed);
            return;
        }
        let room = QUEUE_BYTES.saturating_sub(s.bytes.len());
        let (taken, refused) = buf.split_at(buf.len().min(room));
        s.bytes.extend(taken);
        self.dropped
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        drop(s);
        self.changed.notify_all();
    }

    /// The console thread: writes chunks to `out` until closed and drained.
    fn pump(&self, out: &mut dyn Write) {
        loop {
            let chunk: Vec<u8> = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                while s.bytes.is_empty() && !s.closed {
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.bytes.is_empty() {
                    return;
                }
                let n = s.bytes.len().min(64 << 10);
                s.writing = true;
                s.bytes.drain(..n).collect()
            };
            let result = out.write_all(&chunk).and_then(|()| out.flush());
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.writing = false;
            if result.is_err() {
                s.broken = true;
                let lost = chunk.len() + s.bytes.len();
                s.bytes.clear();
                self.dropped.fetch_add(lost as u64, Ordering::Relaxed);
            }
            drop(s);
            self.changed.notify_all();
        }
    }

    /// Waits until the writer has written everything, as long as it keeps making progress;
    /// what is left after [`STALL_LIMIT`] without progress is dropped. Returns whether
    /// everything was written.
    fn drain(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = (s.bytes.len(), Instant::now());
        while !s.bytes.is_empty() || s.writing {
            let (guard, _) = self
                .changed
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner());
            s = guard;
            if s.bytes.len() != last.0 {
                last = (s.bytes.len(), Instant::now());
            } else if last.1.elapsed() >= STALL_LIMIT {
                let lost = s.bytes.len();
                s.bytes.clear();
                s.broken = true;
                self.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                return false;
            }
        }
        true
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.changed.notify_all();
    }
}

/// The console output stream handed to the UART.
#[derive(Default)]
pub struct ConsoleOut {
    stdout: Option<Arc<Queue>>,
    file: Option<io::BufWriter<File>>,
    capture: Option<Arc<Mutex<Vec<u8>>>>,
}

impl ConsoleOut {
    /// A console that writes to stdout (through the `console` thread) when `stdout` is set.
    /// Fails only if the thread cannot be created.
    pub fn new(stdout: bool) -> io::Result<Self> {
        Self::with_writer(stdout.then(|| Box::new(io::stdout()) as Box<dyn Write + Send>))
    }

    /// [`ConsoleOut::new`] whose `console` thread first runs `on_start` (the sandbox
    /// installs the thread's seccomp filter there).
    pub fn new_with_start(
        stdout: bool,
        on_start: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> io::Result<Self> {
        Self::spawn(
            stdout.then(|| Box::new(io::stdout()) as Box<dyn Write + Send>),
            on_start,
        )
    }

    /// A console whose queued output goes to `out` (stdout in [`ConsoleOut::new`]; tests pass
    /// a stalled or failing writer).
    pub fn with_writer(out: Option<Box<dyn Write + Send>>) -> io::Result<Self> {
        Self::spawn(out, None)
    }

    fn spawn(
        out: Option<Box<dyn Write + Send>>,
        on_start: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> io::Result<Self> {
        let stdout = match out {
            Some(mut out) => {
                let queue = Arc::new(Queue::default());
                let q = queue.clone();
                std::thread::Builder::new()
                    .name("console".into())
                    .spawn(move || {
                        if let Some(start) = on_start {
                            start();
                        }
                        q.pump(&mut *out)
                    })?;
                Some(queue)
            }
            None => None,
        };
        Ok(ConsoleOut {
            stdout,
            file: None,
            capture: None,
        })
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

    /// Bytes that did not reach stdout: its reader stalled or closed it.
    pub fn dropped(&self) -> u64 {
        self.stdout
            .as_ref()
            .map_or(0, |q| q.dropped.load(Ordering::Relaxed))
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(q) = &self.stdout {
            q.push(buf);
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

    /// Per-byte flushes would cost a syscall per guest byte; the console thread writes as
    /// bytes arrive, and [`ConsoleOut::flush_all`] runs at the end.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ConsoleOut {
    /// Pushes everything buffered to its destination (called on every exit path); gives up on
    /// a stalled stdout after [`STALL_LIMIT`] without progress (the rest counts as dropped).
    pub fn flush_all(&mut self) -> io::Result<()> {
        if let Some(q) = &self.stdout {
            q.drain();
        }
        if let Some(f) = &mut self.file {
            f.flush()?;
        }
        Ok(())
    }
}

impl Drop for ConsoleOut {
    fn drop(&mut self) {
        if let Some(q) = &self.stdout {
            q.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that blocks until released, then records.
    struct Stalled(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);
    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_reader_never_blocks_the_writer_and_drops_are_counted() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut c =
            ConsoleOut::with_writer(Some(Box::new(Stalled(gate.clone(), got.clone())))).unwrap();
        // Three queues' worth while nothing is read: every write returns at once.
        let block = vec![b'x'; QUEUE_BYTES];
        for _ in 0..3 {
            c.write_all(&block).unwrap();
        }
        let dropped = c.dropped();
        // What the writer took before it blocked (at most one chunk) plus a full queue got in.
        assert!(dropped >= 2 * QUEUE_BYTES as u64 - (64 << 10), "{dropped}");
        assert!(dropped <= 2 * QUEUE_BYTES as u64, "{dropped}");
        // Released: everything that was queued comes out, in order, and nothing else.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        c.flush_all().unwrap();
        assert_eq!(
            got.lock().unwrap().len() as u64 + c.dropped(),
            3 * QUEUE_BYTES as u64
        );
    }

    #[test]
    fn flush_gives_up_on_a_reader_that_never_comes_back() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut c =
            ConsoleOut::with_writer(Some(Box::new(Stalled(gate.clone(), got.clone())))).unwrap();
        c.write_all(&vec![b'y'; 200 << 10]).unwrap();
        let started = Instant::now();
        c.flush_all().unwrap();
        assert!(
            started.elapsed() < STALL_LIMIT * 10,
            "flush_all must not hang"
        );
        assert!(c.dropped() > 0);
        // Release the writer so the thread ends.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_drops_and_counts_everything() {
        let mut c = ConsoleOut::with_writer(Some(Box::new(Closed))).unwrap();
        c.write_all(b"hello").unwrap();
        c.flush_all().unwrap();
        c.write_all(b"world").unwrap();
        c.flush_all().unwrap();
        assert_eq!(c.dropped(), 10);
    }

    #[test]
    fn everything_arrives_in_order_through_a_reader_that_keeps_up() {
        let gate = Arc::new((Mutex::new(true), Condvar::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut c = ConsoleOut::with_writer(Some(Box::new(Stalled(gate, got.clone())))).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        for chunk in data.chunks(7) {
            c.write_all(chunk).unwrap();
        }
        c.flush_all().unwrap();
        assert_eq!(*got.lock().unwrap(), data);
        assert_eq!(c.dropped(), 0);
    }
}
