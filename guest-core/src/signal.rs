//! Signals, the pure part: numbers, sets, default actions, which exception becomes which
//! signal, and the checks `sigreturn` applies to the context a user handler hands back.
//!
//! The numbers are Linux's (`man 7 signal`), so the output reads like a Linux trace.

/// Illegal instruction (#UD).
pub const SIGILL: u8 = 4;
/// Trace/breakpoint trap (#DB, #BP).
pub const SIGTRAP: u8 = 5;
/// Bus error (#AC).
pub const SIGBUS: u8 = 7;
/// Arithmetic error (#DE, #MF, #XM).
pub const SIGFPE: u8 = 8;
/// Kill: cannot be blocked, ignored or caught.
pub const SIGKILL: u8 = 9;
/// User-defined signal 1.
pub const SIGUSR1: u8 = 10;
/// Invalid memory reference (#PF, #GP, #SS, #NP).
pub const SIGSEGV: u8 = 11;
/// User-defined signal 2.
pub const SIGUSR2: u8 = 12;
/// Timer signal from `alarm`.
pub const SIGALRM: u8 = 14;
/// Termination signal.
pub const SIGTERM: u8 = 15;
/// Child stopped or terminated (default: ignore).
pub const SIGCHLD: u8 = 17;
/// Signals are 1..NSIG.
pub const NSIG: u8 = 32;

/// A set of signals (bit n = signal n; bit 0 unused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigSet(pub u32);

impl SigSet {
    /// The empty set.
    pub const EMPTY: SigSet = SigSet(0);
    /// Signals no mask can block (SIGKILL).
    pub const UNBLOCKABLE: SigSet = SigSet(1 << SIGKILL);

    /// The set holding just `sig` (empty for numbers outside 1..NSIG).
    pub const fn of(sig: u8) -> SigSet {
        if sig == 0 || sig >= NSIG {
            SigSet(0)
        } else {
            SigSet(1 << sig)
        }
    }

    /// Whether `sig` is in the set.
    pub const fn contains(self, sig: u8) -> bool {
        SigSet::of(sig).0 != 0 && self.0 & SigSet::of(sig).0 != 0
    }

    /// The set with `sig` added.
    pub const fn with(self, sig: u8) -> SigSet {
        SigSet(self.0 | SigSet::of(sig).0)
    }

    /// The set with `sig` removed.
    pub const fn without(self, sig: u8) -> SigSet {
        SigSet(self.0 & !SigSet::of(sig).0)
    }

    /// The lowest-numbered signal in `self` (pending) that `blocked` does not block.
    /// Unblockable signals are delivered whatever the mask says.
    pub const fn next_deliverable(self, blocked: SigSet) -> Option<u8> {
        let effective = blocked.0 & !SigSet::UNBLOCKABLE.0;
        let ready = self.0 & !effective & !1;
        if ready == 0 {
            None
        } else {
            Some(ready.trailing_zeros() as u8)
        }
    }
}

/// `sigprocmask`'s `how`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Add the set to the mask.
    Block,
    /// Remove the set from the mask.
    Unblock,
    /// Replace the mask.
    Set,
}

impl How {
    /// From the system call argument (0, 1, 2).
    pub const fn from_arg(how: u64) -> Option<How> {
        match how {
            0 => Some(How::Block),
            1 => Some(How::Unblock),
            2 => Some(How::Set),
            _ => None,
        }
    }

    /// The new mask; unblockable signals never end up in it.
    pub const fn apply(self, mask: SigSet, set: SigSet) -> SigSet {
        let new = match self {
            How::Block => mask.0 | set.0,
            How::Unblock => mask.0 & !set.0,
            How::Set => set.0,
        };
        SigSet(new & !SigSet::UNBLOCKABLE.0 & !1)
    }
}

/// What happens to a signal that has no handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// End the task.
    Terminate,
    /// Discard it.
    Ignore,
}

