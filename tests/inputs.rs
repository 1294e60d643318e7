//! Kernel inputs checked before the guest starts: a Linux bzImage needs the guest memory its
//! setup header's `init_size` asks for (otherwise the decompressor overruns RAM and the guest
//! triple-faults), initrds and modules go only to the boot protocols that take them, and
//! every one of these ends in one `irqlab:` line with its documented exit code.

mod common;
use common::*;
use irqlab::outcome::code;

/// A fake bzImage laid out like Debian's 6.1 kernel: relocatable, 2 MiB `kernel_alignment`,
/// `pref_address` 16 MiB, `init_size` 0x3378000 — it needs 68 MiB of guest memory.
fn debian_like_bzimage() -> Vec<u8> {
    let mut b = fake_bzimage(0x020f, 1, 2047);
    b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
    b[0x234] = 1; // relocatable_kernel
    b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
    b[0x260..0x264].copy_from_slice(&0x337_8000u32.to_le_bytes()); // init_size
    b
}

fn assert_one_line(err: &str, needle: &str) {
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic leaked: {err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("irqlab: ") && err.contains(needle),
        "expected {needle:?} in {err}"
    );
}

#[test]
fn a_bzimage_whose_init_size_exceeds_guest_memory_is_refused_before_it_runs() {
    let dir = scratch("bz-init-size");
    let k = dir.join("vmlinuz");
    std::fs::write(&k, debian_like_bzimage()).unwrap();
    let k = k.to_str().unwrap();
    // The default 64 MiB: refused while loading the image, before KVM is opened (so this
    // holds on hosts without /dev/kvm too).
    let started = std::time::Instant::now();
    let (code, _, err) = run(&["run", "--kernel", k, "--timeout", "5"]);
    assert_eq!(code, i32::from(code::KERNEL), "{err}");
    assert_one_line(
        &err,
        &format!(
            "{k}: bzImage: the kernel decompresses into 0x1000000..0x4378000 (setup header \
             init_size 51.5 MiB from pref_address/kernel_alignment) and needs at least 68 MiB \
             of guest memory, but mem_mib is 64; raise mem_mib"
        ),
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // One MiB short is still too little.
    let (code, _, err) = run(&["run", "--kernel", k, "--mem-mib", "67"]);
    assert_eq!(code, i32::from(code::KERNEL), "{err}");
    assert_one_line(
        &err,
        "needs at least 68 MiB of guest memory, but mem_mib is 67",
    );
}

#[test]
fn inspect_shows_the_memory_a_bzimage_needs() {
    let dir = scratch("bz-inspect");
    let k = dir.join("vmlinuz");
    std::fs::write(&k, debian_like_bzimage()).unwrap();
    let k = k.to_str().unwrap();
    let (code, out, err) = run(&["inspect", k, "--mem-mib", "68"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("format:   Linux bzImage"), "{out}");
    assert!(
        out.contains("loads at: 0x100000..0x101c00 (7 KiB, the compressed kernel)"),
        "{out}"
    );
    assert!(
        out.contains(
            "memory:   at least 68 MiB of guest memory (it decompresses into \
             0x1000000..0x4378000: setup header init_size from pref_address)"
        ),
        "{out}"
    );
    // With the default 64 MiB inspect gives run's error and exit code.
    let (code, _, err) = run(&["inspect", k]);
    assert_eq!(code, i32::from(code::KERNEL), "{err}");
    assert_one_line(
        &err,
        "needs at least 68 MiB of guest memory, but mem_mib is 64",
    );
}

#[test]
fn the_real_debian_bzimage_is_refused_at_64_mib() {
    // Present once tests/formats.rs has downloaded it (never committed).
    let boot = root().join("target/linux-test/x/boot");
    let Some(k) = std::fs::read_dir(&boot).ok().and_then(|d| {
        d.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
    }) else {
        println!("SKIP the_real_debian_bzimage_is_refused_at_64_mib: no kernel in {boot:?}");
        return;
    };
    let k = k.to_str().unwrap();
    let (code, out, err) = run(&["inspect", k, "--mem-mib", "512"]);
    assert_eq!(code, 0, "{err}");
    let needs: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("memory:   at least "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no memory line:\n{out}"));
    assert!(needs > 64, "{out}");
    let (code, _, err) = run(&["run", "--kernel", k, "--timeout", "5"]);
    assert_eq!(code, i32::from(code::KERNEL), "{err}");
    assert_one_line(
        &err,
        &format!("needs at least {needs} MiB of guest memory, but mem_mib is 64; raise mem_mib"),
    );
}

#[test]
fn a_bzimage_takes_an_initrd_but_not_modules() {
    let dir = scratch("bz-inputs");
    std::fs::write(dir.join("vmlinuz"), debian_like_bzimage()).unwrap();
    std::fs::write(dir.join("payload"), "x").unwrap();
    let (cfg, err) = refused_config(
        &dir,
        "mods.toml",
        "kernel = \"vmlinuz\"\nmem_mib = 128\nmodules = [\"payload\"]\n",
    );
    assert_one_line(
        &err,
        &format!(
            "{}:3:12: `modules` is only for Multiboot kernels; {} boots through the Linux boot \
             protocol, which takes `initrd` instead",
            cfg.display(),
            dir.join("vmlinuz").display()
        ),
    );
    // An initrd is taken, so a missing one is the error (exit 65, before KVM).
    let (cfg, err) = refused_config(
        &dir,
        "initrd.toml",
        "kernel = \"vmlinuz\"\nmem_mib = 128\ninitrd = \"missing.cpio\"\n",
    );
    assert_one_line(
        &err,
        &format!(
            "{}:3:10: `initrd` {}: No such file or directory",
            cfg.display(),
            dir.join("missing.cpio").display()
        ),
    );
}

#[test]
fn an_initrd_larger_than_guest_memory_is_not_read() {
    if !kvm_or_skip("an_initrd_larger_than_guest_memory_is_not_read") {
        return;
    }
    let dir = scratch("bz-big-initrd");
    let k = dir.join("vmlinuz");
    // No init_size: the image itself fits, the initrd is what is too big.
    std::fs::write(&k, fake_bzimage(0x020f, 1, 2047)).unwrap();
    // Sparse: 100 MiB on paper, nothing on disk.
    let initrd = dir.join("big.cpio");
    std::fs::File::create(&initrd)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let (code, _, err) = run(&[
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
    ]);
    assert_eq!(code, i32::from(code::KERNEL), "{err}");
    assert_one_line(
        &err,
        &format!(
            "{}: cannot read initrd/module: its size (100.0 MiB) is more than guest memory (64 MiB)",
            initrd.display()
        ),
    );
}

#[test]
fn pvh_takes_an_initrd() {
    if !kvm_or_skip("pvh_takes_an_initrd") {
        return;
    }
    // The start info lists it as its one module (Linux's PVH entry takes it as the initrd:
    // tests/formats.rs checks the kernel's RAMDISK line); the irqlab guest just boots.
    let dir = scratch("pvh-initrd");
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&initrd, "070701").unwrap();
    let (code, out, err) = run(&[
        "run",
        "--boot",
        "pvh",
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        "run=none",
    ]);
    assert_eq!(code, 0, "{out}{err}");
}
