//! Interrupt vectors both sides of the ABI name.
//!
//! The VMM writes [`POSTED_NOTIFICATION`] into every posted-interrupt descriptor; the irqlab
//! guest routes the PIT to [`PIT`] and the MSI source device to [`MSI`], and the host's
//! integration tests and trace pairing read those numbers back out of the guest's console
//! output (`interrupts: 0x30 …`) and trace records. Vectors only the guest uses (its LAPIC
//! timer, UART, wake-up timer, spurious and system call vectors) live in the guest's own
//! `vectors` module, which re-exports these so the guest has one table to read.

/// The PIT (IO-APIC pin 2), as the irqlab guest routes it.
pub const PIT: u8 = 0x30;
/// The MSI source device (`msi_source`), as the irqlab guest programs it.
pub const MSI: u8 = 0x40;
/// The posted-interrupt notification vector: Linux's `POSTED_MSI_NOTIFICATION_VECTOR`, and
/// irqlab's default NV (`posted::DEFAULT_NV`).
pub const POSTED_NOTIFICATION: u8 = 0xeb;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_external_interrupts_and_distinct() {
        let all = [PIT, MSI, POSTED_NOTIFICATION];
        for (i, v) in all.iter().enumerate() {
            // 0–31 are the CPU's exceptions; fixed delivery below 16 is illegal.
            assert!(*v >= 32);
            assert!(!all[i + 1..].contains(v));
        }
    }
}
