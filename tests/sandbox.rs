//! The seccomp sandbox (`irqlab::sandbox`): every thread of a running `irqlab run` is under a
//! seccomp filter with `NoNewPrivs`, as /proc shows it; a system call outside a thread's
//! allowlist ends the run with exit 76 and one line naming the call and the thread (the
//! `IRQLAB_SANDBOX_SELFTEST` hook makes the chosen thread call `getppid`); `--no-seccomp` and
//! `seccomp = false` leave the threads unconfined.

mod common;
use common::*;
use irqlab::outcome::code;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A guest that runs until it is stopped, with the MSI source's worker thread alive the whole
/// time (one MSI every 10 ms for far longer than any test).
const LONG_MSI: &str = "run=msi count=1000000 rate=100";

/// A task of the process: its name and the lines of its status file that matter here.
#[derive(Debug)]
struct Task {
    comm: String,
    seccomp: Option<u32>,
    no_new_privs: Option<u32>,
    filters: Option<u32>,
}

fn tasks(pid: u32) -> Vec<Task> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let path = e.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        let status = std::fs::read_to_string(path.join("status")).ok()?;
        let field = |name: &str| -> Option<u32> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        };
        Some(Task {
            comm: comm.trim().to_string(),
            seccomp: field("Seccomp:"),
            no_new_privs: field("NoNewPrivs:"),
            filters: field("Seccomp_filters:"),
        })
    })
    .collect()
}

/// irqlab's own threads. KVM may add kernel worker tasks to the VMM's thread group
/// (`kvm-nx-lpage-recovery` on Linux 6.13+); they never run user code, so no filter concerns
/// them.
fn own(tasks: Vec<Task>) -> Vec<Task> {
    tasks
        .into_iter()
        .filter(|t| !t.comm.starts_with("kvm-"))
        .collect()
}

/// Starts `irqlab run ARGS` with stdin a pipe held open (so the stdin thread stays) and
/// stdout drained by a thread.
fn start(args: &[&str], config: Option<&std::path::Path>) -> (Child, std::process::ChildStdin) {
    let mut words = vec!["run"];
    if let Some(c) = config {
        words.push(c.to_str().unwrap());
    }
    words.extend(args);
    let mut child = spawn_piped(&words, Stdio::piped());
    let mut out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    });
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Waits until every thread in `expected` exists and `ready` holds for all of irqlab's
/// threads; returns them (or what there was at the deadline).
fn wait_for_threads(pid: u32, expected: &[&str], ready: impl Fn(&Task) -> bool) -> Vec<Task> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = own(tasks(pid));
        let present = expected
            .iter()
            .all(|name| now.iter().any(|t| t.comm == *name));
        if (present && now.iter().all(&ready)) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends the run with SIGTERM; returns the exit code and stderr.
fn terminate(mut child: Child, stdin: std::process::ChildStdin) -> (i32, String) {
    send_signal(&child, libc::SIGTERM);
    let err = read_stderr(&mut child);
    let status = child.wait().unwrap();
    drop(stdin);
    (status.code().unwrap_or(-1), err)
}

const THREADS: [&str; 7] = [
    "irqlab",
    "console",
    "stdin",
    "vcpu0",
    "vcpu1",
    "msi-source",
    "trace-writer",
];

