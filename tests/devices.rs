//! Interrupt devices end to end: the PIT, LAPIC timer, MSI source and interrupt-driven UART,
//! in both interrupt-controller models, each checked by the guest.

mod common;
use common::*;
use std::io::Write;
use std::process::Stdio;

/// Runs irqlab with `args`, feeding `input` on stdin.
fn run_with_stdin(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = spawn_piped(args, Stdio::piped());
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The result line `name`, asserting it passed.
fn passed(stdout: &str, name: &str) -> String {
    let r = results(stdout);
    let (tag, _, detail) = r
        .iter()
        .find(|(_, n, _)| n == name)
        .unwrap_or_else(|| panic!("no result line {name} in:\n{stdout}"));
    assert_eq!(tag, "PASS", "{name}: {detail}\n{stdout}");
    detail.clone()
}

fn guest(irqchip: &str, cmdline: &str) -> String {
    let (code, out, err) = run(&[
        "run",
        "--irqchip",
        irqchip,
        "--cmdline",
        &timer_tolerance(cmdline),
        "--timeout",
        "30",
    ]);
    assert_eq!(code, 0, "{cmdline} ({irqchip}):\n{out}\n{err}");
    out
}

#[test]
fn pit_ticks_at_the_programmed_rate_in_both_irqchip_models() {
    if !kvm_or_skip("pit") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        let out = guest(irqchip, "run=timer timer=pit hz=500 ticks=150");
        let detail = passed(&out, "timer-pit");
        // The guest waits for its 150th tick, then stops the PIT: ticks can land in between —
        // one under TCG, where those few instructions take long, and two on a host loaded on
        // both cores, where KVM's in-kernel PIT re-injects the ticks a descheduled vCPU
        // missed back to back (seen: 152). A lost tick leaves the guest waiting (the check
        // fails); doubled ticks would count ~300. So 150 to 157 (5 % late) pass — and up to
        // 200 on an emulated CPU's clock (`IRQLAB_UNTRUSTED_CLOCK`: the nested lane), where
        // the vCPU shares one emulated CPU with the PIT's thread and the backlog that piles up
        // while it waits lands before the stop (seen: 165 and 171 of 150).
        let ticks: u32 = detail
            .split(" of 150 ticks")
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no tick count in {detail:?}"));
        let most = if std::env::var_os("IRQLAB_UNTRUSTED_CLOCK").is_some() {
            200
        } else {
            157
        };
        assert!((150..=most).contains(&ticks), "{detail}");
    }
}

#[test]
fn lapic_timer_periodic_and_tsc_deadline() {
    if !kvm_or_skip("lapic timer") {
        return;
    }
    passed(
        &guest("split", "run=timer timer=lapic hz=1000 ticks=200"),
        "timer-lapic",
    );
    let out = guest("split", "run=timer timer=deadline hz=1000 ticks=200");
    let r = results(&out);
    let (tag, _, detail) = r.iter().find(|(_, n, _)| n == "timer-deadline").unwrap();
    // irqlab sets CPUID.1:ECX.TSC_DEADLINE whenever KVM has the timer, so the check must run
    // and pass there; it may SKIP (saying why) only on a host without it.
    let kvm_has_it =
        kvm_ioctls::Kvm::new().is_ok_and(|k| k.check_extension(kvm_ioctls::Cap::TscDeadlineTimer));
    if kvm_has_it {
        assert_eq!(tag, "PASS", "{detail}\n{out}");
    } else {
        assert!(
            tag == "PASS" || (tag == "SKIP" && detail.contains("TSC_DEADLINE")),
            "{tag} {detail}"
        );
    }
}

#[test]
fn every_msi_from_the_source_device_is_handled() {
    if !kvm_or_skip("msi") {
        return;
    }
    for irqchip in ["split", "kernel"] {
        let detail = passed(&guest(irqchip, "run=msi count=500 rate=1000"), "msi");
        assert!(
            detail.starts_with("500 of 500 events accounted for"),
            "{detail}"
        );
    }
}

#[test]
fn uart_echoes_piped_stdin_with_edge_and_level_interrupts() {
    if !kvm_or_skip("uart echo") {
        return;
    }
    for (irqchip, trigger) in [("split", "edge"), ("split", "level"), ("kernel", "edge")] {
        let cmdline = format!("run=echo trigger={trigger}");
        let (code, out, err) = run_with_stdin(
            &[
                "run",
                "--irqchip",
                irqchip,
                "--cmdline",
                &cmdline,
                "--timeout",
                "30",
            ],
            b"hello irqlab\nsecond line\n",
        );
        assert_eq!(code, 0, "{irqchip}/{trigger}:\n{out}\n{err}");
        let echoed = out.split("end of input stops").nth(1).unwrap_or("");
        assert!(
            echoed.contains("hello irqlab\r\nsecond line\r\n"),
            "{irqchip}/{trigger}: echo missing:\n{out}"
        );
        let detail = passed(&out, "uart-echo");
        assert!(
            detail.starts_with("2 lines, 26 bytes in, 23 echoed"),
            "{detail}"
        );
        assert!(detail.contains(&format!("({trigger})")), "{detail}");
    }
}

