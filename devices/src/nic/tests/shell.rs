//! The shell: real threads, assertions independent of timing.

use super::*;

#[derive(Default)]
struct Sink(Mutex<Vec<MsiMessage>>);
impl MsiSink for Sink {
    fn send(&self, m: MsiMessage) -> MsiOutcome {
        self.0.lock().unwrap().push(m);
        MsiOutcome::Delivered
    }
}

fn nic() -> (Arc<Sink>, Arc<Ram>, Nic) {
    let (sink, ram) = (Arc::new(Sink::default()), Arc::new(Ram::new()));
    let mut nic = Nic::new(sink.clone(), ram.clone());
    w(&mut nic, reg::RING_LO, RING as u32);
    w(&mut nic, reg::RING_SIZE, 16);
    w(&mut nic, reg::TAIL, 15);
    w(&mut nic, reg::MSI_ADDR_LO, 0xfee0_0000);
    w(&mut nic, reg::MSI_DATA, 0x41);
    (sink, ram, nic)
}

fn w(nic: &mut Nic, off: u64, v: u32) {
    nic.write(off, &v.to_le_bytes());
}

fn r(nic: &mut Nic, off: u64) -> u32 {
    let mut b = [0xaa; 4];
    nic.read(off, &mut b);
    u32::from_le_bytes(b)
}

#[test]
fn a_run_fills_the_ring_and_raises_one_msi_per_assertion() {
    let (sink, ram, mut nic) = nic();
    assert_eq!(r(&mut nic, reg::ID), reg::ID_VALUE);
    w(&mut nic, reg::IMS, reg::ICR_ALL);
    w(&mut nic, reg::COUNT, 50);
    w(&mut nic, reg::CONTROL, reg::CTRL_START);
    nic.wait_idle();
    let c = nic.counters();
    assert_eq!((c.sent, c.delivered, c.dropped, c.irqs), (50, 15, 35, 1));
    assert_eq!(
        (r(&mut nic, reg::DROPPED), r(&mut nic, reg::CONTROL)),
        (35, 0)
    );
    assert_eq!(ram.violations.load(Ordering::SeqCst), 0);
    // Nobody read ICR: the one assertion, one MSI, with the programmed payload.
    let sent = sink.0.lock().unwrap().clone();
    assert_eq!(
        sent,
        [MsiMessage {
            address: 0xfee0_0000,
            data: 0x41
        }]
    );
    // An unmask/ICS from the vCPU side is delivered on the spot.
    assert_eq!(r(&mut nic, reg::ICR), reg::ICR_ALL);
    w(&mut nic, reg::ICS, reg::ICR_RX);
    assert_eq!(sink.0.lock().unwrap().len(), 2);
}

#[test]
fn the_worker_is_started_once_with_the_thread_hook() {
    let (_, _, mut nic) = nic();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    nic.set_thread_start(Arc::new(move || {
        log.lock()
            .unwrap()
            .push(std::thread::current().name().map(str::to_owned));
    }));
    w(&mut nic, reg::COUNT, 3);
    for _ in 0..2 {
        w(&mut nic, reg::CONTROL, reg::CTRL_START);
        nic.wait_idle();
    }
    assert_eq!(nic.counters().sent, 3);
    assert_eq!(*seen.lock().unwrap(), [Some("nic".to_owned())]);
    nic.shutdown();
    // After shutdown a START starts nothing, and nothing hangs.
    w(&mut nic, reg::CONTROL, reg::CTRL_START);
    nic.wait_idle();
}

#[test]
fn stop_and_shutdown_end_a_long_run() {
    let (_, _, mut nic) = nic();
    w(&mut nic, reg::COUNT, u32::MAX);
    w(&mut nic, reg::RATE, 1000);
    w(&mut nic, reg::CONTROL, reg::CTRL_START);
    assert_eq!(r(&mut nic, reg::CONTROL), reg::STATUS_BUSY);
    w(&mut nic, reg::CONTROL, reg::CTRL_STOP);
    nic.wait_idle();
    assert!(nic.counters().sent < u32::MAX);
    // Back to back and unbounded: shutdown still ends it.
    w(&mut nic, reg::RATE, 0);
    w(&mut nic, reg::CONTROL, reg::CTRL_START);
    drop(nic);
}

