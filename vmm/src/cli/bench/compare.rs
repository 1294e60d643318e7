//! `irqlab bench compare`: the same guest under irqlab and under QEMU microvm.

use super::{median, verdict};
use crate::cli::args::whole;
use clap::Args;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Boots per VMM (1-1000).
    #[arg(long, default_value_t = 10, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u32>(s, 1, 1000, ""))]
    runs: u32,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// Guest command line of the experiment whose results are compared.
    #[arg(long, default_value = "run=selftest")]
    cmdline: String,
}

/// The guest's result lines ("PASS name", …) in order, for comparing two VMMs.
fn result_set(console: &str) -> Vec<String> {
    use irqlab_abi::results::Line;
    console
        .lines()
        .filter_map(|l| match Line::parse(l)? {
            Line::Check(c) => Some(format!("{} {}", c.status.tag(), c.name)),
            _ => None,
        })
        .collect()
}

fn timed(cmd: &mut Command) -> anyhow::Result<(Duration, i32, String)> {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output()?;
    Ok((
        start.elapsed(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

pub(super) fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("irqlab-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let elf = dir.join("irqlab-guest.elf");
    std::fs::write(&elf, irqlab::BUILTIN_GUEST)?;
    let host = irqlab::host::detect_host_kind();
    let exe = std::env::current_exe()?;
    // QEMU has no way to tell the guest the host kind; the guest takes it from its command line.
    let qemu_cmdline = format!("{} host={}", a.cmdline, host.name());
    let qemu_args = |cmdline: &str| -> Vec<String> {
        [
            "-accel",
            "kvm",
            "-M",
            "microvm,x-option-roms=off,rtc=off",
            "-cpu",
            "host,-arch-capabilities",
            "-m",
            "64",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-kernel",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([elf.display().to_string(), "-append".into(), cmdline.into()])
        .collect()
    };
    if Command::new(&a.qemu).arg("--version").output().is_err() {
        anyhow::bail!(
            "{} not found: install QEMU (Debian: apt-get install qemu-system-x86)",
            a.qemu
        );
    }
    // Boot time: `run=none` boots, prints its banner and exits.
    let boot_only = format!("run=none host={}", host.name());
    let (mut ti, mut tq) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let (t, code, out) = timed(Command::new(&exe).args(["run", "--cmdline", "run=none"]))?;
        anyhow::ensure!(code == 0, "irqlab run exited {code}:\n{out}");
        ti.push(t.as_secs_f64() * 1e3);
        let (t, code, out) = timed(Command::new(&a.qemu).args(qemu_args(&boot_only)))?;
        // isa-debug-exit: QEMU exits with (status << 1) | 1.
        anyhow::ensure!(
            code == 1,
            "QEMU exited {code} (guest status {}):\n{out}",
            code >> 1
        );
        tq.push(t.as_secs_f64() * 1e3);
    }
    // The experiment, once under each.
    // A guest status of 1 (a check failed) is a result to compare, not a failure of the
    // comparison: the same check must fail under both (on a nested host a check may fail
    // because of the emulator underneath).
    let (ei, code_i, out_i) = timed(Command::new(&exe).args(["run", "--cmdline", &a.cmdline]))?;
    anyhow::ensure!(
        matches!(code_i, 0 | 1),
        "irqlab run exited {code_i}:\n{out_i}"
    );
    let (eq, code_q, out_q) = timed(Command::new(&a.qemu).args(qemu_args(&qemu_cmdline)))?;
    anyhow::ensure!(
        matches!(code_q, 1 | 3),
        "QEMU exited {code_q} (guest status {}):\n{out_q}",
        code_q >> 1
    );
    let (status_i, status_q) = (code_i, code_q >> 1);
    let (ri, rq) = (result_set(&out_i), result_set(&out_q));
    let _ = std::fs::remove_dir_all(&dir);
    let (mi, mq) = (median(&mut ti), median(&mut tq));
    println!(
        "same guest ELF: boot (`run=none`, process start to guest exit), {} runs each",
        a.runs
    );
    println!("  irqlab (native entry)          median {mi:8.2} ms");
    println!("  QEMU microvm -accel kvm (PVH)  median {mq:8.2} ms");
    println!(
        "  QEMU / irqlab                  {:.1}x   target >= 10x: {}",
        mq / mi,
        verdict(mq / mi >= 10.0)
    );
    println!(
        "experiment `{}`: irqlab {:.1} ms, QEMU {:.1} ms (wall, including boot)",
        a.cmdline,
        ei.as_secs_f64() * 1e3,
        eq.as_secs_f64() * 1e3
    );
    let same = ri == rq && status_i == status_q;
    println!(
        "  results: irqlab {} lines (guest status {status_i}), QEMU {} lines (guest status {status_q}), identical PASS/FAIL/SKIP per check: {}",
        ri.len(),
        rq.len(),
        if same { "yes" } else { "NO" }
    );
    if !same {
        for (x, y) in ri.iter().zip(rq.iter()).filter(|(x, y)| x != y) {
            println!("    irqlab: {x:<40} QEMU: {y}");
        }
        anyhow::bail!("the two VMMs disagree on the guest's results");
    }
    Ok(())
}
