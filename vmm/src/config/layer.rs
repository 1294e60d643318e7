//! One layer of configuration: the values a config file or the command line gives, each
//! with its [`Origin`]. Layers stack ([`ConfigLayer::then`]: the later one wins key by key)
//! and the stack is checked once ([`ConfigLayer::validate`](super::validate)).

use super::error::ConfigError;
use super::origin::{self, FileText, Origin, Sourced};
use super::vm::{IrqchipMode, CONFIG_FILE_MAX};
use crate::entry::BootProtocol;
use crate::trace::TraceMode;
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// The keys one source gives, none required; a file's relative paths are resolved against
/// its directory on validation. Deserializes from the config file format (the README's
/// "Config reference"; unknown keys are errors).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// `description`: free text.
    pub description: Option<String>,
    /// `kernel` / `--kernel`: a path, or `builtin`.
    #[serde(default, deserialize_with = "path")]
    pub kernel: Option<Sourced<PathBuf>>,
    /// `cmdline` / `--cmdline`.
    pub cmdline: Option<Sourced<String>>,
    /// `mem_mib` / `--mem-mib`.
    pub mem_mib: Option<Sourced<i64>>,
    /// `vcpus` / `--vcpus`.
    pub vcpus: Option<Sourced<i64>>,
    /// `irqchip` / `--irqchip`.
    pub irqchip: Option<Sourced<IrqchipMode>>,
    /// `timeout_secs` / `--timeout` (0 = no watchdog).
    pub timeout_secs: Option<Sourced<f64>>,
    /// `serial_log` / `--serial-log`.
    #[serde(default, deserialize_with = "path")]
    pub serial_log: Option<Sourced<PathBuf>>,
    /// `[trace]` / `--trace`, `--trace-mode`.
    pub trace: Option<TraceLayer>,
    /// `boot` / `--boot`.
    pub boot: Option<Sourced<BootProtocol>>,
    /// `initrd` / `--initrd`.
    #[serde(default, deserialize_with = "path")]
    pub initrd: Option<Sourced<PathBuf>>,
    /// `modules` (file only).
    #[serde(default, deserialize_with = "paths")]
    pub modules: Option<Vec<Sourced<PathBuf>>>,
    /// `testdev` / `--testdev on|off`.
    pub testdev: Option<Sourced<bool>>,
    /// `x2apic` / `--x2apic on|off`.
    pub x2apic: Option<Sourced<bool>>,
    /// `seccomp` / `--no-seccomp` (false).
    pub seccomp: Option<Sourced<bool>>,
}

/// The `[trace]` table, or `--trace DIR` and `--trace-mode`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceLayer {
    /// `dir` / `--trace DIR`: required in a file's `[trace]` table; a layer without it only
    /// adjusts a lower layer's tracing.
    #[serde(deserialize_with = "path")]
    pub dir: Option<Sourced<PathBuf>>,
    /// `mode` / `--trace-mode`.
    pub mode: Option<Sourced<TraceMode>>,
    /// `ring_records`.
    pub ring_records: Option<Sourced<i64>>,
    /// `exits_max_records` (0 = no limit).
    pub exits_max_records: Option<Sourced<i64>>,
}

/// A path key: a TOML string (for the file format's messages: "expected a string").
fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Sourced<PathBuf>>, D::Error> {
    Sourced::<String>::deserialize(d).map(|s| Some(s.map(PathBuf::from)))
}

/// A list of path keys.
fn paths<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Sourced<PathBuf>>>, D::Error> {
    let list = Vec::<Sourced<String>>::deserialize(d)?;
    Ok(Some(
        list.into_iter().map(|s| s.map(PathBuf::from)).collect(),
    ))
}

impl ConfigLayer {
    /// Parses a config file's text (read from `path`, which every value's origin names).
    pub fn from_toml(path: &Path, text: &str) -> Result<ConfigLayer, ConfigError> {
        let file = FileText::new(path, text);
        origin::reading(file.clone(), || toml::from_str(text)).map_err(|e: toml::de::Error| {
            ConfigError::Parse {
                origin: file.origin(e.span().map_or(0, |s| s.start)),
                message: e.message().trim().replace('\n', " "),
            }
        })
    }

    /// Reads and parses a config file (a regular file of at most [`CONFIG_FILE_MAX`] bytes,
    /// see [`crate::input`]).
    pub fn from_file(path: &Path) -> Result<ConfigLayer, ConfigError> {
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
        ConfigLayer::from_toml(path, &text)
    }

