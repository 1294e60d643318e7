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
    let mut args = vec!["run", cfg.to_str().unwrap()];
    args.extend_from_slice(flags);
    let (code, out, err) = run(&args);
    assert_guest_ok(code, &out, &err);
    for name in [
        "softirq-accounting",
        "softirq-hard-blocks",
        "softirq-preempted",
    ] {
        assert!(out.contains(&format!("PASS {name}:")), "{name}:\n{out}");
    }
    // ksoftirqd: judged by the guest whenever it could not keep up (PASS), else a SKIP.
    assert!(
        out.contains("PASS softirq-ksoftirqd:") || out.contains("SKIP softirq-ksoftirqd:"),
        "{out}"
    );
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
