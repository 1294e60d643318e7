//! kvm-unit-tests, the public conformance suite for x86 interrupts, APICs and exceptions under
//! KVM, on irqlab's devices: six prebuilt, unmodified test kernels from `../shared/kvm-unit-tests/`
//! (Multiboot ELF32; fw_cfg tells them the vCPUs and RAM, the pc-testdev-compatible device
//! drives the ioapic test's IRQ lines), each in both interrupt-controller models with the
//! vCPU count its `unittests.cfg` entry gives.
//!
//! Expectations per host kind. On VMX/SVM every check must PASS and the kernel must exit 0,
//! except, on a host whose KVM predates 6.3, the apic kernel's IPI checks that KVM's APIC map
//! fails there for any VMM (`fixed_in_kvm_6_3`: exact signatures, upstream fixes named).
//! On kvm-pvm (this project's development host) KVM emulates the guest kernel and has three
//! behaviours the suite detects (measured with probe kernels; see README "Running
//! kvm-unit-tests"): an interrupt made pending while IF=0 is injected late, not at the
//! `sti; nop` boundary; a level-triggered vector is EOI'd at injection; a pending EOI exit
//! does not wake a halted vCPU. There the checks those behaviours break are the only FAILs
//! allowed, by name, and the kernels that then wait forever end by the watchdog; `int3` and
//! `movbe` stop the vCPU (exit 72, instruction bytes named).

mod common;
use common::*;
use std::path::PathBuf;

fn on_pvm() -> bool {
    irqlab::host::detect_host_kind() == irqlab_abi::boot_info::HostKind::Pvm
}

/// The suite's kernels, or `None` (with a message) outside CI when they are not there.
fn suite() -> Option<PathBuf> {
    let dir = root().join("../shared/kvm-unit-tests");
    if dir.join("ioapic.flat").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must have the kvm-unit-tests kernels in {}",
        dir.display()
    );
    println!(
        "SKIP kvm-unit-tests: no prebuilt kernels in {} (see its README)",
        dir.display()
    );
    None
}

/// The kernels that end by the watchdog on kvm-pvm get 40 s: they reach their last check in
/// ~2 s on an idle host, but the suite must pass on a loaded one.
///
/// One kernel's run: exit code, per-check results (`PASS`/`FAIL`/`SKIP`, check name), stderr.
struct Outcome {
    code: i32,
    checks: Vec<(String, String)>,
    out: String,
    err: String,
}

/// The watchdog for a kernel that needs `secs` on this host. In the nested-SVM lane
/// (`IRQLAB_UNTRUSTED_CLOCK`) QEMU's TCG executes the guest and every exit the kernel causes
/// is KVM's, run by TCG: the apic kernel, ~2 s on hardware, took 166–282 s there as x2apic
/// (its NMI loops: ~1.2 ms per iteration of 100,000) and 806 s as xapic (each ICR write is
/// an MMIO exit KVM must decode; measured under build load). So the lane gets 12 times as long.
fn watchdog(secs: u32) -> String {
    if std::env::var_os("IRQLAB_UNTRUSTED_CLOCK").is_some() {
        (secs * 12).to_string()
    } else {
        secs.to_string()
    }
}

fn run_kernel(name: &str, vcpus: &str, irqchip: &str, timeout: u32) -> Option<Outcome> {
    run_kernel_with(name, vcpus, irqchip, timeout, &[])
}

