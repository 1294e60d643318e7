//! The kernel side of the cost table's batching rows: the memory sink `write`/`writev` can
//! target ([`nr::FD_SINK`]), `writev` itself, and a shared-memory submission ring
//! (`ring_enter`, io_uring's idea) with its one-call-per-operation counterpart `op`.
//!
//! Everything a user hands in is hostile: every pointer is checked with [`user::range_ok`]
//! before the kernel touches it, `writev` reads the `iovec` array once into kernel memory and
//! checks all of it before writing a byte, and the ring's indices are bounded
//! ([`nr::ring_pending`]) and reduced modulo the ring size before any entry is read; each
//! entry is read once. The layouts and the errors are documented in `irqlab_abi::syscall`.
//!
//! The sink keeps the bytes (a 4 KiB kernel buffer, overwritten round-robin) and counts
//! writes, bytes and their byte sum ([`Counts`]), so the cost table can check that the kernel
//! consumed every write and operation it was handed.

use crate::boot_cell::BootCpuCell;
use crate::user;
use core::mem::MaybeUninit;
use irqlab_abi::syscall::{self as nr, Iovec, Sqe};

const SINK_SIZE: usize = 4096;

/// What the kernel consumed since [`reset`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Buffers written to the sink (one per `write`, one per `writev` buffer, one per ring
    /// sink write).
    pub sink_writes: u64,
    /// Bytes written to the sink.
    pub sink_bytes: u64,
    /// The sum of those bytes (wrapping).
    pub sink_sum: u64,
    /// `writev` calls that wrote.
    pub writev_calls: u64,
    /// `ring_enter` calls that consumed the ring (refused ones are not counted).
    pub ring_calls: u64,
    /// Ring entries consumed.
    pub ring_consumed: u64,
    /// Operations applied (through `op` or the ring), failed ones not counted.
    pub ops: u64,
    /// The operation counter `OP_ADD` adds to.
    pub counter: u64,
}

struct State {
    counts: Counts,
    sink: [u8; SINK_SIZE],
}

/// Only the boot CPU uses it, inside a system call or between user tasks.
static STATE: BootCpuCell<State> = BootCpuCell::new(State {
    counts: Counts {
        sink_writes: 0,
        sink_bytes: 0,
        sink_sum: 0,
        writev_calls: 0,
        ring_calls: 0,
        ring_consumed: 0,
        ops: 0,
        counter: 0,
    },
    sink: [0; SINK_SIZE],
});

#[allow(clippy::mut_from_ref)]
fn state() -> &'static mut State {
    // SAFETY: one CPU; callers do not hold the reference across another call into here.
    unsafe { STATE.get() }
}

/// Zeroes the counts (the sink's old bytes stay; they are overwritten anyway).
pub fn reset() {
    state().counts = Counts::default();
}

/// The counts since [`reset`].
pub fn counts() -> Counts {
    state().counts
}

fn errno(e: i64) -> u64 {
    (-e) as u64
}

/// Copies `[addr, addr + len)`, which the caller checked with [`user::range_ok`], into the
/// sink. Byte by byte with volatile accesses, so no `memcpy` and no vector code.
fn sink_copy(addr: u64, len: u64) {
    let st = state();
    let mut pos = st.counts.sink_bytes;
    let mut sum = st.counts.sink_sum;
    let mut i = 0;
    while i < len {
        // SAFETY: inside the user range the caller checked (mapped user memory).
        let b = unsafe { ((addr + i) as *const u8).read_volatile() };
        let slot = &mut st.sink[pos as usize % SINK_SIZE];
        // SAFETY: a valid reference into the sink.
        unsafe { core::ptr::write_volatile(slot, b) };
        sum = sum.wrapping_add(u64::from(b));
        pos = pos.wrapping_add(1);
        i += 1;
    }
    st.counts.sink_bytes = pos;
    st.counts.sink_sum = sum;
    st.counts.sink_writes += 1;
}

/// One checked sink write: `len`, or `-EFAULT`.
fn sink_write(addr: u64, len: u64) -> u64 {
    if !user::range_ok(addr, len) {
        return errno(nr::EFAULT);
    }
    sink_copy(addr, len);
    len
}

/// `write(buf, len, fd)` for the targets the console `write` does not handle.
pub fn write(buf: u64, len: u64, fd: u64) -> u64 {
    match fd {
        nr::FD_SINK => sink_write(buf, len),
        nr::FD_CONSOLE => {
            if !user::range_ok(buf, len) {
                return errno(nr::EFAULT);
            }
            // SAFETY: `range_ok` proved [buf, buf+len) lies in the mapped user window.
            let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, len as usize) };
            crate::serial::write_bytes(bytes);
            len
        }
        _ => errno(nr::EBADF),
    }
}

