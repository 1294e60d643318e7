//! The MSI source's registers under any sequence (count and rate kept at 0 so no run sleeps).
#![no_main]

mod common;
use common::{access, Accept, Op};
use irqlab_devices::msi_source::MsiSource;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|ops: Vec<Op>| {
    let mut dev = MsiSource::new(Arc::new(Accept));
    for op in ops.iter().take(256) {
        if let Op::Write { offset: 0x10..=0x17, .. } = op {
            continue;
        }
        access(&mut dev, op, irqlab_abi::msi_source::WINDOW);
    }
    dev.shutdown();
});
