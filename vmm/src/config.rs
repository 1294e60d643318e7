//! Experiment configuration: the TOML file format, command-line overrides, and validation.
//!
//! Every key is documented in the README's "Config reference". Unknown keys are errors, and
//! every error names the file, line and column (or the command-line flag) it comes from.

use crate::entry::BootProtocol;
use irqlab_abi::layout::MMIO_HOLE_START;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Smallest guest memory irqlab accepts, in MiB (boot structures + a small kernel).
pub const MEM_MIB_MIN: u64 = 2;
/// Largest guest memory: RAM stays below the 32-bit MMIO hole.
pub const MEM_MIB_MAX: u64 = MMIO_HOLE_START >> 20;
/// Most vCPUs (the guest ABI's limit: the irqlab guest sizes its per-CPU tables by it).
pub const VCPUS_MAX: u8 = irqlab_abi::limits::MAX_VCPUS;
/// Default guest memory in MiB.
pub const DEFAULT_MEM_MIB: u64 = 64;
/// Default command line for the built-in guest.
pub const DEFAULT_CMDLINE: &str = "run=selftest";
/// Default wall-clock watchdog.
pub const DEFAULT_TIMEOUT_SECS: f64 = 60.0;
/// Longest wall-clock watchdog, in seconds (a day).
pub const TIMEOUT_SECS_MAX: f64 = 86_400.0;
/// Largest config file irqlab reads.
pub const CONFIG_FILE_MAX: u64 = 1 << 20;

/// Where interrupts are modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IrqchipMode {
    /// LAPIC in KVM, IO-APIC and PIT emulated by irqlab (`KVM_CAP_SPLIT_IRQCHIP`).
    Split,
    /// LAPIC, IO-APIC, PIC and PIT all in KVM (`KVM_CREATE_IRQCHIP` + `KVM_CREATE_PIT2`).
    Kernel,
}

impl IrqchipMode {
    /// Name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            IrqchipMode::Split => "split",
            IrqchipMode::Kernel => "kernel",
        }
    }
}

/// The guest kernel to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The irqlab guest embedded in the binary.
    Builtin,
    /// A kernel file.
    File(PathBuf),
}

/// The config file as written (all keys optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    description: Option<String>,
    kernel: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    mem_mib: Option<Spanned<i64>>,
    vcpus: Option<Spanned<i64>>,
    irqchip: Option<IrqchipMode>,
    timeout_secs: Option<Spanned<f64>>,
    serial_log: Option<Spanned<String>>,
    trace: Option<FileTrace>,
    boot: Option<BootProtocol>,
    initrd: Option<Spanned<String>>,
    modules: Option<Vec<Spanned<String>>>,
    testdev: Option<bool>,
    x2apic: Option<bool>,
    seccomp: Option<bool>,
}

/// The `[trace]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTrace {
    dir: Spanned<String>,
    mode: Option<crate::trace::TraceMode>,
    ring_records: Option<Spanned<i64>>,
    exits_max_records: Option<Spanned<i64>>,
}

/// Values given on the command line; each overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--kernel`.
    pub kernel: Option<PathBuf>,
    /// `--cmdline`.
    pub cmdline: Option<String>,
    /// `--mem-mib`.
    pub mem_mib: Option<u64>,
    /// `--vcpus`.
    pub vcpus: Option<u8>,
    /// `--irqchip`.
    pub irqchip: Option<IrqchipMode>,
    /// `--timeout` in seconds (0 = no watchdog).
    pub timeout_secs: Option<f64>,
    /// `--trace DIR`.
    pub trace_dir: Option<PathBuf>,
    /// `--trace-mode`.
    pub trace_mode: Option<crate::trace::TraceMode>,
    /// `--boot`.
    pub boot: Option<BootProtocol>,
    /// `--initrd`.
    pub initrd: Option<PathBuf>,
    /// `--serial-log`.
    pub serial_log: Option<PathBuf>,
    /// `--testdev on|off`.
    pub testdev: Option<bool>,
    /// `--x2apic on|off`.
    pub x2apic: Option<bool>,
    /// `--no-seccomp` (`Some(false)`).
    pub seccomp: Option<bool>,
}

