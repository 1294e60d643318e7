//! The guest kernel's own self-test and experiments, booted on /dev/kvm.

mod common;
use common::*;

fn on_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

#[test]
fn selftest_passes_every_mechanism_the_host_supports() {
    if !kvm_or_skip("selftest_passes_every_mechanism_the_host_supports") {
        return;
    }
    let (code, out, err) = run(&["run", "--cmdline", "run=selftest"]);
    assert_guest_ok(code, &out, &err);
    let results = results(&out);
    let tag = |name: &str| {
        results
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(t, _, d)| (t.as_str(), d.as_str()))
            .unwrap_or_else(|| panic!("no result line for {name}:\n{out}"))
    };
    for name in [
        "boot-info",
        "long-mode",
        "fpu-state",
        "gdt-tss",
        "idt",
        "paging",
        "exception-#DE",
        "exception-#DB",
        "exception-#UD",
        "exception-#GP",
        "exception-#PF",
        "exception-#NP",
        "exception-#SS",
        "user-#PF",
        "user-#GP",
        "user-#UD",
        "user-#DE",
        "user-#AC",
        "unexpected-vector",
        "stack-canaries",
    ] {
        let (t, detail) = tag(name);
        assert!(
            t == "PASS" || (t == "FAIL" && is_emulator_gap(name, detail)),
            "{name}: {t} {detail}"
        );
    }
    // Host-dependent checks: PASS on VMX/SVM, SKIP with the reason on kvm-pvm.
    for name in [
        "exception-#BP",
        "exception-#NM",
        "exception-#XM",
        "syscall-abi",
        "int80-abi",
    ] {
        let (t, detail) = tag(name);
        if on_pvm() {
            assert_eq!(t, "SKIP", "{name}");
            assert!(
                detail.contains("pvm"),
                "{name}: skip reason must name the host: {detail}"
            );
        } else {
            assert!(
                t == "PASS" || (t == "FAIL" && is_emulator_gap(name, detail)),
                "{name}: {t} {detail}"
            );
        }
    }
    assert!(tag("exception-#PF").1.contains("guard page"));
    assert!(tag("exception-#NP").1.contains("error code 0x38"));
    assert!(tag("user-#PF")
        .1
        .contains("ended the task; kernel continues"));
    assert_eq!(tag("exception-#TS").0, "SKIP");
    assert_eq!(tag("exception-#MC").0, "SKIP");
    let (passed, failed, skipped) = summary(&out).unwrap();
    let gaps = results
        .iter()
        .filter(|(t, n, d)| t == "FAIL" && is_emulator_gap(n, d))
        .count() as u32;
    assert_eq!(failed, gaps, "only known emulator gaps may fail");
    assert_eq!(passed + skipped + failed, results.len() as u32);
    // Ring-3 faults are reported with the faulting RIP and CS 0x23.
    assert!(
        out.contains("user fault: #GP (vector 13) at rip=0x") && out.contains("cs=0x23"),
        "{out}"
    );
}

#[test]
fn double_fault_is_reported_and_stops_the_guest() {
    if !kvm_or_skip("double_fault_is_reported_and_stops_the_guest") {
        return;
    }
    let (code, out, err) = run(&["run", "--cmdline", "crash=double-fault"]);
    assert_eq!(code, irqlab_abi::status::DOUBLE_FAULT as i32, "{out}{err}");
    assert!(out.contains("DOUBLE FAULT: #DF (vector 8)"), "{out}");
}

#[test]
fn unknown_run_names_are_reported_and_the_rest_runs() {
    if !kvm_or_skip("unknown_run_names_are_reported_and_the_rest_runs") {
        return;
    }
    let (code, out, err) = run(&["run", "--cmdline", "run=bogus,none"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("run: unknown experiment bogus ignored"),
        "{out}"
    );
    assert!(out.contains("SUMMARY passed=1 failed=0"), "{out}");
}

#[test]
fn unexpected_kernel_fault_is_reported() {
    if !kvm_or_skip("unexpected_kernel_fault_is_reported") {
        return;
    }
    let (code, out, err) = run(&["run", "--cmdline", "crash=kernel-fault"]);
    assert_eq!(code, irqlab_abi::status::KERNEL_FAULT as i32, "{out}{err}");
    assert!(
        out.contains("KERNEL FAULT: #PF (vector 14)") && out.contains("kernel read"),
        "{out}"
    );
}

#[test]
fn cost_experiments_report_ordered_statistics() {
    if !kvm_or_skip("cost_experiments_report_ordered_statistics") {
        return;
    }
    let cfg = root().join("configs/cost.toml");
    let (code, out, err) = run(&[
        "run",
        cfg.to_str().unwrap(),
        "--cmdline",
        "run=cost iters=1000",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    use irqlab_abi::results::{Cost, Line};
    let rows: Vec<Cost> = out
        .lines()
        .filter_map(|l| match Line::parse(l)? {
            Line::Cost(c) => Some(c),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    for want in [
        "timer-overhead",
        "function-call",
        "exception-#UD",
        "pio-exit",
    ] {
        assert!(names.contains(&want), "{want} missing:\n{out}");
    }
    // The user<->kernel rows need a CPU that runs ring-3 SYSCALL and `int 0x80` (VMX/SVM);
    // kvm-pvm skips them, saying why.
    if on_pvm() {
        assert!(out.contains("SKIP cost-syscall:"), "{out}");
        assert!(out.contains("SKIP cost-int80:"), "{out}");
    } else {
        for want in ["syscall-sysret", "int-0x80"] {
            assert!(names.contains(&want), "{want} missing:\n{out}");
        }
    }
    for row in rows {
        assert_eq!(row.iters, 1000, "{row}");
        assert!(
            row.min > 0 && row.min <= row.median && row.median <= row.p99,
            "{row}"
        );
    }
}
