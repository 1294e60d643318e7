//! `run=nesting` (issue 15), booted on /dev/kvm: interrupt priority classes, nested handlers,
//! TPR masking and a reentrancy hazard, all driven by LAPIC self-IPIs. The guest checks the
//! behaviour and prints the order it saw; these tests require every check in both irqchip
//! models, the exact order, and the same order again in the trace's timestamps (a nested
//! handler's entry..EOI interval inside the one it preempted). They assert behaviour, never
//! timings.
//!
//! kvm-pvm's LAPIC shows no in-service vector (ISR and PPR read 0 in every handler) and now
//! and then delivers a vector of the in-service class or below inside the handler (one boot
//! in ten on a quiet host here, up to every other one with both cores busy). The guest reports exactly that as `SKIP nesting-same-class-waits`
//! there; the tests accept it only on kvm-pvm, and then check that the trace shows what the
//! guest saw.

mod common;
use common::*;
use serde_json::Value;

/// The order the guest logs in the preemption scenario (depth 1 is not printed).
const ORDER: &str = "nesting: order 0x31 enter, 0x51 enter (depth 2), 0x61 enter (depth 3), \
                     0x61 exit, 0x51 exit, 0x32 held in IRR, 0x21 held in IRR, 0x31 exit, \
                     0x32 enter, 0x32 exit, 0x21 enter, 0x21 exit";

/// The order in the TPR scenario.
const TPR_ORDER: &str =
    "nesting: tpr order 0x41 held in IRR, 0x52 enter, 0x52 exit, 0x41 enter, 0x41 exit";

/// The part of [`ORDER`] every host must show: the preemption, up to 0x51's exit.
const PREEMPT_ORDER: &str = "nesting: order 0x31 enter, 0x51 enter (depth 2), \
                             0x61 enter (depth 3), 0x61 exit, 0x51 exit, ";

fn on_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

const CHECKS: [&str; 7] = [
    "nesting-preempt",
    "nesting-same-class-waits",
    "nesting-stack",
    "nesting-tpr",
    "nesting-hazard",
    "nesting-fixed",
    "nesting-restored",
];

/// Runs configs/nesting.toml with extra guest words and irqlab flags; returns stdout after
/// asserting the guest ended with status 0.
fn run_config(words: &str, flags: &[&str]) -> String {
    let cfg = root().join("configs/nesting.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    let cmdline = base
        .lines()
        .find_map(|l| l.strip_prefix("cmdline = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("configs/nesting.toml has a cmdline");
    let cmdline = format!("{cmdline} {words}");
    let mut args = vec!["run", cfg.to_str().unwrap(), "--cmdline", &cmdline];
    args.extend_from_slice(flags);
    let (code, out, err) = run(&args);
    assert_guest_ok(code, &out, &err);
    out
}

/// Requires every check to pass, except that on kvm-pvm `nesting-same-class-waits` may be the
/// guest's SKIP for that host's lapse. Returns whether the same-class and lower-class vectors
/// waited for the EOI (the guest printed the full expected order).
fn require_pass(out: &str) -> bool {
    let results = results(out);
    let mut waited = true;
    for name in CHECKS {
        let (tag, _, detail) = results
            .iter()
            .find(|(_, n, _)| n == name)
            .unwrap_or_else(|| panic!("no result line for {name}:\n{out}"));
        if name == "nesting-same-class-waits" && tag == "SKIP" {
            assert!(
                on_pvm() && detail.starts_with("kvm-pvm delivered 0x"),
                "{name}: {detail}\n{out}"
            );
            println!("accepted on kvm-pvm: SKIP {name}: {detail}");
            waited = false;
            continue;
        }
        assert_eq!(tag, "PASS", "{name}: {detail}\n{out}");
    }
    assert!(
        !results.iter().any(|(t, _, _)| t == "FAIL"),
        "a check failed:\n{out}"
    );
    let order = out
        .lines()
        .find(|l| l.starts_with("nesting: order "))
        .unwrap_or_else(|| panic!("no order line:\n{out}"));
    assert!(order.starts_with(PREEMPT_ORDER), "{order}\n{out}");
    if waited {
        assert_eq!(order, ORDER, "{out}");
    }
    waited
}

fn detail<'a>(out: &'a str, name: &str) -> &'a str {
    let prefix = format!("PASS {name}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no PASS {name} line:\n{out}"))
}

#[test]
fn a_higher_class_preempts_a_handler_and_the_same_or_lower_class_waits_in_both_irqchips() {
    if !kvm_or_skip("a_higher_class_preempts_a_handler_and_the_same_or_lower_class_waits") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        let out = run_config("", &["--irqchip", irqchip]);
        require_pass(&out);
        assert!(out.lines().any(|l| l == TPR_ORDER), "{irqchip}:\n{out}");
        assert!(
            out.lines().any(|l| l == "nesting: maximum depth 3"),
            "{irqchip}:\n{out}"
        );
        assert!(
            detail(&out, "nesting-tpr").contains("(CR8 4, PPR 0x40)"),
            "{irqchip}:\n{out}"
        );
    }
}

