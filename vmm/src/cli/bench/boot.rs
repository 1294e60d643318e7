//! `irqlab bench boot`: boot time, PIO exit round trip against a bare KVM_RUN loop and with
//! the seccomp sandbox against without, and the VMM's own memory.

use super::{median, percentile, quiet_run_with, verdict};
use crate::cli::args::whole;
use clap::Args;
use irqlab::config::VmConfig;
use irqlab::sandbox::SandboxScope;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BootArgs {
    /// Boots to time (1-1000).
    #[arg(long, default_value_t = 20, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u32>(s, 1, 1000, ""))]
    runs: u32,
    /// PIO exits per round of the loop comparison (2-1000000).
    #[arg(long, default_value_t = 20_000, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u64>(s, 2, 1_000_000, ""))]
    exits: u64,
    /// Alternating rounds of the loop comparison (1-1000).
    #[arg(long, default_value_t = 9, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u32>(s, 1, 1000, ""))]
    rounds: u32,
}

/// Spawns `irqlab run` once; returns (wall time, peak RSS bytes, guest bytes touched).
fn timed_boot() -> anyhow::Result<(Duration, u64, u64)> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let child = Command::new(exe)
        .args(["run", "--cmdline", "run=none", "--report-memory"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("piped");
    let mut status = 0;
    // SAFETY: rusage is plain data wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    anyhow::ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "irqlab run exited with status {status:#x}"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err)?;
    let touched = err
        .lines()
        .find_map(|l| l.strip_prefix("irqlab: memory: guest_touched_bytes="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no memory line from irqlab run: {err}"))?;
    Ok((wall, usage.ru_maxrss as u64 * 1024, touched))
}

pub(super) fn boot(a: &BootArgs) -> anyhow::Result<()> {
    // Boot time and memory: separate processes, one warm-up boot first (page cache).
    timed_boot()?;
    let mut walls = Vec::new();
    let mut overheads = Vec::new();
    let mut rss_max = 0;
    for _ in 0..a.runs {
        let (wall, rss, touched) = timed_boot()?;
        walls.push(wall.as_secs_f64() * 1e3);
        overheads.push(rss.saturating_sub(touched) as f64 / (1 << 20) as f64);
        rss_max = rss_max.max(rss);
    }
    let med = median(&mut walls.clone());
    println!("boot (process start -> guest exit, {} runs)", a.runs);
    println!(
        "  median {med:.2} ms   min {:.2} ms   p90 {:.2} ms   target <= 20 ms: {}",
        walls.iter().cloned().fold(f64::INFINITY, f64::min),
        percentile(&mut walls, 90),
        verdict(med <= 20.0)
    );
    let oh = median(&mut overheads);
    println!(
        "  VMM memory: peak RSS {:.2} MiB, minus guest memory touched = {oh:.2} MiB (median)   target <= 5 MiB: {}",
        rss_max as f64 / (1 << 20) as f64,
        verdict(oh <= 5.0)
    );

    // PIO exit round trip: bare loop, irqlab, and irqlab with its vCPU thread under the
    // seccomp filter (every KVM_RUN goes through it), alternating, same process.
    let cfg = VmConfig {
        cmdline: format!("run=pio-loop iters={}", a.exits),
        ..VmConfig::default()
    };
    let pio_exit = |sandbox| -> anyhow::Result<f64> {
        let r = quiet_run_with(&cfg, sandbox)?;
        let (count, span) = r.bench_writes;
        anyhow::ensure!(count == a.exits, "guest wrote the bench port {count} times");
        Ok(span.as_secs_f64() * 1e6 / (count - 1) as f64)
    };
    let (mut bare, mut ours, mut sandboxed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.rounds {
        // On its own thread, like irqlab's vCPU, so thread placement treats both alike.
        let exits = a.exits;
        let t = std::thread::spawn(move || irqlab::bench::bare_pio_exit(exits))
            .join()
            .map_err(|_| anyhow::anyhow!("bare loop thread panicked"))??;
        bare.push(t.as_secs_f64() * 1e6);
        ours.push(pio_exit(SandboxScope::Off)?);
        sandboxed.push(pio_exit(SandboxScope::Threads)?);
    }
    let ratios: Vec<f64> = ours.iter().zip(&bare).map(|(o, b)| o / b).collect();
    let sandbox_ratios: Vec<f64> = sandboxed.iter().zip(&ours).map(|(s, o)| s / o).collect();
    let (mb, mo, mr) = (
        median(&mut bare),
        median(&mut ours),
        median(&mut ratios.clone()),
    );
    println!(
        "PIO exit round trip ({} rounds x {} exits, alternating)",
        a.rounds, a.exits
    );
    println!("  bare KVM_RUN loop  {mb:.2} us   irqlab vCPU loop  {mo:.2} us");
    println!(
        "  ratio irqlab/bare  {mr:.3} (median of per-round ratios; rounds: {})   target <= 1.10: {}",
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" "),
        verdict(mr <= 1.10)
    );
    let (ms, msr) = (median(&mut sandboxed), median(&mut sandbox_ratios.clone()));
    println!("  seccomp sandbox on the vCPU thread: with {ms:.2} us   without {mo:.2} us");
    println!(
        "  ratio with/without  {msr:.3} (median of per-round ratios; rounds: {})   target <= 1.02: {}",
        sandbox_ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" "),
        verdict(msr <= 1.02)
    );
    // The same cost without the exits' noise: one filtered system call against one
    // unfiltered, many times.
    let cost = irqlab::bench::seccomp_syscall_cost(200_000, a.rounds)?;
    let (mut off, mut on): (Vec<f64>, Vec<f64>) = cost.into_iter().unzip();
    let (off, on) = (median(&mut off), median(&mut on));
    let estimate = (mo * 1e3 + (on - off)) / (mo * 1e3);
    println!(
        "  per system call (ioctl KVM_RUN, refused at once): without {off:.0} ns   with the vCPU filters {on:.0} ns"
    );
    println!(
        "  filter cost per exit +{:.0} ns of {mo:.2} us: ratio {estimate:.4}   target <= 1.02: {}",
        on - off,
        verdict(estimate <= 1.02)
    );
    Ok(())
}
