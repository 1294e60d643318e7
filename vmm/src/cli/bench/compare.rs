//! `irqlab bench compare`: the same guest under irqlab and under QEMU microvm.

use super::{median, verdict};
use crate::cli::args::whole;
use clap::Args;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
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
    /// Seconds each boot may take before it is stopped and the comparison fails (1-3600).
    #[arg(long, default_value_t = 60, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u64>(s, 1, 3600, ""))]
    timeout: u64,
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

/// Runs `cmd` to its end, or stops it after `limit`: its wall time, exit code and stdout.
/// (A QEMU that never starts the guest, e.g. one that cannot load it, must not hang the
/// benchmark.)
fn timed(cmd: &mut Command, limit: Duration) -> anyhow::Result<(Duration, i32, String)> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Each pipe drained by its own thread into a buffer read at the end (or at the stop,
    // without waiting for the pipe to close: a grandchild may still hold it).
    type Drain = (Arc<Mutex<Vec<u8>>>, Option<std::thread::JoinHandle<()>>);
    fn drain(pipe: Option<impl Read + Send + 'static>) -> Drain {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let reader = pipe.map(|mut pipe| {
            let sink = Arc::clone(&buf);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => sink
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            })
        });
        (buf, reader)
    }
    let text = |(buf, _): &Drain| {
        String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    // Once the child is gone its stdout closes when every copy of it does: at once, unless a
    // process it started still holds one. Waits until `until` for that drain to finish.
    let drained = |until: Instant| {
        let done = || out.1.as_ref().is_none_or(|r| r.is_finished());
        while !done() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        done()
    };
    loop {
        if let Some(status) = child.try_wait()? {
            let elapsed = start.elapsed();
            anyhow::ensure!(
                drained(start + limit.max(elapsed + Duration::from_secs(1))),
                "{} exited, but something it started still holds its output open after {} s (--timeout)",
                cmd.get_program().to_string_lossy(),
                limit.as_secs()
            );
            return Ok((elapsed, status.code().unwrap_or(-1), text(&out)));
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            drained(Instant::now() + Duration::from_secs(1));
            let said = format!("{}{}", text(&out), text(&err));
            let last = said.lines().rev().find(|l| !l.trim().is_empty());
            anyhow::bail!(
                "{} did not finish within {} s (--timeout) and was stopped{}",
                cmd.get_program().to_string_lossy(),
                limit.as_secs(),
                last.map(|l| format!("; its last line: {}", l.trim()))
                    .unwrap_or_default()
            );
        }
        // The wall time is a boot time of a few ms: polled every 0.2 ms in the first second
        // (a measurement error under that), every 5 ms after it.
        std::thread::sleep(if start.elapsed() < Duration::from_secs(1) {
            Duration::from_micros(200)
        } else {
            Duration::from_millis(5)
        });
    }
}

pub(super) fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("irqlab-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = compare_in(a, &dir);
    // However it ended (a QEMU that failed or timed out included).
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// [`compare`], with the guest ELF written into `dir`.
fn compare_in(a: &CompareArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    let elf = dir.join("irqlab-guest.elf");
    std::fs::write(&elf, irqlab::BUILTIN_GUEST)?;
    let host = irqlab::host::detect_host_kind();
    let exe = std::env::current_exe()?;
    let limit = Duration::from_secs(a.timeout);
    // QEMU has no way to tell the guest the host kind; the guest takes it from its command line.
    let qemu_cmdline = format!("{} host={}", a.cmdline, host.name());
    let qemu_args = |cmdline: &str| -> Vec<String> {
        [
            "-accel",
            "kvm",
            "-M",
            // (Option ROMs on: QEMU 7.2 boots a PVH ELF either way, QEMU 10.0 only through
            // its pvh.bin option ROM: with x-option-roms=off it prints "No bootable device."
            // and never exits.)
            "microvm,rtc=off",
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
    if let Err(e) = timed(Command::new(&a.qemu).arg("--version"), limit) {
        match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "{} not found: install QEMU (Debian: apt-get install qemu-system-x86)",
                a.qemu
            ),
            Some(io) => anyhow::bail!("{} cannot run: {io}", a.qemu),
            None => return Err(e),
        }
    }
    // Boot time: `run=none` boots, prints its banner and exits.
    let boot_only = format!("run=none host={}", host.name());
    let (mut ti, mut tq) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let (t, code, out) = timed(
            Command::new(&exe).args(["run", "--cmdline", "run=none"]),
            limit,
        )?;
        anyhow::ensure!(code == 0, "irqlab run exited {code}:\n{out}");
        ti.push(t.as_secs_f64() * 1e3);
        let (t, code, out) = timed(Command::new(&a.qemu).args(qemu_args(&boot_only)), limit)?;
        // isa-debug-exit: QEMU exits with (status << 1) | 1.
        anyhow::ensure!(
            code == 1,
            "QEMU exited {code} (guest status {}):\n{out}",
            code >> 1
        );
        // (Exit 1 alone proves nothing: `false` exits 1 too. The guest's summary line does.)
        anyhow::ensure!(
            out.lines().any(|l| l.starts_with("SUMMARY ")),
            "{} exited 1 without the guest's SUMMARY line: not a QEMU that booted the guest",
            a.qemu
        );
        tq.push(t.as_secs_f64() * 1e3);
    }
    // The experiment, once under each.
    // A guest status of 1 (a check failed) is a result to compare, not a failure of the
    // comparison: the same check must fail under both (on a nested host a check may fail
    // because of the emulator underneath).
    let (ei, code_i, out_i) = timed(
        Command::new(&exe).args(["run", "--cmdline", &a.cmdline]),
        limit,
    )?;
    anyhow::ensure!(
        matches!(code_i, 0 | 1),
        "irqlab run exited {code_i}:\n{out_i}"
    );
    let (eq, code_q, out_q) = timed(Command::new(&a.qemu).args(qemu_args(&qemu_cmdline)), limit)?;
    anyhow::ensure!(
        matches!(code_q, 1 | 3),
        "QEMU exited {code_q} (guest status {}):\n{out_q}",
        code_q >> 1
    );
    let (status_i, status_q) = (code_i, code_q >> 1);
    let (ri, rq) = (result_set(&out_i), result_set(&out_q));
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
