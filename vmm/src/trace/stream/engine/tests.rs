//! The engine end to end: records and injections in, `interrupts.jsonl`, `trace.json` and
//! aggregates out, fed in one piece or many.

use super::*;
use crate::trace::stream::spool::OutFile;
use irqlab_abi::trace::Record;
use irqlab_devices::{MsiMessage, MsiOutcome};

const KHZ: u64 = 1000; // 1 cycle = 1 µs

fn engine() -> Engine {
    let mut e = Engine::new(KHZ, 0, TraceMode::Ring, Outputs::memory());
    e.settle = 0;
    e.expire = 1_000_000;
    e
}

fn inject(call: u64, vector: u8) -> HostEvent {
    HostEvent::Inject {
        source: Source("msi:source0".into()),
        pin: None,
        msi: Some(MsiMessage {
            address: 0xfee0_0000,
            data: vector.into(),
        }),
        call,
        ret: call.saturating_add(10),
        outcome: MsiOutcome::Delivered,
    }
}

fn line(call: u64, source: &str) -> HostEvent {
    HostEvent::Inject {
        source: Source(source.into()),
        pin: Some(2),
        msi: None,
        call,
        ret: call + 1,
        outcome: MsiOutcome::Delivered,
    }
}

fn rec(seq: u64, vector: u8, guest_entry: u64) -> Record {
    Record {
        seq,
        vector,
        tsc_entry: guest_entry,
        tsc_eoi: guest_entry + 50,
        ..Default::default()
    }
}

const OFFSETS: &[TscOffset] = &[TscOffset {
    vcpu: 0,
    offset: 1000,
    uncertainty: 5,
}];

fn lines(e: &Engine) -> Vec<Interrupt> {
    match &e.interrupts.out {
        OutFile::Memory(v) => std::str::from_utf8(v)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        _ => unreachable!(),
    }
}

/// Runs `host` and `records` through an engine fed in `chunks` pieces, advancing after
/// each to the time of the newest item; returns what it wrote and its aggregates.
fn run(
    host: &[HostEvent],
    records: &[Record],
    chunks: usize,
    settle: u64,
) -> (Vec<Interrupt>, Aggregates) {
    let mut e = engine();
    e.settle = settle;
    let mut items: Vec<(u64, Option<HostEvent>, Option<Record>)> = host
        .iter()
        .map(|h| (event_key(h).0, Some(h.clone()), None))
        .chain(
            records
                .iter()
                .map(|r| (r.tsc_eoi.saturating_sub(1000), None, Some(*r))),
        )
        .collect();
    items.sort_by_key(|i| i.0);
    let per = items.len().div_ceil(chunks.max(1)).max(1);
    for chunk in items.chunks(per) {
        let mut p = Pending::default();
        for (_, h, r) in chunk {
            p.host.extend(h.clone());
            p.records.extend(*r);
        }
        e.feed(&mut p, OFFSETS, &[], &[]);
        e.advance(Some(chunk.last().unwrap().0));
    }
    e.advance(None);
    let out = lines(&e);
    let agg = e.close().unwrap();
    (out, agg)
}

#[test]
fn each_record_takes_the_latest_injection_before_it_and_counts_merges() {
    // Host times: injections at 100, 200, 210 (merged with 200), 400; guest = host + 1000.
    let host = [
        inject(100, 0x40),
        inject(200, 0x40),
        inject(210, 0x40),
        inject(400, 0x40),
    ];
    let recs = [rec(1, 0x40, 1150), rec(2, 0x40, 1250), rec(3, 0x40, 1450)];
    for chunks in [1, 3, 7] {
        let (irqs, agg) = run(&host, &recs, chunks, 0);
        let lat: Vec<f64> = irqs.iter().map(|i| i.latency_us.unwrap()).collect();
        assert_eq!(lat, vec![50.0, 40.0, 50.0], "{chunks} chunks");
        assert_eq!(irqs[1].merged, 1);
        let s = &agg.sources["msi:source0"];
        assert_eq!((s.count, s.injected, s.merged, s.unhandled), (3, 4, 1, 0));
        assert_eq!(agg.violations, 0);
    }
}