#[test]
fn every_thread_runs_under_its_filter_with_no_new_privs() {
    if !kvm_or_skip("every_thread_runs_under_its_filter_with_no_new_privs") {
        return;
    }
    let dir = scratch("sandbox-threads");
    let trace = dir.join("trace");
    let (child, stdin) = start(
        &[
            "--vcpus",
            "2",
            "--cmdline",
            LONG_MSI,
            "--timeout",
            "30",
            "--trace",
            trace.to_str().unwrap(),
        ],
        None,
    );
    let pid = child.id();
    // The vCPU threads stack a second filter (clone3 -> ENOSYS) and the MSI source's worker
    // inherits both under its own, which it installs right after it starts: wait until every
    // thread shows its final count where the kernel shows one (else a worker seen between
    // its start and its own filter has 2).
    let want = |comm: &str| match comm {
        c if c.starts_with("vcpu") => 2,
        "msi-source" => 3,
        _ => 1,
    };
    let threads = wait_for_threads(pid, &THREADS, |t| {
        t.seccomp == Some(2) && t.filters.is_none_or(|n| n == want(&t.comm))
    });
    let (code, err) = terminate(child, stdin);
    for name in THREADS {
        assert!(
            threads.iter().any(|t| t.comm == name),
            "no thread {name} while the guest ran: {threads:?}\n{err}"
        );
    }
    for t in &threads {
        assert_eq!(
            (t.seccomp, t.no_new_privs),
            (Some(2), Some(1)),
            "thread {} is not confined (Seccomp: 2, NoNewPrivs: 1 expected): {threads:?}",
            t.comm
        );
        if let Some(n) = t.filters {
            assert_eq!(
                n,
                want(&t.comm),
                "Seccomp_filters of {}: {threads:?}",
                t.comm
            );
        }
    }
    assert_eq!(code, i32::from(code::SIGTERM), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("irqlab:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("irqlab: stopped by signal 15"), "{err}");
    // The trace was completed under the filters (the writer thread's and the main thread's).
    for file in [
        "interrupts.jsonl",
        "summary.json",
        "trace.json",
        "latency.svg",
    ] {
        assert!(
            trace.join(file).is_file(),
            "{file} missing after SIGTERM: {err}"
        );
    }
    let summary = std::fs::read_to_string(trace.join("summary.json")).unwrap();
    assert!(summary.contains("msi:source0"), "{summary}");
}

#[test]
fn a_forbidden_call_ends_the_run_naming_the_call_and_the_thread() {
    if !kvm_or_skip("a_forbidden_call_ends_the_run_naming_the_call_and_the_thread") {
        return;
    }
    let trace = scratch("sandbox-violation").join("trace");
    for (kind, thread) in [
        ("vcpu", "vcpu0"),
        ("console", "console"),
        ("stdin", "stdin"),
        ("msi-source", "msi-source"),
        ("trace-writer", "trace-writer"),
        ("main", "main"),
    ] {
        let out = irqlab()
            .args([
                "run",
                "--cmdline",
                "run=msi count=100 rate=1000",
                "--timeout",
                "30",
                "--trace",
                trace.to_str().unwrap(),
            ])
            .env(irqlab::sandbox::SELFTEST_ENV, kind)
            .stdin(Stdio::null())
            .output()
            .expect("spawn irqlab");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<_> = err.lines().filter(|l| l.starts_with("irqlab:")).collect();
        assert_eq!(
            out.status.code(),
            Some(i32::from(code::SANDBOX)),
            "{kind}: {err}"
        );
        assert_eq!(
            lines,
            [format!(
                "irqlab: sandbox violation: thread {thread} made system call {} (getppid), \
                 which its seccomp filter does not allow (--no-seccomp turns the sandbox off)",
                libc::SYS_getppid
            )],
            "{kind}: {err}"
        );
    }
}

#[test]
fn no_seccomp_flag_and_config_key_leave_the_threads_unconfined() {
    if !kvm_or_skip("no_seccomp_flag_and_config_key_leave_the_threads_unconfined") {
        return;
    }
    let dir = scratch("sandbox-off");
    let config = dir.join("off.toml");
    std::fs::write(
        &config,
        format!("cmdline = \"{LONG_MSI}\"\nseccomp = false\ntimeout_secs = 30\n"),
    )
    .unwrap();
    let flag = ["--cmdline", LONG_MSI, "--timeout", "30", "--no-seccomp"];
    for (what, args, config) in [
        ("--no-seccomp", &flag[..], None),
        ("seccomp = false", &[][..], Some(config.as_path())),
    ] {
        let (child, stdin) = start(args, config);
        let pid = child.id();
        let expected = ["irqlab", "console", "stdin", "vcpu0", "msi-source"];
        let threads = wait_for_threads(pid, &expected, |_| true);
        let (code, err) = terminate(child, stdin);
        for name in expected {
            assert!(
                threads.iter().any(|t| t.comm == name),
                "{what}: no thread {name}: {threads:?}\n{err}"
            );
        }
        assert!(
            threads
                .iter()
                .all(|t| t.seccomp == Some(0) && t.no_new_privs == Some(0)),
            "{what}: {threads:?}"
        );
        assert_eq!(code, i32::from(code::SIGTERM), "{what}: {err}");
    }
    // And the test hook has nothing to trip over.
    let (code, _, err) = {
        let out = irqlab()
            .args(["run", "--no-seccomp", "--cmdline", "run=msi count=50"])
            .env(irqlab::sandbox::SELFTEST_ENV, "vcpu")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{err}");
}
