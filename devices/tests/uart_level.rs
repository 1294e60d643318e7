//! The UART's interrupt pin wired to an IO-APIC pin, driven through the sequences a guest
//! driver performs. Regression test for issue 17's level-triggered data loss: a byte that
//! arrives after the handler's last LSR read but before its EOI must still be delivered.

use irqlab_devices::ioapic::{IoApic, IOREDTBL_BASE, IOREGSEL_OFFSET, IOWIN_OFFSET};
use irqlab_devices::uart::Uart;
use irqlab_devices::{BusDevice, IrqLine, MsiMessage, MsiOutcome, MsiSink};
use std::sync::{Arc, Mutex};

const PIN: usize = 4;
const VECTOR: u8 = 0x24;
const RBR: u64 = 0;
const IER: u64 = 1;
const IIR: u64 = 2;
const LSR: u64 = 5;

#[derive(Default)]
struct Count(Mutex<u32>);
impl MsiSink for Count {
    fn send(&self, _msg: MsiMessage) -> MsiOutcome {
        *self.0.lock().unwrap() += 1;
        MsiOutcome::Delivered
    }
}

/// IO-APIC input `PIN`, as the VMM wires COM1.
struct Pin(Arc<Mutex<IoApic>>);
impl IrqLine for Pin {
    fn set_level(&self, level: bool) {
        self.0.lock().unwrap().set_irq(PIN, level);
    }
}

struct Board {
    msis: Arc<Count>,
    ioapic: Arc<Mutex<IoApic>>,
    uart: Uart<Vec<u8>>,
}

impl Board {
    fn new(level: bool) -> Board {
        let msis = Arc::new(Count::default());
        let ioapic = Arc::new(Mutex::new(IoApic::new(msis.clone())));
        {
            let mut io = ioapic.lock().unwrap();
            let entry = u32::from(VECTOR) | (u32::from(level) << 15);
            io.write(IOREGSEL_OFFSET, &[IOREDTBL_BASE + 2 * PIN as u8]);
            io.write(IOWIN_OFFSET, &entry.to_le_bytes());
        }
        let mut uart = Uart::new(Arc::new(Pin(ioapic.clone())), Vec::new());
        uart.write(IER, &[0x01]); // received data available
        Board { msis, ioapic, uart }
    }

    fn msis(&self) -> u32 {
        *self.msis.0.lock().unwrap()
    }

    fn reg(&mut self, r: u64) -> u8 {
        let mut b = [0u8];
        self.uart.read(r, &mut b);
        b[0]
    }

    /// What the guest's handler does (Linux's 8250 does the same): IIR, then RBR while LSR
    /// says data ready. Returns the bytes read.
    fn handler(&mut self) -> Vec<u8> {
        self.reg(IIR);
        let mut got = Vec::new();
        while self.reg(LSR) & 1 != 0 {
            got.push(self.reg(RBR));
        }
        got
    }

    fn eoi(&self) {
        self.ioapic.lock().unwrap().end_of_interrupt(VECTOR);
    }
}

fn byte_between_last_read_and_eoi_is_delivered(level: bool) {
    let mut b = Board::new(level);
    assert_eq!(b.uart.receive(b"a"), 1);
    assert_eq!(b.msis(), 1, "first byte raises the interrupt");
    let mut got = b.handler();
    // The race: the next byte lands after the handler's last LSR read, before its EOI.
    assert_eq!(b.uart.receive(b"b"), 1);
    b.eoi();
    assert_eq!(
        b.msis(),
        2,
        "the byte that arrived before the EOI must raise the interrupt again"
    );
    got.extend(b.handler());
    b.eoi();
    assert_eq!(got, b"ab");
    assert_eq!(b.msis(), 2, "nothing pending: no further interrupt");
}

#[test]
fn level_triggered_byte_between_last_read_and_eoi_is_delivered() {
    byte_between_last_read_and_eoi_is_delivered(true);
}

#[test]
fn edge_triggered_byte_between_last_read_and_eoi_is_delivered() {
    byte_between_last_read_and_eoi_is_delivered(false);
}

#[test]
fn level_pin_stays_asserted_until_the_fifo_is_drained() {
    let mut b = Board::new(true);
    b.uart.receive(b"xyz");
    assert_eq!(b.msis(), 1);
    // The handler reads only one byte, then EOIs: the line is still up, so the IO-APIC
    // delivers again (a 16550 holds INTR while data is ready).
    b.reg(IIR);
    assert_eq!(b.reg(RBR), b'x');
    b.eoi();
    assert_eq!(b.msis(), 2);
    assert_eq!(b.handler(), b"yz");
    b.eoi();
    assert_eq!(b.msis(), 2);
}

#[test]
fn thr_empty_interrupt_is_a_level_cleared_by_reading_iir() {
    let mut b = Board::new(true);
    b.uart.write(IER, &[0x02]); // THR empty only: pending at once (THR is empty)
    assert_eq!(b.msis(), 1);
    b.eoi();
    assert_eq!(b.msis(), 2, "not acknowledged yet: still asserted at EOI");
    b.reg(IIR); // acknowledges the THR-empty cause
    b.eoi();
    assert_eq!(b.msis(), 2);
    b.uart.write(RBR, b"!"); // THR written: empty again at once, cause pending
    assert_eq!(b.msis(), 3);
}
