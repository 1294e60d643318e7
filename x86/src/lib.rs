//! x86-64 architectural structures, encoded and decoded by pure functions.
//!
//! Shared by the VMM (which builds the boot GDT and identity page tables) and the guest kernel
//! (which builds its own GDT, IDT and page tables), so that both agree bit for bit and the
//! encodings are unit-tested on the host. Every item cites the Intel SDM volume 3 section it
//! implements.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod error_code;
pub mod gate;
pub mod msi;
pub mod paging;
pub mod segment;