#[test]
fn a_held_interrupt_is_fired_by_the_worker() {
    let (sink, _, mut nic) = nic();
    w(&mut nic, reg::IMS, reg::ICR_RX);
    w(&mut nic, reg::ITR_US, 1000);
    w(&mut nic, reg::ICS, reg::ICR_RX);
    r(&mut nic, reg::ICR);
    w(&mut nic, reg::ICS, reg::ICR_RX);
    // Held at most 1 ms by the ITR; allow a loaded host ten seconds.
    let until = Instant::now() + Duration::from_secs(10);
    while sink.0.lock().unwrap().len() < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(sink.0.lock().unwrap().len(), 2);
    assert_eq!(nic.counters().irq_held, 1);
}

struct PostedRam(Arc<crate::posted::Descriptor>, Ram);
impl DmaWriter for PostedRam {
    fn write_u32(&self, gpa: u64, value: u32) -> bool {
        self.1.write_u32(gpa, value)
    }
    fn descriptor(&self, gpa: u64) -> Option<Arc<dyn DescriptorMemory>> {
        (gpa == 0x8000).then(|| self.0.clone() as Arc<dyn DescriptorMemory>)
    }
}

#[test]
fn posted_mode_posts_the_vector_and_notifies_on_the_on_edge() {
    use irqlab_abi::posted as pd;
    let desc = Arc::new(crate::posted::Descriptor::new());
    desc.word(pd::CONTROL_WORD)
        .store(pd::control(0xeb, 0), Ordering::SeqCst);
    let sink = Arc::new(Sink::default());
    let mut nic = Nic::new(sink.clone(), Arc::new(PostedRam(desc.clone(), Ram::new())));
    w(&mut nic, reg::RING_LO, RING as u32);
    w(&mut nic, reg::RING_SIZE, 8);
    w(&mut nic, reg::TAIL, 7);
    w(&mut nic, reg::MSI_DATA, 0x41);
    w(&mut nic, reg::MODE, reg::MODE_POSTED);
    w(&mut nic, reg::PID_LO, 0x8000);
    w(&mut nic, reg::IMS, reg::ICR_RX);
    w(&mut nic, reg::COUNT, 3);
    w(&mut nic, reg::CONTROL, reg::CTRL_START);
    nic.wait_idle();
    // Three interrupts (ICR read each time), one notification: nobody cleared ON.
    for _ in 0..2 {
        r(&mut nic, reg::ICR);
        w(&mut nic, reg::ICS, reg::ICR_RX);
    }
    let c = nic.counters();
    assert_eq!((c.sent, c.irqs, c.notified, c.irq_failed), (3, 3, 1, 0));
    assert_eq!(sink.0.lock().unwrap()[0].data, 0xeb);
    assert_ne!(
        desc.word(1).load(Ordering::SeqCst) & (1 << 1),
        0,
        "PIR bit 0x41"
    );
    // A PID with no descriptor: the interrupt fails, visibly.
    w(&mut nic, reg::PID_LO, 0x9000);
    w(&mut nic, reg::CONTROL, reg::CTRL_START);
    nic.wait_idle();
    r(&mut nic, reg::ICR);
    w(&mut nic, reg::ICS, reg::ICR_RX);
    assert_eq!(nic.counters().irq_failed, 1);
}

#[test]
fn widths_alignment_and_eight_byte_pairs() {
    let (_, _, mut nic) = nic();
    // 8-byte write of a pair, 8-byte read back.
    nic.write(reg::RING_LO, &0x1234_5678_0000_2000u64.to_le_bytes());
    let mut b = [0u8; 8];
    nic.read(reg::RING_LO, &mut b);
    assert_eq!(u64::from_le_bytes(b), 0x1234_5678_0000_2000);
    // One 8-byte read of HOST_TSC: a consistent, latched value.
    nic.read(reg::HOST_TSC_LO, &mut b);
    let tsc = u64::from_le_bytes(b);
    assert_eq!(u64::from(r(&mut nic, reg::HOST_TSC_HI)), tsc >> 32);
    // Other widths, misaligned and unknown offsets read 0 and are ignored.
    let ignored = nic.ignored_writes();
    for (off, len) in [
        (reg::ID, 2),
        (reg::ID, 1),
        (reg::ID + 1, 4),
        (reg::ID + 4, 8),
        (0x5000, 4),
        (u64::MAX - 7, 8),
        (0, 16),
        (0, 0),
    ] {
        let mut b = vec![0xaa; len];
        nic.read(off, &mut b);
        assert!(b.iter().all(|&x| x == 0), "{off:#x}/{len}");
        nic.write(off, &b);
    }
    nic.write(reg::COUNT, &[5, 0, 0]);
    assert_eq!(r(&mut nic, reg::COUNT), 0);
    assert_eq!(nic.ignored_writes(), ignored + 10);
}
