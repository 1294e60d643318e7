//! Boot formats: the irqlab guest through its native entry and its PVH entry, under irqlab and
//! (when installed) under QEMU microvm.

mod common;
use common::*;

fn result_set(stdout: &str) -> Vec<(String, String)> {
    results(stdout)
        .into_iter()
        .map(|(t, n, _)| (t, n))
        .collect()
}

#[test]
fn the_guest_boots_natively_and_through_pvh_with_the_same_results() {
    if !kvm_or_skip("pvh") {
        return;
    }
    let (code, native, err) = run(&["run", "--boot", "native"]);
    assert_eq!(code, 0, "{native}\n{err}");
    let (code, pvh, err) = run(&["run", "--boot", "pvh"]);
    assert_eq!(code, 0, "{pvh}\n{err}");
    assert_eq!(result_set(&native), result_set(&pvh));
    assert!(
        pvh.contains("cmdline=\"run=selftest host="),
        "PVH command line carries the host kind:\n{pvh}"
    );
    // auto picks native for the irqlab guest (it carries irqlab's ABI note).
    let (code, auto, _) = run(&["run"]);
    assert_eq!(code, 0);
    assert_eq!(result_set(&native), result_set(&auto));
    assert!(auto.contains("cmdline=\"run=selftest\""), "{auto}");
    // Devices the PVH-entered guest finds by itself: the MSI source, the PIT.
    let (code, out, err) = run(&[
        "run",
        "--boot",
        "pvh",
        "--cmdline",
        "run=msi,timer count=200 ticks=100",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("PASS msi:") && out.contains("PASS timer-pit:"),
        "{out}"
    );
}

#[test]
fn pvh_needs_a_pvh_note() {
    let dir = scratch("nopvh");
    let k = dir.join("k.elf");
    std::fs::write(
        &k,
        irqlab::loader::elf::tiny_elf(2, 62, 0x10_0000, 0, &[0xf4]),
    )
    .unwrap();
    if !kvm_or_skip("pvh note") {
        return;
    }
    let (code, _, err) = run(&["run", "--boot", "pvh", "--kernel", k.to_str().unwrap()]);
    assert_eq!(code, 66, "{err}");
    assert!(
        err.contains("k.elf") && err.contains("XEN_ELFNOTE_PHYS32_ENTRY"),
        "{err}"
    );
}

#[test]
fn the_same_elf_under_qemu_microvm_gives_the_same_results() {
    if !kvm_or_skip("qemu compare") {
        return;
    }
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        // CI installs QEMU (.ci/run); elsewhere it is optional.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must have qemu-system-x86_64"
        );
        println!("SKIP qemu compare: qemu-system-x86_64 is not installed");
        return;
    }
    let (code, out, err) = run(&["bench", "compare", "--runs", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("identical PASS/FAIL/SKIP per check: yes"),
        "{out}"
    );
}

#[test]
fn multiboot_kernels_boot_elf32_and_aout_kludge() {
    if !kvm_or_skip("multiboot") {
        return;
    }
    let dir = scratch("multiboot");
    for (name, elf32) in [("aout.bin", false), ("elf32.elf", true)] {
        let k = dir.join(name);
        std::fs::write(&k, irqlab::loader::multiboot::tiny_kernel(elf32)).unwrap();
        // auto-detected (no ELF64), and forced.
        for boot in ["auto", "multiboot"] {
            let (code, out, err) = run(&[
                "run",
                "--kernel",
                k.to_str().unwrap(),
                "--boot",
                boot,
                "--cmdline",
                "hello",
            ]);
            // Status 0: EAX was 0x2BADB002 and the info had flags bit 0 and a non-zero mem_upper.
            assert_eq!(code, 0, "{name} ({boot}): {out}\n{err}");
            assert_eq!(out, "M", "{name}: the kernel's serial output");
        }
    }
    // Modules from the config: the kernel prints the first byte of module 0.
    let k = dir.join("mod.bin");
    std::fs::write(&k, irqlab::loader::multiboot::tiny_module_kernel()).unwrap();
    std::fs::write(dir.join("payload.txt"), b"Zebra").unwrap();
    let cfg = dir.join("mb.toml");
    std::fs::write(
        &cfg,
        "kernel = \"mod.bin\"\nmodules = [\"payload.txt\"]\ncmdline = \"x\"\n",
    )
    .unwrap();
    let (code, out, err) = run(&["run", cfg.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "Z"), "{err}");
    // A Multiboot header asking for a video mode: refused by name, before KVM runs.
    let mut k = irqlab::loader::multiboot::tiny_kernel(false);
    let flags: u32 = (1 << 16) | (1 << 2);
    k[4..8].copy_from_slice(&flags.to_le_bytes());
    k[8..12].copy_from_slice(
        &0u32
            .wrapping_sub(0x1bad_b002u32.wrapping_add(flags))
            .to_le_bytes(),
    );
    let p = dir.join("video.bin");
    std::fs::write(&p, k).unwrap();
    let (code, _, err) = run(&["run", "--kernel", p.to_str().unwrap()]);
    assert_eq!(code, 66, "{err}");
    assert!(
        err.contains("video.bin") && err.contains("Multiboot") && err.contains("video mode"),
        "{err}"
    );
    // Neither ELF64 nor Multiboot: the error says what irqlab boots.
    let p = dir.join("junk.bin");
    std::fs::write(&p, [0x90u8; 64]).unwrap();
    let (code, _, err) = run(&["run", "--kernel", p.to_str().unwrap()]);
    assert_eq!(code, 66, "{err}");
    assert!(err.contains("not an ELF file"), "{err}");
}

