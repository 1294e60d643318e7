//! How a run ended, and the process exit code for each ending (the README's exit-code table).

use std::fmt;
use std::time::{Duration, Instant};

/// Process exit codes of `irqlab` other than guest statuses (0–63, see
/// `irqlab_abi::status`).
pub mod code {
    /// Command-line usage error (unknown flag, bad value syntax).
    pub const USAGE: u8 = 64;
    /// Config error: unreadable file, malformed TOML, unknown key, value out of range.
    pub const CONFIG: u8 = 65;
    /// Kernel image error: missing file, not ELF, wrong architecture, does not fit.
    pub const KERNEL: u8 = 66;
    /// Host error: no /dev/kvm, no permission, missing KVM capability, VM setup refused.
    pub const HOST: u8 = 69;
    /// irqlab itself failed (a KVM call failed mid-run, a vCPU thread died).
    pub const INTERNAL: u8 = 70;
    /// The guest triple-faulted (`KVM_EXIT_SHUTDOWN`).
    pub const TRIPLE_FAULT: u8 = 71;
    /// KVM could not run the guest (`KVM_EXIT_INTERNAL_ERROR`, e.g. an instruction the host
    /// cannot emulate; `KVM_EXIT_FAIL_ENTRY`).
    pub const KVM_INTERNAL: u8 = 72;
    /// The guest stopped in a way irqlab does not handle (unexpected exit reason, reset or
    /// shutdown request without a status).
    pub const GUEST_STOPPED: u8 = 73;
    /// The wall-clock watchdog (`--timeout`) fired.
    pub const TIMEOUT: u8 = 74;
    /// The guest requested a reboot (i8042 reset pulse, port 0xcf9 / the FADT reset register,
    /// or a KVM reset system event). irqlab ends the run instead of restarting the guest.
    pub const REBOOT: u8 = 75;
    /// A thread made a system call its seccomp filter does not allow (see `crate::sandbox`).
    pub const SANDBOX: u8 = 76;
    /// Hung up: SIGHUP, the terminal was closed (128 + 1).
    pub const SIGHUP: u8 = 129;
    /// Interrupted by SIGINT (128 + 2).
    pub const SIGINT: u8 = 130;
    /// Quit by SIGQUIT, e.g. `Ctrl-\` (128 + 3).
    pub const SIGQUIT: u8 = 131;
    /// Terminated by SIGTERM (128 + 15).
    pub const SIGTERM: u8 = 143;
}

/// The name of a stop signal ("SIGHUP"), or `None` for another number.
pub fn signal_name(signo: i32) -> Option<&'static str> {
    Some(match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

/// Register state captured when a vCPU stopped abnormally.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSnapshot {
    /// RIP.
    pub rip: u64,
    /// RSP.
    pub rsp: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// CS selector.
    pub cs: u16,
    /// Instruction bytes at RIP (empty when RIP does not translate).
    pub code: Vec<u8>,
}

impl fmt::Display for CpuSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rip={:#x} rsp={:#x} rflags={:#x} cs={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            self.rip, self.rsp, self.rflags, self.cs, self.cr0, self.cr2, self.cr3, self.cr4, self.efer
        )?;
        self.write_code(f)
    }
}

impl CpuSnapshot {
    /// ` code=…` (hex), when the instruction bytes at RIP were read.
    fn write_code(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.code.is_empty() {
            write!(f, " code=")?;
            for b in &self.code {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// What irqlab knows of a vCPU's registers when the guest shut down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpuState {
    /// Read from KVM after the exit: the state at the fault.
    Captured(CpuSnapshot),
    /// KVM had already replaced the state (the reason), so there is nothing truthful to print.
    Discarded(&'static str),
}

impl fmt::Display for CpuState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuState::Captured(cpu) => cpu.fmt(f),
            CpuState::Discarded(why) => write!(f, "registers unavailable: {why}"),
        }
    }
}

/// The last exit a vCPU made to irqlab, kept so that a report can say where the guest was
/// last seen when KVM has discarded its registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastExit {
    /// Exit kind (`pio`, `mmio`, `ioapic_eoi`, ...), empty before the first exit.
    pub reason: &'static str,
    /// Port, address or vector.
    pub addr: u64,
    /// A write access.
    pub write: bool,
    /// Exits this vCPU made to irqlab in total.
    pub count: u64,
    /// When it returned from `KVM_RUN` with that exit (`None` before the first).
    pub at: Option<Instant>,
}

