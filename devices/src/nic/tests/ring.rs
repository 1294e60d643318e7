//! The ring: accounting, no overwrite, hostile ring and register values.

use super::*;

#[test]
fn a_full_ring_drops_and_counts_and_never_overwrites() {
    let mut d = Dev::with_ring(8);
    d.start(100, 0, 0);
    d.step(0);
    assert_eq!(d.accounting(), (100, 7, 93));
    assert!(!d.core.busy());
    assert_eq!(d.r(reg::HEAD, 1), 7);
    for i in 0..7 {
        let desc = d.ram.desc(i);
        assert_eq!(
            (desc.status, desc.seq, desc.length),
            (reg::STATUS_DD, i, 64)
        );
        assert_eq!((desc.reserved, desc.tsc, desc.run_ns), (0, 1000, 0));
    }
    // The one-slot gap: descriptor 7 was never the device's.
    assert_eq!(d.ram.desc(7), RxDesc::default());
    assert_eq!(d.ram.violations.load(Ordering::SeqCst), 0);
    assert_eq!(d.r(reg::ICR, 1), reg::ICR_RX | reg::ICR_RXO);
    assert_eq!(d.r(reg::ICR, 1), 0, "read to clear");
}

#[test]
fn returned_descriptors_are_reused_and_seq_gaps_show_drops() {
    let mut d = Dev::with_ring(4);
    d.start(7, 1000, 0);
    // 1 kHz: packets due at 0, 1, 2, ... ms. By 4 ms, 5 packets: 3 delivered, 2 dropped.
    d.step(4_000_000);
    assert_eq!(d.accounting(), (5, 3, 2));
    // The guest processes two and returns them: TAIL = next - 1 = 1, free (1 - 3) mod 4 = 2.
    for i in 0..2 {
        d.ram.clear_status(i);
    }
    d.ram.owned.lock().unwrap()[..1].fill(false);
    d.w(reg::TAIL, tail_for(2, 4), 4_000_000);
    d.step(7_000_000);
    assert_eq!(d.accounting(), (7, 5, 2));
    assert_eq!((d.ram.desc(3).seq, d.ram.desc(0).seq), (5, 6));
    assert_eq!(d.ram.desc(0).run_ns, 7_000_000);
    assert_eq!(d.ram.violations.load(Ordering::SeqCst), 0);
    // More than one period (1 ms) behind: packets 0, 1, 2 (at 4 ms) and 5 (at 7 ms).
    assert_eq!(d.r(reg::LATE, 7_000_000), 4);
    assert!(!d.core.busy(), "COUNT packets: the run ended");
}

#[test]
fn a_ring_outside_ram_drops_every_packet_as_a_dma_error() {
    let mut d = Dev::new();
    // The last 32-byte-aligned address: every descriptor address but the first overflows.
    d.w(reg::RING_LO, u32::MAX, 0);
    d.w(reg::RING_HI, u32::MAX, 0);
    d.w(reg::RING_SIZE, reg::RING_MAX, 0);
    d.w(reg::TAIL, reg::RING_MAX - 1, 0);
    assert_eq!(d.r(reg::RING_LO, 0), 0xffff_ffe0);
    d.start(100, 0, 0);
    d.step(0);
    assert_eq!(d.accounting(), (100, 0, 100));
    assert_eq!((d.core.counters().dma_errors, d.r(reg::HEAD, 0)), (100, 0));
    // Straddling the end of RAM: two descriptors fit, then every write fails; HEAD stays.
    let mut d = Dev::new();
    d.w(reg::RING_LO, (RAM - 2 * reg::DESC_SIZE) as u32, 0);
    d.w(reg::RING_SIZE, 8, 0);
    d.w(reg::TAIL, 7, 0);
    d.start(10, 0, 0);
    d.step(0);
    assert_eq!(d.accounting(), (10, 2, 8));
    assert_eq!((d.core.counters().dma_errors, d.r(reg::HEAD, 0)), (8, 2));
}

