//! The kinds of irqlab threads, each with its own filter, and the identity a thread records
//! when it installs one (kind and vCPU index), by which a violation names its thread.

use std::cell::Cell;

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
    /// The NIC's worker (`irqlab_devices::nic`).
    Nic,
    /// The trace writer (`crate::trace::stream`), with tracing on.
    TraceWriter,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 7] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Console,
        ThreadKind::Stdin,
        ThreadKind::MsiSource,
        ThreadKind::Nic,
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
            ThreadKind::Nic => "nic",
            ThreadKind::TraceWriter => "trace-writer",
        }
    }

    pub(super) fn from_name(s: &str) -> Option<ThreadKind> {
        ThreadKind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// Thread identity: kind << 8 | index.
pub(super) const NOBODY: u32 = u32::MAX;

thread_local! {
    /// Set when the thread installs its filter; read by the SIGSYS handler. A `const`
    /// thread-local without a destructor is a plain TLS slot: reading it is signal-safe.
    pub(super) static WHO: Cell<u32> = const { Cell::new(NOBODY) };
}

/// How reports name the thread with identity `who` (`vcpu0`, `console`, ...).
pub(super) fn thread_name(who: u32) -> String {
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
