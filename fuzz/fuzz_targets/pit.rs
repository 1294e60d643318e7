//! The 8254 under any register sequence, gate changes, timer expiries and clock steps.
#![no_main]

mod common;
use common::{access, Op};
use irqlab_devices::pit::{Clock, Pit, PitTimer};
use irqlab_devices::NoIrq;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct StepClock(Arc<AtomicU64>);
impl Clock for StepClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
struct NoTimer;
impl PitTimer for NoTimer {
    fn arm(&mut self, _: u64, _: u64) {}
    fn disarm(&mut self) {}
}

fuzz_target!(|ops: Vec<Op>| {
    let now = Arc::new(AtomicU64::new(0));
    let mut pit = Pit::new(Box::new(StepClock(now.clone())), Box::new(NoTimer), Arc::new(NoIrq));
    for op in ops.iter().take(512) {
        match op {
            Op::Event(k, v) if k % 3 == 0 => pit.set_gate((*v % 4) as usize, v & 1 == 1),
            Op::Event(k, v) if k % 3 == 1 => pit.timer_expired(*v),
            Op::Event(_, v) => {
                now.fetch_add(*v >> (v % 64), Ordering::Relaxed);
            }
            op => access(&mut pit, op, irqlab_devices::pit::WINDOW),
        }
        for ch in 0..4 {
            let _ = pit.out(ch);
        }
    }
});