/// [`run_kernel`] with more `irqlab run` arguments.
fn run_kernel_with(
    name: &str,
    vcpus: &str,
    irqchip: &str,
    timeout: u32,
    extra: &[&str],
) -> Option<Outcome> {
    let dir = suite()?;
    let kernel = dir.join(format!("{name}.flat"));
    let timeout = &watchdog(timeout);
    let mut args = vec![
        "run",
        "--kernel",
        kernel.to_str().unwrap(),
        "--vcpus",
        vcpus,
        "--irqchip",
        irqchip,
        "--timeout",
        timeout,
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    let checks = out
        .lines()
        .filter_map(|l| {
            let (tag, rest) = l.split_once(": ")?;
            matches!(tag, "PASS" | "FAIL" | "SKIP").then(|| (tag.to_string(), rest.to_string()))
        })
        .collect();
    Some(Outcome {
        code,
        checks,
        out,
        err,
    })
}

impl Outcome {
    fn count(&self, tag: &str) -> usize {
        self.checks.iter().filter(|(t, _)| t == tag).count()
    }
    fn tag(&self, check: &str) -> Option<&str> {
        self.checks
            .iter()
            .find(|(_, n)| n == check)
            .map(|(t, _)| t.as_str())
    }
    /// Every FAIL is one of `allowed`.
    fn fails_only(&self, allowed: &[&str]) {
        for (t, n) in &self.checks {
            assert!(
                t != "FAIL" || allowed.contains(&n.as_str()),
                "unexpected FAIL {n}:\n{}\n{}",
                self.out,
                self.err
            );
        }
    }
    /// Every check passed and the kernel exited 0 — or, in the nested-SVM lane, every FAIL
    /// is one the same kernel showed under plain QEMU TCG (a known emulator gap, see
    /// `kvm_unit_tests_gaps`) and the kernel exited 1 for them.
    fn passed_cleanly(&self, kernel: &str, what: &str) {
        let gaps = kvm_unit_tests_gaps(kernel);
        let mut accepted = gaps.clone();
        if std::env::var_os("IRQLAB_UNTRUSTED_CLOCK").is_some() {
            for check in TIMING_WINDOW_CHECKS {
                if self.tag(check) == Some("FAIL") {
                    println!("NOT JUDGED on an emulated CPU's clock ({kernel}): {check}");
                    accepted.push(check.to_string());
                }
            }
        }
        for (t, n) in &self.checks {
            if t == "FAIL" && gaps.contains(n) {
                println!("KNOWN EMULATOR GAP ({kernel}: the same FAIL is recorded evidence): {n}");
            }
        }
        if let Some((major, minor)) = host_kvm_before_6_3() {
            for (t, n) in &self.checks {
                if t == "FAIL" && kernel == "apic" && fixed_in_kvm_6_3(n) && !accepted.contains(n) {
                    println!("KNOWN HOST KVM BUG (KVM {major}.{minor}, fixed in 6.3): {n}");
                    accepted.push(n.clone());
                }
            }
        }
        let gaps = accepted;
        let fails = self
            .checks
            .iter()
            .filter(|(t, n)| t == "FAIL" && !gaps.contains(n))
            .count();
        assert_eq!(fails, 0, "{what}:\n{}\n{}", self.out, self.err);
        let want = if self.count("FAIL") == 0 { 0 } else { 1 };
        assert_eq!(self.code, want, "{what}:\n{}\n{}", self.out, self.err);
    }
}

/// The host kernel's release (KVM is part of it) when it is older than 6.3: major, minor.
fn host_kvm_before_6_3() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    ((major, minor) < (6, 3)).then_some((major, minor))
}

/// apic checks (xAPIC mode) that KVM before 6.3 fails whatever VMM runs the kernel: its
/// optimized APIC map kept one vCPU per xAPIC ID and one per logical-ID bit, so an IPI to an
/// ID two vCPUs share reaches only one of them (`got 1`). Fixed upstream in 6.3 by
/// 5b84b0291702 ("KVM: x86: Honor architectural behavior for aliased 8-bit APIC IDs"),
/// 2970052481b9 ("KVM: x86: Disable APIC logical map if vCPUs are aliased in logical mode")
/// and 2bf934aadcac ("KVM: x86: Disable APIC logical map if logical ID covers multiple MDAs"),
/// none marked for stable. Measured in the nested lane: the same irqlab fails exactly these on
/// Debian 12's KVM 6.1 and passes them on 6.12, and QEMU's own harness fails the logical-mode
/// ones on 6.1 too (docs/nested-svm.md). Only `got 1` is the bug's signature.
fn fixed_in_kvm_6_3(check: &str) -> bool {
    let aliased_physical = check
        .strip_prefix("Want 2 IPI(s) using physical mode, dest = ")
        .and_then(|rest| rest.strip_suffix(", got 1 IPI(s)"))
        .is_some_and(|dest| u8::from_str_radix(dest, 16).is_ok());
    aliased_physical
        || [
            "IPI to aliased xAPIC physical IDs",
            "Want 2 IPI(s) using logical flat mode, dest = 3, got 1 IPI(s)",
            "IPI to multiple targets using logical flat mode",
            "Want 2 IPI(s) using logical cluster mode, dest = 3, got 1 IPI(s)",
            "IPI to multiple targets using logical cluster mode",
        ]
        .contains(&check)
}

/// apic checks that read the LAPIC timer's current count within half a period (~5 ms) of an
/// earlier read. Under the nested lane's TCG two guest instructions can be further apart than
/// that, and the periodic timer reloads in between (seen: "TMCCT should not be reset to TMICT
/// value" failed in 2 of 4 runs; the suite's own harness passed it). Like timer rates, they
/// are reported, not judged, where `IRQLAB_UNTRUSTED_CLOCK` is set; everywhere else they must
/// pass.
const TIMING_WINDOW_CHECKS: &[&str] = &[
    "TMCCT should not be reset to TMICT value",
    "TMCCT should be reset to the initial-count",
    "TMCCT should not be reset to init",
];

