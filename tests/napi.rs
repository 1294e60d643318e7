//! `run=napi` and `run=softirq` on the NIC-like ring device (issue 15): the guest's accounting
//! and design checks in both irqchip models, the NAPI/SOFTIRQ lines parsed and re-checked here
//! (sent = processed + the counted drops), and hostile words. Behaviour only, never rates or
//! latencies.

mod common;
use common::*;

/// One `NAPI design rate sent processed ring_drops backlog_drops irqs ...` line.
#[derive(Debug)]
struct Row {
    design: String,
    rate: u64,
    sent: u64,
    processed: u64,
    ring_drops: u64,
    backlog_drops: u64,
    irqs: u64,
}

fn rows(out: &str) -> Vec<Row> {
    out.lines()
        .filter_map(|l| l.strip_prefix("NAPI "))
        .filter(|l| !l.starts_with("columns"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|_| panic!("{l}"));
            Row {
                design: f[0].to_string(),
                rate: n(1),
                sent: n(2),
                processed: n(3),
                ring_drops: n(4),
                backlog_drops: n(5),
                irqs: n(6),
            }
        })
        .collect()
}

fn napi(words: &str, flags: &[&str]) -> (i32, String, String) {
    let cfg = root().join("configs/napi.toml");
    let cmdline = format!("run=napi {words}");
    let mut args = vec!["run", cfg.to_str().unwrap(), "--cmdline", &cmdline];
    args.extend_from_slice(flags);
    run(&args)
}

fn check_run(flags: &[&str]) {
    let (code, out, err) = napi("design=all rates=1000,10000,0 ms=200", flags);
    assert_guest_ok(code, &out, &err);
    assert!(out.contains("PASS napi-accounting:"), "{out}");
    assert!(out.contains("PASS napi-mitigation:"), "{out}");
    let rows = rows(&out);
    assert_eq!(rows.len(), 9, "3 designs x 3 rates:\n{out}");
    for r in &rows {
        assert!(r.sent > 0, "{r:?}");
        assert_eq!(
            r.sent,
            r.processed + r.ring_drops + r.backlog_drops,
            "every packet processed or counted as dropped: {r:?}\n{out}"
        );
        // NAPI never queues in a backlog: it processes from the ring or the device drops.
        if r.design == "napi" {
            assert_eq!(r.backlog_drops, 0, "{r:?}");
        }
    }
    // Back to back (rate 0) NAPI polls: fewer than 0.1 interrupts per packet.
    let napi_b2b = rows
        .iter()
        .find(|r| r.design == "napi" && r.rate == 0)
        .expect("napi back-to-back row");
    assert!(napi_b2b.irqs * 10 < napi_b2b.processed, "{napi_b2b:?}");
}

#[test]
fn every_design_accounts_for_every_packet_split_irqchip() {
    if !kvm_or_skip("every_design_accounts_for_every_packet_split_irqchip") {
        return;
    }
    check_run(&[]);
}

#[test]
fn every_design_accounts_for_every_packet_kernel_irqchip() {
    if !kvm_or_skip("every_design_accounts_for_every_packet_kernel_irqchip") {
        return;
    }
    check_run(&["--irqchip", "kernel"]);
}

#[test]
fn bad_words_are_fail_lines() {
    if !kvm_or_skip("bad_words_are_fail_lines") {
        return;
    }
    for (words, want) in [
        ("design=busy-poll", "FAIL napi: unknown design=busy-poll"),
        ("rates=1000,fast", "FAIL napi: bad rates= entry \"fast\""),
        ("rates=2000000", "FAIL napi: bad rates= entry \"2000000\""),
    ] {
        let (code, out, err) = napi(words, &[]);
        assert_ne!(code, 0, "{words}: {out}{err}");
        assert!(out.contains(want), "{words}: want {want}\n{out}{err}");
    }
}