/// The hazard loses exactly one update per round (the nested interrupt is forced into the
/// window every time); the fixed version loses none.
#[test]
fn the_unprotected_update_loses_one_increment_per_round_and_the_protected_one_none() {
    if !kvm_or_skip("the_unprotected_update_loses_one_increment_per_round") {
        return;
    }
    let out = run_config("rounds=5", &[]);
    require_pass(&out);
    let hazard = detail(&out, "nesting-hazard");
    assert!(
        hazard.contains("in 5 of 5 rounds, and 5 of 10 increments were lost (counter 5)"),
        "{hazard}"
    );
    let fixed = detail(&out, "nesting-fixed");
    assert!(
        fixed.contains("in 5 of 5 rounds")
            && fixed.contains("0 of 10 increments lost (counter 10)"),
        "{fixed}"
    );
}

/// One vector's trace record: (entry_us, eoi_us).
fn span(irqs: &[Value], vector: u64) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = irqs
        .iter()
        .filter(|i| i["vector"].as_u64() == Some(vector))
        .map(|i| {
            (
                i["entry_us"].as_f64().unwrap(),
                i["eoi_us"].as_f64().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

fn only(irqs: &[Value], vector: u64) -> (f64, f64) {
    let s = span(irqs, vector);
    assert_eq!(s.len(), 1, "one record of vector {vector:#x}: {s:?}");
    s[0]
}

/// `inner`'s entry..EOI interval lies strictly inside `outer`'s.
fn inside(inner: (f64, f64), outer: (f64, f64)) -> bool {
    outer.0 < inner.0 && inner.1 < outer.1
}

#[test]
fn the_trace_shows_each_nested_handler_inside_the_one_it_preempted() {
    if !kvm_or_skip("the_trace_shows_each_nested_handler_inside_the_one_it_preempted") {
        return;
    }
    for (irqchip, mode) in [("split", "ring"), ("kernel", "lockstep")] {
        let dir = scratch(&format!("nesting-trace-{irqchip}")).join("trace");
        let out = run_config(
            "rounds=8",
            &[
                "--irqchip",
                irqchip,
                "--trace",
                dir.to_str().unwrap(),
                "--trace-mode",
                mode,
            ],
        );
        let waited = require_pass(&out);
        let irqs: Vec<Value> = std::fs::read_to_string(dir.join("interrupts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let all = format!("{irqchip}/{mode}:\n{}", {
            let lines: Vec<String> = irqs.iter().map(|i| i.to_string()).collect();
            lines.join("\n")
        });
        let (low, high, higher) = (only(&irqs, 0x31), only(&irqs, 0x51), only(&irqs, 0x61));
        let (same, lower) = (only(&irqs, 0x32), only(&irqs, 0x21));
        // Preemption: 0x61 ran inside 0x51, which ran inside 0x31 (each until its EOI).
        assert!(inside(high, low), "0x51 inside 0x31: {all}");
        assert!(inside(higher, high), "0x61 inside 0x51: {all}");
        if waited {
            // The same and the lower class waited for 0x31's EOI, then ran in class order.
            assert!(low.1 < same.0, "0x32 after 0x31's EOI: {all}");
            assert!(same.1 < lower.0, "0x21 after 0x32's EOI: {all}");
        } else {
            // kvm-pvm's lapse (see the top): the trace shows each vector where the guest
            // logged it, nested inside 0x31 or after its EOI.
            for (v, s) in [(0x32u64, same), (0x21, lower)] {
                let nested = out.contains(&format!("{v:#x} enter (depth 2)"));
                assert!(
                    if nested { inside(s, low) } else { low.1 < s.0 },
                    "{v:#x} nested {nested}: {all}"
                );
            }
        }
        // TPR: 0x41, raised first, entered only after 0x52 (above TPR) was done.
        let (held, above) = (only(&irqs, 0x41), only(&irqs, 0x52));
        assert!(above.1 < held.0, "0x41 after 0x52: {all}");
        // The hazard: every 0x53 (16 of them: 8 rounds, both versions) inside a 0x33.
        let (outer, nested) = (span(&irqs, 0x33), span(&irqs, 0x53));
        assert_eq!((outer.len(), nested.len()), (16, 16), "{all}");
        for (n, o) in nested.iter().zip(&outer) {
            assert!(inside(*n, *o), "0x53 {n:?} inside 0x33 {o:?}: {all}");
        }
    }
}
