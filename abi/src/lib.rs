//! The irqlab guest ABI, version [`boot_info::VERSION`].
//!
//! Everything a guest kernel needs to run under irqlab and everything the VMM promises it:
//! the boot info structure and where it lives, the guest-physical memory layout, the I/O ports
//! and MMIO windows of the devices, the vCPU limit, the interrupt vectors both sides name, the
//! debug-exit status values, the syscall numbers of the irqlab guest's own ring-3 ABI and the
//! format of its result lines.
//! `docs/guest-abi.md` is the prose version of this crate.
//!
//! The crate is `no_std` so the guest kernel uses the very same definitions. By default it
//! has no dependencies; its one optional dependency, `vm-memory` (the feature of the same
//! name, which only the VMM enables), lets the VMM write the structures into guest memory
//! directly.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod boot_info;
pub mod layout;
pub mod limits;
pub mod msi_source;
pub mod nic;
pub mod ports;
pub mod posted;
pub mod pvh;
pub mod results;
pub mod stats;
pub mod status;
pub mod syscall;
pub mod trace;
pub mod vectors;
