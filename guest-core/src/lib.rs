//! The irqlab guest kernel's pure logic: everything that needs no hardware, no globals and
//! no console, so it gets host unit tests (`cargo test -p irqlab-guest-core`).
//!
//! The guest (`guest/`) is compiled for bare metal without SSE and links no test harness;
//! this crate is a member of the host workspace and a path dependency of the guest. Code the
//! guest calls must therefore stay SSE-free: no floating point, and no integer formatting
//! through `core::fmt` (use [`irqlab_abi::results::Dec`] if anything is ever printed).
//!
//! - [`cmdline`]: the `key=value` kernel command line and the boot-info rejection reasons.
//! - [`runs`]: the `run=` list of experiments, parsed once into a bit set.
//! - [`stats`]: min / median / p99 of the cost experiments' samples.
//! - [`sched`]: the round-robin choice and the fairness judgement of `run=sched`.
//! - [`signal`]: signal numbers, sets, default actions and `sigreturn`'s checks.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod cmdline;
pub mod runs;
pub mod sched;
pub mod signal;
pub mod stats;