/// A validated VM configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct VmConfig {
    /// Free text from the config file.
    pub description: Option<String>,
    /// Kernel to boot.
    pub kernel: KernelSource,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Interrupt controller model.
    pub irqchip: IrqchipMode,
    /// Wall-clock watchdog (`None` = off).
    pub timeout: Option<Duration>,
    /// Also copy the serial console to this file.
    pub serial_log: Option<PathBuf>,
    /// Interrupt tracing (`None` = off).
    pub trace: Option<crate::trace::TraceConfig>,
    /// Boot protocol.
    pub boot: BootProtocol,
    /// Initial ramdisk (Linux boot protocol or PVH).
    pub initrd: Option<PathBuf>,
    /// Multiboot modules, in order.
    pub modules: Vec<PathBuf>,
    /// Where `initrd` and `modules` were given, for errors about them.
    pub origins: InputOrigins,
    /// Map the pc-testdev-compatible test device (kvm-unit-tests' harness device); `None`:
    /// only for kvm-unit-tests kernels, recognised by their image.
    pub testdev: Option<bool>,
    /// Offer x2APIC mode in CPUID (CPUID.1:ECX.x2APIC) where KVM supports it; `false` gives
    /// the guest an xAPIC-only CPU (kvm-unit-tests' `xapic` entry: `-cpu …,-x2apic`).
    pub x2apic: bool,
    /// Confine irqlab's threads with seccomp filters (see [`crate::sandbox`]); `false` for
    /// debugging (`seccomp = false`, `--no-seccomp`).
    pub seccomp: bool,
}

/// Where a config's input files were named (file:line:column or flag).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputOrigins {
    /// Of `initrd`.
    pub initrd: Option<Origin>,
    /// Of each of `modules`, in order.
    pub modules: Vec<Origin>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            description: None,
            kernel: KernelSource::Builtin,
            cmdline: DEFAULT_CMDLINE.into(),
            mem_mib: DEFAULT_MEM_MIB,
            vcpus: 1,
            irqchip: IrqchipMode::Split,
            timeout: Some(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS)),
            serial_log: None,
            trace: None,
            boot: BootProtocol::Auto,
            initrd: None,
            modules: Vec::new(),
            origins: InputOrigins::default(),
            testdev: None,
            x2apic: true,
            seccomp: true,
        }
    }
}

/// Where a bad value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A config file key at a line and column (1-based).
    File {
        /// The file.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Column.
        column: usize,
    },
    /// A command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

/// Config errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// Where.
        origin: Origin,
        /// The parser's message (one line).
        message: String,
    },
    /// A value outside its allowed range.
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn origin(&self, span: std::ops::Range<usize>) -> Origin {
        let (line, column) = line_col(self.text, span.start);
        Origin::File {
            path: self.path.to_path_buf(),
            line,
            column,
        }
    }
}