/// Checks the host's late injection and EOI-at-injection break on kvm-pvm (either model).
const PVM_IOAPIC_FAILS: &[&str] = &[
    "ioapic simultaneous edge interrupts",
    "unmasked level interrupt",
    "retriggered level interrupts with mask",
    "ioapic logical destination mode",
    "Reconfigure Remote IRR set",
    "Reconfigure self highest priority",
    "Reconfigure self lower priority",
];

#[test]
fn ioapic() {
    if !kvm_or_skip("kvm-unit-tests ioapic") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        let Some(r) = run_kernel("ioapic", "4", irqchip, 40) else {
            return;
        };
        let what = format!("ioapic ({irqchip})");
        // fw_cfg gave the kernel 4 CPUs (without it: "waiting for 65534 APs").
        assert!(r.out.contains("setup: CPU 3 online"), "{what}: {}", r.out);
        // The register checks, arbitration included (82093AA §3.2.3), pass in both models.
        for check in [
            "version register read only test",
            "id register only bits [24:27] writable",
            "arbitration register set by id",
            "arbtration register read only",
            "edge triggered intr",
            "level triggered intr",
        ] {
            assert_eq!(r.tag(check), Some("PASS"), "{what}: {check}\n{}", r.out);
        }
        if on_pvm() {
            r.fails_only(PVM_IOAPIC_FAILS);
            if irqchip == "split" {
                for check in [
                    "coalesce simultaneous level interrupts",
                    "sequential level interrupts",
                ] {
                    assert_eq!(r.tag(check), Some("PASS"), "{what}: {check}\n{}", r.out);
                }
            }
            // The level-retrigger check then waits in `hlt` for an EOI exit the host never
            // delivers to a halted vCPU: the watchdog ends it.
            assert_eq!(r.code, 74, "{what}: {}", r.err);
        } else {
            r.passed_cleanly("ioapic", &what);
        }
    }
}

// The suite's two entries for the apic kernel: `x2apic` (CPUID offers x2APIC) in both
// irqchip models, and `xapic` (`-cpu …,-x2apic`: `--x2apic off`) with the split irqchip. One
// test each, so that a failure names its entry and the nested lane's retry runs only that one
// (under TCG the xapic entry alone takes minutes).
// On kvm-pvm each stops in test_pv_ipi's vmcall, as QEMU does there, after 31 (x2apic) and 21
// (xapic) PASS (QEMU 7.2 -accel kvm: the same counts).
// The watchdogs keep the suite's own ratio (unittests.cfg: `timeout = 30` for x2apic, 60 for
// xapic, whose ICR writes are MMIO exits rather than MSR writes).

#[test]
fn apic_as_x2apic_split() {
    apic_entry("x2apic", "split", &[], 31, 40);
}

#[test]
fn apic_as_x2apic_kernel() {
    apic_entry("x2apic", "kernel", &[], 31, 40);
}

/// (Named to sort last: libtest runs a binary's tests in name order, and under the nested
/// lane's TCG this entry's NMI loops take the longest and have crashed the nested host, whose
/// next boot then runs the whole binary again.)
#[test]
fn xapic_entry_of_the_apic_kernel() {
    apic_entry("xapic", "split", &["--x2apic", "off"], 21, 80);
}

fn apic_entry(entry: &str, irqchip: &str, extra: &[&str], passes: usize, secs: u32) {
    if !kvm_or_skip(&format!("kvm-unit-tests apic as {entry} ({irqchip})")) {
        return;
    }
    // On kvm-pvm every entry stops at test_pv_ipi's vmcall within seconds: 40 s is plenty.
    let secs = if on_pvm() { 40 } else { secs };
    let Some(r) = run_kernel_with("apic", "2", irqchip, secs, extra) else {
        return;
    };
    let what = format!("apic as {entry} ({irqchip})");
    let mode = if entry == "x2apic" {
        "x2apic enabled"
    } else {
        "x2apic not detected"
    };
    assert!(r.out.contains(mode), "{what}: no {mode:?}\n{}", r.out);
    if on_pvm() {
        assert!(
            r.count("PASS") >= passes,
            "{what}: {} PASS\n{}",
            r.count("PASS"),
            r.out
        );
        assert_eq!(r.count("FAIL"), 0, "{what}:\n{}", r.out);
        // test_pv_ipi's vmcall never returns on kvm-pvm (QEMU stops at the same place).
        assert_eq!(r.code, 74, "{what}: {}", r.err);
    } else {
        // The kernel ran to its summary: every check judged (gaps only with evidence).
        r.passed_cleanly("apic", &what);
    }
}

