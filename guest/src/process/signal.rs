//! Signal delivery and `sigreturn` (Linux's `setup_rt_frame` / `rt_sigreturn`).
//!
//! A signal is delivered on the way back to ring 3 ([`deliver`], called from the
//! return-to-user work). With a user handler the kernel builds a [`SigFrame`] on the user
//! stack, below the interrupted RSP and its 128-byte red zone:
//!
//! ```text
//!   interrupted RSP ─► ...user data...
//!                      128-byte red zone (left alone)
//!                      SigFrame { context, info, blocked }   (16-byte aligned)
//!   handler's RSP  ─►  return address = the restorer
//! ```
//!
//! and points the interrupted context at the handler: RIP = handler, RDI = signal, RSI =
//! &info, RDX = &context, RSP as above. The handler returns into the restorer, which calls
//! `sigreturn` with RSP at the frame; `sigreturn` checks the (user-writable) context —
//! user CS and SS, RIP and RSP in user memory, RFLAGS reduced to the user-changeable bits —
//! and restores every register from it, or, if it is bad, kills the task with SIGSEGV. The
//! signal stays blocked while its handler runs (the mask saved in the frame comes back at
//! `sigreturn`).

use super::{exit, sched, Action, State};
use crate::frame::Frame;
use crate::{cpu, gdt, println, user};
use irqlab_guest_core::signal::{self as sig, DefaultAction, SigSet};

/// The interrupted context, as the handler sees it (Linux's `sigcontext`, reordered).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs)]
pub struct SigContext {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// What the handler learns about the signal (a small `siginfo_t`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigInfo {
    /// Signal number.
    pub signo: u64,
    /// Exception vector for a fault signal, else `u64::MAX`.
    pub vector: u64,
    /// Faulting address (CR2) for #PF, else 0.
    pub addr: u64,
    /// TSC when the signal was raised (the handler measures delivery latency from it).
    pub raised_tsc: u64,
}

/// What [`deliver`] puts on the user stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigFrame {
    /// The interrupted context.
    pub context: SigContext,
    /// About the signal.
    pub info: SigInfo,
    /// The blocked mask to restore at `sigreturn`.
    pub blocked: u64,
}

/// Remembers a ring-3 fault of task `slot` for its signal's `SigInfo`.
pub(super) fn record_fault(slot: usize, frame: &Frame) {
    let addr = if frame.vector == 14 { cpu::cr2() } else { 0 };
    sched().tasks[slot].fault = Some((frame.vector, addr));
}

/// The fault behind `signo`, if it came from one: (vector, address).
fn take_fault(slot: usize, signo: u8) -> (u64, u64) {
    let t = &mut sched().tasks[slot];
    match t.fault.take() {
        Some((vector, addr)) if sig::for_exception(vector as u8) == Some(signo) => (vector, addr),
        other => {
            t.fault = other;
            (u64::MAX, 0)
        }
    }
}

/// Delivers the current task's next deliverable signal to `frame` (about to return to ring
/// 3): ignore it, run its default action, or set up its handler.
pub(super) fn deliver(frame: &mut Frame) {
    let s = sched();
    let cur = s.current;
    let t = &mut s.tasks[cur];
    let Some(signo) = t.pending.next_deliverable(t.blocked) else {
        return;
    };
    t.pending = t.pending.without(signo);
    let raised = t.raised_at[usize::from(signo)];
    let (vector, addr) = take_fault(cur, signo);
    match t.actions[usize::from(signo)] {
        Action::Ignore => {}
        Action::Default => {
            if sig::default_action(signo) == DefaultAction::Terminate {
                kill_current(signo);
            }
        }
        Action::Handler { handler, restorer } => {
            let old_blocked = t.blocked;
            let info = SigInfo {
                signo: u64::from(signo),
                vector,
                addr,
                raised_tsc: raised,
            };
            if setup_frame(frame, handler, restorer, info, old_blocked).is_err() {
                println!(
                    "signal: task {} has no room for a signal frame below rsp={:#x}: SIGSEGV",
                    crate::fmt::Dec(cur as u64),
                    frame.rsp
                );
                kill_current(sig::SIGSEGV);
            }
            let s = sched();
            let t = &mut s.tasks[cur];
            t.blocked = t.blocked.with(signo);
            t.delivered[usize::from(signo)] += 1;
        }
    }
}

/// Ends the current task as killed by `signo` (exit code 128 + signal, as a shell shows it).
fn kill_current(signo: u8) -> ! {
    let s = sched();
    let cur = s.current;
    s.tasks[cur].killed_by = signo;
    exit(128 + i64::from(signo))
}