/// `writev(iov, count, fd)`: all or nothing (see `irqlab_abi::syscall::WRITEV`).
pub fn writev(iov: u64, count: u64, fd: u64) -> u64 {
    if fd != nr::FD_SINK && fd != nr::FD_CONSOLE {
        return errno(nr::EBADF);
    }
    if count > nr::IOV_MAX {
        return errno(nr::EINVAL);
    }
    const ENTRY: u64 = core::mem::size_of::<Iovec>() as u64;
    if !user::range_ok(iov, count * ENTRY) {
        return errno(nr::EFAULT);
    }
    // The array, read once: what is checked is what is used, whatever user memory does next.
    let mut copy = [const { MaybeUninit::<Iovec>::uninit() }; nr::IOV_MAX as usize];
    let mut total: u64 = 0;
    for (i, slot) in copy.iter_mut().take(count as usize).enumerate() {
        let at = (iov + i as u64 * ENTRY) as *const Iovec;
        // SAFETY: `range_ok` proved the whole array lies in mapped user memory; unaligned
        // reads, because user code may pass any address.
        let e = unsafe {
            Iovec {
                base: (&raw const (*at).base).read_unaligned(),
                len: (&raw const (*at).len).read_unaligned(),
            }
        };
        if !user::range_ok(e.base, e.len) {
            return errno(nr::EFAULT);
        }
        total = match total.checked_add(e.len) {
            Some(t) => t,
            None => return errno(nr::EINVAL),
        };
        slot.write(e);
    }
    for slot in copy.iter().take(count as usize) {
        // SAFETY: the first `count` slots were written above.
        let e = unsafe { slot.assume_init() };
        if fd == nr::FD_SINK {
            sink_copy(e.base, e.len);
        } else {
            // SAFETY: checked with `range_ok` above.
            let bytes = unsafe { core::slice::from_raw_parts(e.base as *const u8, e.len as usize) };
            crate::serial::write_bytes(bytes);
        }
    }
    state().counts.writev_calls += 1;
    total
}

/// One operation (an `op` call or a ring entry): its result, or minus the errno.
fn apply(opcode: u64, arg0: u64, arg1: u64) -> u64 {
    let result = match opcode {
        nr::OP_NOP => 0,
        nr::OP_ADD => {
            let st = state();
            st.counts.counter = st.counts.counter.wrapping_add(arg0);
            st.counts.counter
        }
        nr::OP_SINK_WRITE => {
            if !user::range_ok(arg0, arg1) {
                return errno(nr::EFAULT);
            }
            sink_copy(arg0, arg1);
            arg1
        }
        _ => return errno(nr::EINVAL),
    };
    state().counts.ops += 1;
    result
}

/// `op(opcode, arg0, arg1)`.
pub fn op(opcode: u64, arg0: u64, arg1: u64) -> u64 {
    apply(opcode, arg0, arg1)
}

/// `ring_enter(ring, to_submit)` (see `irqlab_abi::syscall::RING_ENTER`).
pub fn ring_enter(ring: u64, to_submit: u64) -> u64 {
    if !ring.is_multiple_of(8) {
        return errno(nr::EINVAL);
    }
    if !user::range_ok(ring, nr::RING_BYTES) {
        return errno(nr::EFAULT);
    }
    let head_at = (ring + nr::RING_HEAD) as *mut u64;
    let tail_at = (ring + nr::RING_TAIL) as *const u64;
    // SAFETY: `range_ok` proved the ring (header and entries) lies in mapped user memory and
    // it is 8-byte aligned; each index is read once.
    let (head, tail) = unsafe { (head_at.read_volatile(), tail_at.read_volatile()) };
    let Some(pending) = nr::ring_pending(head, tail) else {
        return errno(nr::EINVAL);
    };
    let n = to_submit.min(pending);
    let mut i = 0;
    while i < n {
        let index = head.wrapping_add(i) % nr::RING_ENTRIES;
        let sqe = (ring + nr::RING_SQES + index * core::mem::size_of::<Sqe>() as u64) as *mut Sqe;
        // SAFETY: `index` < RING_ENTRIES, so the entry lies inside the checked ring; it is
        // read once into registers, and only its result field is written.
        unsafe {
            let opcode = (&raw const (*sqe).opcode).read_volatile();
            let arg0 = (&raw const (*sqe).arg0).read_volatile();
            let arg1 = (&raw const (*sqe).arg1).read_volatile();
            (&raw mut (*sqe).result).write_volatile(apply(opcode, arg0, arg1));
        }
        i += 1;
    }
    // SAFETY: as above.
    unsafe { head_at.write_volatile(head.wrapping_add(n)) };
    let st = state();
    st.counts.ring_calls += 1;
    st.counts.ring_consumed += n;
    n
}
