//! The validated VM configuration the rest of irqlab runs from, its defaults and limits.

use super::origin::Origin;
use crate::entry::BootProtocol;
use irqlab_abi::layout::MMIO_HOLE_START;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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

/// Where interrupts are modelled (config key `irqchip`, flag `--irqchip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
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

impl VmConfig {
    /// Guest memory in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib << 20
    }
}
