//! Turns a stack of layers into a [`VmConfig`]: every key checked once, each error naming
//! where the offending value was given.

use super::error::ConfigError;
use super::layer::{resolve, ConfigLayer, TraceLayer};
use super::origin::Sourced;
use super::vm::{
    InputOrigins, KernelSource, VmConfig, MEM_MIB_MAX, MEM_MIB_MIN, TIMEOUT_SECS_MAX, VCPUS_MAX,
};
use crate::trace::{TraceConfig, DEFAULT_EXITS_MAX_RECORDS, DEFAULT_RING_RECORDS};
use std::path::Path;
use std::time::Duration;

/// `check(value)`, its message made an error naming `key` and the value's origin.
fn checked<T, U>(
    s: Sourced<T>,
    key: &'static str,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<U, ConfigError> {
    check(s.value).map_err(|message| ConfigError::Invalid {
        origin: s.origin,
        key,
        message,
    })
}

/// [`checked`] for a key that may be absent (then `default`).
fn checked_or<T, U>(
    s: Option<Sourced<T>>,
    key: &'static str,
    check: impl FnOnce(T) -> Result<U, String>,
    default: U,
) -> Result<U, ConfigError> {
    s.map_or(Ok(default), |s| checked(s, key, check))
}

impl ConfigLayer {
    /// Checks every key this layer (usually a stack, see [`ConfigLayer::then`]) gives, fills
    /// in the defaults for the rest, then checks the input files the result names
    /// ([`VmConfig::check_inputs`]).
    pub fn validate(self) -> Result<VmConfig, ConfigError> {
        let d = VmConfig::default();
        let kernel = match self.kernel {
            None => d.kernel,
            Some(k) if k.value.as_os_str() == "builtin" => KernelSource::Builtin,
            Some(k) if k.value.as_os_str().is_empty() => {
                return checked(k, "kernel", |_| Err("must be a path or \"builtin\"".into()))
            }
            Some(k) => KernelSource::File(resolve(k)),
        };
        let mem_mib = checked_or(self.mem_mib, "mem_mib", check_mem, d.mem_mib)?;
        let vcpus = checked_or(self.vcpus, "vcpus", check_vcpus, d.vcpus)?;
        let timeout = checked_or(self.timeout_secs, "timeout_secs", check_timeout, d.timeout)?;
        let trace = self.trace.map(TraceLayer::validate).transpose()?.flatten();
        let cmdline = checked_or(self.cmdline, "cmdline", check_cmdline, d.cmdline)?;
        let initrd = self.initrd.map(|i| (i.origin.clone(), resolve(i)));
        let (module_origins, modules) = (self.modules.into_iter().flatten())
            .map(|m| (m.origin.clone(), resolve(m)))
            .unzip();
        let cfg = VmConfig {
            description: self.description,
            kernel,
            cmdline,
            mem_mib,
            vcpus,
            irqchip: self.irqchip.map_or(d.irqchip, |i| i.value),
            timeout,
            serial_log: self.serial_log.map(resolve),
            trace,
            boot: self.boot.map_or(d.boot, |b| b.value),
            origins: InputOrigins {
                initrd: initrd.as_ref().map(|(origin, _)| origin.clone()),
                modules: module_origins,
            },
            initrd: initrd.map(|(_, path)| path),
            modules,
            testdev: self.testdev.map(|t| t.value).or(d.testdev),
            x2apic: self.x2apic.map_or(d.x2apic, |x| x.value),
            seccomp: self.seccomp.map_or(d.seccomp, |s| s.value),
        };
        cfg.check_inputs()?;
        Ok(cfg)
    }
}

impl TraceLayer {
    /// The tracing these keys ask for; `None` when they give nothing at all.
    fn validate(self) -> Result<Option<TraceConfig>, ConfigError> {
        let ring_records = checked_or(
            self.ring_records,
            "trace.ring_records",
            check_ring_records,
            DEFAULT_RING_RECORDS,
        )?;
        let exits_max_records = checked_or(
            self.exits_max_records,
            "trace.exits_max_records",
            |v| {
                u64::try_from(v).map_err(|_| {
                    format!("is {v}; must be 0 (no limit) or a number of exits.jsonl lines")
                })
            },
            DEFAULT_EXITS_MAX_RECORDS,
        )?;
        let Some(dir) = self.dir else {
            // Only a layer above the file's `[trace]` table (a flag) can leave out the
            // directory: then there is no tracing for `--trace-mode` to adjust.
            return match self.mode {
                Some(mode) => checked(mode, "trace.mode", |_| {
                    Err("needs --trace DIR (or [trace] dir in the config)".into())
                }),
                None => Ok(None),
            };
        };
        if dir.value.as_os_str().is_empty() {
            return checked(dir, "trace.dir", |_| Err("must name a directory".into()));
        }
        Ok(Some(TraceConfig {
            dir: resolve(dir),
            mode: self.mode.map(|m| m.value).unwrap_or_default(),
            ring_records,
            exits_max_records,
        }))
    }
}

