//! The Intel MultiProcessor Specification 1.4 table: how a kernel without ACPI (Linux through
//! the 64-bit boot protocol or PVH) learns the CPUs' APIC IDs, the IO-APIC's address and how
//! the ISA IRQs reach its pins.
//!
//! irqlab's wiring, as both interrupt models implement it: ISA IRQ 0 (the PIT) → IO-APIC pin 2,
//! every other ISA IRQ n → pin n (IRQ 2 is the cascade and has no entry); LINT0 = ExtINT and
//! LINT1 = NMI on every local APIC. The table sits in the last KiB of conventional memory
//! (0x9fc00), one of the places the spec tells an OS to scan, outside the RAM irqlab reports.

use super::BootError;
use irqlab_abi::layout::{IOAPIC_BASE, LAPIC_BASE};
use vm_memory::{Bytes, GuestAddress};

/// Where the floating pointer structure goes; the configuration table follows it.
pub const MPTABLE_START: u64 = 0x9_fc00;
/// The table must fit in the 1 KiB before the legacy video hole.
const MPTABLE_MAX: usize = 0x400;

const MP_PROCESSOR: u8 = 0;
const MP_BUS: u8 = 1;
const MP_IOAPIC: u8 = 2;
const MP_INTSRC: u8 = 3;
const MP_LINTSRC: u8 = 4;
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Family 6 in the CPU signature; FPU and APIC in the feature flags.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const ISA_BUS: u8 = 0;
const ALL_LAPICS: u8 = 0xff;

/// Byte that makes `bytes` sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |s, b| s.wrapping_add(*b))
        .wrapping_neg()
}

/// Builds the floating pointer + configuration table for `vcpus` CPUs (APIC IDs 0..vcpus),
/// as it sits at [`MPTABLE_START`].
pub fn build(vcpus: u8) -> Vec<u8> {
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    for id in 0..vcpus {
        entries.extend_from_slice(&[MP_PROCESSOR, id, APIC_VERSION]);
        entries.push(CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 });
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[MP_BUS, ISA_BUS]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[MP_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_BASE as u32).to_le_bytes());
    let mut count = u16::from(vcpus) + 2;
    for irq in (0..16u8).filter(|&i| i != 2) {
        let pin = if irq == 0 { 2 } else { irq };
        // Flags 0: polarity and trigger mode conform to the bus (ISA: active high, edge).
        entries.extend_from_slice(&[MP_INTSRC, INT_VECTORED, 0, 0, ISA_BUS, irq, ioapic_id, pin]);
        count += 1;
    }
    for (kind, lint) in [(INT_EXTINT, 0), (INT_NMI, 1)] {
        entries.extend_from_slice(&[MP_LINTSRC, kind, 0, 0, ISA_BUS, 0, ALL_LAPICS, lint]);
        count += 1;
    }

    let table_at = MPTABLE_START as u32 + 16;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[4, 0]); // spec 1.4, checksum below
    table.extend_from_slice(b"IRQLAB  ");
    table.extend_from_slice(b"KVM LAB     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // no OEM table
    table.extend_from_slice(&0u16.to_le_bytes());
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(LAPIC_BASE as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]); // no extended table
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(16 + table.len());
    mpf.extend_from_slice(b"_MP_");
    mpf.extend_from_slice(&table_at.to_le_bytes());
    mpf.extend_from_slice(&[1, 4, 0]); // 16 bytes long, spec 1.4, checksum below
    mpf.extend_from_slice(&[0; 5]); // feature byte 1 = 0: the configuration table is present
    mpf[10] = checksum(&mpf);
    mpf.extend_from_slice(&table);
    mpf
}

/// Writes the table for `vcpus` CPUs into guest memory.
pub fn write(mem: &crate::memory::GuestMemory, vcpus: u8) -> Result<(), BootError> {
    let bytes = build(vcpus);
    // 254 vCPUs fit (20 bytes each); the config layer allows far fewer.
    debug_assert!(bytes.len() <= MPTABLE_MAX, "{} bytes", bytes.len());
    let bytes = &bytes[..bytes.len().min(MPTABLE_MAX)];
    mem.write_slice(bytes, GuestAddress(MPTABLE_START))
        .map_err(|source| BootError::Memory {
            what: "MP table",
            addr: MPTABLE_START,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the table the way an OS does; returns (APIC IDs, (ISA IRQ, pin) pairs).
    fn parse(b: &[u8]) -> (Vec<u8>, Vec<(u8, u8)>) {
        assert_eq!(&b[..4], b"_MP_");
        assert_eq!(b[8], 1);
        assert_eq!(checksum(&b[..16]), 0, "floating pointer checksum");
        let at = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize - MPTABLE_START as usize;
        let t = &b[at..];
        assert_eq!(&t[..4], b"PCMP");
        let len = u16::from_le_bytes([t[4], t[5]]) as usize;
        assert_eq!(checksum(&t[..len]), 0, "table checksum");
        let count = u16::from_le_bytes([t[34], t[35]]);
        let (mut cpus, mut irqs, mut o) = (vec![], vec![], 44);
        for _ in 0..count {
            match t[o] {
                MP_PROCESSOR => {
                    cpus.push(t[o + 1]);
                    o += 20;
                }
                MP_INTSRC => {
                    irqs.push((t[o + 5], t[o + 7]));
                    o += 8;
                }
                _ => o += 8,
            }
        }
        assert_eq!(o, len, "entry count and length agree");
        (cpus, irqs)
    }

    #[test]
    fn the_table_lists_cpus_and_the_isa_wiring() {
        for vcpus in [1, 2, 8] {
            let (cpus, irqs) = parse(&build(vcpus));
            assert_eq!(cpus, (0..vcpus).collect::<Vec<_>>());
            assert_eq!(irqs.len(), 15);
            assert!(irqs.contains(&(0, 2)), "the PIT on pin 2");
            assert!(irqs.contains(&(4, 4)), "COM1 on pin 4");
            assert!(!irqs.iter().any(|&(irq, _)| irq == 2));
        }
    }

    #[test]
    fn the_largest_machine_fits_below_the_video_hole() {
        assert!(build(crate::config::VCPUS_MAX).len() <= MPTABLE_MAX);
    }
}
