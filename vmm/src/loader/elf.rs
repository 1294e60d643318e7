//! irqlab-native boot: a static ELF64 x86-64 executable, loaded at its physical addresses
//! with linux-loader and entered in long mode.
//!
//! linux-loader checks the magic, byte order and program-header size; irqlab first checks
//! everything else a user can get wrong (class, machine, type, where each segment lands) so
//! each mistake gets its own one-line error naming the image and the address.

use super::{KernelImage, LoadedKernel};
use irqlab_abi::layout::KERNEL_MIN_ADDR;
use linux_loader::loader::{Elf, KernelLoader};
use std::io::Cursor;

const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

pub use super::LoadError;

// Header fields are read only after the length checks; a short read yields 0, which every
// check below rejects.
fn u16_at(b: &[u8], at: usize) -> u16 {
    super::le_u16(b, at).unwrap_or(0)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    super::le_u32(b, at).unwrap_or(0)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    super::le_u64(b, at).unwrap_or(0)
}

/// One PT_LOAD segment, as checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical load address.
    pub paddr: u64,
    /// Bytes in memory.
    pub memsz: u64,
}

/// Checks an ELF image against guest memory of `mem_size` bytes, returning the entry point
/// and the loadable segments.
pub fn validate(image: &KernelImage, mem_size: u64) -> Result<(u64, Vec<Segment>), LoadError> {
    let name = || image.name.clone();
    let unsupported = |problem: String| LoadError::Unsupported {
        name: image.name.clone(),
        problem,
    };
    let b = &image.bytes[..];
    if b.len() < 4 || &b[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf {
            name: name(),
            magic: b[..b.len().min(4)].to_vec(),
        });
    }
    if b.len() < EHDR_SIZE {
        return Err(unsupported(format!(
            "truncated ELF header ({} bytes, need {EHDR_SIZE})",
            b.len()
        )));
    }
    match b[4] {
        2 => {}
        1 => {
            return Err(unsupported(
                "32-bit ELF (ELFCLASS32) without a Multiboot header; irqlab boots ELF64 (native or PVH entry) and Multiboot v1 kernels".into(),
            ))
        }
        c => return Err(unsupported(format!("unknown ELF class {c}"))),
    }
    if b[5] != 1 {
        return Err(unsupported(
            "big-endian ELF; x86-64 kernels are little-endian".into(),
        ));
    }
    let machine = u16_at(b, 18);
    if machine != EM_X86_64 {
        return Err(unsupported(format!(
            "ELF for machine {machine} ({}), not x86-64 (62)",
            machine_name(machine)
        )));
    }
    let e_type = u16_at(b, 16);
    if e_type != ET_EXEC {
        return Err(unsupported(format!(
            "ELF type {e_type} is not a static executable (ET_EXEC = 2); link with -static and a fixed load address"
        )));
    }
    let entry = u64_at(b, 24);
    let phoff = u64_at(b, 32);
    let phentsize = u16_at(b, 54) as usize;
    let phnum = u16_at(b, 56) as usize;
    if phentsize != PHDR_SIZE {
        return Err(unsupported(format!(
            "program header size {phentsize}, expected {PHDR_SIZE}"
        )));
    }
    let ph_end = (phoff as usize)
        .checked_add(phnum * PHDR_SIZE)
        .filter(|end| *end <= b.len() && phoff as usize >= EHDR_SIZE);
    if ph_end.is_none() {
        return Err(unsupported(format!(
            "program headers at offset {phoff:#x} ({phnum} entries) lie outside the {}-byte file",
            b.len()
        )));
    }
    let mut segments = Vec::new();
    for index in 0..phnum {
        let ph = &b[phoff as usize + index * PHDR_SIZE..][..PHDR_SIZE];
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let (offset, paddr, filesz, memsz) = (
            u64_at(ph, 8),
            u64_at(ph, 24),
            u64_at(ph, 32),
            u64_at(ph, 40),
        );
        let segment_error = |problem: String| LoadError::Segment {
            name: name(),
            index,
            start: paddr,
            end: paddr.saturating_add(memsz),
            problem,
        };
        if offset
            .checked_add(filesz)
            .is_none_or(|e| e > b.len() as u64)
        {
            return Err(segment_error(format!(
                "its {filesz} file bytes at offset {offset:#x} lie outside the {}-byte file",
                b.len()
            )));
        }
        if filesz > memsz {
            return Err(segment_error(format!(
                "p_filesz ({filesz:#x}) exceeds p_memsz ({memsz:#x})"
            )));
        }
        let end = paddr.checked_add(memsz);
        if paddr < KERNEL_MIN_ADDR {
            return Err(segment_error(format!(
                "addresses below {KERNEL_MIN_ADDR:#x} are reserved for irqlab's boot structures"
            )));
        }
        if end.is_none_or(|e| e > mem_size) {
            return Err(segment_error(format!(
                "guest memory ends at {mem_size:#x} ({} MiB); raise mem_mib",
                mem_size >> 20
            )));
        }
        segments.push(Segment { paddr, memsz });
    }
    if segments.is_empty() {
        return Err(unsupported("no PT_LOAD segments".into()));
    }
    if !segments
        .iter()
        .any(|s| entry >= s.paddr && entry < s.paddr + s.memsz)
    {
        return Err(unsupported(format!(
            "entry point {entry:#x} is not inside any loaded segment"
        )));
    }
    Ok((entry, segments))
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "i386",
        40 => "ARM",
        62 => "x86-64",
        183 => "AArch64",
        243 => "RISC-V",
        _ => "unknown",
    }
}

