//! What the host offers: the kind of virtualization behind /dev/kvm and the KVM capabilities
//! irqlab needs (`irqlab check` prints this report).

use irqlab_abi::boot_info::HostKind;
use kvm_ioctls::{Cap, Kvm};
use std::path::Path;

/// Detects the host kind from the loaded KVM vendor module.
///
/// `kvm_pvm` (software virtualization) is checked first because it can be loaded next to a
/// hardware module on nested setups and decides what guests can do.
pub fn detect_host_kind() -> HostKind {
    detect_host_kind_in(Path::new("/sys/module"))
}

/// [`detect_host_kind`], looked up once per process: later calls make no system call (a
/// vCPU thread asks after a triple fault, under its seccomp filter, which allows no file
/// access; the machine asks first, during setup).
pub fn host_kind() -> HostKind {
    static KIND: std::sync::OnceLock<HostKind> = std::sync::OnceLock::new();
    *KIND.get_or_init(detect_host_kind)
}

/// [`detect_host_kind`] against another sysfs module directory (for tests).
pub fn detect_host_kind_in(modules: &Path) -> HostKind {
    if modules.join("kvm_pvm").exists() {
        HostKind::Pvm
    } else if modules.join("kvm_intel").exists() {
        HostKind::Vmx
    } else if modules.join("kvm_amd").exists() {
        HostKind::Svm
    } else {
        HostKind::Unknown
    }
}

/// One capability irqlab uses.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    /// KVM capability name.
    pub name: &'static str,
    /// Raw capability number.
    pub cap: u32,
    /// What irqlab needs it for.
    pub used_for: &'static str,
    /// Whether irqlab cannot boot any guest without it.
    pub required: bool,
}

/// Every capability irqlab checks.
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        name: "KVM_CAP_USER_MEMORY",
        cap: Cap::UserMemory as u32,
        used_for: "guest memory",
        required: true,
    },
    Requirement {
        name: "KVM_CAP_EXT_CPUID",
        cap: Cap::ExtCpuid as u32,
        used_for: "CPUID from KVM_GET_SUPPORTED_CPUID",
        required: true,
    },
    Requirement {
        name: "KVM_CAP_SPLIT_IRQCHIP",
        cap: Cap::SplitIrqchip as u32,
        used_for: "irqchip = \"split\" (userspace IO-APIC/PIT)",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_IRQCHIP",
        cap: Cap::Irqchip as u32,
        used_for: "irqchip = \"kernel\"",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_PIT2",
        cap: Cap::Pit2 as u32,
        used_for: "in-kernel PIT (irqchip = \"kernel\")",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_SIGNAL_MSI",
        cap: Cap::SignalMsi as u32,
        used_for: "MSI injection from userspace devices",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_IRQ_ROUTING",
        cap: Cap::IrqRouting as u32,
        used_for: "GSI routing",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_IRQFD",
        cap: Cap::Irqfd as u32,
        used_for: "eventfd-driven interrupts",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_IMMEDIATE_EXIT",
        cap: Cap::ImmediateExit as u32,
        used_for: "prompt vCPU shutdown",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_GET_TSC_KHZ",
        cap: Cap::GetTscKhz as u32,
        used_for: "TSC frequency for the guest's clock",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_TSC_DEADLINE_TIMER",
        cap: Cap::TscDeadlineTimer as u32,
        used_for: "LAPIC TSC-deadline timer",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_MP_STATE",
        cap: Cap::MpState as u32,
        used_for: "SMP bring-up",
        required: false,
    },
    Requirement {
        name: "KVM_CAP_BINARY_STATS_FD",
        cap: kvm_bindings::KVM_CAP_BINARY_STATS_FD,
        used_for: "per-vCPU exit statistics",
        required: false,
    },
];

/// The host capability report.
#[derive(Debug)]
pub struct HostReport {
    /// Whether /dev/kvm could be opened.
    pub kvm_open: Result<(), String>,
    /// KVM API version (12 on every modern kernel).
    pub api_version: Option<i32>,
    /// Host kind.
    pub kind: HostKind,
    /// Each requirement with whether KVM reports it.
    pub caps: Vec<(Requirement, bool)>,
}

impl HostReport {
    /// Probes the host.
    pub fn probe() -> HostReport {
        let kind = detect_host_kind();
        match Kvm::new() {
            Ok(kvm) => HostReport {
                kvm_open: Ok(()),
                api_version: Some(kvm.get_api_version()),
                kind,
                caps: REQUIREMENTS
                    .iter()
                    .map(|r| (*r, kvm.check_extension_raw(r.cap.into()) > 0))
                    .collect(),
            },
            Err(e) => HostReport {
                kvm_open: Err(describe_open_error(e.errno())),
                api_version: None,
                kind,
                caps: Vec::new(),
            },
        }
    }

    /// Whether irqlab can boot guests here.
    pub fn usable(&self) -> bool {
        self.kvm_open.is_ok()
            && self.api_version == Some(kvm_bindings::KVM_API_VERSION as i32)
            && self.caps.iter().all(|(r, ok)| *ok || !r.required)
    }
}

/// A one-line explanation of why /dev/kvm could not be opened.
pub fn describe_open_error(errno: i32) -> String {
    match errno {
        libc::ENOENT => {
            "/dev/kvm does not exist (KVM module not loaded, or no virtualization support)".into()
        }
        libc::EACCES | libc::EPERM => {
            "/dev/kvm: permission denied (add your user to the kvm group, or fix the device's mode)"
                .into()
        }
        e => format!("/dev/kvm: {}", std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_kind_follows_the_loaded_module() {
        let dir = std::env::temp_dir().join(format!("irqlab-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(detect_host_kind_in(&dir), HostKind::Unknown);
        std::fs::create_dir_all(dir.join("kvm_intel")).unwrap();
        assert_eq!(detect_host_kind_in(&dir), HostKind::Vmx);
        std::fs::create_dir_all(dir.join("kvm_pvm")).unwrap();
        assert_eq!(detect_host_kind_in(&dir), HostKind::Pvm);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn open_errors_explain_themselves() {
        assert!(describe_open_error(libc::ENOENT).contains("does not exist"));
        assert!(describe_open_error(libc::EACCES).contains("permission denied"));
    }
}
