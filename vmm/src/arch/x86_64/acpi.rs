//! ACPI tables (built with rust-vmm's `acpi_tables`): how a kernel that relies on ACPI rather
//! than MP tables (Debian's cloud kernels are built without `CONFIG_X86_MPPARSE`) finds the
//! CPUs, the IO-APIC and the ISA IRQ wiring.
//!
//! A hardware-reduced ACPI machine (no PM timer, no SCI, no fixed-feature registers): RSDP →
//! XSDT → FADT (→ an empty DSDT) and MADT. The MADT says what the MP table says: one local APIC
//! per vCPU, the IO-APIC at `IOAPIC_BASE`, ISA IRQ 0 → GSI 2 (an interrupt source override;
//! every other ISA IRQ is identity-mapped), LINT1 = NMI. The tables sit in the BIOS area at
//! 0xe0000, where an OS also finds the RSDP by scanning; the boot protocols pass its address too.

use super::BootError;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use irqlab_abi::layout::{IOAPIC_BASE, LAPIC_BASE};
use vm_memory::{Bytes, GuestAddress};
use zerocopy::{Immutable, IntoBytes};

/// The RSDP's address; the other tables follow it.
pub const RSDP_ADDR: u64 = 0xe_0000;
/// End of the BIOS area the tables must fit in.
const TABLES_END: u64 = 0x10_0000;
const OEM_ID: [u8; 6] = *b"IRQLAB";
const OEM_TABLE_ID: [u8; 8] = *b"KVM LAB ";
const OEM_REVISION: u32 = 1;
/// FADT IA-PC boot architecture flags: no VGA (bit 2), no CMOS RTC (bit 5).
const IAPC_BOOT_ARCH: u16 = (1 << 2) | (1 << 5);

/// MADT interrupt source override (type 2): ISA `source` arrives at `gsi`.
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    kind: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: u32,
    flags: u16,
}

/// MADT local APIC NMI (type 4): which LINT pin of which processors carries NMI.
#[repr(C, packed)]
#[derive(Clone, Copy, IntoBytes, Immutable)]
struct LocalApicNmi {
    kind: u8,
    length: u8,
    processor_uid: u8,
    flags: u16,
    lint: u8,
}

impl Aml for InterruptSourceOverride {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

impl Aml for LocalApicNmi {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(self.as_bytes());
    }
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// The MADT for `vcpus` CPUs (APIC IDs 0..vcpus) and the IO-APIC with ID `vcpus`.
fn madt(vcpus: u8) -> MADT {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_BASE as u32),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus, IOAPIC_BASE as u32, 0));
    madt.add_structure(InterruptSourceOverride {
        kind: 2,
        length: 10,
        bus: 0,
        source: 0,
        gsi: 2,
        flags: 0, // conforms to the bus: ISA edge, active high
    });
    madt.add_structure(LocalApicNmi {
        kind: 4,
        length: 6,
        processor_uid: 0xff, // all processors
        flags: 0,
        lint: 1,
    });
    madt
}

/// The tables as laid out from [`RSDP_ADDR`]: (address, bytes) pairs.
pub fn build(vcpus: u8) -> Vec<(u64, Vec<u8>)> {
    let align = |a: u64| a.next_multiple_of(16);
    let xsdt_at = align(RSDP_ADDR + Rsdp::len() as u64);
    // The XSDT names two tables: 36-byte header + 2 × 8.
    let dsdt_at = align(xsdt_at + 36 + 16);
    let dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let fadt_at = align(dsdt_at + dsdt.len() as u64);
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_at)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    let fadt = bytes(&fadt.finalize());
    let madt_at = align(fadt_at + fadt.len() as u64);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    vec![
        (RSDP_ADDR, bytes(&Rsdp::new(OEM_ID, xsdt_at))),
        (xsdt_at, bytes(&xsdt)),
        (dsdt_at, dsdt.as_slice().to_vec()),
        (fadt_at, fadt),
        (madt_at, bytes(&madt(vcpus))),
    ]
}

/// Writes the tables for `vcpus` CPUs; returns the RSDP's address.
pub fn write(mem: &crate::memory::GuestMemory, vcpus: u8) -> Result<u64, BootError> {
    for (addr, table) in build(vcpus) {
        debug_assert!(addr + table.len() as u64 <= TABLES_END);
        mem.write_slice(&table, GuestAddress(addr))
            .map_err(|source| BootError::Memory {
                what: "ACPI tables",
                addr,
                source,
            })?;
    }
    Ok(RSDP_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn tables_link_up_and_checksum() {
        let tables = build(2);
        let at = |addr: u64| &tables.iter().find(|t| t.0 == addr).unwrap().1;
        let rsdp = at(RSDP_ADDR);
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        let xsdt_at = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let xsdt = at(xsdt_at);
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(sum(xsdt), 0);
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let signatures: Vec<&[u8]> = entries.iter().map(|&a| &at(a)[..4]).collect();
        assert_eq!(signatures, [b"FACP".as_slice(), b"APIC".as_slice()]);
        for &a in &entries {
            let t = at(a);
            assert_eq!(le32(t, 4) as usize, t.len(), "length field");
            assert_eq!(sum(t), 0, "checksum of {:?}", &t[..4]);
        }
        // FADT → DSDT (X_DSDT at offset 140), hardware-reduced (flag bit 20 at offset 112).
        let fadt = at(entries[0]);
        let dsdt_at = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        assert_eq!(&at(dsdt_at)[..4], b"DSDT");
        assert_ne!(le32(fadt, 112) & (1 << 20), 0);
        let end = tables
            .iter()
            .map(|(a, t)| a + t.len() as u64)
            .max()
            .unwrap();
        assert!(end <= TABLES_END);
    }

    #[test]
    fn the_madt_lists_cpus_ioapic_and_the_pit_override() {
        let madt = bytes(&madt(3));
        assert_eq!(le32(&madt, 36), LAPIC_BASE as u32);
        let (mut o, mut cpus, mut ioapic, mut overrides) = (44, vec![], None, vec![]);
        while o < madt.len() {
            let (kind, len) = (madt[o], madt[o + 1] as usize);
            match kind {
                0 => cpus.push(madt[o + 3]),
                1 => ioapic = Some((madt[o + 2], le32(&madt, o + 4))),
                2 => overrides.push((madt[o + 3], le32(&madt, o + 4))),
                _ => {}
            }
            o += len;
        }
        assert_eq!(o, madt.len());
        assert_eq!(cpus, [0, 1, 2]);
        assert_eq!(ioapic, Some((3, IOAPIC_BASE as u32)));
        assert_eq!(overrides, [(0, 2)]);
    }
}
