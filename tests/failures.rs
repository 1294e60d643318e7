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
    let (cfg, err) = refused_config(
        &scratch("malformed"),
        "bad.toml",
        "mem_mib = 64\nvcpus = = 1\n",
    );
    assert_one_line_error(&err, &format!("{}:2:", cfg.display()));
}

#[test]
fn unknown_key() {
    let (cfg, err) = refused_config(
        &scratch("unknown-key"),
        "bad.toml",
        "mem_mib = 64\n\nmemory_mb = 3\n",
    );
    assert_one_line_error(
        &err,
        &format!("{}:3:1: unknown field `memory_mb`", cfg.display()),
    );
}

#[test]
fn zero_memory() {
    let (cfg, err) = refused_config(&scratch("zero-mem"), "zero.toml", "mem_mib = 0\n");
    assert_one_line_error(&err, &format!("{}:1:11: `mem_mib` is 0", cfg.display()));
    // On the command line it is a usage error (see `bad_numeric_flags_are_usage_errors`).
    let (code, _, err) = run(&["run", "--mem-mib", "0"]);
    assert_eq!(code, i32::from(code::USAGE));
    assert_one_line_error(&err, "invalid value '0' for '--mem-mib <N>'");
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
    // The report says where the vCPU was: running (a spin loop, no exit since its last
    // console byte), with its RIP and last exit.
    assert!(err.contains("; vCPU 0 running at rip=0x"), "{err}");
    assert!(
        err.contains("last exit to irqlab: port write 0x3f8") && err.contains(" s before the stop"),
        "{err}"
    );
    assert!(out.contains("crash: spinning"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_guest_parked_with_its_apic_off_ends_by_the_watchdog() {
    if !kvm_or_skip("a_guest_parked_with_its_apic_off_ends_by_the_watchdog") {
        return;
    }
    // The nested lane's park VM: the vCPU clears IA32_APIC_BASE.EN and halts with interrupts
    // off; only the watchdog (or a signal) ends such a run.
    let (code, out, err) = run(&[
        "run",
        "--cmdline",
        "crash=park-apic-off",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(code, i32::from(code::TIMEOUT), "{out}{err}");
    assert_one_line_error(&err, "watchdog: guest still running after 0.5 s");
    // KVM's run state tells a halted vCPU from a spinning one.
    assert!(err.contains("; vCPU 0 halted at rip=0x"), "{err}");
    assert!(out.contains("local APIC hardware-disabled"), "{out}");
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
    let mut child = spawn_piped(
        &["run", "--cmdline", "crash=hang", "--timeout", "30"],
        std::process::Stdio::inherit(),
    );
    // Wait until the guest is spinning (its last line is out), then signal.
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 256];
    while !out.contains("crash: spinning") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "guest output ended early: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    send_signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    let err = read_stderr(&mut child);
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

/// Runs irqlab with `args`, failing the test (and killing irqlab) if it has not ended within
/// ten seconds: for inputs that used to block forever.
fn run_with_deadline(args: &[&str]) -> (i32, String) {
    wait_with_deadline(irqlab(), args)
}

/// As [`run_with_deadline`], with irqlab's address space limited to 1 GiB: for inputs that
/// used to be read without end (/dev/zero), so that irqlab without the fix fails (its
/// allocation does) instead of taking the machine's memory.
fn run_with_deadline_and_memory_cap(args: &[&str]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = irqlab();
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    wait_with_deadline(cmd, args)
}

fn wait_with_deadline(mut cmd: std::process::Command, args: &[&str]) -> (i32, String) {
    let mut child = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = wait_bounded(
        &mut child,
        deadline,
        &format!("irqlab {args:?} still running after 10 s"),
    );
    (status.code().unwrap_or(-1), read_stderr(&mut child))
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn kernel_that_is_not_a_regular_file() {
    let dir = scratch("kernel-not-regular");
    let fifo = dir.join("kernel.fifo");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let d = dir.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["run", "--kernel", "/dev/zero"],
            "/dev/zero: cannot read kernel image: is a character device, not a regular file"
                .to_string(),
        ),
        (
            vec!["run", "--kernel", d],
            format!("{d}: cannot read kernel image: is a directory, not a regular file"),
        ),
        // Used to block in open(2), waiting for a writer.
        (
            vec!["run", "--kernel", fifo],
            format!("{fifo}: cannot read kernel image: is a FIFO (named pipe), not a regular file"),
        ),
        (
            vec!["inspect", "/dev/zero"],
            "/dev/zero: cannot read kernel image: is a character device".to_string(),
        ),
        (
            vec!["inspect", fifo],
            format!("{fifo}: cannot read kernel image: is a FIFO"),
        ),
    ] {
        let (code, err) = run_with_deadline(&args);
        assert_eq!(code, i32::from(code::KERNEL), "{args:?}: {err}");
        assert_one_line_error(&err, &needle);
    }
}

#[test]
fn config_that_is_not_a_regular_file() {
    let dir = scratch("config-not-regular");
    let fifo = dir.join("c.toml");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let d = dir.to_str().unwrap();
    for (path, what) in [
        (d, "a directory"),
        ("/dev/zero", "a character device"),
        (fifo, "a FIFO (named pipe)"),
    ] {
        let (code, err) = run_with_deadline(&["run", path]);
        assert_eq!(code, i32::from(code::CONFIG), "{path}: {err}");
        assert_one_line_error(
            &err,
            &format!("{path}: cannot read config file: is {what}, not a regular file"),
        );
    }
}

#[test]
fn initrd_or_module_that_is_not_a_regular_file_or_missing() {
    let dir = scratch("initrd-not-regular");
    let fifo = dir.join("initrd.fifo");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    // Through the Linux boot protocol even the built-in guest takes an initrd: the file
    // itself is what is checked here.
    for (initrd, what) in [
        ("/dev/zero", "is a character device, not a regular file"),
        (fifo, "is a FIFO (named pipe), not a regular file"),
        ("/nonexistent/initrd.cpio", "No such file or directory"),
    ] {
        let (code, err) = run_with_deadline(&["run", "--boot", "linux", "--initrd", initrd]);
        assert_eq!(code, i32::from(code::CONFIG), "{initrd}: {err}");
        assert_one_line_error(&err, &format!("--initrd: `initrd` {initrd}: {what}"));
    }
    // A missing Multiboot module, named with its line and column.
    std::fs::write(
        dir.join("mb.elf"),
        irqlab::loader::multiboot::tiny_kernel(true),
    )
    .unwrap();
    let cfg = dir.join("mb.toml");
    std::fs::write(
        &cfg,
        "kernel = \"mb.elf\"\nmodules = [\"one.txt\", \"missing.txt\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("one.txt"), "1").unwrap();
    let (code, err) = run_with_deadline(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::CONFIG), "{err}");
    assert_one_line_error(
        &err,
        &format!(
            "{}:2:23: `modules` {}: No such file or directory",
            cfg.display(),
            dir.join("missing.txt").display()
        ),
    );
}

#[test]
fn initrd_or_modules_for_a_kernel_that_takes_none() {
    let dir = scratch("inputs-not-taken");
    std::fs::write(dir.join("initrd.cpio"), "070701").unwrap();
    // The built-in guest boots natively: no initrd (the file exists and is fine).
    let initrd = dir.join("initrd.cpio");
    let (code, _, err) = run(&["run", "--initrd", initrd.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::CONFIG), "{err}");
    assert_one_line_error(
        &err,
        "--initrd: `initrd` is only for kernels entered through the Linux boot protocol \
         (bzImage, vmlinux) or PVH; the built-in guest boots through irqlab's native boot \
         protocol",
    );
    // Named by the config line when it comes from the file.
    let (cfg, err) = refused_config(
        &dir,
        "native.toml",
        "boot = \"native\"\ninitrd = \"initrd.cpio\"\n",
    );
    assert_one_line_error(
        &err,
        &format!(
            "{}:2:10: `initrd` is only for kernels entered through",
            cfg.display()
        ),
    );
    // Modules are for Multiboot kernels only.
    let k = dir.join("plain.elf");
    std::fs::write(&k, tiny_elf(2, 62, 0x10_0000, 0, &[0xf4])).unwrap();
    let (cfg, err) = refused_config(
        &dir,
        "mods.toml",
        "kernel = \"plain.elf\"\nmodules = [\"initrd.cpio\"]\n",
    );
    assert_one_line_error(
        &err,
        &format!(
            "{}:2:12: `modules` is only for Multiboot kernels; {} boots through irqlab's native boot protocol",
            cfg.display(),
            k.display()
        ),
    );
    // And an initrd is not for a Multiboot kernel, which is told what it takes instead.
    std::fs::write(
        dir.join("mb.elf"),
        irqlab::loader::multiboot::tiny_kernel(true),
    )
    .unwrap();
    let mb = dir.join("mb.elf");
    let (code, _, err) = run(&[
        "run",
        "--kernel",
        mb.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
    ]);
    assert_eq!(code, i32::from(code::CONFIG), "{err}");
    assert_one_line_error(
        &err,
        "boots through Multiboot v1, which takes `modules` instead",
    );
}

#[test]
fn bad_numeric_flags_are_usage_errors() {
    // (subcommand words, flag, accepted range as the message gives it, values that mean nothing)
    let cases: &[(&[&str], &str, &str, &[&str])] = &[
        (&["run"], "--mem-mib", "from 2 to 3072 MiB", &["0"]),
        (&["run"], "--vcpus", "from 1 to 8", &["0"]),
        (&["run"], "--timeout", "from 0 (off) to 86400", &[]),
        (
            &["inspect", "k.elf"],
            "--mem-mib",
            "from 1 to 3072 MiB",
            &["0"],
        ),
        (&["bench", "boot"], "--runs", "from 1 to 1000", &["0"]),
        (
            &["bench", "boot"],
            "--exits",
            "from 2 to 1000000",
            &["0", "1"],
        ),
        (&["bench", "boot"], "--rounds", "from 1 to 1000", &["0"]),
        (&["bench", "irq"], "--seconds", "from 0.01 to 600", &["0"]),
        (&["bench", "trace"], "--rounds", "from 1 to 100", &["0"]),
        (&["bench", "compare"], "--runs", "from 1 to 1000", &["0"]),
        (&["bench", "compare"], "--timeout", "from 1 to 3600", &["0"]),
        (&["bench", "napi"], "--ms", "from 50 to 10000", &["0", "49"]),
    ];
    for (words, flag, range, zero) in cases {
        for value in ["nan", "inf", "-inf", "1e300", "-1", "99999999999999999999"]
            .iter()
            .chain(zero.iter())
        {
            let mut args = words.to_vec();
            args.extend([*flag, value]);
            let (code, out, err) = run(&args);
            assert_eq!(code, i32::from(code::USAGE), "{args:?}: {out}{err}");
            assert_one_line_error(&err, &format!("invalid value '{value}' for '{flag} "));
            assert!(err.contains(range), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
}

#[test]
fn usage_errors_are_one_line() {
    for args in [
        &["run", "--no-such-flag"][..],
        &["bench"],
        &["inspect"],
        &["run", "--irqchip", "pic"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, i32::from(code::USAGE), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("irqlab: ") && err.contains("(see --help)"),
            "{err}"
        );
    }
}

#[test]
fn a_stalled_console_reader_never_holds_up_the_guest_the_watchdog_or_signals() {
    if !kvm_or_skip("a_stalled_console_reader_never_holds_up_the_guest_the_watchdog_or_signals") {
        return;
    }
    use std::time::{Duration, Instant};
    // The guest floods the console; nobody reads irqlab's stdout (a pipe whose reader stalls).
    for stop in ["watchdog", "sigterm"] {
        let timeout = if stop == "watchdog" { "2" } else { "0" };
        let mut child = spawn_piped(
            &[
                "run",
                "--cmdline",
                "run=none crash=flood",
                "--timeout",
                timeout,
            ],
            std::process::Stdio::null(),
        );
        let started = Instant::now();
        if stop == "sigterm" {
            // Give the flood time to fill the pipe and the console queue.
            std::thread::sleep(Duration::from_secs(2));
            send_signal(&child, libc::SIGTERM);
        }
        // Wait without reading stdout (the stall), bounded.
        let status = wait_bounded(
            &mut child,
            started + Duration::from_secs(60),
            &format!("{stop}: irqlab did not end while its stdout was not read"),
        );
        let err = read_stderr(&mut child);
        let want = if stop == "watchdog" {
            code::TIMEOUT
        } else {
            code::SIGTERM
        };
        assert_eq!(status.code(), Some(i32::from(want)), "{stop}: {err}");
        // On this host the flood fills the pipe and the 1 MiB queue within the run, so bytes
        // are dropped and reported; a slower guest (nested under TCG) may not get that far —
        // the drop count itself is unit-tested in vmm/src/console.rs.
        let dropped = err.contains("bytes of guest output dropped: stdout was not being read");
        let on_pvm = irqlab::host::detect_host_kind() == irqlab_abi::boot_info::HostKind::Pvm;
        assert!(dropped || !on_pvm, "{stop}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `--serial-log` must name a regular file or a new one. A FIFO with no reader used to block
/// irqlab in open(2) forever; one with a reader, a device or a directory was opened and
/// written. Each is now a config error naming the path, before anything is written to it.
#[test]
fn serial_log_that_is_not_a_regular_file() {
    let dir = scratch("serial-log-not-regular");
    let fifo = dir.join("serial.fifo");
    mkfifo(&fifo);
    let link = dir.join("serial.link");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let (fifo, link, d) = (
        fifo.to_str().unwrap(),
        link.to_str().unwrap(),
        dir.to_str().unwrap(),
    );
    let is_fifo = "is a FIFO (named pipe), not a regular file";
    let check = |log: &str, what: &str| {
        let (code, err) = run_with_deadline(&["run", "--cmdline", "run=none", "--serial-log", log]);
        assert_eq!(code, i32::from(code::CONFIG), "{log}: {err}");
        assert_one_line_error(&err, &format!("{log}: cannot create serial log: {what}"));
    };
    // No reader: used to block forever.
    check(fifo, is_fifo);
    check(link, is_fifo);
    check("/dev/null", "is a character device, not a regular file");
    check(d, "is a directory, not a regular file");
    // With a reader: used to be opened and written; now refused and left untouched.
    let reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .unwrap()
    };
    check(fifo, is_fifo);
    // Anything written would still be in the pipe (its reader is open); end of file with no
    // writer left means nothing was.
    let mut buf = [0u8; 1];
    let read = std::io::Read::read(&mut &reader, &mut buf);
    assert!(
        matches!(read, Ok(0)),
        "irqlab wrote into the FIFO: {read:?}"
    );
    // The same through the config key, relative to the config file.
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        "serial_log = \"serial.fifo\"\ncmdline = \"run=none\"\n",
    )
    .unwrap();
    let (code, err) = run_with_deadline(&["run", cfg.to_str().unwrap()]);
    assert_eq!(code, i32::from(code::CONFIG), "{err}");
    assert_one_line_error(
        &err,
        &format!("{fifo}: cannot create serial log: {is_fifo}"),
    );
    // A regular file is still truncated and written.
    if kvm_or_skip("serial_log_that_is_not_a_regular_file (regular file)") {
        let log = dir.join("serial.txt");
        std::fs::write(&log, "x".repeat(100_000)).unwrap();
        let (code, out, err) = run(&[
            "run",
            "--cmdline",
            "run=none",
            "--serial-log",
            log.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(!logged.contains("xxxx"), "not truncated: {logged}");
        assert_eq!(logged.replace('\r', ""), out.replace('\r', ""));
    }
}

/// A minimal summary.json as irqlab writes it (no sources).
const EMPTY_SUMMARY: &str = r#"{"mode":"ring","tsc_khz":1,"sources":{},"records":0,
"lost_records":0,"dropped_events":0,"order_violations":0,"order_ok_ratio":1.0,
"userspace_exits":0,"kvm_totals":{},"kvm_attributed":{},"doorbell_exits":0,
"kvm_after_last_doorbell":{},"tsc_offset_uncertainty":0}"#;

/// `irqlab trace summarize`/`diff` read summary.json as a regular file of at most 64 MiB. A
/// FIFO used to block them in open(2) forever, a link to /dev/zero to read without end; each
/// is now a one-line config error naming the file, at once.
#[test]
fn trace_summary_that_is_not_a_regular_file_or_too_large() {
    let dir = scratch("trace-summary-not-regular");
    let mk = |name: &str| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let good = mk("good");
    std::fs::write(good.join("summary.json"), EMPTY_SUMMARY).unwrap();
    let fifo = mk("fifo");
    mkfifo(&fifo.join("summary.json"));
    let zero = mk("zero");
    std::os::unix::fs::symlink("/dev/zero", zero.join("summary.json")).unwrap();
    let huge = mk("huge");
    // Sparse: 65 MiB of zeros that take no disk space.
    std::fs::File::create(huge.join("summary.json"))
        .unwrap()
        .set_len(65 << 20)
        .unwrap();
    let [good, fifo, zero, huge] = [&good, &fifo, &zero, &huge].map(|d| d.to_str().unwrap());
    let (code, err) = run_with_deadline(&["trace", "summarize", good]);
    assert_eq!(code, 0, "{err}");
    let fifo_err = format!("{fifo}/summary.json: is a FIFO (named pipe), not a regular file");
    let zero_err = format!("{zero}/summary.json: is a character device, not a regular file");
    let huge_err = format!(
        "{huge}/summary.json: its size (65.0 MiB) is more than 64 MiB (the cap on a trace summary)"
    );
    for (args, needle) in [
        (vec!["trace", "summarize", fifo], &fifo_err),
        (vec!["trace", "summarize", zero], &zero_err),
        (vec!["trace", "summarize", huge], &huge_err),
        (vec!["trace", "diff", good, fifo], &fifo_err),
        (vec!["trace", "diff", zero, good], &zero_err),
        (vec!["trace", "diff", good, huge], &huge_err),
    ] {
        let (code, err) = run_with_deadline_and_memory_cap(&args);
        assert_eq!(code, i32::from(code::CONFIG), "{args:?}: {err}");
        assert_one_line_error(&err, needle);
    }
}

/// `bench compare` runs a QEMU it does not control: one that never finishes (QEMU 10.0's
/// microvm prints "No bootable device." and waits for ever when it cannot load the guest) is
/// stopped after `--timeout`, with one line naming it and what it said last.
#[test]
fn bench_compare_stops_a_qemu_that_never_finishes() {
    use std::os::unix::fs::PermissionsExt;
    // A QEMU that is not there is named (checked before anything boots: no KVM needed).
    let (code, _, err) = run(&["bench", "compare", "--qemu", "/nonexistent/qemu"]);
    assert_eq!(code, i32::from(code::INTERNAL), "{err}");
    assert_one_line_error(&err, "/nonexistent/qemu not found: install QEMU");
    if !kvm_or_skip("bench compare with a hanging QEMU") {
        return;
    }
    // Exit status 1 is what QEMU's isa-debug-exit gives for a guest that passed, and `false`'s
    // too: a "QEMU" that prints no guest summary is refused.
    let (code, _, err) = run(&["bench", "compare", "--runs", "1", "--qemu", "false"]);
    assert_eq!(code, i32::from(code::INTERNAL), "{err}");
    assert_one_line_error(&err, "false exited 1 without the guest's SUMMARY line");
    let dir = scratch("compare-hang");
    let qemu = dir.join("qemu-that-hangs");
    std::fs::write(
        &qemu,
        "#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho 'No bootable device.'\nexec sleep 30\n",
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let q = qemu.to_str().unwrap();
    // (5 s: irqlab's own `run=none` boot before it must fit too, on an emulated CPU as well.)
    let (code, _, err) = run(&[
        "bench",
        "compare",
        "--runs",
        "1",
        "--timeout",
        "5",
        "--qemu",
        q,
    ]);
    assert_eq!(code, i32::from(code::INTERNAL), "{err}");
    assert_one_line_error(
        &err,
        &format!("{q} did not finish within 5 s (--timeout) and was stopped; its last line: No bootable device."),
    );
}
