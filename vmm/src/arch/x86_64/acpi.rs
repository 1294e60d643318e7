//! ACPI tables (built with rust-vmm's `acpi_tables`): how a kernel that relies on ACPI rather
//! than MP tables (Debian's cloud kernels are built without `CONFIG_X86_MPPARSE`) finds the
//! CPUs, the IO-APIC and the ISA IRQ wiring.
//!
//! RSDP → XSDT → FADT (→ DSDT) and MADT, describing a PC with the ISA interrupt model:
//!
//! * **FADT: fixed hardware, not hardware-reduced.** A hardware-reduced FADT makes Linux drop
//!   the legacy PIC model (`null_legacy_pic`), so no ISA IRQs 0–15 exist and the 8250 driver
//!   finds no IRQ for COM1 (issue 17: userspace console writes returned EIO). So the FADT
//!   describes the fixed hardware irqlab has: PM1a event and control blocks at
//!   `PM1A_EVT`/`PM1A_CNT` (ACPI mode always on: no SMI command port), the SCI on ISA IRQ 9,
//!   no PM timer, and the reset register (port 0xcf9, value 0x06; `RESET_REG_SUP`).
//! * **DSDT: COM1** as a PNP0501 device with its ports and ISA IRQ 4, so the kernel's
//!   ACPI/PNP layer knows the UART's resources.
//! * **MADT**: what the MP table says: one local APIC per vCPU, the IO-APIC at `IOAPIC_BASE`,
//!   ISA IRQ 0 → GSI 2 and the SCI (IRQ 9) level-triggered active-high (interrupt source
//!   overrides; every other ISA IRQ is identity-mapped, edge, active high), LINT1 = NMI.
//!
//! The tables sit in the BIOS area at 0xe0000, where an OS also finds the RSDP by scanning;
//! the boot protocols pass its address too.

use super::BootError;
use acpi_tables::aml::{Device, EISAName, Interrupt, Name, Path, ResourceTemplate, IO};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{Aml, AmlSink};
use irqlab_abi::layout::{IOAPIC_BASE, LAPIC_BASE};
use irqlab_abi::ports;
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
    // The SCI: level-triggered (bits 3:2 = 11), active high (bits 1:0 = 01), as on QEMU's PC.
    // Left at "conforms", ACPI's SCI default would be active low, and an idle (low) line
    // would then read as asserted.
    madt.add_structure(InterruptSourceOverride {
        kind: 2,
        length: 10,
        bus: 0,
        source: ports::SCI_IRQ,
        gsi: ports::SCI_IRQ.into(),
        flags: 0b1101,
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

/// The DSDT: COM1 (PNP0501) with its eight ports and ISA IRQ 4 (edge, active high).
fn dsdt() -> Sdt {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let io = IO::new(ports::COM1, ports::COM1, 1, 8);
    let irq = Interrupt::new(true, true, false, false, ports::COM1_GSI.into());
    let crs = ResourceTemplate::new(vec![&io, &irq]);
    let hid = EISAName::new("PNP0501");
    let (name_hid, name_uid, name_crs) = (
        Name::new("_HID".into(), &hid),
        Name::new("_UID".into(), &1u8),
        Name::new("_CRS".into(), &crs),
    );
    let com1 = Device::new(
        Path::new("_SB_.COM1"),
        vec![&name_hid, &name_uid, &name_crs],
    );
    let mut aml = Vec::new();
    com1.to_aml_bytes(&mut aml);
    dsdt.append_slice(&aml);
    dsdt
}

/// The FADT: fixed hardware (PM1a blocks, SCI on IRQ 9, no PM timer), ACPI mode always on,
/// the reset register at port 0xcf9.
fn fadt(dsdt_at: u64) -> FADTBuilder {
    let io = |width_bytes: u8, port: u16| {
        let size = match width_bytes {
            1 => AccessSize::ByteAccess,
            2 => AccessSize::WordAccess,
            _ => AccessSize::DwordAccess,
        };
        GAS::new(
            AddressSpace::SystemIo,
            width_bytes * 8,
            0,
            size,
            port.into(),
        )
    };
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_at)
        .flag(Flags::Wbinvd)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.sci_int = u16::from(ports::SCI_IRQ).into();
    // SMI_CMD = 0: the platform is always in ACPI mode (PM1_CNT.SCI_EN reads 1).
    fadt.pm1a_evt_blk = u32::from(ports::PM1A_EVT).into();
    fadt.pm1_evt_len = 4;
    fadt.x_pm1a_evt_blk = io(4, ports::PM1A_EVT);
    fadt.pm1a_cnt_blk = u32::from(ports::PM1A_CNT).into();
    fadt.pm1_cnt_len = 2;
    fadt.x_pm1a_cnt_blk = io(2, ports::PM1A_CNT);
    fadt.reset_reg = io(1, ports::RESET_CONTROL);
    fadt.reset_value = ports::RESET_VALUE;
    fadt
}

/// The tables as laid out from [`RSDP_ADDR`]: (address, bytes) pairs.
pub fn build(vcpus: u8) -> Vec<(u64, Vec<u8>)> {
    let align = |a: u64| a.next_multiple_of(16);
    let xsdt_at = align(RSDP_ADDR + Rsdp::len() as u64);
    // The XSDT names two tables: 36-byte header + 2 × 8.
    let dsdt_at = align(xsdt_at + 36 + 16);
    let dsdt = dsdt();
    let fadt_at = align(dsdt_at + dsdt.len() as u64);
    let fadt = bytes(&fadt(dsdt_at).finalize());
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
        // FADT → DSDT (X_DSDT at offset 140); not hardware-reduced (flag bit 20 at offset
        // 112), so Linux keeps the ISA IRQ model; the reset register is supported (bit 10).
        let fadt = at(entries[0]);
        let dsdt_at = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let dsdt = at(dsdt_at);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(le32(dsdt, 4) as usize, dsdt.len());
        assert_eq!(sum(dsdt), 0);
        let flags = le32(fadt, 112);
        assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        // SCI_INT (46), SMI_CMD (48) = 0, PM1a_EVT_BLK (56), PM1a_CNT_BLK (64), lengths (88, 89).
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9);
        assert_eq!(le32(fadt, 48), 0, "always in ACPI mode");
        assert_eq!(le32(fadt, 56), 0x600);
        assert_eq!(le32(fadt, 64), 0x604);
        assert_eq!((fadt[88], fadt[89]), (4, 2));
        // RESET_REG (116): system I/O, 8 bits, port 0xcf9; RESET_VALUE (128) 6.
        assert_eq!((fadt[116], fadt[117]), (1, 8));
        assert_eq!(
            u64::from_le_bytes(fadt[120..128].try_into().unwrap()),
            0xcf9
        );
        assert_eq!(fadt[128], 6);
        // COM1 in the DSDT: Device (COM1), _HID EISAID("PNP0501") = 41 d0 05 01, IO 0x3f8
        // (descriptor 0x47, decode 16, min, max), extended IRQ 4.
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"COM1"));
        assert!(has(&[0x0c, 0x41, 0xd0, 0x05, 0x01]), "_HID PNP0501");
        assert!(
            has(&[0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08]),
            "IO 0x3f8/8"
        );
        assert!(
            has(&[0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0, 0, 0]),
            "IRQ 4 edge high"
        );
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
        assert_eq!(overrides, [(0, 2), (9, 9)]);
    }
}
