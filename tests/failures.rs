//! One test per failure class: each must end with its documented exit code and one clear
//! line on stderr, never a panic or a backtrace.

mod common;
use common::*;
use irqlab::loader::elf::tiny_elf;
use irqlab::outcome::code;

/// Asserts the one-line error contract: exactly one `irqlab:` line containing `needle`, no
/// Rust panic text.
fn assert_one_line_error(err: &str, needle: &str) {
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic leaked: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("irqlab: ")).collect();
    assert_eq!(lines.len(), 1, "expected one irqlab: line, got:\n{err}");
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in {:?}",
        lines[0]
    );
}

#[test]
fn missing_kernel_file() {
    let (code, _, err) = run(&["run", "--kernel", "/nonexistent/kernel.elf"]);
    assert_eq!(code, i32::from(code::KERNEL));
    assert_one_line_error(&err, "/nonexistent/kernel.elf: cannot read kernel image");
}

#[test]
fn not_an_elf() {
    let dir = scratch("not-elf");
    let k = dir.join("kernel.txt");
    std::fs::write(&k, "this is not a kernel\n").unwrap();
    let (code, _, err) = run(&["run", "--kernel", k.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::KERNEL));
    assert_one_line_error(&err, "not an ELF file");
}

#[test]
fn wrong_architecture_elf() {
    let dir = scratch("wrong-arch");
    let k = dir.join("arm.elf");
    std::fs::write(&k, tiny_elf(2, 183, 0x10_0000, 0, &[0; 4])).unwrap();
    let (code, _, err) = run(&["run", "--kernel", k.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::KERNEL));
    assert_one_line_error(&err, "AArch64");
    let k32 = dir.join("i386.elf");
    std::fs::write(&k32, tiny_elf(1, 3, 0x10_0000, 0, &[0; 4])).unwrap();
    let (code, _, err) = run(&["run", "--kernel", k32.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::KERNEL));
    assert_one_line_error(&err, "32-bit ELF");
}

#[test]
fn elf_that_does_not_fit_in_guest_memory() {
    let dir = scratch("too-big");
    let k = dir.join("big.elf");
    // 64 MiB of .bss above 1 MiB cannot fit in 32 MiB of guest memory.
    std::fs::write(&k, tiny_elf(2, 62, 0x10_0000, 64 << 20, &[0xf4])).unwrap();
    let (code, _, err) = run(&["run", "--kernel", k.to_str().unwrap(), "--mem-mib", "32"]);
    assert_eq!(code, i32::from(code::KERNEL));
    assert_one_line_error(
        &err,
        "guest memory ends at 0x2000000 (32 MiB); raise mem_mib",
    );
}

#[test]
fn malformed_toml() {
    let dir = scratch("malformed");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "mem_mib = 64\nvcpus = = 1\n").unwrap();
    let (code, _, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::CONFIG));
    assert_one_line_error(&err, &format!("{}:2:", cfg.display()));
}

#[test]
fn unknown_key() {
    let dir = scratch("unknown-key");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "mem_mib = 64\n\nmemory_mb = 3\n").unwrap();
    let (code, _, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::CONFIG));
    assert_one_line_error(
        &err,
        &format!("{}:3:1: unknown field `memory_mb`", cfg.display()),
    );
}

#[test]
fn zero_memory() {
    let dir = scratch("zero-mem");
    let cfg = dir.join("zero.toml");
    std::fs::write(&cfg, "mem_mib = 0\n").unwrap();
    let (code, _, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::CONFIG));
    assert_one_line_error(&err, &format!("{}:1:11: `mem_mib` is 0", cfg.display()));
    let (code, _, err) = run(&["run", "--mem-mib", "0"]);
    assert_eq!(code, i32::from(code::CONFIG));
    assert_one_line_error(&err, "--mem-mib: `mem_mib` is 0");
}

#[test]
fn missing_config_file() {
    let (code, _, err) = run(&["run", "/nonexistent/x.toml"]);
    assert_eq!(code, i32::from(code::CONFIG));
    assert_one_line_error(&err, "/nonexistent/x.toml: cannot read config file");
}

#[test]
fn usage_error() {
    let (code, _, err) = run(&["run", "--no-such-flag"]);
    assert_eq!(code, i32::from(code::USAGE));
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Examples:") && out.contains("Exit codes:"),
        "{out}"
    );
}

