//! Builds the irqlab guest kernel (`../guest`) so that `cargo build` yields a VMM with its
//! default guest embedded.
//!
//! The guest is its own Cargo workspace built for the host triple with bare-metal flags
//! (`guest/.cargo/config.toml`, `guest/build.rs`). It gets its own target directory inside
//! OUT_DIR so the nested cargo never waits on the outer build's lock, and every variable the
//! outer cargo exports that would leak host-build settings into it is removed.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let guest_dir = manifest_dir.join("../guest");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guest-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());

    for dir in [
        "../guest/src",
        "../guest/link.ld",
        "../guest/build.rs",
        "../guest/Cargo.toml",
        "../guest/.cargo/config.toml",
        "../guest-core/src",
        "../guest-core/Cargo.toml",
        "../abi/src",
        "../x86/src",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guest_dir)
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(&target_dir);
    for (key, _) in std::env::vars() {
        let leaks = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
            || key == "TARGET"
            || key == "HOST"
            || key == "OUT_DIR"
            || key == "PROFILE"
            || key == "OPT_LEVEL"
            || key == "DEBUG"
            || key == "NUM_JOBS";
        if leaks && key != "CARGO_HOME" {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the guest kernel");
    if !status.success() {
        panic!("building the guest kernel failed ({status}); run `cargo build --release` in guest/ to see why");
    }
    let elf = target_dir.join("release/irqlab-guest");
    std::fs::copy(&elf, out_dir.join("irqlab-guest.elf")).expect("copy guest ELF");
    println!(
        "cargo:rustc-env=IRQLAB_GUEST_ELF={}",
        out_dir.join("irqlab-guest.elf").display()
    );
}
