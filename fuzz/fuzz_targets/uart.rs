//! The 16550 under any register sequence and received bytes; its interrupt pin must follow
//! the pending causes.
#![no_main]

mod common;
use common::{access, Op};
use irqlab_devices::uart::{Uart, WINDOW};
use irqlab_devices::IrqLine;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Pin(AtomicBool);
impl IrqLine for Pin {
    fn set_level(&self, level: bool) {
        self.0.store(level, Ordering::Relaxed);
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let pin = Arc::new(Pin::default());
    let mut uart = Uart::new(pin.clone(), Vec::new());
    for op in ops.iter().take(512) {
        match op {
            Op::Event(_, v) => {
                uart.receive(&v.to_le_bytes());
            }
            op => access(&mut uart, op, WINDOW),
        }
        assert_eq!(pin.0.load(Ordering::Relaxed), uart.interrupt_pending());
    }
});
