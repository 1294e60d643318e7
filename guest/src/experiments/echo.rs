//! `run=echo`: interrupt-driven COM1. Received bytes (RX data available interrupt) are echoed
//! back through the transmitter one byte per THR-empty interrupt. The VMM feeds its stdin to
//! the UART and sends EOT (0x04) when stdin ends.
//!
//! Parameters: `trigger=edge|level` (IO-APIC pin 4), `until=quit` (a line that ends the run),
//! `lines=0` (end after that many lines; 0: no limit). EOT also ends it. The check: every
//! received byte was echoed and both interrupt kinds fired.

use super::wait_until;
use crate::boot::Boot;
use crate::fmt::Dec;
use crate::ioapic::{IoApic, Route};
use crate::port;
use crate::{interrupts, vectors};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const RBR: u16 = 0;
const THR: u16 = 0;
const IER: u16 = 1;
const IIR: u16 = 2;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const IER_RDA: u8 = 1 << 0;
const IER_THRE: u8 = 1 << 1;
const IIR_NONE: u8 = 1;
const IIR_ID_MASK: u8 = 0x0e;
const IIR_THRE_BIT: u8 = 0x02;
const IIR_MODEM: u8 = 0x00;
const LSR_DR: u8 = 1;
const LSR_THRE: u8 = 1 << 5;
/// DTR | RTS | OUT2 (OUT2 gates the interrupt line on PC boards).
const MCR_IRQ: u8 = 0x0b;
const EOT: u8 = 0x04;

/// A single-producer, single-consumer byte ring.
struct Ring {
    buf: UnsafeCell<[u8; 256]>,
    head: AtomicUsize,
    tail: AtomicUsize,
}
// SAFETY: one producer and one consumer, each touching only its own index and the slots the
// indexes hand over.
unsafe impl Sync for Ring {}

impl Ring {
    const fn new() -> Self {
        Ring {
            buf: UnsafeCell::new([0; 256]),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }
    fn push(&self, b: u8) -> bool {
        let h = self.head.load(Ordering::Relaxed);
        if h.wrapping_sub(self.tail.load(Ordering::Acquire)) >= 256 {
            return false;
        }
        // SAFETY: slot `h` is outside the consumer's range until `head` moves.
        unsafe { (*self.buf.get())[h % 256] = b };
        self.head.store(h.wrapping_add(1), Ordering::Release);
        true
    }
    fn pop(&self) -> Option<u8> {
        let t = self.tail.load(Ordering::Relaxed);
        if t == self.head.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: slot `t` was published by the producer's `head` store.
        let b = unsafe { (*self.buf.get())[t % 256] };
        self.tail.store(t.wrapping_add(1), Ordering::Release);
        Some(b)
    }
    fn is_empty(&self) -> bool {
        self.tail.load(Ordering::Acquire) == self.head.load(Ordering::Acquire)
    }
}

static RX: Ring = Ring::new();
static TX: Ring = Ring::new();
static TX_BUSY: AtomicBool = AtomicBool::new(false);
static RX_IRQS: AtomicU64 = AtomicU64::new(0);
static THRE_IRQS: AtomicU64 = AtomicU64::new(0);
static RX_DROPPED: AtomicU64 = AtomicU64::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);
static BASE: AtomicU64 = AtomicU64::new(0);

fn base() -> u16 {
    BASE.load(Ordering::Relaxed) as u16
}

/// Sends the next queued byte, or marks the transmitter idle. Runs with interrupts off.
fn tx_next() {
    match TX.pop() {
        Some(b) => {
            TX_BUSY.store(true, Ordering::Relaxed);
            // SAFETY: THR is empty (THRE interrupt, or the transmitter was idle).
            unsafe { port::outb(base() + THR, b) };
        }
        None => TX_BUSY.store(false, Ordering::Relaxed),
    }
}