/// Validates and loads an ELF64 kernel into guest memory.
pub fn load(
    image: &KernelImage,
    mem: &crate::memory::GuestMemory,
    mem_size: u64,
) -> Result<LoadedKernel, LoadError> {
    let (entry, segments) = validate(image, mem_size)?;
    let mut cursor = Cursor::new(&image.bytes[..]);
    let loaded = Elf::load(mem, None, &mut cursor, None).map_err(|source| LoadError::Loader {
        name: image.name.clone(),
        source,
    })?;
    let pvh_entry = match loaded.pvh_boot_cap {
        linux_loader::loader::elf::PvhBootCapability::PvhEntryPresent(a) => Some(a.0),
        _ => None,
    };
    let start = segments.iter().map(|s| s.paddr).min().unwrap_or(entry);
    let end = segments
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .unwrap_or(entry);
    Ok(LoadedKernel {
        entry,
        start,
        end,
        pvh_entry,
        notes: notes(&image.bytes),
    })
}

/// The ELF notes irqlab acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// Note `"irqlab"`, type 1: the image implements irqlab's boot ABI (native entry).
    pub irqlab: bool,
    /// Any note owned by `"Linux"` (every vmlinux since 2.6 has one): a Linux kernel, entered
    /// through the 64-bit boot protocol.
    pub linux: bool,
    /// Note `"Xen"`, type 18 (`XEN_ELFNOTE_PHYS32_ENTRY`): a PVH entry point. (Its address
    /// comes from linux-loader when the image is loaded: [`LoadedKernel::pvh_entry`].)
    pub pvh: bool,
}

/// Scans the PT_NOTE segments. Malformed notes are simply not found.
pub fn notes(b: &[u8]) -> Notes {
    use super::{le_u16, le_u32, le_u64};
    let u32_at = |o: usize| le_u32(b, o);
    let u64_at = |o: usize| le_u64(b, o);
    let mut found = Notes::default();
    let (Some(phoff), Some(phnum)) = (u64_at(32), le_u16(b, 56)) else {
        return found;
    };
    for i in 0..usize::from(phnum).min(64) {
        let ph = (phoff as usize).saturating_add(i * PHDR_SIZE);
        if u32_at(ph) != Some(4) {
            continue; // not PT_NOTE
        }
        let (Some(off), Some(size)) = (u64_at(ph.saturating_add(8)), u64_at(ph.saturating_add(32)))
        else {
            continue;
        };
        // Notes past the end of the file cannot be read anyway.
        let end = (off.saturating_add(size) as usize).min(b.len());
        let mut o = off as usize;
        while o.saturating_add(12) <= end {
            let (Some(namesz), Some(descsz), Some(kind)) =
                (u32_at(o), u32_at(o + 4), u32_at(o + 8))
            else {
                break;
            };
            let name = b.get(o + 12..(o + 12).saturating_add(namesz as usize));
            found.irqlab |= kind == 1 && name == Some(b"irqlab\0".as_slice());
            found.linux |= name == Some(b"Linux\0".as_slice());
            found.pvh |= kind == 18 && name == Some(b"Xen\0".as_slice());
            o = o
                .saturating_add(12)
                .saturating_add((namesz as usize).next_multiple_of(4))
                .saturating_add((descsz as usize).next_multiple_of(4));
        }
    }
    found
}