impl VmConfig {
    /// Parses and validates a config file's text, without command-line flags. Relative
    /// paths in it are resolved against the file's directory.
    pub fn from_toml(path: &Path, text: &str) -> Result<VmConfig, ConfigError> {
        ConfigLayer::from_toml(path, text)?.validate()
    }

    /// Reads and validates a config file, without command-line flags (see
    /// [`ConfigLayer::from_file`]).
    pub fn from_file(path: &Path) -> Result<VmConfig, ConfigError> {
        ConfigLayer::from_file(path)?.validate()
    }
}

fn check_ring_records(v: i64) -> Result<u32, String> {
    u32::try_from(v)
        .ok()
        .filter(|v| (16..=1 << 20).contains(v))
        .ok_or_else(|| format!("is {v}; the trace ring holds 16 to 1048576 records"))
}

fn check_mem(v: i64) -> Result<u64, String> {
    u64::try_from(v)
        .ok()
        .filter(|v| (MEM_MIB_MIN..=MEM_MIB_MAX).contains(v))
        .ok_or_else(|| {
            format!("is {v}; guest memory must be between {MEM_MIB_MIN} and {MEM_MIB_MAX} MiB")
        })
}

fn check_vcpus(v: i64) -> Result<u8, String> {
    u8::try_from(v)
        .ok()
        .filter(|v| (1..=VCPUS_MAX).contains(v))
        .ok_or_else(|| format!("is {v}; must be between 1 and {VCPUS_MAX}"))
}

fn check_timeout(v: f64) -> Result<Option<Duration>, String> {
    if !v.is_finite() || !(0.0..=TIMEOUT_SECS_MAX).contains(&v) {
        Err(format!(
            "is {v}; must be between 0 (off) and {TIMEOUT_SECS_MAX} seconds"
        ))
    } else if v == 0.0 {
        Ok(None)
    } else {
        Ok(Some(Duration::from_secs_f64(v)))
    }
}

