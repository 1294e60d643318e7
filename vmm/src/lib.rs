//! irqlab: a KVM interrupt lab.
//!
//! The library behind the `irqlab` binary: it creates a VM on /dev/kvm, puts the boot CPU in
//! long mode itself, loads a guest kernel, runs one thread per vCPU, handles exits against the
//! device models in `irqlab-devices`, and reports how the run ended.
#![deny(missing_docs)]

pub mod arch;
pub mod bench;
pub mod boot;
pub mod config;
pub mod console;
pub mod cpu_state;
pub mod device_manager;
pub mod entry;
pub mod host;
pub mod input;
pub mod interrupts;
pub mod kvm_stats;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod outcome;
pub mod pit_timer;
pub mod ram_layout;
pub mod sandbox;
pub mod stats;
pub mod stdin;
pub mod stop;
pub mod syscall_names;
pub mod trace;
pub mod vcpu;
pub mod vm;

/// The irqlab guest kernel, built by `build.rs` and embedded so `irqlab run` works with no
/// arguments.
pub const BUILTIN_GUEST: &[u8] = include_bytes!(env!("IRQLAB_GUEST_ELF"));