/// Serves the UART the way Linux's 8250 driver does: IIR says *that* the UART wants service,
/// LSR says what to do. (vm-superio ORs the cause bits into IIR — RX data and THR empty
/// pending together read as 0x06, which a real 16550 uses for "line status" — so decoding
/// the IIR ID alone would lose an RX interrupt.)
fn handler() {
    let b = base();
    // SAFETY: COM1 belongs to this experiment while it runs; reading IIR acknowledges the
    // THR-empty cause.
    let iir = unsafe { port::inb(b + IIR) };
    if iir & IIR_NONE != 0 {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: as above; reading LSR clears line-status errors only.
    let mut lsr = unsafe { port::inb(b + LSR) };
    if lsr & LSR_DR != 0 {
        RX_IRQS.fetch_add(1, Ordering::Relaxed);
        while lsr & LSR_DR != 0 {
            // SAFETY: as above; reading RBR pops the receive FIFO.
            let byte = unsafe { port::inb(b + RBR) };
            if !RX.push(byte) {
                RX_DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: as above.
            lsr = unsafe { port::inb(b + LSR) };
        }
    }
    if iir & IIR_THRE_BIT != 0 {
        THRE_IRQS.fetch_add(1, Ordering::Relaxed);
    }
    if lsr & LSR_THRE != 0 && TX_BUSY.load(Ordering::Relaxed) {
        tx_next();
    }
    if iir & IIR_ID_MASK == IIR_MODEM {
        // SAFETY: as above; reading MSR clears the modem-status cause.
        unsafe { port::inb(b + MSR) };
    }
}

fn send(bytes: &[u8]) {
    for &byte in bytes {
        while !TX.push(byte) {
            crate::cpu::sti_hlt();
        }
    }
    crate::cpu::cli();
    if !TX_BUSY.load(Ordering::Relaxed) {
        tx_next();
    }
    crate::cpu::sti();
}

/// Runs the experiment.
pub fn run(boot: &Boot) {
    let d = &boot.info.devices;
    BASE.store(d.uart_port.into(), Ordering::Relaxed);
    let level = boot.cmdline.get("trigger") == Some("level");
    let until = boot.cmdline.get("until").unwrap_or("quit");
    let max_lines = boot.cmdline.get_u64("lines", 0);
    interrupts::register(vectors::UART, handler);
    let io = IoApic::new(d.ioapic_base);
    io.route(
        d.uart_gsi,
        Route {
            vector: vectors::UART,
            dest: crate::apic::LAPIC.id(),
            logical: false,
            level,
            masked: false,
        },
    );
    crate::println!("echo: type lines; \"{}\" or end of input stops", until);
    // SAFETY: COM1 belongs to this experiment now; the console stays polled for output made
    // outside it, which the UART accepts at any time.
    unsafe {
        port::outb(d.uart_port + MCR, MCR_IRQ);
        port::outb(d.uart_port + IER, IER_RDA | IER_THRE);
    }
    let mut line = [0u8; 128];
    let mut len = 0usize;
    let (mut lines, mut bytes, mut echoed) = (0u64, 0u64, 0u64);
    let mut last_cr = false;
    let mut eot = false;
    'run: loop {
        crate::cpu::cli();
        while let Some(b) = RX.pop() {
            bytes += 1;
            match b {
                EOT => {
                    eot = true;
                    break 'run;
                }
                b'\n' if last_cr => {}
                b'\r' | b'\n' => {
                    send(b"\r\n");
                    lines += 1;
                    if &line[..len] == until.as_bytes() || (max_lines != 0 && lines >= max_lines) {
                        break 'run;
                    }
                    len = 0;
                }
                _ => {
                    send(&[b]);
                    echoed += 1;
                    if len < line.len() {
                        line[len] = b;
                        len += 1;
                    }
                }
            }
            last_cr = b == b'\r';
            crate::cpu::cli();
        }
        crate::cpu::sti_hlt();
    }
    crate::cpu::sti();
    let drained = wait_until(boot, 1000, true, || {
        TX.is_empty() && !TX_BUSY.load(Ordering::Relaxed)
    });
    // SAFETY: back to the polled console.
    unsafe { port::outb(d.uart_port + IER, 0) };
    io.mask(d.uart_gsi);
    interrupts::unregister(vectors::UART);
    let (rx, thre, dropped) = (
        RX_IRQS.load(Ordering::Relaxed),
        THRE_IRQS.load(Ordering::Relaxed),
        RX_DROPPED.load(Ordering::Relaxed),
    );
    crate::check!(
        drained && dropped == 0 && (bytes == 0 || (rx > 0 && (echoed == 0 || thre > 0))),
        "uart-echo",
        "{} lines, {} bytes in, {} echoed; {} RX and {} THRE interrupts ({}), {} dropped, ended by {}",
        Dec(lines),
        Dec(bytes),
        Dec(echoed),
        Dec(rx),
        Dec(thre),
        if level { "level" } else { "edge" },
        Dec(dropped),
        if eot { "end of input" } else { "line" }
    );
}
