//! Property test: any sequence of guest register accesses and device-side events leaves every
//! device model standing (no panic, no overflow) — guest-controlled input must never take
//! the VMM down.

use irqlab_devices::ioapic::IoApic;
use irqlab_devices::msi_source::{DmaWriter, MsiSource};
use irqlab_devices::nic::Nic;
use irqlab_devices::pit::{Clock, Pit, PitTimer};
use irqlab_devices::uart::Uart;
use irqlab_devices::{BusDevice, MsiMessage, MsiOutcome, MsiSink, NoIrq};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Accept;
impl MsiSink for Accept {
    fn send(&self, _: MsiMessage) -> MsiOutcome {
        MsiOutcome::Delivered
    }
}

/// 64 KiB of RAM that keeps nothing.
struct Ram;
impl DmaWriter for Ram {
    fn write_u32(&self, gpa: u64, _: u32) -> bool {
        gpa < 0x10000
    }
}

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

#[derive(Debug, Clone)]
enum Op {
    Read {
        offset: u64,
        len: usize,
    },
    Write {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// A device-side event: IO-APIC pin level / EOI, PIT gate / timer / clock step, UART RX.
    Event(u8, u64),
}

fn ops(max_offset: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        (
            0..max_offset,
            prop::sample::select(vec![0usize, 1, 2, 3, 4, 8, 16])
        )
            .prop_map(|(offset, len)| Op::Read { offset, len }),
        (0..max_offset, prop::collection::vec(any::<u8>(), 0..9))
            .prop_map(|(offset, bytes)| Op::Write { offset, bytes }),
        (any::<u8>(), any::<u64>()).prop_map(|(k, v)| Op::Event(k, v)),
    ];
    prop::collection::vec(op, 0..200)
}

fn apply(dev: &mut dyn BusDevice, op: &Op) {
    match op {
        Op::Read { offset, len } => dev.read(*offset, &mut vec![0u8; *len]),
        Op::Write { offset, bytes } => dev.write(*offset, bytes),
        Op::Event(..) => {}
    }
}

proptest! {
    #[test]
    fn ioapic_survives_anything(ops in ops(0x60)) {
        let mut io = IoApic::new(Arc::new(Accept));
        for op in &ops {
            match op {
                Op::Event(k, v) if k % 2 == 0 => io.set_irq((*v % 32) as usize, v & 1 == 1),
                Op::Event(_, v) => io.end_of_interrupt(*v as u8),
                op => apply(&mut io, op),
            }
        }
    }

    #[test]
    fn pit_survives_anything(ops in ops(8)) {
        let now = Arc::new(AtomicU64::new(0));
        let mut pit = Pit::new(
            Box::new(StepClock(now.clone())),
            Box::new(NoTimer),
            Arc::new(NoIrq),
        );
        for op in &ops {
            match op {
                Op::Event(k, v) if k % 3 == 0 => pit.set_gate((*v % 4) as usize, v & 1 == 1),
                Op::Event(k, v) if k % 3 == 1 => pit.timer_expired(*v),
                // Any clock step, including huge ones: counts must not overflow.
                Op::Event(_, v) => {
                    now.fetch_add(*v >> (v % 64), Ordering::Relaxed);
                }
                op => apply(&mut pit, op),
            }
            for ch in 0..4 {
                let _ = pit.out(ch);
            }
        }
    }

    #[test]
    fn uart_survives_anything(ops in ops(16)) {
        let mut uart = Uart::new(Arc::new(NoIrq), Vec::new());
        for op in &ops {
            match op {
                Op::Event(_, v) => {
                    uart.receive(&v.to_le_bytes());
                }
                op => apply(&mut uart, op),
            }
        }
    }

    #[test]
    fn msi_source_survives_anything(ops in ops(0x40)) {
        let mut dev = MsiSource::new(Arc::new(Accept));
        for op in &ops {
            // COUNT and RATE stay at 0 so a run never sleeps; every other register is fair game.
            if let Op::Write { offset: 0x10..=0x17, .. } = op {
                continue;
            }
            apply(&mut dev, op);
        }
        dev.shutdown();
    }

    #[test]
    fn nic_survives_anything(ops in ops(0x100)) {
        // Any COUNT and RATE: a run still going at the end is ended by the shutdown.
        let mut dev = Nic::new(Arc::new(Accept), Arc::new(Ram));
        for op in &ops {
            apply(&mut dev, op);
        }
        dev.shutdown();
        let c = dev.counters();
        prop_assert_eq!(c.sent, c.delivered.wrapping_add(c.dropped));
    }
}