#[test]
fn uart_echo_stops_at_the_configured_line() {
    if !kvm_or_skip("uart until") {
        return;
    }
    let cfg = root().join("configs/serial.toml");
    let (code, out, err) =
        run_with_stdin(&["run", cfg.to_str().unwrap()], b"one\nquit\nnever read\n");
    assert_eq!(code, 0, "{out}\n{err}");
    let detail = passed(&out, "uart-echo");
    assert!(detail.contains("ended by line"), "{detail}");
    assert!(!out.contains("never read"), "{out}");
}

#[test]
fn device_configs_run_and_pass() {
    if !kvm_or_skip("device configs") {
        return;
    }
    for (cfg, name) in [("timer.toml", "timer-pit"), ("msi.toml", "msi")] {
        let path = root().join("configs").join(cfg);
        let file: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cmdline = timer_tolerance(file["cmdline"].as_str().unwrap());
        let (code, out, err) = run(&["run", path.to_str().unwrap(), "--cmdline", &cmdline]);
        assert_eq!(code, 0, "{cfg}:\n{out}\n{err}");
        passed(&out, name);
        assert_eq!(summary(&out).map(|s| s.1), Some(0), "{cfg}");
    }
}

#[test]
fn aps_start_and_interrupts_follow_their_affinity() {
    if !kvm_or_skip("affinity") {
        return;
    }
    let cfg = root().join("configs/affinity.toml");
    let (code, out, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(passed(&out, "smp-bringup").starts_with("4 of 4 CPUs online"));
    passed(&out, "affinity-ioapic");
    passed(&out, "affinity-msi");
    // The /proc/interrupts-style table: PIT only in CPU 1's column, MSIs only in CPU 3's.
    let row = |vector: &str| -> Vec<u64> {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("interrupts: {vector} ")))
            .unwrap_or_else(|| panic!("no row {vector}:\n{out}"));
        line.split(' ')
            .skip(2)
            .take(4)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let pit = row("0x30");
    assert!(
        pit[1] >= 200 && pit[0] == 0 && pit[2] == 0 && pit[3] == 0,
        "{pit:?}"
    );
    let msi = row("0x40");
    assert!(
        msi[3] > 0 && msi[0] == 0 && msi[1] == 0 && msi[2] == 0,
        "{msi:?}"
    );

    // Kernel irqchip, eight vCPUs, other targets.
    let (code, out, err) = run(&[
        "run",
        "--irqchip",
        "kernel",
        "--vcpus",
        "8",
        "--cmdline",
        "run=affinity pit_cpu=6 msi_cpu=2 ticks=100 count=200",
        "--timeout",
        "30",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(passed(&out, "smp-bringup").starts_with("8 of 8 CPUs online"));
    assert!(passed(&out, "affinity-ioapic").starts_with("PIT pin 2 -> CPU 6"));
    assert!(passed(&out, "affinity-msi").starts_with("MSIs -> CPU 2"));
}

#[test]
fn affinity_needs_two_vcpus_and_says_so() {
    if !kvm_or_skip("affinity single") {
        return;
    }
    let (code, out, _) = run(&["run", "--cmdline", "run=affinity", "--timeout", "30"]);
    assert_eq!(code, 0);
    let r = results(&out);
    assert!(
        r.iter()
            .any(|(t, n, d)| t == "SKIP" && n == "affinity" && d.contains("vcpus >= 2")),
        "{out}"
    );
}

#[test]
fn posted_notifications_coalesce_and_no_event_is_lost() {
    if !kvm_or_skip("posted") {
        return;
    }
    // Direct: one MSI per event.
    let out = guest("split", "run=posted mode=direct count=2000 rate=5000");
    let d = passed(&out, "posted-direct");
    assert!(d.starts_with("2000 of 2000 events processed"), "{d}");
    assert!(d.contains("2000 MSIs sent"), "{d}");
    // Posted, as fast as possible: far fewer notifications than events, all processed.
    let out = guest("split", "run=posted mode=posted count=5000 rate=0");
    let d = passed(&out, "posted-notify");
    assert!(d.starts_with("5000 of 5000 events processed"), "{d}");
    let msis: u64 = d
        .split("; ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=500).contains(&msis),
        "{msis} notifications for 5000 events: {d}"
    );
    // Poll mode: SN set, no notifications at all.
    let out = guest(
        "kernel",
        "run=posted mode=posted poll=1 count=2000 rate=10000",
    );
    let d = passed(&out, "posted-poll");
    assert!(
        d.contains("0 MSIs sent") && d.contains("2000 suppressed"),
        "{d}"
    );
    // The shipped config, and a second vCPU as the target.
    let cfg = root().join("configs/posted.toml");
    let (code, out, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    passed(&out, "posted-notify");
    let (code, out, err) = run(&[
        "run",
        "--vcpus",
        "2",
        "--cmdline",
        "run=posted cpu=1 count=2000 rate=20000",
        "--timeout",
        "30",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(passed(&out, "posted-notify").contains("on CPU 1"));
}