/// Builds a minimal ELF64 image for tests: one PT_LOAD of `code` at `paddr`.
#[doc(hidden)]
pub fn tiny_elf(class: u8, machine: u16, paddr: u64, memsz: u64, code: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; EHDR_SIZE + PHDR_SIZE];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = class;
    b[5] = 1;
    b[6] = 1;
    b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    b[18..20].copy_from_slice(&machine.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&paddr.to_le_bytes());
    b[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
    b[52..54].copy_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    b[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = EHDR_SIZE;
    let offset = (EHDR_SIZE + PHDR_SIZE) as u64;
    b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
    b[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
    b[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
    b[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
    b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
    b[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
    b[ph + 40..ph + 48].copy_from_slice(&memsz.max(code.len() as u64).to_le_bytes());
    b[ph + 48..ph + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    b.extend_from_slice(code);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: Vec<u8>) -> KernelImage<'static> {
        KernelImage {
            name: "k.elf".into(),
            bytes: bytes.into(),
        }
    }

    const MEM: u64 = 16 << 20;

    #[test]
    fn a_good_image_validates() {
        let img = image(tiny_elf(2, 62, 0x10_0000, 0x2000, &[0xf4]));
        let (entry, segs) = validate(&img, MEM).unwrap();
        assert_eq!(entry, 0x10_0000);
        assert_eq!(
            segs,
            vec![Segment {
                paddr: 0x10_0000,
                memsz: 0x2000
            }]
        );
    }

    #[test]
    fn the_builtin_guest_validates() {
        let img = KernelImage::builtin();
        let (entry, segs) = validate(&img, 64 << 20).unwrap();
        // The notes come first in the text segment; `_start` follows them.
        assert!(
            (KERNEL_MIN_ADDR..KERNEL_MIN_ADDR + 0x1000).contains(&entry),
            "{entry:#x}"
        );
        assert_eq!(segs.iter().map(|s| s.paddr).min(), Some(KERNEL_MIN_ADDR));
    }

    #[test]
    fn each_malformed_class_gets_its_own_error() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"#!/bin/sh\n".to_vec(), "not an ELF file"),
            (vec![], "not an ELF file"),
            (b"\x7fELF\x02\x01".to_vec(), "truncated ELF header"),
            (tiny_elf(1, 3, 0x10_0000, 0, &[0xf4]), "32-bit ELF"),
            (tiny_elf(2, 183, 0x10_0000, 0, &[0xf4]), "AArch64"),
            (
                tiny_elf(2, 62, 0x1000, 0, &[0xf4]),
                "reserved for irqlab's boot structures",
            ),
            (
                tiny_elf(2, 62, 0x10_0000, 1 << 30, &[0xf4]),
                "raise mem_mib",
            ),
            (tiny_elf(2, 62, u64::MAX - 4, 0, &[0xf4]), "raise mem_mib"),
        ];
        for (bytes, expected) in cases {
            let err = validate(&image(bytes), MEM).unwrap_err().to_string();
            assert!(err.starts_with("k.elf: "), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn truncated_segment_data_is_reported() {
        let mut bytes = tiny_elf(2, 62, 0x10_0000, 0, &[0xf4; 16]);
        bytes.truncate(bytes.len() - 8);
        let err = validate(&image(bytes), MEM).unwrap_err();
        assert!(matches!(err, LoadError::Segment { index: 0, .. }), "{err}");
    }

    #[test]
    fn notes_are_found_only_in_a_pt_note_segment() {
        let guest = notes(crate::BUILTIN_GUEST);
        // The irqlab guest also has a PVH entry (`irqlab run --boot pvh`).
        assert!(guest.irqlab && !guest.linux && guest.pvh, "{guest:?}");
        assert_eq!(
            notes(&tiny_elf(2, 62, 0x10_0000, 0, &[0xf4])),
            Notes::default()
        );
        // Truncated and garbage images: not found, no panic.
        for n in [0, 10, 64, 100, 200] {
            assert_eq!(notes(&crate::BUILTIN_GUEST[..n]), Notes::default());
        }
        assert_eq!(notes(&[0xff; 256]), Notes::default());
    }

    #[test]
    fn a_linux_note_marks_a_vmlinux() {
        // A PT_NOTE segment holding one note as Linux's ELFNOTE() macro emits it.
        let mut b = tiny_elf(2, 62, 0x10_0000, 0, &[0xf4]);
        let note_off = b.len() as u64;
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&0x100u32.to_le_bytes());
        b.extend_from_slice(b"Linux\0\0\0");
        b.extend_from_slice(&[0; 4]);
        let ph_off = b.len();
        b.extend_from_slice(&[0; PHDR_SIZE]);
        b[ph_off..ph_off + 4].copy_from_slice(&4u32.to_le_bytes());
        b[ph_off + 8..ph_off + 16].copy_from_slice(&note_off.to_le_bytes());
        b[ph_off + 32..ph_off + 40].copy_from_slice(&24u64.to_le_bytes());
        // Point the ELF header at a two-entry table: copy the PT_LOAD header in front.
        let load = b[EHDR_SIZE..EHDR_SIZE + PHDR_SIZE].to_vec();
        b.splice(ph_off..ph_off, load);
        b[32..40].copy_from_slice(&(ph_off as u64).to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        let found = notes(&b);
        assert!(found.linux && !found.irqlab, "{found:?}");
        // A huge note size in a hostile image stops the scan instead of overflowing.
        b[note_off as usize..note_off as usize + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!notes(&b).linux);
    }

    #[test]
    fn entry_outside_segments_is_reported() {
        let mut bytes = tiny_elf(2, 62, 0x10_0000, 0, &[0xf4]);
        bytes[24..32].copy_from_slice(&0x20_0000u64.to_le_bytes());
        let err = validate(&image(bytes), MEM).unwrap_err().to_string();
        assert!(err.contains("entry point 0x200000"), "{err}");
    }
}
