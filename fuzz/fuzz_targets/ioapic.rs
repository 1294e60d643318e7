//! The IO-APIC under any register sequence, pin levels and EOIs.
#![no_main]

mod common;
use common::{access, Accept, Op};
use irqlab_devices::ioapic::{IoApic, WINDOW};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|ops: Vec<Op>| {
    let mut io = IoApic::new(Arc::new(Accept));
    for op in ops.iter().take(512) {
        match op {
            Op::Event(k, v) if k % 2 == 0 => io.set_irq((*v % 32) as usize, v & 1 == 1),
            Op::Event(_, v) => io.end_of_interrupt(*v as u8),
            op => access(&mut io, op, WINDOW),
        }
    }
    let _ = io.routes();
});