/// The default action of `sig` (Linux: SIGCHLD, SIGURG and SIGWINCH are ignored; every
/// signal the lab uses otherwise terminates).
pub const fn default_action(sig: u8) -> DefaultAction {
    match sig {
        SIGCHLD | 23 | 28 => DefaultAction::Ignore,
        _ => DefaultAction::Terminate,
    }
}

/// The signal a ring-3 exception becomes (Linux's `do_trap` table), if any.
pub const fn for_exception(vector: u8) -> Option<u8> {
    match vector {
        0 | 16 | 19 => Some(SIGFPE),
        1 | 3 => Some(SIGTRAP),
        6 => Some(SIGILL),
        11..=14 => Some(SIGSEGV),
        17 => Some(SIGBUS),
        _ => None,
    }
}

/// RFLAGS bits user code may change through `sigreturn` (Linux's `FIX_EFLAGS`): CF, PF, AF,
/// ZF, SF, TF, DF, OF, RF and AC. IOPL, IF, NT, VM and the reserved bits stay the kernel's.
pub const USER_RFLAGS: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 4)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 11)
    | (1 << 16)
    | (1 << 18);

/// RFLAGS for the restored context: the user-changeable bits from `saved`, IF and the
/// always-one bit 1 set, everything else clear.
pub const fn sanitize_rflags(saved: u64) -> u64 {
    (saved & USER_RFLAGS) | (1 << 9) | (1 << 1)
}

/// The part of a saved context `sigreturn` must not take from the user as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// Code segment selector.
    pub cs: u64,
    /// Stack segment selector.
    pub ss: u64,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
}

/// Why `sigreturn` refused a context (the task then gets SIGSEGV, as on Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadContext {
    /// CS is not the user code segment (e.g. the kernel's).
    CodeSegment(u64),
    /// SS is not the user data segment.
    StackSegment(u64),
    /// RIP is outside the user window (e.g. a kernel address).
    Rip(u64),
    /// RSP is outside the user window.
    Rsp(u64),
}

impl core::fmt::Display for BadContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            BadContext::CodeSegment(v) => write!(f, "cs={v:#x} is not the user code segment"),
            BadContext::StackSegment(v) => write!(f, "ss={v:#x} is not the user stack segment"),
            BadContext::Rip(v) => write!(f, "rip={v:#x} is outside user memory"),
            BadContext::Rsp(v) => write!(f, "rsp={v:#x} is outside user memory"),
        }
    }
}