#[test]
fn guest_triple_fault() {
    if !kvm_or_skip("guest_triple_fault") {
        return;
    }
    let (code, out, err) = run(&["run", "--cmdline", "crash=triple-fault"]);
    assert_eq!(code, i32::from(code::TRIPLE_FAULT), "{out}{err}");
    if irqlab::host::detect_host_kind() == irqlab_abi::boot_info::HostKind::Svm {
        // KVM INITs the vCPU at the SHUTDOWN intercept: irqlab says so instead of printing
        // the reset state as the guest's, and names where the guest was last seen.
        assert_one_line_error(
            &err,
            "guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU 0: registers unavailable: on AMD SVM",
        );
        assert!(!err.contains("rip="), "{err}");
        assert!(
            err.contains("; last exit to irqlab: port write 0x"),
            "{err}"
        );
    } else {
        assert_one_line_error(
            &err,
            "guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU 0: rip=0x",
        );
        // The faulting instruction is the ud2 (0f 0b) the guest executed with an empty IDT.
        assert!(err.contains(" code=0f0b"), "{err}");
        assert!(err.contains(" cr3=0x") && err.contains(" cr0=0x8"), "{err}");
    }
    // Output printed before the crash is not lost.
    assert!(out.contains("crash: loading an empty IDT"), "{out}");
}

#[test]
fn guest_that_hangs_hits_the_watchdog() {
    if !kvm_or_skip("guest_that_hangs_hits_the_watchdog") {
        return;
    }
    let started = std::time::Instant::now();
    let (code, out, err) = run(&["run", "--cmdline", "crash=hang", "--timeout", "0.5"]);
    assert_eq!(code, i32::from(code::TIMEOUT), "{out}{err}");
    assert_one_line_error(&err, "watchdog: guest still running after 0.5 s");
    assert!(out.contains("crash: spinning"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn guest_panic_is_reported_with_its_status() {
    if !kvm_or_skip("guest_panic_is_reported_with_its_status") {
        return;
    }
    let (code, out, err) = run(&["run", "--cmdline", "crash=panic"]);
    assert_eq!(
        code,
        i32::from(irqlab_abi::status::PANIC as u8),
        "{out}{err}"
    );
    assert!(out.contains("PANIC: panicked at"), "{out}");
}

#[test]
fn sigterm_stops_the_guest_and_flushes_output() {
    if !kvm_or_skip("sigterm_stops_the_guest_and_flushes_output") {
        return;
    }
    use std::io::Read;
    let mut child = irqlab()
        .args(["run", "--cmdline", "crash=hang", "--timeout", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the guest is spinning (its last line is out), then signal.
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 256];
    while !out.contains("crash: spinning") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "guest output ended early: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(i32::from(code::SIGTERM)), "{err}");
    assert_one_line_error(&err, "stopped by signal 15");
}

#[test]
fn unusable_kvm_is_a_host_error() {
    // Whatever the host, `irqlab check` must end with 0 (usable) or the host error code.
    let (code, out, _) = run(&["check"]);
    assert!(code == 0 || code == i32::from(code::HOST), "{out}");
    assert!(out.contains("host kind:"), "{out}");
}

#[test]
fn guest_reboot_requests_end_the_run_with_their_own_exit_code() {
    if !kvm_or_skip("guest_reboot_requests_end_the_run_with_their_own_exit_code") {
        return;
    }
    // i8042 reset pulse, the reset control register, and the FADT's reset register (found by
    // the guest through the ACPI tables irqlab writes for PVH kernels).
    for (boot, how, via) in [
        ("native", "kbd", "i8042 reset pulse: port 0x64 <- 0xfe"),
        ("native", "cf9", "reset control register: port 0xcf9"),
        ("pvh", "acpi", "reset control register: port 0xcf9"),
    ] {
        let cmdline = format!("run=none crash=reboot-{how}");
        let (code, out, err) = run(&["run", "--boot", boot, "--cmdline", &cmdline]);
        assert_eq!(code, i32::from(code::REBOOT), "{how}: {out}{err}");
        assert_one_line_error(&err, &format!("guest requested reboot ({via}"));
        assert!(!out.contains("did not end the run"), "{out}");
    }
    // The FADT said: port 0xcf9, value 6.
    let (_, out, _) = run(&[
        "run",
        "--boot",
        "pvh",
        "--cmdline",
        "run=none crash=reboot-acpi",
    ]);
    assert!(out.contains("reboot: acpi: port 0xcf9 <- 0x6"), "{out}");
}