impl fmt::Display for LastExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "the vCPU never exited to irqlab");
        }
        let dir = if self.write { "write" } else { "read" };
        match self.reason {
            "pio" => write!(f, "last exit to irqlab: port {dir} {:#x}", self.addr),
            "mmio" => write!(f, "last exit to irqlab: MMIO {dir} {:#x}", self.addr),
            "ioapic_eoi" => write!(f, "last exit to irqlab: EOI of vector {:#x}", self.addr),
            other => write!(f, "last exit to irqlab: {other}"),
        }?;
        write!(f, " (exit {} of this vCPU)", self.count)
    }
}

/// A vCPU's KVM run state (`KVM_GET_MP_STATE`), named.
pub fn mp_state_name(mp_state: u32) -> &'static str {
    match mp_state {
        kvm_bindings::KVM_MP_STATE_RUNNABLE => "running",
        kvm_bindings::KVM_MP_STATE_UNINITIALIZED => "waiting for INIT",
        kvm_bindings::KVM_MP_STATE_INIT_RECEIVED => "waiting for SIPI",
        kvm_bindings::KVM_MP_STATE_HALTED => "halted",
        kvm_bindings::KVM_MP_STATE_SIPI_RECEIVED => "starting (SIPI received)",
        _ => "in an unknown run state",
    }
}

/// Where a vCPU was when the run was stopped under it (the watchdog's report: a hung
/// guest's vCPUs, each with what it last did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuAtStop {
    /// Which vCPU.
    pub vcpu: u8,
    /// Its run state, from [`mp_state_name`].
    pub state: &'static str,
    /// Its registers and the instruction bytes at CS:RIP when it left `KVM_RUN` for the stop
    /// (only RIP, CS and the bytes are printed).
    pub cpu: CpuSnapshot,
    /// Its last exit to irqlab.
    pub last_exit: LastExit,
    /// How long before the stop that exit was (`None` if it never exited).
    pub since_last_exit: Option<Duration>,
}

