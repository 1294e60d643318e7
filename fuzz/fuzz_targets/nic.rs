//! The NIC's registers under any sequence: any ring, tail, rate, count, mask, ITR and mode;
//! a run still going at the end is ended by the shutdown. Descriptors go to a small RAM.
#![no_main]

mod common;
use common::{access, Accept, Op};
use irqlab_devices::msi_source::DmaWriter;
use irqlab_devices::nic::Nic;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

/// 64 KiB of RAM that keeps nothing.
struct Ram;
impl DmaWriter for Ram {
    fn write_u32(&self, gpa: u64, _: u32) -> bool {
        gpa < 0x10000
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut dev = Nic::new(Arc::new(Accept), Arc::new(Ram));
    for op in ops.iter().take(256) {
        access(&mut dev, op, irqlab_abi::nic::WINDOW);
    }
    dev.shutdown();
    let c = dev.counters();
    assert_eq!(c.sent, c.delivered.wrapping_add(c.dropped));
});
