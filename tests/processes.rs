//! The process experiments (`run=sched`, `run=signals`; issue 14), booted on /dev/kvm: the
//! guest checks the behaviour and prints one PASS/FAIL line per check; these tests require
//! every line, in both irqchip models and with both timers, through every system-call gate
//! the host can run. They assert behaviour, never timings (the fairness check is a share of
//! CPU time between tasks measured in one run, with a stated tolerance).

mod common;
use common::*;
use irqlab_abi::results::{Cost, Line};

fn on_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Runs `config` with extra guest words and irqlab flags; returns stdout after asserting the
/// guest ended with status 0.
fn run_config(config: &str, words: &str, flags: &[&str]) -> String {
    let cfg = root().join("configs").join(config);
    let base = std::fs::read_to_string(&cfg).unwrap();
    let cmdline = base
        .lines()
        .find_map(|l| l.strip_prefix("cmdline = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{config} has no cmdline"));
    let cmdline = format!("{cmdline} {words}");
    let mut args = vec!["run", cfg.to_str().unwrap(), "--cmdline", &cmdline];
    args.extend_from_slice(flags);
    let (code, out, err) = run(&args);
    assert_guest_ok(code, &out, &err);
    out
}

fn require_pass(out: &str, names: &[&str]) {
    let results = results(out);
    for name in names {
        let (tag, _, detail) = results
            .iter()
            .find(|(_, n, _)| n == name)
            .unwrap_or_else(|| panic!("no result line for {name}:\n{out}"));
        assert_eq!(tag, "PASS", "{name}: {detail}\n{out}");
    }
    assert!(
        !results.iter().any(|(t, _, _)| t == "FAIL"),
        "a check failed:\n{out}"
    );
}

fn cost_row<'a>(out: &'a str, name: &str) -> Cost<'a> {
    out.lines()
        .find_map(|l| match Line::parse(l)? {
            Line::Cost(c) if c.name == name => Some(c),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no COST {name} row:\n{out}"))
}

const SCHED_CHECKS: [&str; 8] = [
    "sched-complete",
    "sched-address-spaces",
    "sched-preempt",
    "sched-fair",
    "sched-kernel-stacks",
    "sched-sleep",
    "sched-getpid",
    "sched-idle",
];

const SIGNAL_CHECKS: [&str; 9] = [
    "signals-complete",
    "signals-alarm",
    "signals-context-async",
    "signals-faults",
    "signals-context-sync",
    "signals-kill",
    "signals-masked-in-handler",
    "signals-default-actions",
    "signals-bad-sigreturn",
];

/// The gate `auto` picks on this host, as the guest names it.
fn auto_gate() -> &'static str {
    if on_pvm() {
        "gate trap (ud2 + marker)"
    } else {
        "gate syscall"
    }
}

#[test]
fn sched_preempts_cpu_bound_tasks_round_robin_on_their_own_kernel_stacks() {
    if !kvm_or_skip("sched_preempts_cpu_bound_tasks_round_robin_on_their_own_kernel_stacks") {
        return;
    }
    let out = run_config("sched.toml", "", &[]);
    require_pass(&out, &SCHED_CHECKS);
    assert!(out.contains(auto_gate()), "{out}");
    assert!(out.contains("sched: sleeper done"), "{out}");
    let row = cost_row(&out, "context-switch");
    assert!(
        row.iters > 10 && row.min <= row.median && row.median <= row.p99,
        "{row}"
    );
}

#[test]
fn sched_runs_on_the_pit_through_kvms_irqchip_too() {
    if !kvm_or_skip("sched_runs_on_the_pit_through_kvms_irqchip_too") {
        return;
    }
    let out = run_config("sched.toml", "timer=pit slice=3", &["--irqchip", "kernel"]);
    require_pass(&out, &SCHED_CHECKS);
    assert!(out.contains("timer pit"), "{out}");
}

/// Threads rather than processes: one address space, no CR3 load on a switch.
#[test]
fn sched_with_one_address_space_loads_no_cr3() {
    if !kvm_or_skip("sched_with_one_address_space_loads_no_cr3") {
        return;
    }
    let out = run_config("sched.toml", "cr3=shared", &[]);
    require_pass(&out, &SCHED_CHECKS);
    assert!(out.contains("(0 CR3 loads in"), "{out}");
    cost_row(&out, "context-switch-shared-cr3");
}