impl VmConfig {
    /// Parses a config file's text. Relative paths in it are resolved against the file's
    /// directory.
    pub fn from_toml(path: &Path, text: &str) -> Result<VmConfig, ConfigError> {
        let src = Source { path, text };
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: e.span().map_or(
                Origin::File {
                    path: path.to_path_buf(),
                    line: 1,
                    column: 1,
                },
                |s| src.origin(s),
            ),
            message: e.message().trim().replace('\n', " "),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut cfg = VmConfig {
            description: file.description,
            ..VmConfig::default()
        };
        if let Some(k) = file.kernel {
            let span = k.span();
            let v = k.into_inner();
            cfg.kernel = match v.as_str() {
                "builtin" => KernelSource::Builtin,
                "" => {
                    return Err(ConfigError::Invalid {
                        origin: src.origin(span),
                        key: "kernel",
                        message: "must be a path or \"builtin\"".into(),
                    })
                }
                p => KernelSource::File(base.join(p)),
            };
        }
        if let Some(c) = file.cmdline {
            cfg.cmdline = c.into_inner();
        }
        if let Some(m) = file.mem_mib {
            let span = m.span();
            cfg.mem_mib = check_mem(*m.get_ref()).map_err(|message| ConfigError::Invalid {
                origin: src.origin(span),
                key: "mem_mib",
                message,
            })?;
        }
        if let Some(v) = file.vcpus {
            let span = v.span();
            cfg.vcpus = check_vcpus(*v.get_ref()).map_err(|message| ConfigError::Invalid {
                origin: src.origin(span),
                key: "vcpus",
                message,
            })?;
        }
        if let Some(i) = file.irqchip {
            cfg.irqchip = i;
        }
        if let Some(t) = file.timeout_secs {
            let span = t.span();
            cfg.timeout = check_timeout(*t.get_ref()).map_err(|message| ConfigError::Invalid {
                origin: src.origin(span),
                key: "timeout_secs",
                message,
            })?;
        }
        if let Some(s) = file.serial_log {
            cfg.serial_log = Some(base.join(s.into_inner()));
        }
        if let Some(t) = file.testdev {
            cfg.testdev = Some(t);
        }
        if let Some(x) = file.x2apic {
            cfg.x2apic = x;
        }
        if let Some(s) = file.seccomp {
            cfg.seccomp = s;
        }
        if let Some(b) = file.boot {
            cfg.boot = b;
        }
        if let Some(i) = file.initrd {
            cfg.origins.initrd = Some(src.origin(i.span()));
            cfg.initrd = Some(base.join(i.into_inner()));
        }
        for m in file.modules.unwrap_or_default() {
            cfg.origins.modules.push(src.origin(m.span()));
            cfg.modules.push(base.join(m.into_inner()));
        }
        if let Some(t) = file.trace {
            let ring_records = match t.ring_records {
                None => crate::trace::DEFAULT_RING_RECORDS,
                Some(r) => {
                    let span = r.span();
                    check_ring_records(*r.get_ref()).map_err(|message| ConfigError::Invalid {
                        origin: src.origin(span),
                        key: "trace.ring_records",
                        message,
                    })?
                }
            };
            let exits_max_records = match t.exits_max_records {
                None => crate::trace::DEFAULT_EXITS_MAX_RECORDS,
                Some(r) => {
                    let span = r.span();
                    u64::try_from(*r.get_ref()).map_err(|_| ConfigError::Invalid {
                        origin: src.origin(span),
                        key: "trace.exits_max_records",
                        message: format!(
                            "is {}; must be 0 (no limit) or a number of exits.jsonl lines",
                            r.get_ref()
                        ),
                    })?
                }
            };
            let span = t.dir.span();
            let dir = t.dir.into_inner();
            if dir.is_empty() {
                return Err(ConfigError::Invalid {
                    origin: src.origin(span),
                    key: "trace.dir",
                    message: "must name a directory".into(),
                });
            }
            cfg.trace = Some(crate::trace::TraceConfig {
                dir: base.join(dir),
                mode: t.mode.unwrap_or_default(),
                ring_records,
                exits_max_records,
            });
        }
        cfg.check_cmdline(src.origin(0..0))?;
        Ok(cfg)
    }

