//! The legacy 8259 PICs: masked, always. KVM points the boot CPU's LINT0 at ExtINT, so an
//! unmasked in-kernel PIC would deliver ISA IRQ 0 at whatever vector it was left at (0).
//! With a split irqchip there is no PIC and these writes go nowhere.

use crate::port;
use irqlab_abi::ports::{PIC_MASTER, PIC_SLAVE};

/// Masks every input of both PICs (OCW1 = 0xff).
pub fn mask_all() {
    // SAFETY: writing the interrupt mask registers only masks inputs.
    unsafe {
        port::outb(PIC_MASTER + 1, 0xff);
        port::outb(PIC_SLAVE + 1, 0xff);
    }
}
