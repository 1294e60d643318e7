//! The ring-3 programs of the cost table's system-call rows (`run=cost`, see `cost.rs`): the
//! trap gate, `getpid`, the `time` system call against the vDSO-style clock (`vclock.rs`),
//! 16 sink writes as 16 system calls against one `writev`, 16 operations as 16 system calls
//! against one submission ring (`uring.rs`), and the hostile calls the kernel must refuse.
//!
//! The rules of ring-3 code (see `user.rs`): everything lives in `.user_text`/`.user_data`,
//! every helper is `#[inline(always)]`, and nothing indexes with bounds checks (a panic would
//! call into kernel text and fault). System calls go through [`user::sys`], i.e. through the
//! gate the kernel selected with `user::set_gate`. The programs leave what they saw in result
//! slots ([`result`]) for the kernel to check.

use crate::user::{self, sys, UserMem};
use crate::{cpu, vclock};
use irqlab_abi::syscall::{self as nr, Iovec, Sqe};

/// Writes or operations per batch (one sample of the batching rows).
pub const BATCH: u64 = 16;
/// Bytes in each of a batch's buffers.
pub const BUF_LEN: u64 = 8;

/// The batch's 16 buffers of 8 bytes, one after the other.
#[link_section = ".user_data"]
pub static MESSAGES: [u8; (BATCH * BUF_LEN) as usize] = *b"sink-00\nsink-01\nsink-02\nsink-03\n\
sink-04\nsink-05\nsink-06\nsink-07\nsink-08\nsink-09\nsink-10\nsink-11\nsink-12\nsink-13\n\
sink-14\nsink-15\n";

/// One page of user memory for the programs: the submission ring at offset 0 (layout in
/// `irqlab_abi::syscall`: header, then the entries), the `iovec` array at [`IOV_OFF`], the
/// result slots at [`RESULTS_OFF`].
#[link_section = ".user_data"]
static SCRATCH: UserMem<4096> = UserMem::new();
const IOV_OFF: u64 = 2560;
const RESULTS_OFF: u64 = IOV_OFF + nr::IOV_MAX * 16;
/// Result slots (u64 each).
pub const SLOTS: usize = 64;
const _: () = assert!(nr::RING_BYTES <= IOV_OFF && RESULTS_OFF + SLOTS as u64 * 8 <= 4096);

/// A kernel address (the kernel image at 1 MiB) for the hostile calls.
pub const KERNEL_ADDR: u64 = 0x10_0000;

// ---- user-side helpers -------------------------------------------------------------------

#[inline(always)]
fn exit(code: u64) -> ! {
    sys(nr::EXIT, [code, 0, 0, 0, 0, 0]);
    loop {
        core::hint::spin_loop();
    }
}

#[inline(always)]
fn set(slot: usize, v: u64) {
    let p = (SCRATCH.addr() + RESULTS_OFF) as *mut u64;
    // SAFETY: `slot % SLOTS` lies inside the scratch page's result area.
    unsafe { p.add(slot % SLOTS).write_volatile(v) }
}

/// Whether a return value is minus an errno.
#[inline(always)]
fn is_err(v: u64) -> bool {
    v > (-4096i64) as u64
}

#[inline(always)]
fn messages() -> u64 {
    (&raw const MESSAGES) as u64
}

#[inline(always)]
fn iov_set(i: u64, base: u64, len: u64) {
    let p = ((SCRATCH.addr() + IOV_OFF) as *mut Iovec).wrapping_add((i % nr::IOV_MAX) as usize);
    // SAFETY: inside the scratch page's iovec area (IOV_MAX entries).
    unsafe {
        (&raw mut (*p).base).write_volatile(base);
        (&raw mut (*p).len).write_volatile(len);
    }
}

/// The ring's address.
#[inline(always)]
fn ring_addr() -> u64 {
    SCRATCH.addr()
}

#[inline(always)]
fn sqe(index: u64) -> *mut Sqe {
    let at = ring_addr() + nr::RING_SQES + (index % nr::RING_ENTRIES) * 32;
    at as *mut Sqe
}

#[inline(always)]
fn sqe_set(index: u64, opcode: u64, arg0: u64, arg1: u64) {
    let p = sqe(index);
    // SAFETY: `sqe` keeps the index inside the ring's entries.
    unsafe {
        (&raw mut (*p).opcode).write_volatile(opcode);
        (&raw mut (*p).arg0).write_volatile(arg0);
        (&raw mut (*p).arg1).write_volatile(arg1);
        (&raw mut (*p).result).write_volatile(0);
    }
}

