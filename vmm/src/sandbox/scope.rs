//! What a run's sandbox covers: which threads are confined ([`SandboxScope`]) and the facts
//! about the run their filters are built from ([`RunFacts`]).

use std::os::fd::RawFd;

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