    /// Reads and parses a config file (a regular file of at most [`CONFIG_FILE_MAX`] bytes,
    /// see [`crate::input`]).
    pub fn from_file(path: &Path) -> Result<VmConfig, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes =
            crate::input::read_regular(path, CONFIG_FILE_MAX, "1 MiB (config files are small)")
                .map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            ))
        })?;
        VmConfig::from_toml(path, &text)
    }

    /// Applies command-line overrides (validated like the file's values), then checks the
    /// input files the result names ([`VmConfig::check_inputs`]).
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(k) = &o.kernel {
            self.kernel = if k.as_os_str() == "builtin" {
                KernelSource::Builtin
            } else {
                KernelSource::File(k.clone())
            };
        }
        if let Some(c) = &o.cmdline {
            self.cmdline = c.clone();
            self.check_cmdline(Origin::Flag("--cmdline"))?;
        }
        if let Some(m) = o.mem_mib {
            self.mem_mib = check_mem(i64::try_from(m).unwrap_or(i64::MAX)).map_err(|message| {
                ConfigError::Invalid {
                    origin: Origin::Flag("--mem-mib"),
                    key: "mem_mib",
                    message,
                }
            })?;
        }
        if let Some(v) = o.vcpus {
            self.vcpus = check_vcpus(i64::from(v)).map_err(|message| ConfigError::Invalid {
                origin: Origin::Flag("--vcpus"),
                key: "vcpus",
                message,
            })?;
        }
        if let Some(i) = o.irqchip {
            self.irqchip = i;
        }
        if let Some(t) = o.timeout_secs {
            self.timeout = check_timeout(t).map_err(|message| ConfigError::Invalid {
                origin: Origin::Flag("--timeout"),
                key: "timeout_secs",
                message,
            })?;
        }
        if let Some(s) = &o.serial_log {
            self.serial_log = Some(s.clone());
        }
        if let Some(t) = o.testdev {
            self.testdev = Some(t);
        }
        if let Some(x) = o.x2apic {
            self.x2apic = x;
        }
        if let Some(s) = o.seccomp {
            self.seccomp = s;
        }
        if let Some(b) = o.boot {
            self.boot = b;
        }
        if let Some(i) = &o.initrd {
            self.initrd = Some(i.clone());
            self.origins.initrd = Some(Origin::Flag("--initrd"));
        }
        if let Some(dir) = &o.trace_dir {
            let t = self.trace.get_or_insert_with(|| {
                crate::trace::TraceConfig::new(dir.clone(), Default::default())
            });
            t.dir = dir.clone();
        }
        if let Some(mode) = o.trace_mode {
            match self.trace.as_mut() {
                Some(t) => t.mode = mode,
                None => {
                    return Err(ConfigError::Invalid {
                        origin: Origin::Flag("--trace-mode"),
                        key: "trace.mode",
                        message: "needs --trace DIR (or [trace] dir in the config)".into(),
                    })
                }
            }
        }
        self.check_inputs()
    }

    /// Checks `initrd` and `modules` before anything runs: the kernel's boot protocol must
    /// take them (only Linux and PVH take an initrd, only Multiboot modules) and each must be a
    /// readable regular file. Reads the kernel image only when there is an initrd or a
    /// module; a kernel that cannot be read is left for the run to report (exit 66).
    pub fn check_inputs(&self) -> Result<(), ConfigError> {
        let named: Vec<(&'static str, &Path, Origin)> = self
            .initrd
            .iter()
            .map(|p| {
                let origin = self.origins.initrd.clone();
                (
                    "initrd",
                    p.as_path(),
                    origin.unwrap_or(Origin::Flag("--initrd")),
                )
            })
            .chain(self.modules.iter().enumerate().map(|(i, p)| {
                let origin = self.origins.modules.get(i).cloned();
                (
                    "modules",
                    p.as_path(),
                    origin.unwrap_or(Origin::Flag("modules")),
                )
            }))
            .collect();
        if named.is_empty() {
            return Ok(());
        }
        let (image, kernel_name) = match &self.kernel {
            KernelSource::Builtin => (
                Some(crate::loader::KernelImage::builtin()),
                "the built-in guest".to_string(),
            ),
            KernelSource::File(p) => (
                crate::loader::KernelImage::from_file_within(p, self.mem_bytes()).ok(),
                p.display().to_string(),
            ),
        };
        if let Some(entry) = image.and_then(|i| crate::entry::entry_of(&i, self.boot)) {
            for (key, _, origin) in &named {
                if let Some(why) = crate::entry::refuses_input(&entry, key, &kernel_name) {
                    return Err(ConfigError::Invalid {
                        origin: origin.clone(),
                        key,
                        message: why,
                    });
                }
            }
        }
        for (key, path, origin) in named {
            crate::input::open_regular(path).map_err(|e| ConfigError::Invalid {
                origin,
                key,
                message: format!("{}: {e}", path.display()),
            })?;
        }
        Ok(())
    }

    fn check_cmdline(&self, origin: Origin) -> Result<(), ConfigError> {
        let max = irqlab_abi::layout::CMDLINE_MAX - 1;
        if self.cmdline.len() > max {
            return Err(ConfigError::Invalid {
                origin,
                key: "cmdline",
                message: format!("is {} bytes; at most {max} fit", self.cmdline.len()),
            });
        }
        if self.cmdline.bytes().any(|b| b == 0) {
            return Err(ConfigError::Invalid {
                origin,
                key: "cmdline",
                message: "must not contain NUL bytes".into(),
            });
        }
        Ok(())
    }

    /// Guest memory in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib << 20
    }
}

fn check_ring_records(v: i64) -> Result<u32, String> {
    if !(16..=1 << 20).contains(&v) {
        Err(format!(
            "is {v}; the trace ring holds 16 to 1048576 records"
        ))
    } else {
        Ok(v as u32)
    }
}

fn check_mem(v: i64) -> Result<u64, String> {
    if v < MEM_MIB_MIN as i64 || v > MEM_MIB_MAX as i64 {
        Err(format!(
            "is {v}; guest memory must be between {MEM_MIB_MIN} and {MEM_MIB_MAX} MiB"
        ))
    } else {
        Ok(v as u64)
    }
}