#[test]
fn signals_are_delivered_on_the_return_to_user_mode() {
    if !kvm_or_skip("signals_are_delivered_on_the_return_to_user_mode") {
        return;
    }
    let out = run_config("signals.toml", "", &[]);
    require_pass(&out, &SIGNAL_CHECKS);
    assert!(
        out.contains("sigreturn of task") && out.contains("refused"),
        "{out}"
    );
    let row = cost_row(&out, "signal-delivery");
    assert_eq!(row.iters, 200, "{row}");
}

#[test]
fn signals_run_on_the_pit_through_kvms_irqchip_too() {
    if !kvm_or_skip("signals_run_on_the_pit_through_kvms_irqchip_too") {
        return;
    }
    let out = run_config("signals.toml", "timer=pit", &["--irqchip", "kernel"]);
    require_pass(&out, &SIGNAL_CHECKS);
}

/// On VMX/SVM the experiments also run through real `syscall` and `int 0x80` (and the trap
/// gate); on kvm-pvm those two cannot work from ring 3, and the guest says so.
#[test]
fn every_gate_the_host_can_run_drives_both_experiments() {
    if !kvm_or_skip("every_gate_the_host_can_run_drives_both_experiments") {
        return;
    }
    for gate in ["syscall", "int80", "trap"] {
        let words = format!("gate={gate}");
        if on_pvm() && gate != "trap" {
            let out = run_config("sched.toml", &words, &[]);
            let results = results(&out);
            assert!(
                results.iter().any(|(t, n, d)| t == "SKIP"
                    && n == "sched"
                    && d.contains("cannot work from ring 3")),
                "{out}"
            );
            continue;
        }
        let out = run_config("sched.toml", &words, &[]);
        require_pass(&out, &SCHED_CHECKS);
        let out = run_config("signals.toml", &words, &[]);
        require_pass(&out, &SIGNAL_CHECKS);
    }
}

#[test]
fn an_unknown_gate_or_timer_is_a_fail_line_not_a_hang() {
    if !kvm_or_skip("an_unknown_gate_or_timer_is_a_fail_line_not_a_hang") {
        return;
    }
    let cfg = root().join("configs/sched.toml");
    for (words, want) in [
        (
            "run=sched gate=sysenter",
            "FAIL sched: unknown gate=sysenter",
        ),
        ("run=signals timer=hpet", "FAIL signals: unknown timer=hpet"),
    ] {
        let (code, out, err) = run(&["run", cfg.to_str().unwrap(), "--cmdline", words]);
        assert_ne!(code, 0, "{out}{err}");
        assert!(out.contains(want), "{want}:\n{out}{err}");
    }
}

/// The trace marks the ticks that ended a time slice: the guest records them with their own
/// kind, and the summary counts them per source.
#[test]
fn the_trace_marks_the_ticks_that_preempt_a_task() {
    if !kvm_or_skip("the_trace_marks_the_ticks_that_preempt_a_task") {
        return;
    }
    let dir = scratch("sched-trace");
    let cfg = root().join("configs/sched.toml");
    let (code, out, err) = run(&[
        "run",
        cfg.to_str().unwrap(),
        "--trace",
        dir.to_str().unwrap(),
        "--trace-mode",
        "lockstep",
    ]);
    assert_guest_ok(code, &out, &err);
    let lines = std::fs::read_to_string(dir.join("interrupts.jsonl")).unwrap();
    let mut preempting = 0u64;
    let mut with_exits = 0u64;
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["preempt"] == serde_json::Value::Bool(true) {
            preempting += 1;
            assert_eq!(v["source"], "lapic-timer", "{l}");
            if v["exits"].as_object().is_some_and(|e| !e.is_empty()) {
                with_exits += 1;
            }
        }
    }
    assert!(
        preempting >= 3,
        "only {preempting} preempting ticks in the trace:\n{out}"
    );
    assert_eq!(
        with_exits, preempting,
        "lockstep gives every tick its exits"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["sources"]["lapic-timer"]["preempting"].as_u64(),
        Some(preempting),
        "{summary}"
    );
    assert!(
        err.contains("ticks ended a time slice") || out.contains("ticks ended a time slice"),
        "{out}{err}"
    );
}
