//! Exception handlers (vectors 0–31) with reports a student can read next to the SDM.
//!
//! Three cases, in this order:
//! 1. A self-test announced the exception with [`expect`]: record it and resume (skipping the
//!    faulting instruction when the test says how long it is).
//! 2. It came from ring 3: the trap gate's `ud2` + marker is a system call; under the process
//!    experiments a fault becomes a signal (`process::user_fault`); otherwise report it with
//!    the faulting RIP and end the task (`user::abort`). The kernel keeps running.
//! 3. Otherwise it is a kernel bug: report and stop (#DF: status 4, anything else: status 5).
//!
//! [`install`] registers [`handle`] for all 32 exception vectors with the IDT.

use crate::frame::Frame;
use crate::{cpu, idt, println, vectors};
use core::sync::atomic::{AtomicU64, Ordering};
use irqlab_abi::status;
use irqlab_x86::error_code::{Exception, PageFaultError, SelectorError, SelectorTable};

const NONE: u64 = u64::MAX;

/// One announced exception (self-tests run one at a time on the boot CPU).
struct Expectation {
    vector: AtomicU64,
    skip: AtomicU64,
    hits: AtomicU64,
    error_code: AtomicU64,
    cr2: AtomicU64,
    rip: AtomicU64,
}

static EXPECT: Expectation = Expectation {
    vector: AtomicU64::new(NONE),
    skip: AtomicU64::new(0),
    hits: AtomicU64::new(0),
    error_code: AtomicU64::new(0),
    cr2: AtomicU64::new(0),
    rip: AtomicU64::new(0),
};

/// What the handler saw for an expected exception.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    /// How many times it fired.
    pub hits: u64,
    /// Error code of the last one.
    pub error_code: u64,
    /// CR2 at the last one (#PF).
    pub cr2: u64,
    /// RIP of the last one.
    pub rip: u64,
}

/// Announces that `vector` will be raised by kernel code; the handler resumes `skip` bytes
/// after the faulting instruction's start (0 for traps and for faults it fixes itself).
pub fn expect(vector: u8, skip: u64) {
    EXPECT.hits.store(0, Ordering::Relaxed);
    EXPECT.skip.store(skip, Ordering::Relaxed);
    EXPECT.vector.store(u64::from(vector), Ordering::Release);
}

/// Ends the expectation and returns what was seen.
pub fn seen() -> Seen {
    EXPECT.vector.store(NONE, Ordering::Release);
    Seen {
        hits: EXPECT.hits.load(Ordering::Relaxed),
        error_code: EXPECT.error_code.load(Ordering::Relaxed),
        cr2: EXPECT.cr2.load(Ordering::Relaxed),
        rip: EXPECT.rip.load(Ordering::Relaxed),
    }
}

/// Installs [`handle`] as the IDT's handler of every exception vector (0–31).
pub fn install() {
    for vector in 0..vectors::FIRST_EXTERNAL {
        idt::set_handler(vector, handle);
    }
}

/// Handles vectors 0–31.
pub fn handle(frame: &mut Frame) {
    let vector = frame.vector as u8;
    if EXPECT.vector.load(Ordering::Acquire) == frame.vector && !frame.is_from_user() {
        EXPECT.hits.fetch_add(1, Ordering::Relaxed);
        EXPECT.error_code.store(frame.error_code, Ordering::Relaxed);
        EXPECT.rip.store(frame.rip, Ordering::Relaxed);
        if vector == Exception::PageFault as u8 {
            EXPECT.cr2.store(cpu::cr2(), Ordering::Relaxed);
        }
        match Exception::from_vector(vector) {
            // #DB from single-stepping: stop stepping.
            Some(Exception::Debug) => frame.rflags &= !(1 << 8),
            // #NM from CR0.TS: clear TS and retry the instruction.
            Some(Exception::DeviceNotAvailable) => {
                // SAFETY: clts only clears CR0.TS.
                unsafe { core::arch::asm!("clts", options(nomem, nostack)) };
            }
            _ => {}
        }
        frame.rip += EXPECT.skip.load(Ordering::Relaxed);
        return;
    }
    if frame.is_from_user() {
        if crate::syscall::is_trap_gate(frame) {
            crate::syscall::trap_gate(frame);
            return;
        }
        // Under the process experiments the fault becomes a signal, delivered on the way
        // back to ring 3.
        if crate::process::user_fault(frame) {
            return;
        }
        crate::serial::force_unlock();
        println!("user fault: {}", Describe(frame));
        crate::user::abort(frame);
    }
    crate::serial::force_unlock();
    if vector == Exception::DoubleFault as u8 {
        println!(
            "DOUBLE FAULT: {}; stopping (the #DF handler runs on its own IST stack)",
            Describe(frame)
        );
        crate::exit::exit(status::DOUBLE_FAULT);
    }
    println!("KERNEL FAULT: {}", Describe(frame));
    crate::exit::exit(status::KERNEL_FAULT);
}

/// A one-line description of an exception frame.
pub struct Describe<'a>(pub &'a Frame);

impl core::fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let frame = self.0;
        let vector = frame.vector as u8;
        let exc = Exception::from_vector(vector);
        write!(
            f,
            "{} (vector {}) at rip={:#x} cs={:#x} rsp={:#x}",
            exc.map_or("reserved", Exception::mnemonic),
            vector,
            frame.rip,
            frame.cs,
            frame.rsp
        )?;
        match exc {
            Some(Exception::PageFault) => {
                let (who, what, why) = PageFaultError(frame.error_code).describe();
                write!(
                    f,
                    ": {who} {what} at cr2={:#x}, {why} (error {:#x})",
                    cpu::cr2(),
                    frame.error_code
                )
            }
            Some(
                Exception::GeneralProtection
                | Exception::SegmentNotPresent
                | Exception::StackSegment
                | Exception::InvalidTss
                | Exception::DoubleFault
                | Exception::AlignmentCheck,
            ) => {
                let e = SelectorError(frame.error_code);
                if e.is_null() {
                    write!(f, ": error code 0")
                } else {
                    let table = match e.table() {
                        SelectorTable::Gdt => "GDT",
                        SelectorTable::Idt => "IDT",
                        SelectorTable::Ldt => "LDT",
                    };
                    write!(
                        f,
                        ": {table} index {:#x}{} (error {:#x})",
                        e.index(),
                        if e.external() { ", external event" } else { "" },
                        frame.error_code
                    )
                }
            }
            _ => Ok(()),
        }
    }
}
