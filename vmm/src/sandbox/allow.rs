//! Building one thread kind's filter: [`Allow`], an allowlist of system calls (some only with
//! given arguments), compiled to a BPF program that traps everything else.

use super::error::SandboxError;
use super::thread::ThreadKind;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::os::fd::RawFd;

/// Syscall number → `None` (always allowed) or the rules of which one must match.
#[derive(Default)]
pub(super) struct Allow(pub(super) BTreeMap<i64, Option<Vec<SeccompRule>>>);

pub(super) fn cond(arg: u8, len: Len, op: Op, value: u64) -> Cond {
    Cond::new(arg, len, op, value).expect("argument index below 6")
}

impl Allow {
    pub(super) fn all(&mut self, nrs: &[i64]) -> &mut Self {
        for nr in nrs {
            self.0.insert(*nr, None);
        }
        self
    }

    /// Allowed when every condition of one of the rules holds.
    pub(super) fn when(&mut self, nr: i64, conds: Vec<Cond>) -> &mut Self {
        let rule = SeccompRule::new(conds).expect("at least one condition");
        // `None`: already allowed unconditionally.
        if let Some(rules) = self.0.entry(nr).or_insert_with(|| Some(Vec::new())) {
            rules.push(rule);
        }
        self
    }

    /// `nr(fd, ...)` on one of `fds` (compared as the kernel's 32-bit int).
    pub(super) fn on_fds(&mut self, nr: i64, fds: &[RawFd]) -> &mut Self {
        for fd in fds {
            self.when(nr, vec![cond(0, Len::Dword, Op::Eq, *fd as u32 as u64)]);
        }
        self
    }

    /// `ioctl(_, request)` for each request (the kernel takes the request as 32 bits).
    pub(super) fn ioctls(&mut self, requests: &[u64]) -> &mut Self {
        for r in requests {
            self.when(
                libc::SYS_ioctl,
                vec![cond(1, Len::Dword, Op::Eq, *r & 0xffff_ffff)],
            );
        }
        self
    }

    pub(super) fn compile(self, kind: ThreadKind) -> Result<(BpfProgram, usize), SandboxError> {
        let build = |error: String| SandboxError::Build {
            thread: kind.name(),
            error,
        };
        let count = self.0.len();
        let rules = self
            .0
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()))
            .collect();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Trap,
            SeccompAction::Allow,
            TargetArch::x86_64,
        )
        .map_err(|e| build(e.to_string()))?;
        let prog: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| build(e.to_string()))?;
        Ok((prog, count))
    }
}
