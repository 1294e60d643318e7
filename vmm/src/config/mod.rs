//! Experiment configuration: the TOML file format, command-line flags, and validation.
//!
//! A config file and the command line each give a [`ConfigLayer`] whose values remember
//! where they were given ([`Sourced`]); the flags' layer goes on top of the file's
//! ([`ConfigLayer::then`]) and the result is validated once ([`ConfigLayer::validate`])
//! into the [`VmConfig`] the VMM runs from.
//!
//! Every key is documented in the README's "Config reference". Unknown keys are errors, and
//! every error names the file, line and column (or the command-line flag) it comes from.
//!
//! Modules: `origin` (where a value came from), `error`, `vm` (the validated result, its
//! defaults and limits), `layer` (parsing and stacking), `validate`, `inputs` (the initrd and
//! modules checked against the kernel).

mod error;
mod inputs;
mod layer;
mod origin;
mod validate;
mod vm;

pub use crate::entry::BootProtocol;
pub use error::ConfigError;
pub use layer::{ConfigLayer, TraceLayer};
pub use origin::{Origin, Sourced};
pub use vm::{
    InputOrigins, IrqchipMode, KernelSource, VmConfig, CONFIG_FILE_MAX, DEFAULT_CMDLINE,
    DEFAULT_MEM_MIB, DEFAULT_TIMEOUT_SECS, MEM_MIB_MAX, MEM_MIB_MIN, TIMEOUT_SECS_MAX, VCPUS_MAX,
};