#[inline(always)]
fn sqe_result(index: u64) -> u64 {
    // SAFETY: as in `sqe_set`.
    unsafe { (&raw const (*sqe(index)).result).read_volatile() }
}

#[inline(always)]
fn ring_set(head: u64, tail: u64) {
    let r = ring_addr();
    // SAFETY: the ring header's two u64 indices.
    unsafe {
        ((r + nr::RING_HEAD) as *mut u64).write_volatile(head);
        ((r + nr::RING_TAIL) as *mut u64).write_volatile(tail);
    }
}

#[inline(always)]
fn ring_head() -> u64 {
    // SAFETY: the ring header's head index.
    unsafe { ((ring_addr() + nr::RING_HEAD) as *const u64).read_volatile() }
}

/// Times `iterations` runs of `f` (cycles into `user::SAMPLES`), handing each run's value to
/// `after` outside the timed section.
#[inline(always)]
fn timed(iterations: u64, mut f: impl FnMut() -> u64, mut after: impl FnMut(u64, u64)) {
    let samples = user::SAMPLES.addr() as *mut u32;
    let mut i = 0;
    while i < iterations {
        let t0 = cpu::rdtsc_ordered();
        let v = f();
        let t1 = cpu::rdtsc_ordered();
        // SAFETY: the kernel bounds `iterations` by MAX_SAMPLES.
        unsafe {
            samples
                .add(i as usize)
                .write_volatile(t1.wrapping_sub(t0) as u32)
        };
        after(i, v);
        i += 1;
    }
}

// ---- the programs ------------------------------------------------------------------------

/// `yield` round trips through the selected gate (the trap-gate row). Slot 0: failed calls.
#[link_section = ".user_text"]
pub extern "C" fn yield_cost(iterations: u64) -> ! {
    let mut bad = 0;
    timed(
        iterations,
        || sys(nr::YIELD, [0; 6]),
        |_, r| bad += u64::from(r != 0),
    );
    set(0, bad);
    exit(0)
}

/// `getpid` round trips. Slot 0: failed calls.
#[link_section = ".user_text"]
pub extern "C" fn getpid_cost(iterations: u64) -> ! {
    let mut bad = 0;
    timed(
        iterations,
        || sys(nr::GETPID, [0; 6]),
        |_, r| bad += u64::from(is_err(r)),
    );
    set(0, bad);
    exit(0)
}

/// `time` round trips. Slot 0: readings smaller than the one before.
#[link_section = ".user_text"]
pub extern "C" fn time_syscall_cost(iterations: u64) -> ! {
    let (mut prev, mut back) = (0, 0);
    timed(
        iterations,
        || sys(nr::TIME, [0; 6]),
        |_, t| {
            back += u64::from(t < prev);
            prev = t;
        },
    );
    set(0, back);
    exit(0)
}

/// Clock reads from the vDSO-style page, no kernel entry. Slots: 0 readings smaller than
/// the one before, 1 `time` (TSC) before the loop, 2 the first reading (ns), 3 the last,
/// 4 `time` after the loop.
#[link_section = ".user_text"]
pub extern "C" fn time_vdso_cost(iterations: u64) -> ! {
    set(1, sys(nr::TIME, [0; 6]));
    let (mut first, mut prev, mut back) = (0, 0, 0);
    timed(iterations, vclock::read, |i, ns| {
        if i == 0 {
            first = ns;
        }
        back += u64::from(ns < prev);
        prev = ns;
    });
    set(0, back);
    set(2, first);
    set(3, prev);
    set(4, sys(nr::TIME, [0; 6]));
    exit(0)
}

/// Per sample: the 16 buffers written to the sink with 16 `write` calls. Slot 0: calls that
/// did not return the length.
#[link_section = ".user_text"]
pub extern "C" fn write_cost(iterations: u64) -> ! {
    let msg = messages();
    let mut bad = 0;
    timed(
        iterations,
        || {
            let mut failed = 0;
            let mut j = 0;
            while j < BATCH {
                let r = sys(
                    nr::WRITE,
                    [msg + j * BUF_LEN, BUF_LEN, nr::FD_SINK, 0, 0, 0],
                );
                failed += u64::from(r != BUF_LEN);
                j += 1;
            }
            failed
        },
        |_, failed| bad += failed,
    );
    set(0, bad);
    exit(0)
}

