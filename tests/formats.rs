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