const RED_ZONE: u64 = 128;

fn setup_frame(
    frame: &mut Frame,
    handler: u64,
    restorer: u64,
    info: SigInfo,
    blocked: SigSet,
) -> Result<(), ()> {
    let size = core::mem::size_of::<SigFrame>() as u64;
    let base = (frame.rsp.wrapping_sub(RED_ZONE).wrapping_sub(size)) & !15;
    let sp = base.wrapping_sub(8);
    if frame.rsp < RED_ZONE + size + 24 || !user::range_ok(sp, size + 8) {
        return Err(());
    }
    let sf = SigFrame {
        context: SigContext {
            r15: frame.r15,
            r14: frame.r14,
            r13: frame.r13,
            r12: frame.r12,
            r11: frame.r11,
            r10: frame.r10,
            r9: frame.r9,
            r8: frame.r8,
            rbp: frame.rbp,
            rdi: frame.rdi,
            rsi: frame.rsi,
            rdx: frame.rdx,
            rcx: frame.rcx,
            rbx: frame.rbx,
            rax: frame.rax,
            rip: frame.rip,
            cs: frame.cs,
            rflags: frame.rflags,
            rsp: frame.rsp,
            ss: frame.ss,
        },
        info,
        blocked: u64::from(blocked.0),
    };
    // SAFETY: `range_ok` proved [sp, sp + 8 + size) lies in the mapped user window.
    unsafe {
        (sp as *mut u64).write(restorer);
        (base as *mut SigFrame).write(sf);
    }
    frame.rip = handler;
    frame.rsp = sp;
    frame.rdi = info.signo;
    frame.rsi = base + core::mem::offset_of!(SigFrame, info) as u64;
    frame.rdx = base + core::mem::offset_of!(SigFrame, context) as u64;
    frame.rax = 0;
    // The handler starts with DF and TF clear, as the ABI and Linux want.
    frame.rflags &= !((1 << 10) | (1 << 8));
    Ok(())
}

/// `sigreturn`: restores the context in the [`SigFrame`] at the user RSP, after checking it.
pub fn sigreturn(frame: &mut Frame) {
    let s = sched();
    if !s.active || s.current == 0 {
        frame.rax = (-irqlab_abi::syscall::ENOSYS) as u64;
        return;
    }
    let cur = s.current;
    let base = frame.rsp;
    let size = core::mem::size_of::<SigFrame>() as u64;
    if !user::range_ok(base, size) {
        refuse(format_args!(
            "frame at rsp={base:#x} is outside user memory"
        ));
    }
    // SAFETY: `range_ok` proved the frame lies in the mapped user window.
    let sf = unsafe { core::ptr::read_unaligned(base as *const SigFrame) };
    let c = sf.context;
    if let Err(why) = sig::check_context(
        sig::Context {
            cs: c.cs,
            ss: c.ss,
            rip: c.rip,
            rsp: c.rsp,
        },
        u64::from(gdt::USER_CS),
        u64::from(gdt::USER_DS),
        crate::paging::user_window().0,
        crate::paging::user_window().1,
    ) {
        refuse(format_args!("{why}"));
    }
    frame.r15 = c.r15;
    frame.r14 = c.r14;
    frame.r13 = c.r13;
    frame.r12 = c.r12;
    frame.r11 = c.r11;
    frame.r10 = c.r10;
    frame.r9 = c.r9;
    frame.r8 = c.r8;
    frame.rbp = c.rbp;
    frame.rdi = c.rdi;
    frame.rsi = c.rsi;
    frame.rdx = c.rdx;
    frame.rcx = c.rcx;
    frame.rbx = c.rbx;
    frame.rax = c.rax;
    frame.rip = c.rip;
    frame.cs = c.cs;
    frame.rflags = sig::sanitize_rflags(c.rflags);
    frame.rsp = c.rsp;
    frame.ss = c.ss;
    let s = sched();
    let t = &mut s.tasks[cur];
    t.blocked = irqlab_guest_core::signal::How::Set.apply(SigSet::EMPTY, SigSet(sf.blocked as u32));
    debug_assert!(t.state == State::Runnable);
    super::update_sigpending();
}

/// A bad `sigreturn`: report it and kill the task with SIGSEGV (Linux: `force_sig(SIGSEGV)`).
fn refuse(why: core::fmt::Arguments) -> ! {
    let s = sched();
    s.bad_sigreturns += 1;
    println!(
        "signal: sigreturn of task {} refused: {}",
        crate::fmt::Dec(s.current as u64),
        why
    );
    kill_current(sig::SIGSEGV)
}