fn check_vcpus(v: i64) -> Result<u8, String> {
    if v < 1 || v > i64::from(VCPUS_MAX) {
        Err(format!("is {v}; must be between 1 and {VCPUS_MAX}"))
    } else {
        Ok(v as u8)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VmConfig, ConfigError> {
        VmConfig::from_toml(Path::new("configs/t.toml"), text)
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), VmConfig::default());
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
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = parse("mem_mib = 64\nmemory = 3\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { origin: Origin::File { line: 2, .. }, message } if message.contains("memory")),
            "{err}"
        );
        assert!(err.to_string().starts_with("configs/t.toml:2:1: "), "{err}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let err = parse("vcpus = 1\nmem_mib = = 3\n").unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Parse {
                    origin: Origin::File { line: 2, .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn zero_memory_is_rejected_with_its_line() {
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
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for text in [
            "mem_mib = 999999",
            "mem_mib = -1",
            "vcpus = 0",
            "vcpus = 9",
            "timeout_secs = -1.0",
            "timeout_secs = nan",
            "kernel = \"\"",
        ] {
            assert!(
                matches!(parse(text), Err(ConfigError::Invalid { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            parse("irqchip = \"pic\""),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse("vcpus = \"two\""),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn overrides_win_and_are_validated() {
        let mut cfg = parse("mem_mib = 64\nirqchip = \"kernel\"").unwrap();
        cfg.apply(&Overrides {
            mem_mib: Some(32),
            irqchip: Some(IrqchipMode::Split),
            timeout_secs: Some(0.0),
            cmdline: Some("run=hang".into()),
            kernel: Some("builtin".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (cfg.mem_mib, cfg.irqchip, cfg.timeout),
            (32, IrqchipMode::Split, None)
        );
        assert_eq!(cfg.kernel, KernelSource::Builtin);
        let err = cfg
            .apply(&Overrides {
                mem_mib: Some(0),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                origin: Origin::Flag("--mem-mib"),
                ..
            }
        ));
        let err = cfg
            .apply(&Overrides {
                cmdline: Some("x".repeat(5000)),
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { key: "cmdline", .. }));
    }

    /// A config file in a fresh directory (for checks that look at files).
    fn scratch_config(name: &str, text: &str) -> (PathBuf, Result<VmConfig, ConfigError>) {
        let dir = std::env::temp_dir().join(format!("irqlab-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = VmConfig::from_file(&path).and_then(|mut c| {
            c.apply(&Overrides::default())?;
            Ok(c)
        });
        (dir, cfg)
    }

    #[test]
    fn inputs_the_kernel_does_not_take_are_refused_with_their_line() {
        let (dir, cfg) = scratch_config("initrd-native", "vcpus = 1\ninitrd = \"i.cpio\"\n");
        let err = cfg.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:2:10: `initrd` is only for kernels entered through the Linux boot protocol \
                 (bzImage, vmlinux) or PVH; the built-in guest boots through irqlab's native \
                 boot protocol",
                dir.join("c.toml").display()
            )
        );
        let (dir, cfg) = scratch_config("modules-native", "modules = [\"a\", \"b\"]\n");
        let err = cfg.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}:1:12: `modules` is only for Multiboot kernels",
                dir.join("c.toml").display()
            )),
            "{err}"
        );
        // Through the Linux protocol the built-in guest would take an initrd: then the file
        // itself is checked.
        let (_, cfg) = scratch_config("initrd-missing", "boot = \"linux\"\ninitrd = \"i.cpio\"\n");
        let err = cfg.unwrap_err().to_string();
        assert!(
            err.contains(":2:10: `initrd` ") && err.contains("i.cpio: No such file"),
            "{err}"
        );
        let (dir, _) = scratch_config("initrd-ok", "");
        std::fs::write(dir.join("i.cpio"), b"070701").unwrap();
        let mut cfg = VmConfig::default();
        let ok = cfg.apply(&Overrides {
            boot: Some(BootProtocol::Linux),
            initrd: Some(dir.join("i.cpio")),
            ..Default::default()
        });
        assert!(ok.is_ok(), "{ok:?}");
        let err = cfg
            .apply(&Overrides {
                initrd: Some(dir.clone()),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--initrd: `initrd` ")
                && err.ends_with(": is a directory, not a regular file"),
            "{err}"
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

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