/// Per sample: the same 16 buffers written to the sink with one `writev`. Slot 0: calls that
/// did not return the total length.
#[link_section = ".user_text"]
pub extern "C" fn writev_cost(iterations: u64) -> ! {
    let msg = messages();
    let mut j = 0;
    while j < BATCH {
        iov_set(j, msg + j * BUF_LEN, BUF_LEN);
        j += 1;
    }
    let iov = SCRATCH.addr() + IOV_OFF;
    let mut bad = 0;
    timed(
        iterations,
        || sys(nr::WRITEV, [iov, BATCH, nr::FD_SINK, 0, 0, 0]),
        |_, r| bad += u64::from(r != BATCH * BUF_LEN),
    );
    set(0, bad);
    exit(0)
}

/// Per sample: 16 `op(OP_ADD, 1..=16)` system calls. Slot 0: failed calls.
#[link_section = ".user_text"]
pub extern "C" fn ops_syscall_cost(iterations: u64) -> ! {
    let mut bad = 0;
    timed(
        iterations,
        || {
            let mut failed = 0;
            let mut j = 0;
            while j < BATCH {
                let r = sys(nr::OP, [nr::OP_ADD, j + 1, 0, 0, 0, 0]);
                failed += u64::from(is_err(r));
                j += 1;
            }
            failed
        },
        |_, failed| bad += failed,
    );
    set(0, bad);
    exit(0)
}

/// Per sample: 16 `OP_ADD 1..=16` entries filled in the ring, the tail published, one
/// `ring_enter`. Slots: 0 calls that did not consume 16, 1 the head at the end, 2 the tail.
#[link_section = ".user_text"]
pub extern "C" fn ops_ring_cost(iterations: u64) -> ! {
    let ring = ring_addr();
    let mut tail = ring_head();
    let mut bad = 0;
    timed(
        iterations,
        || {
            let mut j = 0;
            while j < BATCH {
                sqe_set(tail.wrapping_add(j), nr::OP_ADD, j + 1, 0);
                j += 1;
            }
            tail = tail.wrapping_add(BATCH);
            // SAFETY: the ring header's tail, stored after the entries (x86 keeps stores
            // in order; volatile keeps the compiler from moving it).
            unsafe { ((ring + nr::RING_TAIL) as *mut u64).write_volatile(tail) };
            sys(nr::RING_ENTER, [ring, BATCH, 0, 0, 0, 0])
        },
        |_, r| bad += u64::from(r != BATCH),
    );
    set(0, bad);
    set(1, ring_head());
    set(2, tail);
    exit(0)
}