impl fmt::Display for VcpuAtStop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vCPU {} {} at rip={:#x} cs={:#x}",
            self.vcpu, self.state, self.cpu.rip, self.cpu.cs
        )?;
        self.cpu.write_code(f)?;
        write!(f, ", {}", self.last_exit)?;
        if let Some(d) = self.since_last_exit {
            write!(f, " {:.2} s before the stop", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The guest wrote `status` to the debug-exit port.
    GuestExit {
        /// The status.
        status: u32,
    },
    /// `KVM_EXIT_SHUTDOWN`: the guest triple-faulted.
    TripleFault {
        /// Which vCPU.
        vcpu: u8,
        /// Its registers, if KVM kept them.
        cpu: CpuState,
        /// Where the guest was last seen.
        last_exit: LastExit,
    },
    /// `KVM_EXIT_INTERNAL_ERROR`.
    KvmInternalError {
        /// Which vCPU.
        vcpu: u8,
        /// KVM's suberror (1 = emulation failure).
        suberror: u32,
        /// Its registers and the instruction bytes.
        cpu: CpuSnapshot,
    },
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry {
        /// Which vCPU.
        vcpu: u8,
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// Any other exit irqlab does not handle.
    GuestStopped {
        /// Which vCPU.
        vcpu: u8,
        /// What happened.
        what: String,
    },
    /// The guest requested a reboot.
    Reboot {
        /// Through which register or event.
        via: String,
    },
    /// The watchdog fired.
    Timeout {
        /// The watchdog's period.
        after: Duration,
        /// Where each vCPU that stopped was (empty until the vCPUs have stopped).
        vcpus: Vec<VcpuAtStop>,
    },
    /// A stop signal: SIGHUP, SIGINT, SIGQUIT or SIGTERM (see `crate::stop::STOP_SIGNALS`).
    Signal(i32),
    /// A thread made a system call outside its seccomp allowlist (the first one trapped).
    SandboxViolation {
        /// The thread (`vcpu0`, `console`, `stdin`, `msi-source`, `main`).
        thread: String,
        /// The x86-64 system call number.
        syscall: i64,
    },
    /// A thread's seccomp filter could not be installed.
    SandboxSetup(String),
    /// A KVM call failed while running.
    VcpuFailed {
        /// Which vCPU.
        vcpu: u8,
        /// What failed.
        what: String,
    },
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::GuestExit { status } => irqlab_abi::status::exit_code_for(*status),
            Outcome::TripleFault { .. } => code::TRIPLE_FAULT,
            Outcome::KvmInternalError { .. } | Outcome::FailEntry { .. } => code::KVM_INTERNAL,
            Outcome::GuestStopped { .. } => code::GUEST_STOPPED,
            Outcome::Timeout { .. } => code::TIMEOUT,
            Outcome::Reboot { .. } => code::REBOOT,
            Outcome::Signal(libc::SIGHUP) => code::SIGHUP,
            Outcome::Signal(libc::SIGINT) => code::SIGINT,
            Outcome::Signal(libc::SIGQUIT) => code::SIGQUIT,
            Outcome::Signal(libc::SIGTERM) => code::SIGTERM,
            Outcome::Signal(s) => 128u8.saturating_add(*s as u8),
            Outcome::SandboxViolation { .. } => code::SANDBOX,
            Outcome::VcpuFailed { .. } | Outcome::SandboxSetup(_) => code::INTERNAL,
        }
    }

    /// One line for the user; `None` for a normal guest exit with status 0.
    pub fn explain(&self) -> Option<String> {
        Some(match self {
            Outcome::GuestExit { status: 0 } => return None,
            Outcome::GuestExit { status } if *status > irqlab_abi::status::GUEST_STATUS_MAX => {
                format!("guest exited with status {status} (above 63; reported as 63)")
            }
            Outcome::GuestExit { status } => format!("guest exited with status {status}"),
            Outcome::TripleFault {
                vcpu,
                cpu: cpu @ CpuState::Captured(_),
                ..
            } => {
                format!("guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU {vcpu}: {cpu}")
            }
            Outcome::TripleFault {
                vcpu,
                cpu,
                last_exit,
            } => format!(
                "guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU {vcpu}: {cpu}; {last_exit}"
            ),
            Outcome::KvmInternalError { vcpu, suberror, cpu } => format!(
                "KVM could not run the guest (KVM_EXIT_INTERNAL_ERROR, suberror {suberror}{}) on vCPU {vcpu}: {cpu}",
                if *suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION { ": instruction emulation failed" } else { "" }
            ),
            Outcome::FailEntry { vcpu, reason } => {
                format!("KVM_EXIT_FAIL_ENTRY on vCPU {vcpu}: hardware entry failure reason {reason:#x}")
            }
            Outcome::GuestStopped { vcpu, what } => format!("guest stopped on vCPU {vcpu}: {what}"),
            Outcome::Reboot { via } => format!("guest requested reboot ({via})"),
            Outcome::Timeout { after, vcpus } => {
                let mut line = format!("watchdog: guest still running after {:.1} s (--timeout)", after.as_secs_f64());
                for v in vcpus {
                    line.push_str("; ");
                    line.push_str(&v.to_string());
                }
                line
            }
            Outcome::Signal(s) => format!(
                "stopped by signal {s}{}; guest output flushed",
                signal_name(*s).map(|n| format!(" ({n})")).unwrap_or_default()
            ),
            Outcome::SandboxViolation { thread, syscall } => format!(
                "sandbox violation: thread {thread} made system call {syscall}{}, which its seccomp filter does not allow (--no-seccomp turns the sandbox off)",
                crate::syscall_names::syscall_name(*syscall)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            Outcome::SandboxSetup(what) => format!("sandbox: {what}"),
            Outcome::VcpuFailed { vcpu, what } => format!("vCPU {vcpu} failed: {what}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_class() {
        let outcomes = [
            Outcome::TripleFault {
                vcpu: 0,
                cpu: CpuState::Captured(CpuSnapshot::default()),
                last_exit: LastExit::default(),
            },
            Outcome::KvmInternalError {
                vcpu: 0,
                suberror: 1,
                cpu: CpuSnapshot::default(),
            },
            Outcome::GuestStopped {
                vcpu: 0,
                what: "x".into(),
            },
            Outcome::Timeout {
                after: Duration::from_secs(1),
                vcpus: Vec::new(),
            },
            Outcome::Reboot { via: "x".into() },
            Outcome::Signal(libc::SIGHUP),
            Outcome::Signal(libc::SIGINT),
            Outcome::Signal(libc::SIGQUIT),
            Outcome::Signal(libc::SIGTERM),
            Outcome::SandboxViolation {
                thread: "vcpu0".into(),
                syscall: libc::SYS_getppid,
            },
            Outcome::VcpuFailed {
                vcpu: 0,
                what: "x".into(),
            },
        ];
        let mut codes: Vec<u8> = outcomes.iter().map(Outcome::exit_code).collect();
        assert!(codes.iter().all(|c| *c > 63));
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), outcomes.len());
        assert_eq!(Outcome::GuestExit { status: 0 }.exit_code(), 0);
        assert_eq!(Outcome::GuestExit { status: 5 }.exit_code(), 5);
        assert_eq!(Outcome::GuestExit { status: 500 }.exit_code(), 63);
    }

    #[test]
    fn every_stop_signal_exits_with_128_plus_its_number_and_is_named() {
        for signo in crate::stop::STOP_SIGNALS {
            let o = Outcome::Signal(signo);
            assert_eq!(i32::from(o.exit_code()), 128 + signo);
            let name = signal_name(signo).unwrap();
            assert_eq!(
                o.explain().unwrap(),
                format!("stopped by signal {signo} ({name}); guest output flushed")
            );
        }
        assert_eq!(
            Outcome::Signal(libc::SIGHUP).exit_code(),
            code::SIGHUP,
            "129"
        );
        assert_eq!(
            Outcome::Signal(libc::SIGQUIT).exit_code(),
            code::SIGQUIT,
            "131"
        );
    }

    #[test]
    fn a_sandbox_violation_names_the_call_and_the_thread() {
        let o = Outcome::SandboxViolation {
            thread: "console".into(),
            syscall: libc::SYS_socket,
        };
        assert_eq!(o.exit_code(), code::SANDBOX);
        assert_eq!(
            o.explain().unwrap(),
            "sandbox violation: thread console made system call 41 (socket), which its seccomp \
             filter does not allow (--no-seccomp turns the sandbox off)"
        );
        let unknown = Outcome::SandboxViolation {
            thread: "vcpu3".into(),
            syscall: 999,
        };
        assert!(unknown
            .explain()
            .unwrap()
            .starts_with("sandbox violation: thread vcpu3 made system call 999, which"));
        assert_eq!(
            Outcome::SandboxSetup("x".into()).exit_code(),
            code::INTERNAL
        );
    }

    #[test]
    fn snapshots_print_registers_and_code() {
        let cpu = CpuSnapshot {
            rip: 0x100000,
            code: vec![0xcd, 0x80],
            ..Default::default()
        };
        let s = cpu.to_string();
        assert!(s.starts_with("rip=0x100000 "), "{s}");
        assert!(s.ends_with(" code=cd80"), "{s}");
    }

    /// A vCPU's 42nd exit, a console write.
    fn console_write() -> LastExit {
        LastExit {
            reason: "pio",
            addr: 0x3f8,
            write: true,
            count: 42,
            at: None,
        }
    }

    #[test]
    fn discarded_state_is_said_and_never_printed_as_registers() {
        let o = Outcome::TripleFault {
            vcpu: 1,
            cpu: CpuState::Discarded("KVM reset the vCPU"),
            last_exit: console_write(),
        };
        let line = o.explain().unwrap();
        assert_eq!(
            line,
            "guest triple fault (KVM_EXIT_SHUTDOWN) on vCPU 1: registers unavailable: KVM reset \
             the vCPU; last exit to irqlab: port write 0x3f8 (exit 42 of this vCPU)"
        );
        assert!(!line.contains("rip="));
        assert_eq!(o.exit_code(), code::TRIPLE_FAULT);
    }

    #[test]
    fn the_watchdog_says_where_each_vcpu_was() {
        let o = Outcome::Timeout {
            after: Duration::from_millis(500),
            vcpus: vec![
                VcpuAtStop {
                    vcpu: 0,
                    state: mp_state_name(kvm_bindings::KVM_MP_STATE_RUNNABLE),
                    cpu: CpuSnapshot {
                        rip: 0x10_1234,
                        cs: 0x8,
                        code: vec![0xeb, 0xfe],
                        ..Default::default()
                    },
                    last_exit: console_write(),
                    since_last_exit: Some(Duration::from_millis(480)),
                },
                VcpuAtStop {
                    vcpu: 1,
                    state: mp_state_name(kvm_bindings::KVM_MP_STATE_UNINITIALIZED),
                    cpu: CpuSnapshot {
                        rip: 0xfff0,
                        cs: 0xf000,
                        ..Default::default()
                    },
                    last_exit: LastExit::default(),
                    since_last_exit: None,
                },
            ],
        };
        assert_eq!(o.exit_code(), code::TIMEOUT);
        assert_eq!(
            o.explain().unwrap(),
            "watchdog: guest still running after 0.5 s (--timeout); vCPU 0 running at \
             rip=0x101234 cs=0x8 code=ebfe, last exit to irqlab: port write 0x3f8 (exit 42 of this vCPU) \
             0.48 s before the stop; vCPU 1 waiting for INIT at rip=0xfff0 cs=0xf000, the vCPU never \
             exited to irqlab"
        );
    }
}