    /// This layer with `over` on top: each key `over` gives replaces this layer's (the
    /// `[trace]` keys one by one; `modules` as a whole).
    pub fn then(self, over: ConfigLayer) -> ConfigLayer {
        ConfigLayer {
            description: over.description.or(self.description),
            kernel: over.kernel.or(self.kernel),
            cmdline: over.cmdline.or(self.cmdline),
            mem_mib: over.mem_mib.or(self.mem_mib),
            vcpus: over.vcpus.or(self.vcpus),
            irqchip: over.irqchip.or(self.irqchip),
            timeout_secs: over.timeout_secs.or(self.timeout_secs),
            serial_log: over.serial_log.or(self.serial_log),
            trace: match (self.trace, over.trace) {
                (Some(under), Some(over)) => Some(under.then(over)),
                (under, over) => over.or(under),
            },
            boot: over.boot.or(self.boot),
            initrd: over.initrd.or(self.initrd),
            modules: over.modules.or(self.modules),
            testdev: over.testdev.or(self.testdev),
            x2apic: over.x2apic.or(self.x2apic),
            seccomp: over.seccomp.or(self.seccomp),
        }
    }
}

impl TraceLayer {
    /// This table with `over`'s keys on top.
    pub fn then(self, over: TraceLayer) -> TraceLayer {
        TraceLayer {
            dir: over.dir.or(self.dir),
            mode: over.mode.or(self.mode),
            ring_records: over.ring_records.or(self.ring_records),
            exits_max_records: over.exits_max_records.or(self.exits_max_records),
        }
    }
}

/// A path as given, a relative one resolved against the directory of the file that gave it
/// (a flag's stays relative to the working directory).
pub(super) fn resolve(path: Sourced<PathBuf>) -> PathBuf {
    match &path.origin {
        Origin::File { path: file, .. } => {
            file.parent().unwrap_or(Path::new(".")).join(&path.value)
        }
        Origin::Flag(_) => path.value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigLayer, ConfigError> {
        ConfigLayer::from_toml(Path::new("configs/t.toml"), text)
    }

    fn at(line: usize, column: usize) -> Origin {
        Origin::File {
            path: "configs/t.toml".into(),
            line,
            column,
        }
    }

    #[test]
    fn values_keep_their_position() {
        let layer = parse("vcpus = 2\n\n[trace]\ndir = \"out\"\n").unwrap();
        assert_eq!(
            layer.vcpus,
            Some(Sourced {
                value: 2,
                origin: at(1, 9)
            })
        );
        let dir = layer.trace.unwrap().dir.unwrap();
        assert_eq!((dir.value, dir.origin), ("out".into(), at(4, 7)));
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = parse("mem_mib = 64\nmemory = 3\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { origin, message } if *origin == at(2, 1) && message.contains("memory")),
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
    fn wrong_types_and_names_are_parse_errors() {
        for (text, message) in [
            (
                "irqchip = \"pic\"",
                "unknown variant `pic`, expected `split` or `kernel`",
            ),
            (
                "vcpus = \"two\"",
                "invalid type: string \"two\", expected i64",
            ),
            ("kernel = 3", "invalid type: integer `3`, expected a string"),
            (
                "modules = [1]",
                "invalid type: integer `1`, expected a string",
            ),
            ("[trace]\nmode = \"ring\"", "missing field `dir`"),
        ] {
            match parse(text) {
                Err(ConfigError::Parse { message: m, .. }) => assert_eq!(m, message, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_later_layer_wins_key_by_key() {
        let file =
            parse("mem_mib = 0\nvcpus = 2\n[trace]\ndir = \"t\"\nmode = \"lockstep\"\n").unwrap();
        let flags = ConfigLayer {
            mem_mib: Some(Sourced::flag(32, "--mem-mib")),
            trace: Some(TraceLayer {
                dir: Some(Sourced::flag("elsewhere".into(), "--trace")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let merged = file.then(flags);
        assert_eq!(merged.mem_mib, Some(Sourced::flag(32, "--mem-mib")));
        assert_eq!(merged.vcpus.map(|v| v.value), Some(2));
        let trace = merged.trace.unwrap();
        assert_eq!(
            trace.dir,
            Some(Sourced::flag("elsewhere".into(), "--trace"))
        );
        assert_eq!(trace.mode.map(|m| m.value), Some(TraceMode::Lockstep));
    }

    #[test]
    fn paths_resolve_against_their_file() {
        let layer = parse("initrd = \"i.cpio\"").unwrap();
        assert_eq!(
            resolve(layer.initrd.unwrap()),
            PathBuf::from("configs/i.cpio")
        );
        assert_eq!(
            resolve(Sourced::flag("i.cpio".into(), "--initrd")),
            PathBuf::from("i.cpio")
        );
    }
}