#[test]
fn emulator() {
    if !kvm_or_skip("kvm-unit-tests emulator") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        let Some(r) = run_kernel("emulator", "1", irqchip, 30) else {
            return;
        };
        let what = format!("emulator ({irqchip})");
        // string_io_mmio: `rep insb` from the test device's port into its MMIO window.
        assert_eq!(r.tag("string_io_mmio"), Some("PASS"), "{what}:\n{}", r.out);
        assert!(
            r.count("PASS") >= 98,
            "{what}: {} PASS\n{}",
            r.count("PASS"),
            r.out
        );
        if on_pvm() {
            assert_eq!(r.count("FAIL"), 0, "{what}:\n{}", r.out);
            // KVM's instruction emulator has no movbe (0f 38 f0).
            assert_eq!(r.code, 72, "{what}: {}", r.err);
            assert!(r.err.contains("code=0f38f0"), "{what}: {}", r.err);
        } else {
            r.passed_cleanly("emulator", &what);
        }
    }
}

#[test]
fn eventinj() {
    if !kvm_or_skip("kvm-unit-tests eventinj") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        let Some(r) = run_kernel("eventinj", "1", irqchip, 30) else {
            return;
        };
        let what = format!("eventinj ({irqchip})");
        if on_pvm() {
            // `int3` cannot run on kvm-pvm.
            assert_eq!(r.count("FAIL"), 0, "{what}:\n{}", r.out);
            assert_eq!(r.code, 72, "{what}: {}", r.err);
            assert!(r.err.contains("code=cc"), "{what}: {}", r.err);
        } else {
            r.passed_cleanly("eventinj", &what);
        }
    }
}

#[test]
fn smptest_and_idt_test() {
    if !kvm_or_skip("kvm-unit-tests smptest idt_test") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        for (name, vcpus, passes) in [("smptest", "2", 1), ("idt_test", "1", 4)] {
            let Some(r) = run_kernel(name, vcpus, irqchip, 30) else {
                return;
            };
            let what = format!("{name} ({irqchip})");
            assert_eq!(r.count("PASS"), passes, "{what}:\n{}", r.out);
            r.passed_cleanly(name, &what);
        }
    }
}

#[test]
fn ioapic_interrupts_are_traced_per_pin() {
    if !kvm_or_skip("kvm-unit-tests trace") {
        return;
    }
    let Some(dir) = suite() else {
        return;
    };
    let trace = scratch("kut-trace");
    let (code, out, err) = run(&[
        "run",
        "--kernel",
        dir.join("ioapic.flat").to_str().unwrap(),
        "--vcpus",
        "4",
        "--timeout",
        &watchdog(40),
        "--trace",
        trace.to_str().unwrap(),
    ]);
    assert!(out.contains("PASS: edge triggered intr"), "{out}\n{err}");
    if !on_pvm() {
        assert_eq!(code, 0, "{out}\n{err}");
    }
    // The test drives IRQ lines 0x0e and 0x0f through the test device: both pins show their
    // injections. The kernel keeps no irqlab trace ring, so their latency is unknown (null),
    // never 0.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trace.join("summary.json")).unwrap())
            .unwrap();
    for pin in ["ioapic:pin14", "ioapic:pin15"] {
        let s = &summary["sources"][pin];
        assert!(s["injected"].as_u64().unwrap_or(0) > 0, "{pin}: {summary}");
        assert!(s["latency_p50_us"].is_null(), "{pin}: {s}");
    }
    let exits = std::fs::read_to_string(trace.join("exits.jsonl")).unwrap();
    assert!(
        exits.lines().any(|l| l.contains("\"addr\":8206")),
        "no exit for port 0x200e in exits.jsonl"
    );
}

#[test]
fn only_the_kvm_6_3_fixes_signatures_are_known_host_bugs() {
    assert!(fixed_in_kvm_6_3(
        "Want 2 IPI(s) using physical mode, dest = fe, got 1 IPI(s)"
    ));
    assert!(fixed_in_kvm_6_3("IPI to aliased xAPIC physical IDs"));
    assert!(fixed_in_kvm_6_3(
        "IPI to multiple targets using logical cluster mode"
    ));
    // Another count, another mode or another check is irqlab's to answer for.
    assert!(!fixed_in_kvm_6_3(
        "Want 2 IPI(s) using physical mode, dest = fe, got 0 IPI(s)"
    ));
    assert!(!fixed_in_kvm_6_3(
        "Want 2 IPI(s) using physical mode, dest = zz, got 1 IPI(s)"
    ));
    assert!(!fixed_in_kvm_6_3("nmi-after-sti"));
    assert!(!fixed_in_kvm_6_3(
        "IPI to single target using logical flat mode"
    ));
}
