//! The input files a config names (`initrd`, `modules`): checked against the kernel's boot
//! protocol and opened before anything runs.

use super::error::ConfigError;
use super::origin::Origin;
use super::vm::{KernelSource, VmConfig};
use std::path::Path;

impl VmConfig {
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
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, ConfigLayer, Sourced, VmConfig};
    use crate::entry::BootProtocol;
    use std::path::PathBuf;

    /// A config file in a fresh directory (for checks that look at files).
    fn scratch_config(name: &str, text: &str) -> (PathBuf, Result<VmConfig, ConfigError>) {
        let dir = std::env::temp_dir().join(format!("irqlab-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        (dir, VmConfig::from_file(&path))
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
        let flags = |initrd| ConfigLayer {
            boot: Some(Sourced::flag(BootProtocol::Linux, "--boot")),
            initrd: Some(Sourced::flag(initrd, "--initrd")),
            ..Default::default()
        };
        let ok = flags(dir.join("i.cpio")).validate();
        assert!(ok.is_ok(), "{ok:?}");
        let err = flags(dir.clone()).validate().unwrap_err().to_string();
        assert!(
            err.starts_with("--initrd: `initrd` ")
                && err.ends_with(": is a directory, not a regular file"),
            "{err}"
        );
    }
}