/// Checks a context a user handler returns through `sigreturn`: the user's own segments, and
/// RIP and RSP inside the user window `[start, end)`.
pub const fn check_context(
    ctx: Context,
    user_cs: u64,
    user_ss: u64,
    start: u64,
    end: u64,
) -> Result<(), BadContext> {
    if ctx.cs != user_cs {
        return Err(BadContext::CodeSegment(ctx.cs));
    }
    if ctx.ss != user_ss {
        return Err(BadContext::StackSegment(ctx.ss));
    }
    if ctx.rip < start || ctx.rip >= end {
        return Err(BadContext::Rip(ctx.rip));
    }
    // RSP may sit exactly at the window's end (an empty stack).
    if ctx.rsp < start || ctx.rsp > end {
        return Err(BadContext::Rsp(ctx.rsp));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_signals_one_to_thirty_one() {
        let s = SigSet::EMPTY.with(SIGALRM).with(SIGSEGV);
        assert!(s.contains(SIGALRM) && s.contains(SIGSEGV) && !s.contains(SIGILL));
        assert_eq!(s.without(SIGALRM), SigSet::of(SIGSEGV));
        assert_eq!(SigSet::of(0), SigSet::EMPTY);
        assert_eq!(SigSet::of(NSIG), SigSet::EMPTY);
        assert!(!SigSet(u32::MAX).contains(0));
    }

    #[test]
    fn the_lowest_unblocked_pending_signal_goes_first() {
        let pending = SigSet::EMPTY.with(SIGALRM).with(SIGUSR1).with(SIGTERM);
        assert_eq!(pending.next_deliverable(SigSet::EMPTY), Some(SIGUSR1));
        assert_eq!(pending.next_deliverable(SigSet::of(SIGUSR1)), Some(SIGALRM));
        let all = SigSet(u32::MAX);
        assert_eq!(pending.next_deliverable(all), None);
        // SIGKILL gets through any mask.
        assert_eq!(pending.with(SIGKILL).next_deliverable(all), Some(SIGKILL));
        assert_eq!(SigSet(1).next_deliverable(SigSet::EMPTY), None);
    }

    #[test]
    fn masks_never_block_sigkill() {
        let m = How::Set.apply(SigSet::EMPTY, SigSet(u32::MAX));
        assert!(!m.contains(SIGKILL) && m.contains(SIGALRM));
        let m = How::Block.apply(SigSet::of(SIGUSR1), SigSet::of(SIGALRM));
        assert_eq!(m, SigSet::of(SIGUSR1).with(SIGALRM));
        assert_eq!(
            How::Unblock.apply(m, SigSet::of(SIGUSR1)),
            SigSet::of(SIGALRM)
        );
        assert_eq!(How::from_arg(3), None);
        assert_eq!(How::from_arg(2), Some(How::Set));
    }

    #[test]
    fn exceptions_map_to_linux_signals() {
        assert_eq!(for_exception(0), Some(SIGFPE));
        assert_eq!(for_exception(6), Some(SIGILL));
        assert_eq!(for_exception(13), Some(SIGSEGV));
        assert_eq!(for_exception(14), Some(SIGSEGV));
        assert_eq!(for_exception(17), Some(SIGBUS));
        assert_eq!(for_exception(2), None);
        assert_eq!(for_exception(8), None);
        assert_eq!(default_action(SIGCHLD), DefaultAction::Ignore);
        assert_eq!(default_action(SIGALRM), DefaultAction::Terminate);
    }

    #[test]
    fn sigreturn_refuses_kernel_segments_and_addresses() {
        let ok = Context {
            cs: 0x23,
            ss: 0x1b,
            rip: 0x40_1000,
            rsp: 0x50_0000,
        };
        let check = |c| check_context(c, 0x23, 0x1b, 0x40_0000, 0x60_0000);
        assert_eq!(check(ok), Ok(()));
        assert_eq!(
            check(Context { cs: 0x08, ..ok }),
            Err(BadContext::CodeSegment(0x08))
        );
        assert_eq!(
            check(Context { ss: 0x10, ..ok }),
            Err(BadContext::StackSegment(0x10))
        );
        assert_eq!(
            check(Context {
                rip: 0x10_0000,
                ..ok
            }),
            Err(BadContext::Rip(0x10_0000))
        );
        assert_eq!(
            check(Context {
                rip: 0x60_0000,
                ..ok
            }),
            Err(BadContext::Rip(0x60_0000))
        );
        assert_eq!(
            check(Context {
                rsp: 0x60_0000,
                ..ok
            }),
            Ok(())
        );
        assert_eq!(
            check(Context {
                rsp: 0x60_0008,
                ..ok
            }),
            Err(BadContext::Rsp(0x60_0008))
        );
    }

    #[test]
    fn sigreturn_keeps_only_user_flags() {
        // IOPL 3, NT, VM set by the user: dropped; IF forced on; CF, DF, AC kept.
        let user = (3 << 12) | (1 << 14) | (1 << 17) | (1 << 0) | (1 << 10) | (1 << 18);
        let f = sanitize_rflags(user);
        assert_eq!(f, (1 << 0) | (1 << 10) | (1 << 18) | (1 << 9) | (1 << 1));
        assert_eq!(sanitize_rflags(0), 0x202);
    }
}
