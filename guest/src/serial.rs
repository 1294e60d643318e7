//! Polled COM1 16550 console for kernel output.
//!
//! Output cost matters here: every port access is a VM exit. The driver enables the 16-byte
//! transmit FIFO and checks the Line Status Register's THRE bit only once per 16 bytes, so a
//! line of text costs about one exit per byte instead of two, and sends each batch with one
//! `rep outsb`.

use crate::port;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use irqlab_abi::ports::COM1;

const THR: u16 = 0; // transmit holding register (DLAB = 0)
const IER: u16 = 1; // interrupt enable
const FCR: u16 = 2; // FIFO control (write)
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status
const LSR_THRE: u8 = 1 << 5;
const FIFO_DEPTH: u32 = 16;

static LOCK: AtomicBool = AtomicBool::new(false);
/// Bytes the transmit FIFO can still take without checking LSR again.
static ROOM: AtomicU32 = AtomicU32::new(0);

/// Programs COM1 for 115200 8N1 with FIFOs and interrupts off.
pub fn init() {
    // SAFETY: COM1 belongs to this kernel; the sequence is the 16550 datasheet's.
    unsafe {
        port::outb(COM1 + IER, 0x00);
        port::outb(COM1 + LCR, 0x80); // DLAB on
        port::outb(COM1 + THR, 0x01); // divisor 1 = 115200 baud
        port::outb(COM1 + IER, 0x00);
        port::outb(COM1 + LCR, 0x03); // 8N1, DLAB off
        port::outb(COM1 + FCR, 0xc7); // enable + clear FIFOs, 14-byte RX trigger
        port::outb(COM1 + MCR, 0x03); // DTR | RTS
    }
}

/// Sends `bytes` (at most the FIFO depth at a time, checking THRE before each batch) with
/// `rep outsb`: one instruction for the whole batch, so on hosts that emulate every guest
/// instruction a byte costs its VM exit and little else (a byte-at-a-time loop cost ~2.5×).
fn send(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let mut room = ROOM.load(Ordering::Relaxed);
        if room == 0 {
            // SAFETY: reading LSR has no side effects on the transmitter.
            while unsafe { port::inb(COM1 + LSR) } & LSR_THRE == 0 {
                core::hint::spin_loop();
            }
            room = FIFO_DEPTH;
        }
        let n = bytes.len().min(room as usize);
        // SAFETY: THRE was seen and the FIFO has room for `n` bytes.
        unsafe { port::outsb(COM1 + THR, &bytes[..n]) };
        ROOM.store(room - n as u32, Ordering::Relaxed);
        bytes = &bytes[n..];
    }
}

/// Nothing is buffered in the guest; kept so callers say what they mean before exiting.
pub fn flush() {}

/// Releases the console lock (used by the panic and fatal-exception paths, which may run
/// while the interrupted code held it).
pub fn force_unlock() {
    LOCK.store(false, Ordering::Release);
}

struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while let Some(at) = port::find_byte(rest, b'\n') {
            send(&rest[..at]);
            send(b"\r\n");
            rest = &rest[at + 1..];
        }
        send(rest);
        Ok(())
    }
}

/// Writes raw bytes (used for user `write` syscalls).
pub fn write_bytes(bytes: &[u8]) {
    lock();
    send(bytes);
    unlock();
}

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
}

fn unlock() {
    LOCK.store(false, Ordering::Release);
}

/// Prints `args` unless the console is in use. For interrupt handlers: the code they
/// interrupted on this CPU may hold the console lock, and spinning on it there would never
/// end. Returns whether it printed.
pub fn try_print(args: fmt::Arguments) -> bool {
    use fmt::Write;
    if LOCK
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    let _ = Console.write_fmt(args);
    unlock();
    true
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    use fmt::Write;
    lock();
    let _ = Console.write_fmt(args);
    unlock();
}

/// Prints to COM1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::_print(format_args!($($arg)*)) };
}

/// Prints a line to COM1.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
