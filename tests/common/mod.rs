//! Helpers shared by the integration tests: run the real `irqlab` binary on /dev/kvm.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether KVM tests can run. Without /dev/kvm they print a SKIP line and pass, except under
/// CI (`CI=true`), where a missing /dev/kvm is a failure: CI runners must have it.
pub fn kvm_or_skip(test: &str) -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: /dev/kvm is not usable but CI=true: KVM tests must run on CI");
        }
        println!("SKIP {test}: /dev/kvm is not accessible on this host");
    }
    ok
}

/// The irqlab binary built by cargo for these tests.
pub fn irqlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_irqlab"))
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("irqlab-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs irqlab with `args` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = irqlab().args(args).output().expect("spawn irqlab");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The guest's result lines: ("PASS", "name", "detail").
pub fn results(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (tag, rest) = l.split_once(' ')?;
            if !matches!(tag, "PASS" | "FAIL" | "SKIP") {
                return None;
            }
            let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
            Some((tag.to_string(), name.to_string(), detail.to_string()))
        })
        .collect()
}

/// The SUMMARY line's counts (passed, failed, skipped).
pub fn summary(stdout: &str) -> Option<(u32, u32, u32)> {
    let line = stdout.lines().find(|l| l.starts_with("SUMMARY "))?;
    let get = |k: &str| -> Option<u32> {
        line.split(' ')
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
    };
    Some((get("passed")?, get("failed")?, get("skipped")?))
}
