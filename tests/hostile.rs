//! Hostile guests: the built-in guest's `hostile=KIND` modes attack the device models and KVM
//! plumbing (see guest/src/hostile.rs). Each run must end the documented way within the
//! watchdog, with irqlab's resident memory sampled while it runs and flat.

mod common;
use common::*;
use std::io::Read;
use std::process::Stdio;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}

/// How the end-of-run report starts the line of ignored IO-APIC accesses.
const IOAPIC_LINE: &str = "irqlab: IO-APIC: ";

/// Runs `hostile=KIND` and returns (exit code, stdout, stderr, RSS samples in KiB).
fn hostile(kind: &str, vcpus: &str, timeout: &str) -> (i32, String, String, Vec<u64>) {
    let cmdline = format!("run=none hostile={kind}");
    let mut child = spawn_piped(
        &[
            "run",
            "--cmdline",
            &cmdline,
            "--vcpus",
            vcpus,
            "--timeout",
            timeout,
        ],
        Stdio::null(),
    );
    // Read the pipes on threads so a chatty guest never stalls on them.
    let out = read_on_thread(child.stdout.take().unwrap());
    let err = read_on_thread(child.stderr.take().unwrap());
    let started = Instant::now();
    let mut samples = Vec::new();
    let status = wait_bounded_sampling(
        &mut child,
        started + Duration::from_secs(120),
        &format!("hostile={kind}: irqlab did not end by itself"),
        |pid| samples.extend(rss_kib(pid)),
    );
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
        samples,
    )
}

/// Reads all of `pipe` on a thread of its own.
fn read_on_thread(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        pipe.read_to_string(&mut s).unwrap();
        s
    })
}

/// Flat: after the first quarter of the run (boot, guest memory being touched), resident
/// memory grows by less than 8 MiB.
fn assert_flat(kind: &str, samples: &[u64]) {
    if samples.len() < 8 {
        return; // too short a run to judge (it ended at once)
    }
    let settled = samples[samples.len() / 4];
    let peak = *samples.iter().max().unwrap();
    assert!(
        peak < settled + 8 * 1024,
        "hostile={kind}: RSS grew from {settled} KiB to {peak} KiB: {samples:?}"
    );
}

#[test]
fn hostile_guests_end_as_documented_with_flat_memory() {
    if !kvm_or_skip("hostile guests") {
        return;
    }
    // (kind, vCPUs, watchdog, expected exit code)
    for (kind, vcpus, timeout, want) in [
        ("port-storm", "1", "3", 74),
        ("ioapic-garbage", "1", "60", 0),
        ("low-vectors", "1", "60", 0),
        ("pit-count1", "1", "60", 0),
        ("unmapped-mmio", "1", "60", 0),
        ("msi-garbage", "2", "60", 0),
        ("sipi-storm", "8", "60", 0),
        ("cli-hlt", "1", "2", 74),
    ] {
        let (code, out, err, samples) = hostile(kind, vcpus, timeout);
        assert_eq!(code, want, "hostile={kind}:\n{out}\n{err}");
        // The IO-APIC's ignored accesses are reported (see
        // `ioapic_garbage_is_counted_in_the_report_and_the_trace`); beyond that, at most the
        // outcome line.
        let other: Vec<&str> = err
            .lines()
            .filter(|l| !(kind == "ioapic-garbage" && l.starts_with(IOAPIC_LINE)))
            .collect();
        assert!(
            !err.contains("panicked") && other.len() <= 1,
            "hostile={kind}: {err}"
        );
        if want == 0 {
            assert!(
                out.contains(&format!("hostile: {kind} done, still standing")),
                "{out}"
            );
        }
        assert_flat(kind, &samples);
    }
}

/// The count in "irqlab: IO-APIC: N guest accesses …".
fn reported_bad_accesses(err: &str) -> u64 {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with(IOAPIC_LINE)).collect();
    assert_eq!(lines.len(), 1, "one IO-APIC line: {err}");
    lines[0][IOAPIC_LINE.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {}", lines[0]))
}

#[test]
fn ioapic_garbage_is_counted_in_the_report_and_the_trace() {
    if !kvm_or_skip("hostile ioapic-garbage report") {
        return;
    }
    // Untraced: the end-of-run report names the ignored accesses, and only them.
    let (code, out, err) = run(&[
        "run",
        "--cmdline",
        "run=none hostile=ioapic-garbage",
        "--timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    // Every IOREGSEL index with 1-, 2- and 8-byte IOWIN accesses alone is 256 * 3 * 2.
    let untraced = reported_bad_accesses(&err);
    assert!(untraced >= 256 * 3 * 2, "{err}");
    assert_eq!(err.lines().count(), 1, "only the IO-APIC line: {err}");

    // Traced: the same count in summary.json, and the KVM calls did not fail.
    let dir = scratch("hostile-ioapic-garbage").join("trace");
    let (code, out, err) = run(&[
        "run",
        "--cmdline",
        "run=none hostile=ioapic-garbage",
        "--trace",
        dir.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let reported = reported_bad_accesses(&err);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let failures = &summary["failures"];
    assert_eq!(failures["ioapic_bad_accesses"], reported, "{summary:#}");
    assert_eq!(failures["routing_errors"], 0, "{summary:#}");
    assert_eq!(failures["gsi_line_errors"], 0, "{summary:#}");
    // The guest's garbage is deterministic (a fixed seed), so is the count.
    assert_eq!(reported, untraced, "{err}");
}

#[test]
fn a_well_behaved_guest_reports_no_failures() {
    if !kvm_or_skip("no failures reported") {
        return;
    }
    let dir = scratch("hostile-none").join("trace");
    let (code, out, err) = run(&[
        "run",
        "--cmdline",
        "run=none",
        "--trace",
        dir.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !err.contains("IO-APIC:") && !err.contains("interrupts:"),
        "{err}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["failures"],
        serde_json::json!({"routing_errors": 0, "gsi_line_errors": 0, "ioapic_bad_accesses": 0}),
        "{summary:#}"
    );
}
