//! What each thread kind may do: the system calls common to every thread and each kind's
//! own, as the module documentation of [`crate::sandbox`] lists them.

use super::allow::{cond, Allow};
use super::ioctls;
use super::scope::RunFacts;
use super::thread::ThreadKind;
use seccompiler::{SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond};
use std::os::fd::RawFd;

/// The flags glibc's `pthread_create` passes to `clone(2)`.
const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// `openat(AT_FDCWD, path, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC)`: what `File::create` does, and
/// the only file opening any filter allows (the trace outputs).
fn create_for_writing() -> Vec<Cond> {
    let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as u32;
    vec![
        cond(0, Len::Dword, Op::Eq, libc::AT_FDCWD as u32 as u64),
        cond(2, Len::Dword, Op::Eq, u64::from(flags)),
    ]
}

/// Writing trace outputs: create them (`File::create` only), write them; an output that is not
/// a regular file (a FIFO, /dev/null) is spooled and copied into it at the end by std's
/// `io::copy` (fd metadata, then `sendfile`/`copy_file_range`/`splice` or `read` + `write`).
fn trace_output(a: &mut Allow) {
    a.all(&[
        libc::SYS_write,
        libc::SYS_read,
        libc::SYS_lseek,
        libc::SYS_fstat,
        libc::SYS_sendfile,
        libc::SYS_copy_file_range,
        libc::SYS_splice,
    ]);
    // Metadata of an open descriptor: `statx(fd, "", AT_EMPTY_PATH)` (with the flag a path
    // given instead is still looked up: metadata, never contents).
    a.when(
        libc::SYS_statx,
        vec![cond(
            2,
            Len::Dword,
            Op::MaskedEq(libc::AT_EMPTY_PATH as u64),
            libc::AT_EMPTY_PATH as u64,
        )],
    );
    a.when(libc::SYS_openat, create_for_writing());
}

/// What every thread may do.
fn common(facts: &RunFacts, pid: libc::pid_t) -> Allow {
    let mut a = Allow::default();
    a.all(&[
        libc::SYS_futex,
        libc::SYS_munmap,
        // glibc's realloc moves blocks over 128 KiB with mremap (a growing trace or console
        // buffer on any thread); it only remaps the caller's own anonymous memory.
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_close,
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_clock_gettime,
        libc::SYS_sched_yield,
        libc::SYS_getrandom,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_exit,
    ]);
    // Anonymous memory, never executable.
    let no_exec = || cond(2, Len::Dword, Op::MaskedEq(libc::PROT_EXEC as u64), 0);
    a.when(
        libc::SYS_mmap,
        vec![
            no_exec(),
            cond(
                3,
                Len::Dword,
                Op::MaskedEq(libc::MAP_ANONYMOUS as u64),
                libc::MAP_ANONYMOUS as u64,
            ),
        ],
    );
    a.when(libc::SYS_mprotect, vec![no_exec()]);
    // Panic messages, the wake-up (also from the SIGSYS handler).
    a.on_fds(libc::SYS_write, &[libc::STDERR_FILENO, facts.wake_fd]);
    // abort(3).
    a.when(
        libc::SYS_tgkill,
        vec![
            cond(0, Len::Dword, Op::Eq, pid as u32 as u64),
            cond(2, Len::Dword, Op::Eq, libc::SIGABRT as u64),
        ],
    );
    a
}