/// One `SOFTIRQ design sent processed drops ticks in_handler in_bottom_half ...` line.
fn softirq_rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter_map(|l| l.strip_prefix("SOFTIRQ "))
        .filter(|l| !l.starts_with("columns"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn check_softirq(flags: &[&str]) {
    let cfg = root().join("configs/softirq.toml");
    let cmdline = "run=softirq rate=20000 packets=10000 work=20 hz=1000 budget=64 restarts=1";
    let mut args = vec!["run", cfg.to_str().unwrap(), "--cmdline", cmdline];
    args.extend_from_slice(flags);
    let (code, out, err) = run(&args);
    assert_guest_ok(code, &out, &err);
    for name in [
        "softirq-accounting",
        "softirq-hard-blocks",
        "softirq-preempted",
        // restarts=1: under the flood a bottom half that finds more than one pass of work
        // hands the rest to ksoftirqd.
        "softirq-ksoftirqd",
    ] {
        assert!(out.contains(&format!("PASS {name}:")), "{name}:\n{out}");
    }
    let rows = softirq_rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    for r in &rows {
        let n = |i: usize| r[i].parse::<u64>().unwrap();
        assert_eq!(n(1), n(2) + n(3), "sent = processed + drops: {r:?}");
    }
    // The hard handler never let a tick in; the bottom half did.
    let hard = &rows[0];
    let soft = &rows[1];
    assert_eq!((hard[0].as_str(), hard[5].as_str()), ("hard", "0"), "{out}");
    assert_eq!(soft[0], "softirq");
    assert!(soft[6].parse::<u64>().unwrap() > 0, "{out}");
}

#[test]
fn bottom_halves_let_an_urgent_device_in_split_irqchip() {
    if !kvm_or_skip("bottom_halves_let_an_urgent_device_in_split_irqchip") {
        return;
    }
    check_softirq(&[]);
}

#[test]
fn bottom_halves_let_an_urgent_device_in_kernel_irqchip() {
    if !kvm_or_skip("bottom_halves_let_an_urgent_device_in_kernel_irqchip") {
        return;
    }
    check_softirq(&["--irqchip", "kernel"]);
}

/// The trace marks NAPI poll passes and bottom-half runs as their own sources, each with the
/// exits it caused (lockstep), so `irqlab trace diff` between the designs shows where the
/// exits went.
#[test]
fn the_trace_shows_poll_passes_and_bottom_halves_with_their_exits() {
    if !kvm_or_skip("the_trace_shows_poll_passes_and_bottom_halves_with_their_exits") {
        return;
    }
    let cfg = root().join("configs/napi.toml");
    let mut dirs = Vec::new();
    for (name, words) in [
        ("irq", "run=napi design=irq rates=10000 ms=100"),
        ("napi", "run=napi design=napi rates=10000 ms=100"),
        ("softirq", "run=softirq rate=10000 packets=1000"),
    ] {
        let dir = scratch(&format!("napi-trace-{name}"));
        let (code, out, err) = run(&[
            "run",
            cfg.to_str().unwrap(),
            "--cmdline",
            words,
            "--trace",
            dir.to_str().unwrap(),
            "--trace-mode",
            "lockstep",
        ]);
        assert_guest_ok(code, &out, &err);
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                .unwrap();
        let sources = summary["sources"].as_object().unwrap();
        let want = match name {
            "napi" => Some("napi-poll"),
            "softirq" => Some("softirq"),
            _ => None,
        };
        if let Some(source) = want {
            let s = &sources[source];
            assert!(s["count"].as_u64().unwrap_or(0) > 0, "{name}: {summary}");
            assert!(
                s["exits_per_interrupt"]
                    .as_object()
                    .is_some_and(|e| !e.is_empty()),
                "{name}: {summary}"
            );
        } else {
            assert!(!sources.contains_key("napi-poll"), "{summary}");
        }
        // The NIC's own interrupts are traced per source in every design.
        assert!(sources.contains_key("msi:nic0"), "{name}: {summary}");
        dirs.push(dir);
    }
    // `trace diff` pairs the two designs' sources and prints where the exits went.
    let (code, out, err) = run(&[
        "trace",
        "diff",
        dirs[0].to_str().unwrap(),
        dirs[1].to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("napi-poll"), "{out}");
    assert!(out.contains("msi:nic0"), "{out}");
}