/// Debian's kernel, downloaded once into target/ (not committed): the uncompressed vmlinux
/// (extracted from the package's LZ4 bzImage), which carries a PVH entry note.
fn debian_vmlinux() -> Option<std::path::PathBuf> {
    use std::process::Command;
    let dir = root().join("target/linux-test");
    let vmlinux = dir.join("vmlinux");
    if vmlinux.exists() {
        return Some(vmlinux);
    }
    std::fs::create_dir_all(&dir).ok()?;
    let tools = ["apt-get", "dpkg-deb", "lz4"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !tools {
        return None;
    }
    let pkg = "linux-image-cloud-amd64";
    // The metapackage names the current versioned image package.
    let dep = Command::new("apt-cache")
        .args(["depends", pkg])
        .output()
        .ok()?;
    let dep = String::from_utf8_lossy(&dep.stdout);
    let image = dep
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))?
        .trim()
        .to_string();
    let ok = Command::new("apt-get")
        .args(["download", &image])
        .current_dir(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "apt-get download {image} failed");
    let deb = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x == "deb"))?
        .path();
    let x = dir.join("x");
    assert!(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&x)
        .status()
        .unwrap()
        .success());
    let vmlinuz = std::fs::read_dir(x.join("boot"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("vmlinuz"))?
        .path();
    let bz = std::fs::read(vmlinuz).ok()?;
    // LZ4 legacy frame magic 0x184c2102.
    let at = bz.windows(4).position(|w| w == [0x02, 0x21, 0x4c, 0x18])?;
    let mut child = Command::new("lz4")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let payload = bz[at..].to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&payload);
    });
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    assert_eq!(
        &out.stdout[..4],
        b"\x7fELF",
        "no ELF inside {image}'s bzImage"
    );
    std::fs::write(&vmlinux, &out.stdout).ok()?;
    Some(vmlinux)
}

#[test]
fn a_debian_linux_kernel_boots_through_pvh_and_shows_its_log() {
    if !kvm_or_skip("linux") {
        return;
    }
    let Some(vmlinux) = debian_vmlinux() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must be able to fetch Debian's kernel"
        );
        println!("SKIP linux: apt-get/dpkg-deb/lz4 not available to fetch Debian's kernel");
        return;
    };
    let (code, out, err) = run(&[
        "run",
        "--kernel",
        vmlinux.to_str().unwrap(),
        "--mem-mib",
        "512",
        "--cmdline",
        "console=ttyS0 earlyprintk=serial,ttyS0,115200",
        "--timeout",
        "90",
    ]);
    assert!(out.contains("Linux version"), "no banner:\n{out}\n{err}");
    assert!(out.contains("Kernel command line: console=ttyS0"), "{out}");
    if irqlab::host::detect_host_kind() == irqlab_abi::boot_info::HostKind::Pvm {
        // kvm-pvm cannot emulate every instruction a stock kernel uses: the stop is reported
        // with RIP and the instruction bytes, after the kernel's own log.
        assert_eq!(code, 72, "{err}");
        assert!(
            err.contains("instruction emulation failed") && err.contains("code="),
            "{err}"
        );
    }
}