pub(super) fn allowlist(kind: ThreadKind, facts: &RunFacts, pid: libc::pid_t) -> Allow {
    use ioctls::*;
    let mut a = common(facts, pid);
    let serial: Vec<RawFd> = facts.serial_log_fd.into_iter().collect();
    match kind {
        ThreadKind::Vcpu => {
            a.ioctls(&[
                KVM_RUN,
                KVM_SIGNAL_MSI,
                KVM_SET_GSI_ROUTING,
                KVM_IRQ_LINE,
                KVM_GET_REGS,
                KVM_GET_SREGS,
                KVM_GET_MP_STATE,
                KVM_TRANSLATE,
            ]);
            a.all(&[libc::SYS_timerfd_settime]);
            // Starting the MSI source's and the NIC's workers: clone with a thread's flags (clone3 passes
            // this filter and is answered ENOSYS by the one stacked on it), and what the new
            // thread does before it installs its own filter.
            a.all(&[libc::SYS_clone3]);
            a.when(
                libc::SYS_clone,
                vec![cond(0, Len::Qword, Op::Eq, THREAD_CLONE_FLAGS)],
            );
            // The worker runs under this filter too (filters are inherited), so what it needs
            // is allowed here as well: sleeping.
            a.all(&[
                libc::SYS_set_robust_list,
                libc::SYS_rseq,
                libc::SYS_sched_getaffinity,
                libc::SYS_nanosleep,
                libc::SYS_clock_nanosleep,
            ]);
            a.when(
                libc::SYS_prctl,
                vec![cond(0, Len::Dword, Op::Eq, libc::PR_SET_NAME as u64)],
            );
            // The worker installs its own filter on top of this one (a filter can only take
            // away: stacked filters all apply).
            a.when(
                libc::SYS_prctl,
                vec![cond(
                    0,
                    Len::Dword,
                    Op::Eq,
                    libc::PR_SET_NO_NEW_PRIVS as u64,
                )],
            );
            a.when(
                libc::SYS_seccomp,
                vec![
                    cond(0, Len::Dword, Op::Eq, libc::SECCOMP_SET_MODE_FILTER as u64),
                    cond(1, Len::Dword, Op::Eq, 0),
                ],
            );
            if facts.tracing {
                a.ioctls(&[KVM_GET_MSRS, KVM_GET_STATS_FD]);
                a.all(&[libc::SYS_pread64, libc::SYS_write]);
            } else {
                a.on_fds(libc::SYS_write, &serial);
            }
        }
        ThreadKind::Console => {
            a.on_fds(libc::SYS_write, &[libc::STDOUT_FILENO]);
        }
        ThreadKind::Stdin => {
            a.on_fds(libc::SYS_read, &[libc::STDIN_FILENO]);
            a.all(&[libc::SYS_nanosleep, libc::SYS_clock_nanosleep]);
            a.ioctls(&[KVM_SIGNAL_MSI, KVM_IRQ_LINE]);
            // If the feeder outlives the run, dropping the UART flushes the serial log.
            a.on_fds(libc::SYS_write, &serial);
        }
        // The NIC's worker waits for its deadlines on a condition variable (`futex`, common)
        // and otherwise does what the MSI source's does.
        ThreadKind::MsiSource | ThreadKind::Nic => {
            a.all(&[libc::SYS_nanosleep, libc::SYS_clock_nanosleep]);
            a.ioctls(&[KVM_SIGNAL_MSI]);
        }
        ThreadKind::TraceWriter => {
            // Writes interrupts.jsonl and trace.json as the run goes.
            trace_output(&mut a);
        }
        ThreadKind::Main => {
            a.all(&[
                libc::SYS_epoll_wait,
                libc::SYS_epoll_pwait,
                libc::SYS_read,
                libc::SYS_timerfd_settime,
                libc::SYS_mincore,
                libc::SYS_exit_group,
                libc::SYS_nanosleep,
                libc::SYS_clock_nanosleep,
            ]);
            a.ioctls(&[KVM_SIGNAL_MSI, KVM_IRQ_LINE]);
            // Restoring the terminal.
            a.when(
                libc::SYS_ioctl,
                vec![
                    cond(0, Len::Dword, Op::Eq, libc::STDIN_FILENO as u64),
                    cond(1, Len::Dword, Op::Eq, libc::TCSETS),
                ],
            );
            // Kicking the vCPU threads out of KVM_RUN.
            a.when(
                libc::SYS_tgkill,
                vec![
                    cond(0, Len::Dword, Op::Eq, pid as u32 as u64),
                    cond(2, Len::Dword, Op::Eq, crate::vcpu::kick_signal() as u64),
                ],
            );
            if facts.tracing {
                // The trace's last files (summary.json, latency.svg), and whatever the writer
                // did not stream.
                trace_output(&mut a);
            } else {
                a.on_fds(libc::SYS_write, &[libc::STDOUT_FILENO]);
                a.on_fds(libc::SYS_write, &serial);
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall_names::syscall_name;

    #[test]
    fn every_filter_compiles() {
        for tracing in [false, true] {
            let facts = RunFacts {
                wake_fd: 9,
                serial_log_fd: Some(10),
                tracing,
            };
            for kind in ThreadKind::ALL {
                let (prog, n) = allowlist(kind, &facts, 1).compile(kind).unwrap();
                assert!(!prog.is_empty() && n > 10, "{kind:?}");
                println!(
                    "{} (tracing {tracing}): {n} system calls, {} BPF instructions",
                    kind.name(),
                    prog.len()
                );
            }
        }
    }

    #[test]
    fn no_filter_allows_opening_processes_sockets_or_exec() {
        let facts = RunFacts {
            wake_fd: 9,
            serial_log_fd: None,
            tracing: true,
        };
        for kind in ThreadKind::ALL {
            let a = allowlist(kind, &facts, 1);
            for nr in [
                libc::SYS_open,
                libc::SYS_socket,
                libc::SYS_connect,
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_ptrace,
                libc::SYS_getppid,
                libc::SYS_kill,
                libc::SYS_mount,
                libc::SYS_unshare,
                libc::SYS_setns,
            ] {
                assert!(
                    !a.0.contains_key(&nr),
                    "{kind:?} allows {:?}",
                    syscall_name(nr)
                );
            }
            // openat only as File::create does it, and only where trace files are written.
            match a.0.get(&libc::SYS_openat) {
                None => assert!(!matches!(kind, ThreadKind::Main | ThreadKind::TraceWriter)),
                Some(rules) => assert!(rules.as_ref().is_some_and(|r| r.len() == 1), "{kind:?}"),
            }
            // Memory is never mapped executable.
            assert!(a.0[&libc::SYS_mmap].is_some() && a.0[&libc::SYS_mprotect].is_some());
        }
    }
}
