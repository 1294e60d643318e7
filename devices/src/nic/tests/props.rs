//! Property tests: the no-overwrite guarantee under any driver pace, and hostile register
//! traffic.

use super::*;

#[derive(Debug, Clone)]
enum GuestOp {
    /// Time passes: this many microseconds of packets (one per µs).
    Packets(u8),
    /// The driver processes up to this many descriptors.
    Consume(u8),
    /// The driver returns what it processed (writes TAIL).
    Return,
}

proptest! {
    /// Whatever the driver's pace, the device writes no descriptor the driver has not
    /// returned, and every packet is processed, still in the ring, or counted as dropped.
    #[test]
    fn no_descriptor_is_written_while_the_guest_owns_it(
        size in prop::sample::select(vec![2u32, 4, 8, 16]),
        ops in prop::collection::vec(prop_oneof![
            (1u8..20).prop_map(GuestOp::Packets),
            (1u8..20).prop_map(GuestOp::Consume),
            Just(GuestOp::Return),
        ], 0..100),
    ) {
        let mut d = Dev::with_ring(size);
        d.start(u32::MAX, 1_000_000, 0);
        let (mut ns, mut next, mut processed) = (0u64, 0u32, 0u32);
        let mut last_seq = None;
        let mut unreturned = std::collections::VecDeque::new();
        for op in ops {
            match op {
                GuestOp::Packets(us) => {
                    ns += u64::from(us) * 1000;
                    d.step(ns);
                }
                GuestOp::Consume(k) => {
                    for _ in 0..k {
                        let desc = d.ram.desc(next);
                        if desc.status & reg::STATUS_DD == 0 {
                            break;
                        }
                        prop_assert!(last_seq.is_none_or(|s| desc.seq > s));
                        last_seq = Some(desc.seq);
                        d.ram.clear_status(next);
                        unreturned.push_back(next);
                        processed += 1;
                        next = (next + 1) % size;
                    }
                }
                GuestOp::Return => {
                    let tail = tail_for(next, size);
                    // Everything processed before the new TAIL goes back to the device.
                    let mut owned = d.ram.owned.lock().unwrap();
                    while let Some(&i) = unreturned.front().filter(|&&i| i != tail) {
                        owned[i as usize] = false;
                        unreturned.pop_front();
                    }
                    drop(owned);
                    d.w(reg::TAIL, tail, ns);
                }
            }
        }
        prop_assert_eq!(d.ram.violations.load(Ordering::SeqCst), 0);
        let (sent, delivered, dropped) = d.accounting();
        let in_ring = (0..size).filter(|&i| d.ram.desc(i).status & reg::STATUS_DD != 0).count();
        prop_assert_eq!(delivered, processed + in_ring as u32);
        prop_assert_eq!(sent, processed + in_ring as u32 + dropped);
    }

    /// Any register traffic, at any time: no panic, no overflow, the accounting holds, HEAD
    /// stays in the ring, and the device writes only inside the ring it was given.
    #[test]
    fn hostile_register_traffic_is_harmless(
        ops in prop::collection::vec((
            prop_oneof![
                prop::sample::select((0..0x22u64).map(|i| i * 4).collect::<Vec<_>>()),
                0u64..0x1010,
            ],
            prop_oneof![
                any::<u32>(),
                prop::sample::select(vec![
                    0, 1, 2, 3, 4, 8, 16, 4096, 8192, u32::MAX, 0xffff_ffe0,
                    RING as u32, reg::CTRL_START, reg::CTRL_STOP, reg::ICR_ALL,
                ]),
            ],
            0u8..4,
            prop_oneof![Just(0u64), 0u64..2_000_000, any::<u64>()],
        ), 0..200),
    ) {
        let mut d = Dev::new();
        let mut ns = 0u64;
        for (off, v, kind, dt) in ops {
            ns = ns.saturating_add(dt);
            match kind {
                0 | 1 => {
                    d.w(off, v, ns);
                }
                2 => {
                    d.r(off, ns);
                }
                _ => {
                    let base = u64::from(d.r(reg::RING_LO, ns)) | u64::from(d.r(reg::RING_HI, ns)) << 32;
                    let size = u64::from(d.r(reg::RING_SIZE, ns));
                    d.ram.writes.lock().unwrap().clear();
                    // One worker turn: at most BATCH packets.
                    let before = d.core.counters().sent;
                    d.core.step(at(ns), &d.ram);
                    prop_assert!(d.core.counters().sent.wrapping_sub(before) <= BATCH);
                    for &w in d.ram.writes.lock().unwrap().iter() {
                        prop_assert!(w >= base && w - base < size * reg::DESC_SIZE, "{w:#x}");
                    }
                }
            }
            d.accounting();
            let (head, size) = (d.r(reg::HEAD, ns), d.r(reg::RING_SIZE, ns));
            prop_assert!(head < size.max(1));
        }
    }
}