fn check_cmdline(cmdline: String) -> Result<String, String> {
    let max = irqlab_abi::layout::CMDLINE_MAX - 1;
    if cmdline.len() > max {
        Err(format!("is {} bytes; at most {max} fit", cmdline.len()))
    } else if cmdline.bytes().any(|b| b == 0) {
        Err("must not contain NUL bytes".into())
    } else {
        Ok(cmdline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IrqchipMode, Origin};
    use crate::entry::BootProtocol;
    use std::path::PathBuf;

    fn parse(text: &str) -> Result<VmConfig, ConfigError> {
        VmConfig::from_toml(Path::new("configs/t.toml"), text)
    }

    fn layer(text: &str) -> ConfigLayer {
        ConfigLayer::from_toml(Path::new("configs/t.toml"), text).unwrap()
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), VmConfig::default());
        assert_eq!(
            ConfigLayer::default().validate().unwrap(),
            VmConfig::default()
        );
    }

    #[test]
    fn every_key_is_read() {
        let cfg = parse(
            r#"
description = "all keys"
kernel = "k.elf"
cmdline = "run=cost"
mem_mib = 128
vcpus = 2
irqchip = "kernel"
timeout_secs = 2.5
serial_log = "out/serial.txt"
boot = "pvh"
testdev = true
x2apic = false
seccomp = false

[trace]
dir = "trace-out"
mode = "lockstep"
ring_records = 4096
exits_max_records = 0
"#,
        )
        .unwrap();
        assert_eq!(cfg.kernel, KernelSource::File("configs/k.elf".into()));
        assert_eq!(cfg.cmdline, "run=cost");
        assert_eq!(cfg.mem_mib, 128);
        assert_eq!(cfg.vcpus, 2);
        assert_eq!(cfg.irqchip, IrqchipMode::Kernel);
        assert_eq!(cfg.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(cfg.serial_log, Some("configs/out/serial.txt".into()));
        assert_eq!(cfg.description.as_deref(), Some("all keys"));
        assert_eq!(cfg.boot, BootProtocol::Pvh);
        assert_eq!(
            (cfg.testdev, cfg.x2apic, cfg.seccomp),
            (Some(true), false, false)
        );
        let trace = cfg.trace.unwrap();
        assert_eq!(trace.dir, PathBuf::from("configs/trace-out"));
        assert_eq!(trace.mode, crate::trace::TraceMode::Lockstep);
        assert_eq!((trace.ring_records, trace.exits_max_records), (4096, 0));
    }

    #[test]
    fn zero_memory_is_rejected_with_its_position() {
        let err = parse("\n\nmem_mib = 0\n").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "mem_mib",
                    origin: Origin::File {
                        line: 3,
                        column: 11,
                        ..
                    },
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "configs/t.toml:3:11: `mem_mib` is 0; guest memory must be between 2 and 3072 MiB"
        );
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for text in [
            "mem_mib = 999999",
            "mem_mib = -1",
            "vcpus = 0",
            "vcpus = 9",
            "vcpus = 300",
            "timeout_secs = -1.0",
            "timeout_secs = nan",
            "timeout_secs = inf",
            "kernel = \"\"",
            "[trace]\ndir = \"\"",
            "[trace]\ndir = \"t\"\nring_records = 15",
            "[trace]\ndir = \"t\"\nring_records = 5000000000",
            "[trace]\ndir = \"t\"\nexits_max_records = -1",
        ] {
            assert!(
                matches!(parse(text), Err(ConfigError::Invalid { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn flags_win_and_are_validated_once() {
        let flags = ConfigLayer {
            mem_mib: Some(Sourced::flag(32, "--mem-mib")),
            irqchip: Some(Sourced::flag(IrqchipMode::Split, "--irqchip")),
            timeout_secs: Some(Sourced::flag(0.0, "--timeout")),
            cmdline: Some(Sourced::flag("run=hang".into(), "--cmdline")),
            kernel: Some(Sourced::flag("builtin".into(), "--kernel")),
            ..Default::default()
        };
        // The file's own mem_mib is never used, so never checked.
        let cfg = layer("mem_mib = 0\nirqchip = \"kernel\"\nkernel = \"k.elf\"")
            .then(flags)
            .validate()
            .unwrap();
        assert_eq!(
            (cfg.mem_mib, cfg.irqchip, cfg.timeout),
            (32, IrqchipMode::Split, None)
        );
        assert_eq!(cfg.kernel, KernelSource::Builtin);
        let err = layer("mem_mib = 64")
            .then(ConfigLayer {
                mem_mib: Some(Sourced::flag(0, "--mem-mib")),
                ..Default::default()
            })
            .validate()
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                origin: Origin::Flag("--mem-mib"),
                key: "mem_mib",
                ..
            }
        ));
        let err = ConfigLayer {
            cmdline: Some(Sourced::flag("x".repeat(5000), "--cmdline")),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--cmdline: `cmdline` is 5000 bytes; at most 4095 fit"
        );
    }

    #[test]
    fn a_files_cmdline_is_checked_where_it_is_written() {
        let err = parse("vcpus = 1\ncmdline = \"a\\u0000b\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configs/t.toml:2:11: `cmdline` must not contain NUL bytes"
        );
    }

    #[test]
    fn trace_flags_adjust_the_files_tracing() {
        let mode = |m| TraceLayer {
            mode: Some(Sourced::flag(m, "--trace-mode")),
            ..Default::default()
        };
        let flags = |t| ConfigLayer {
            trace: Some(t),
            ..Default::default()
        };
        let file = layer("[trace]\ndir = \"t\"\nring_records = 64");
        let cfg = file
            .clone()
            .then(flags(mode(crate::trace::TraceMode::Lockstep)))
            .validate()
            .unwrap();
        let trace = cfg.trace.unwrap();
        assert_eq!(trace.dir, PathBuf::from("configs/t"));
        assert_eq!(trace.ring_records, 64);
        assert_eq!(trace.mode, crate::trace::TraceMode::Lockstep);
        let dir = TraceLayer {
            dir: Some(Sourced::flag("out".into(), "--trace")),
            ..Default::default()
        };
        let trace = file
            .then(flags(dir.clone()))
            .validate()
            .unwrap()
            .trace
            .unwrap();
        assert_eq!((trace.dir, trace.ring_records), ("out".into(), 64));
        let trace = flags(dir).validate().unwrap().trace.unwrap();
        assert_eq!(
            trace,
            TraceConfig::new("out".into(), crate::trace::TraceMode::Ring)
        );
        let err = flags(mode(crate::trace::TraceMode::Ring))
            .validate()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--trace-mode: `trace.mode` needs --trace DIR (or [trace] dir in the config)"
        );
    }

    #[test]
    fn config_files_must_be_regular_files() {
        let err = VmConfig::from_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/dev/zero: cannot read config file: is a character device, not a regular file"
        );
        let err = VmConfig::from_file(Path::new("/")).unwrap_err().to_string();
        assert!(err.ends_with("is a directory, not a regular file"), "{err}");
    }
}