#[test]
fn streaming_in_pieces_matches_one_pass_over_everything() {
    // A PIT-like line and MSIs on two vectors, with merges and late handlers.
    let mut host = Vec::new();
    let mut recs = Vec::new();
    let mut seq = 0;
    let mut t = 10_000u64;
    for k in 0..3000u64 {
        t += 37 + (k * 7919 % 113);
        host.push(line(t, "pit"));
        if k % 3 == 0 {
            host.push(inject(t + 5, 0x41));
        }
        if k % 5 != 4 {
            host.push(inject(t + 9, 0x42));
        }
        // The guest takes most of them; some merge (no record), entries 20-60 µs later.
        if k % 4 != 3 {
            seq += 1;
            recs.push(rec(seq, 0x30, t + 1000 + 20 + k % 41));
        }
        if k % 3 == 0 && k % 2 == 0 {
            seq += 1;
            recs.push(rec(seq, 0x41, t + 1000 + 25 + k % 13));
        }
        if k % 5 == 0 {
            seq += 1;
            recs.push(rec(seq, 0x42, t + 1000 + 30 + k % 17));
        }
    }
    let (one, a1) = run(&host, &recs, 1, 0);
    for (chunks, settle) in [(50, 400), (400, 2000), (3000, 300)] {
        let (many, a2) = run(&host, &recs, chunks, settle);
        let key = |v: &[Interrupt]| {
            let mut k: Vec<(u64, String, Option<u64>, u32)> = v
                .iter()
                .map(|i| {
                    (
                        i.seq,
                        i.source.clone(),
                        i.latency_us.map(|l| (l * 1000.0) as u64),
                        i.merged,
                    )
                })
                .collect();
            k.sort();
            k
        };
        assert_eq!(key(&one), key(&many), "{chunks} chunks, settle {settle}");
        for (name, s) in &a1.sources {
            let t = &a2.sources[name];
            assert_eq!(
                (s.count, s.injected, s.merged, s.unhandled),
                (t.count, t.injected, t.merged, t.unhandled),
                "{name}"
            );
        }
    }
    let pit = &a1.sources["pit"];
    assert_eq!(pit.count + pit.merged + pit.unhandled, pit.injected);
    assert!(pit.vectors.contains(&0x30));
}

#[test]
fn memory_stays_bounded_and_old_unmatched_injections_expire() {
    let mut e = engine();
    e.settle = 100;
    e.expire = 1000;
    // A source whose interrupts the guest never records, for a long time.
    for k in 0..100_000u64 {
        let mut p = Pending::default();
        p.host.push(inject(k * 10, 0x50));
        e.feed(&mut p, OFFSETS, &[], &[]);
        if k % 100 == 0 {
            e.advance(Some(k * 10));
            let held = e.corr.held_by_vector();
            assert!(held <= 120, "{held} injections held");
        }
    }
    // Then one record of that vector: the expired ones count as merged into it.
    let mut p = Pending::default();
    p.records.push(rec(1, 0x50, 1000 + 999_995));
    e.feed(&mut p, OFFSETS, &[], &[]);
    e.advance(None);
    let agg = e.close().unwrap();
    let s = &agg.sources["msi:source0"];
    assert_eq!(s.count, 1);
    assert_eq!(s.injected, 100_000);
    assert_eq!(s.count + s.merged + s.unhandled, s.injected);
}

#[test]
fn garbage_records_do_not_panic() {
    let records: Vec<Record> = (0..64)
        .map(|i| Record {
            seq: u64::MAX - i,
            vector: i as u8,
            cpu: 255,
            kind: 200,
            tsc_entry: u64::MAX - i * 7,
            tsc_eoi: i,
            ..Default::default()
        })
        .collect();
    let mut e = Engine::new(1, 0, TraceMode::Lockstep, Outputs::memory());
    let mut p = Pending {
        host: vec![inject(u64::MAX, 3), inject(0, 0)],
        records,
        ..Default::default()
    };
    e.feed(&mut p, OFFSETS, &[], &[]);
    e.advance(Some(u64::MAX / 2));
    e.advance(Some(u64::MAX));
    e.advance(None);
    assert_eq!(lines(&e).len(), 64);
    e.close().unwrap();
}

#[test]
fn the_chrome_trace_is_one_json_document() {
    let mut e = engine();
    let mut p = Pending {
        host: vec![inject(100, 0x40), line(120, "pit")],
        records: vec![rec(1, 0x40, 1150)],
        exits: vec![ExitRecord {
            vcpu: 0,
            reason: "pio",
            addr: 0x3f8,
            size: 1,
            write: true,
            value: 65,
            tsc: 130,
            vmm_cycles: 3,
        }],
        ..Default::default()
    };
    e.feed(&mut p, OFFSETS, &[], &[]);
    e.advance(None);
    e.finalize_unmatched();
    e.chrome.end();
    let OutFile::Memory(bytes) = &e.chrome.sink.out else {
        unreachable!()
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let evs = v["traceEvents"].as_array().unwrap();
    let ph = |p: &str| evs.iter().filter(|e| e["ph"] == p).count();
    assert_eq!(ph("X"), 1);
    assert_eq!((ph("s"), ph("f")), (1, 1));
    // Two devices, each with a raise and an inject instant; one exit.
    assert_eq!(ph("i"), 5);
    assert!(evs
        .iter()
        .any(|e| e["name"] == "exit pio" && e["args"]["addr"] == "0x3f8"));
    assert_eq!(v["displayTimeUnit"], "ns");
    assert_eq!(e.agg.sources["pit"].unhandled, 1);
}
