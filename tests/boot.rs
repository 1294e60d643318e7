//! Boots the real irqlab guest on /dev/kvm and checks what it reports.

mod common;
use common::*;

#[test]
fn default_run_boots_the_builtin_guest_and_passes() {
    if !kvm_or_skip("default_run_boots_the_builtin_guest_and_passes") {
        return;
    }
    let (code, out, err) = run(&["run"]);
    assert_guest_ok(code, &out, &err);
    assert!(out.starts_with("irqlab guest "), "{out}");
    assert!(out.contains("irqchip=split"), "{out}");
    let (passed, _, _) = summary(&out).expect("SUMMARY line");
    assert!(passed >= 1);
    assert!(results(&out)
        .iter()
        .any(|(t, n, _)| t == "PASS" && n == "boot-info"));
    if code == 0 {
        assert!(err.is_empty(), "no diagnostics on success: {err}");
    }
}

#[test]
fn hello_config_runs_and_host_kind_reaches_the_guest() {
    if !kvm_or_skip("hello_config_runs_and_host_kind_reaches_the_guest") {
        return;
    }
    let cfg = root().join("configs/hello.toml");
    let (code, out, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_guest_ok(code, &out, &err);
    let expected = if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        "host=pvm"
    } else if std::path::Path::new("/sys/module/kvm_intel").exists() {
        "host=vmx"
    } else if std::path::Path::new("/sys/module/kvm_amd").exists() {
        "host=svm"
    } else {
        "host=unknown"
    };
    assert!(out.contains(expected), "{out}");
}

#[test]
fn kernel_irqchip_mode_boots_too() {
    if !kvm_or_skip("kernel_irqchip_mode_boots_too") {
        return;
    }
    let (code, out, err) = run(&["run", "--irqchip", "kernel"]);
    assert_guest_ok(code, &out, &err);
    assert!(out.contains("irqchip=kernel"), "{out}");
}

#[test]
fn flags_override_the_config_and_reach_the_guest() {
    if !kvm_or_skip("flags_override_the_config_and_reach_the_guest") {
        return;
    }
    let dir = scratch("override");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "cmdline = \"crash=status:5\"\nmem_mib = 32\n").unwrap();
    let (code, out, _) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, 5, "{out}");
    let (code, out, _) = run(&[
        "run",
        cfg.to_str().unwrap(),
        "--cmdline",
        "crash=status:7 tag=flag",
    ]);
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("cmdline=\"crash=status:7 tag=flag\""), "{out}");
}

#[test]
fn guest_status_maps_to_the_exit_code() {
    if !kvm_or_skip("guest_status_maps_to_the_exit_code") {
        return;
    }
    for (status, expected) in [("0", 0), ("1", 1), ("63", 63), ("64", 63), ("255", 63)] {
        let (code, _, err) = run(&["run", "--cmdline", &format!("crash=status:{status}")]);
        assert_eq!(code, expected, "status {status}: {err}");
    }
}

#[test]
fn serial_log_receives_the_console() {
    if !kvm_or_skip("serial_log_receives_the_console") {
        return;
    }
    let dir = scratch("serial-log");
    let log = dir.join("serial.txt");
    let (code, out, err) = run(&["run", "--serial-log", log.to_str().unwrap()]);
    assert_guest_ok(code, &out, &err);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.replace('\r', ""), out.replace('\r', ""));
    assert!(logged.contains("SUMMARY"));
}

#[test]
fn bench_boot_reports_boot_time_loop_ratio_and_memory() {
    if !kvm_or_skip("bench boot") {
        return;
    }
    let (code, out, err) = run(&[
        "bench", "boot", "--runs", "2", "--rounds", "1", "--exits", "500",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Numbers, not verdicts: timing targets are for `irqlab bench` runs, not for tests.
    for needle in [
        "median",
        "VMM memory: peak RSS",
        "bare KVM_RUN loop",
        "ratio irqlab/bare",
    ] {
        assert!(out.contains(needle), "missing {needle}:\n{out}");
    }
}

#[test]
fn bench_irq_reports_every_case() {
    if !kvm_or_skip("bench irq") {
        return;
    }
    let (code, out, err) = run(&["bench", "irq", "--seconds", "0.05"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("split ") || l.starts_with("kernel "))
        .collect();
    assert_eq!(rows.len(), 12, "{out}");
    // The split PIT path takes no userspace exit per tick (edge-triggered, LAPIC in kernel).
    let split_pit = rows
        .iter()
        .find(|l| l.contains(" pit ") && l.contains(" 100 "))
        .unwrap();
    assert!(split_pit.contains("pio 0 mmio 0 eoi 0"), "{split_pit}");
}

#[test]
fn bench_napi_reports_every_design_and_plots_the_livelock_curve() {
    if !kvm_or_skip("bench napi") {
        return;
    }
    let dir = scratch("bench-napi");
    let svg = dir.join("napi.svg");
    let (code, out, err) = run(&[
        "bench",
        "napi",
        "--rates",
        "1000,0",
        "--ms",
        "50",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Numbers, not verdicts: one row per design and rate, sent = processed + the drops.
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 13 && ["irq", "napi", "posted"].contains(&f[0]))
        .collect();
    assert_eq!(rows.len(), 6, "3 designs x 2 rates:\n{out}");
    for f in &rows {
        let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|_| panic!("{f:?}"));
        assert_eq!(n(2), n(3) + n(6) + n(7), "sent = processed + drops: {f:?}");
        assert_ne!(f[9], "NaN", "exits per packet from the marks: {f:?}\n{out}");
    }
    assert!(
        out.contains("collapse point (X = ") || out.contains("no collapse seen in this sweep"),
        "{out}"
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("napi.svg: {e}"));
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("data-design").is_some())
            .count(),
        6,
        "one polyline per design in each of the two panels:\n{svg}"
    );
}

#[test]
fn verbose_diagnostics_are_apart_from_the_outcome_line() {
    if !kvm_or_skip("verbose_diagnostics_are_apart_from_the_outcome_line") {
        return;
    }
    let (code, _, quiet) = run(&["run", "--cmdline", "run=none"]);
    assert_eq!(code, 0, "{quiet}");
    assert!(
        !quiet.contains("irqlab["),
        "diagnostics without -v:\n{quiet}"
    );
    let (code, _, info) = run(&["-v", "run", "--cmdline", "run=none"]);
    assert_eq!(code, 0, "{info}");
    for want in [
        "irqlab[info]: kernel built-in guest",
        "irqlab[info]: VM: 64 MiB",
    ] {
        assert!(info.contains(want), "{want:?} missing:\n{info}");
    }
    assert!(!info.contains("irqlab[debug]"), "-v shows debug:\n{info}");
    // -vv after the subcommand too (the flag is global).
    let (code, _, debug) = run(&["run", "-vv", "--cmdline", "run=none"]);
    assert_eq!(code, 0, "{debug}");
    assert!(debug.contains("irqlab[debug]: userspace exits:"), "{debug}");
    // (`run=none`: boot and report, no checks — exit 0 on every host kind.)
    // Every stderr line is a diagnostic or the outcome's own `irqlab:` line.
    for line in debug.lines() {
        assert!(
            line.starts_with("irqlab[") || line.starts_with("irqlab: "),
            "{line}"
        );
    }
}
