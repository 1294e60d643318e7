//! The boot GDT (at `layout::BOOT_GDT`): null, 64-bit kernel code, kernel data, and a TSS
//! descriptor (KVM on VMX needs a usable TR at entry). The guest replaces it with its own.

use super::BootError;
use irqlab_abi::layout::{BOOT_CS, BOOT_DS, BOOT_GDT, BOOT_TSS};
use irqlab_x86::segment::{self, Ring};
use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress};

/// The boot GDT's entries.
pub fn entries() -> [u64; 5] {
    let [tss_low, tss_high] = segment::tss64(0, 0x67, segment::SYSTEM_TYPE_TSS_BUSY);
    [
        0,
        segment::code64(Ring::Ring0),
        segment::data(Ring::Ring0),
        tss_low,
        tss_high,
    ]
}

/// Writes the GDT into guest memory; returns its limit.
pub fn write(mem: &crate::memory::GuestMemory) -> Result<u16, BootError> {
    let table = entries();
    for (i, e) in table.iter().enumerate() {
        let addr = BOOT_GDT + 8 * i as u64;
        mem.write_obj(*e, GuestAddress(addr))
            .map_err(|source| BootError::Memory {
                what: "boot GDT",
                addr,
                source,
            })?;
    }
    Ok((table.len() * 8 - 1) as u16)
}

/// The `kvm_segment` KVM wants for the GDT entry selected by `selector`: KVM loads the hidden
/// part of each segment register from this, not from guest memory.
pub fn kvm_segment_for(selector: u16) -> kvm_segment {
    kvm_segment_in(&entries(), selector)
}

/// The `kvm_segment` for `selector` in any descriptor table (`table[selector >> 3]`).
pub fn kvm_segment_in(table: &[u64], selector: u16) -> kvm_segment {
    let d = segment::decode(table[(selector >> 3) as usize]);
    kvm_segment {
        base: d.base,
        limit: d.limit,
        selector,
        type_: d.type_,
        present: d.present,
        dpl: d.dpl,
        db: d.db,
        s: d.s,
        l: d.l,
        g: d.g,
        avl: d.avl,
        unusable: u8::from(d.present == 0),
        padding: 0,
    }
}

/// Code, data and task register segments for entry.
pub fn entry_segments() -> (kvm_segment, kvm_segment, kvm_segment) {
    (
        kvm_segment_for(BOOT_CS),
        kvm_segment_for(BOOT_DS),
        kvm_segment_for(BOOT_TSS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_64_bit_ring_0() {
        let cs = kvm_segment_for(BOOT_CS);
        assert_eq!(
            (cs.l, cs.db, cs.dpl, cs.s, cs.present, cs.type_),
            (1, 0, 0, 1, 1, 0xb)
        );
        let ds = kvm_segment_for(BOOT_DS);
        assert_eq!((ds.l, ds.db, ds.type_, ds.limit), (0, 1, 3, 0xffff_ffff));
        let tr = kvm_segment_for(BOOT_TSS);
        assert_eq!((tr.s, tr.type_, tr.limit, tr.present), (0, 0xb, 0x67, 1));
    }
}