#[test]
fn invalid_register_values_are_ignored_and_ring_writes_reset_head_and_tail() {
    let mut d = Dev::with_ring(8);
    for bad in [1, 3, 12, reg::RING_MAX * 2, u32::MAX] {
        d.w(reg::RING_SIZE, bad, 0);
        assert_eq!(d.r(reg::RING_SIZE, 0), 8, "{bad}");
    }
    d.w(reg::TAIL, 8, 0);
    d.w(reg::TAIL, u32::MAX, 0);
    assert_eq!(d.r(reg::TAIL, 0), 7);
    for (off, bad, keep) in [
        (reg::PKT_LEN, 0, 64),
        (reg::PKT_LEN, reg::PKT_LEN_MAX + 1, 64),
        (reg::MODE, 2, reg::MODE_DIRECT),
        (reg::CONTROL, 3, 0),
        (reg::IMS, !reg::ICR_ALL, 0),
        (reg::ICS, !reg::ICR_ALL, 0),
        (reg::HEAD, 5, 0),
        (reg::SENT, 5, 0),
        (0x88, 5, 0),
        (0xffc, 5, 0),
    ] {
        d.w(off, bad, 0);
        let now = d.r(off, 0);
        assert_eq!(now, if off == reg::ICS { 0 } else { keep }, "{off:#x}");
    }
    assert_eq!(d.r(reg::ICR, 0), 0, "ICS bits outside ICR_ALL set nothing");
    d.w(reg::ITR_US, u32::MAX, 0);
    assert_eq!(d.r(reg::ITR_US, 0), reg::ITR_MAX_US, "ITR is clamped");
    assert!(d.core.ignored_writes() >= 10);
    // Read-back of the configuration.
    for (off, v) in [
        (reg::PKT_LEN, 1500),
        (reg::MODE, reg::MODE_POSTED),
        (reg::MSI_ADDR_LO, 0xfee0_1000),
        (reg::MSI_ADDR_HI, 1),
        (reg::MSI_DATA, 0x41),
        (reg::RATE, 123),
        (reg::PID_LO, 0x40),
        (reg::PID_HI, 2),
        (reg::COUNT, 9),
    ] {
        d.w(off, v, 0);
        assert_eq!(d.r(off, 0), v, "{off:#x}");
    }
    assert_eq!(d.core.msi(), (0x1_fee0_1000, 0x41));
    assert_eq!(d.core.posted(), Some(0x2_0000_0040));
    // Any ring write gives every descriptor back to the driver.
    d.start(3, 0, 0);
    d.step(0);
    assert_eq!(d.r(reg::HEAD, 0), 3);
    d.w(reg::RING_HI, 0, 0);
    assert_eq!((d.r(reg::HEAD, 0), d.r(reg::TAIL, 0)), (0, 0));
    // Size 0: no ring, TAIL cannot be written, every packet is dropped.
    d.w(reg::RING_SIZE, 0, 0);
    d.w(reg::TAIL, 0, 0);
    d.start(4, 0, 0);
    d.step(0);
    assert_eq!(d.accounting(), (4, 0, 4));
}

#[test]
fn configuration_is_locked_while_busy_and_stop_ends_the_run() {
    let mut d = Dev::with_ring(8);
    d.start(u32::MAX, 1, 0);
    assert_eq!(d.r(reg::CONTROL, 0), reg::STATUS_BUSY);
    d.w(reg::RING_SIZE, 16, 0);
    d.w(reg::COUNT, 1, 0);
    d.w(reg::CONTROL, reg::CTRL_START, 0);
    assert_eq!((d.r(reg::RING_SIZE, 0), d.r(reg::COUNT, 0)), (8, u32::MAX));
    // TAIL, the interrupt registers and ITR stay writable.
    d.w(reg::TAIL, 3, 0);
    d.w(reg::ITR_US, 5, 0);
    assert_eq!((d.r(reg::TAIL, 0), d.r(reg::ITR_US, 0)), (3, 5));
    d.step(2_500_000_000);
    assert_eq!(d.accounting(), (3, 3, 0));
    assert_eq!(d.core.next_deadline(), Some(3_000_000_000));
    assert!(d.w(reg::CONTROL, reg::CTRL_STOP, 1).wake);
    assert_eq!((d.r(reg::CONTROL, 1), d.core.next_deadline()), (0, None));
    d.w(reg::RING_SIZE, 16, 1);
    assert_eq!(d.r(reg::RING_SIZE, 1), 16);
    // START zeroes the counters; COUNT 0 starts nothing.
    d.start(0, 0, 2);
    assert_eq!((d.core.busy(), d.accounting()), (false, (0, 0, 0)));
}

#[test]
fn host_tsc_is_latched_by_the_low_half() {
    let mut core = Core::default();
    let t = |tsc| Now { ns: 0, tsc };
    assert_eq!(core.read(reg::HOST_TSC_LO, t(0x1_2345_6789)), 0x2345_6789);
    assert_eq!(core.read(reg::HOST_TSC_HI, t(0x7_0000_0000)), 1);
}