/// Result slots of [`hostile`] and the values the kernel must have returned (`-errno` as
/// u64): (slot, expected, what it was).
pub fn hostile_expectations() -> [(usize, u64, &'static str); 18] {
    let e = |errno: i64| (-errno) as u64;
    [
        (0, e(nr::EFAULT), "write(kernel buffer, FD_SINK)"),
        (1, e(nr::EBADF), "write(fd 7)"),
        (2, e(nr::EFAULT), "writev(iov[2] = kernel buffer)"),
        (3, e(nr::EFAULT), "writev(kernel iov array)"),
        (4, e(nr::EINVAL), "writev(IOV_MAX + 1 buffers)"),
        (5, e(nr::EFAULT), "writev(iov[1] length 2^64-1)"),
        (6, e(nr::EINVAL), "ring_enter(tail 2^40 ahead of head)"),
        (7, 0, "head left alone after the refusal"),
        (8, e(nr::EINVAL), "ring_enter(head 2^40 ahead of tail)"),
        (9, e(nr::EFAULT), "ring_enter(kernel ring)"),
        (10, e(nr::EINVAL), "ring_enter(misaligned ring)"),
        (11, 3, "ring_enter(head 2^64-2, tail wrapped to 1) consumed"),
        (12, 1, "head after the wrapped entries"),
        (13, 6, "the wrapped entries' last result (counter 1+2+3)"),
        (14, 3, "ring_enter(three bad entries) consumed"),
        (15, e(nr::EFAULT), "entry: sink write of a kernel buffer"),
        (16, e(nr::EINVAL), "entry: unknown opcode 99"),
        (17, e(nr::EFAULT), "entry: sink write at 2^64-4 (overflows)"),
    ]
}

/// Slots of [`hostile`] checked outside [`hostile_expectations`]: `op(99)` and
/// `ring_enter(u64::MAX)` on an empty ring.
pub const HOSTILE_OP_SLOT: usize = 18;
/// See [`HOSTILE_OP_SLOT`].
pub const HOSTILE_EMPTY_SLOT: usize = 19;

/// Hands the kernel bad pointers, bad counts and a corrupt ring; records each return value
/// (see [`hostile_expectations`]).
#[link_section = ".user_text"]
pub extern "C" fn hostile(_: u64) -> ! {
    let msg = messages();
    let iov = SCRATCH.addr() + IOV_OFF;
    let ring = ring_addr();
    set(0, sys(nr::WRITE, [KERNEL_ADDR, 8, nr::FD_SINK, 0, 0, 0]));
    set(1, sys(nr::WRITE, [msg, 8, 7, 0, 0, 0]));
    iov_set(0, msg, 8);
    iov_set(1, msg + 8, 8);
    iov_set(2, KERNEL_ADDR, 8);
    iov_set(3, msg + 16, 8);
    set(2, sys(nr::WRITEV, [iov, 4, nr::FD_SINK, 0, 0, 0]));
    set(3, sys(nr::WRITEV, [KERNEL_ADDR, 2, nr::FD_SINK, 0, 0, 0]));
    set(
        4,
        sys(nr::WRITEV, [iov, nr::IOV_MAX + 1, nr::FD_SINK, 0, 0, 0]),
    );
    iov_set(1, msg, u64::MAX);
    set(5, sys(nr::WRITEV, [iov, 2, nr::FD_SINK, 0, 0, 0]));

    ring_set(0, 1 << 40);
    set(6, sys(nr::RING_ENTER, [ring, BATCH, 0, 0, 0, 0]));
    set(7, ring_head());
    ring_set(1 << 40, 0);
    set(8, sys(nr::RING_ENTER, [ring, BATCH, 0, 0, 0, 0]));
    set(9, sys(nr::RING_ENTER, [KERNEL_ADDR, 1, 0, 0, 0, 0]));
    set(10, sys(nr::RING_ENTER, [ring + 4, 1, 0, 0, 0, 0]));

    // Indices about to wrap: entries 62, 63 and 0.
    let head = u64::MAX - 1;
    sqe_set(head, nr::OP_ADD, 1, 0);
    sqe_set(head.wrapping_add(1), nr::OP_ADD, 2, 0);
    sqe_set(head.wrapping_add(2), nr::OP_ADD, 3, 0);
    ring_set(head, head.wrapping_add(3));
    set(11, sys(nr::RING_ENTER, [ring, u64::MAX, 0, 0, 0, 0]));
    set(12, ring_head());
    set(13, sqe_result(0));

    sqe_set(1, nr::OP_SINK_WRITE, KERNEL_ADDR, 8);
    sqe_set(2, 99, 0, 0);
    sqe_set(3, nr::OP_SINK_WRITE, u64::MAX - 3, 8);
    ring_set(1, 4);
    set(14, sys(nr::RING_ENTER, [ring, BATCH, 0, 0, 0, 0]));
    set(15, sqe_result(1));
    set(16, sqe_result(2));
    set(17, sqe_result(3));

    set(HOSTILE_OP_SLOT, sys(nr::OP, [99, 0, 0, 0, 0, 0]));
    set(
        HOSTILE_EMPTY_SLOT,
        sys(nr::RING_ENTER, [ring, u64::MAX, 0, 0, 0, 0]),
    );
    exit(0)
}

// ---- kernel side -------------------------------------------------------------------------

/// Result slot `slot` (read by the kernel between tasks).
pub fn result(slot: usize) -> u64 {
    let p = (SCRATCH.addr() + RESULTS_OFF) as *const u64;
    // SAFETY: inside the scratch page; no task runs.
    unsafe { p.add(slot % SLOTS).read_volatile() }
}

/// Zeroes the ring, the `iovec` array and the result slots (before each program).
pub fn reset() {
    // SAFETY: a user data page no task is using.
    unsafe { core::ptr::write_bytes(SCRATCH.addr() as *mut u8, 0, 4096) };
}

/// The byte sum of one batch's buffers (what the sink must have summed per batch).
pub fn batch_byte_sum() -> u64 {
    MESSAGES.iter().map(|&b| u64::from(b)).sum()
}
