//! Why the sandbox could not be set up.

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
