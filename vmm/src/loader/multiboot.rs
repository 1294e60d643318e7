//! Multiboot v1 kernels (the Multiboot Specification 0.6.96): an ELF32 image, or any image
//! using the "a.out kludge" (header flag 16: load addresses in the header), with a Multiboot
//! header in its first 8 KiB. The kernel is entered in 32-bit protected mode, paging off, with
//! EAX = 0x2BADB002 and EBX = the Multiboot information structure.
//!
//! Supported header flags: 0 (page-align modules), 1 (memory information), 16 (address
//! fields). Flag 2 (video mode) is refused: irqlab has no display.

use super::LoadError;
use super::{le_u16, le_u32, KernelImage, LoadedKernel};
use crate::memory::GuestMemory;
use irqlab_abi::layout::{BOOT_GDT, CMDLINE, CMDLINE_MAX, KERNEL_MIN_ADDR};

/// Guest memory irqlab itself uses when it enters a Multiboot kernel: the GDT, the Multiboot
/// information (with its memory map and module list) and the command line with the module
/// names. A kernel may load anywhere else in RAM, below 1 MiB too.
pub const RESERVED: std::ops::Range<u64> = BOOT_GDT..CMDLINE + CMDLINE_MAX as u64;
/// Conventional memory ends here; 0xa0000–0xfffff is the legacy video and BIOS area, which a
/// PC's memory map does not report as RAM.
pub const LOW_RAM_END: u64 = 0xa_0000;
use vm_memory::{Bytes, GuestAddress};

/// Header magic.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX at entry.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie in the first 8 KiB, 4-byte aligned.
const SEARCH: usize = 8192;
const FLAG_PAGE_ALIGN: u32 = 1 << 0;
const FLAG_MEMORY_INFO: u32 = 1 << 1;
const FLAG_VIDEO: u32 = 1 << 2;
const FLAG_ADDRESSES: u32 = 1 << 16;
const SUPPORTED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_ADDRESSES;

/// A Multiboot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Offset in the file.
    pub offset: usize,
    /// Flags.
    pub flags: u32,
    /// a.out kludge: where the header is loaded.
    pub header_addr: u32,
    /// a.out kludge: load start.
    pub load_addr: u32,
    /// a.out kludge: load end (0: end of file).
    pub load_end_addr: u32,
    /// a.out kludge: end of zeroed memory (0: none).
    pub bss_end_addr: u32,
    /// a.out kludge: entry point.
    pub entry_addr: u32,
}

/// Finds the Multiboot header (magic + flags + checksum = 0).
pub fn find_header(b: &[u8]) -> Option<Header> {
    (0..SEARCH.min(b.len()).saturating_sub(11))
        .step_by(4)
        .find_map(|o| {
            let (magic, flags, sum) = (le_u32(b, o)?, le_u32(b, o + 4)?, le_u32(b, o + 8)?);
            if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
                return None;
            }
            let field = |i: usize| le_u32(b, o + 12 + 4 * i).unwrap_or(0);
            Some(Header {
                offset: o,
                flags,
                header_addr: field(0),
                load_addr: field(1),
                load_end_addr: field(2),
                bss_end_addr: field(3),
                entry_addr: field(4),
            })
        })
}

/// What to copy where.
struct Plan {
    entry: u64,
    /// (file offset, guest address, file bytes, memory bytes)
    pieces: Vec<(usize, u64, usize, u64)>,
}

fn plan(image: &KernelImage, h: &Header, mem_size: u64) -> Result<Plan, LoadError> {
    let b = &image.bytes[..];
    let bad = |problem: String| LoadError::Unsupported {
        name: image.name.clone(),
        problem: format!("Multiboot: {problem}"),
    };
    if h.flags & 0xffff & !SUPPORTED != 0 {
        return Err(bad(if h.flags & FLAG_VIDEO != 0 {
            "the header requests a video mode (flag 2); irqlab has no display".into()
        } else {
            format!(
                "unsupported required header flags {:#x}",
                h.flags & 0xffff & !SUPPORTED
            )
        }));
    }
    let plan = if h.flags & FLAG_ADDRESSES != 0 {
        let (ha, la) = (u64::from(h.header_addr), u64::from(h.load_addr));
        if la > ha || (ha - la) as usize > h.offset {
            return Err(bad(format!(
                "header_addr {ha:#x} and load_addr {la:#x} do not match the header's file offset {:#x}",
                h.offset
            )));
        }
        let file_start = h.offset - (ha - la) as usize;
        let load_end = if h.load_end_addr == 0 {
            la + (b.len() - file_start) as u64
        } else {
            u64::from(h.load_end_addr)
        };
        if load_end < la || file_start as u64 + (load_end - la) > b.len() as u64 {
            return Err(bad(format!(
                "load_end_addr {load_end:#x} lies beyond the {}-byte file",
                b.len()
            )));
        }
        let mem_end = u64::from(h.bss_end_addr).max(load_end);
        Plan {
            entry: u64::from(h.entry_addr),
            pieces: vec![(file_start, la, (load_end - la) as usize, mem_end - la)],
        }
    } else {
        elf32_plan(b).map_err(bad)?
    };
    for &(_, addr, _, len) in &plan.pieces {
        let end = addr.saturating_add(len);
        if addr < RESERVED.end && end > RESERVED.start {
            return Err(bad(format!(
                "segment {addr:#x}..{end:#x} overlaps irqlab's boot structures at {:#x}..{:#x} (GDT, Multiboot information, command line)",
                RESERVED.start, RESERVED.end
            )));
        }
        let in_low_ram = end <= LOW_RAM_END;
        if !(in_low_ram || (addr >= KERNEL_MIN_ADDR && end <= mem_size)) {
            return Err(bad(format!(
                "segment {addr:#x}..{end:#x} is not RAM: it must lie below {LOW_RAM_END:#x} (conventional memory) or between {KERNEL_MIN_ADDR:#x} and the end of guest memory ({mem_size:#x})"
            )));
        }
    }
    if !plan
        .pieces
        .iter()
        .any(|&(_, a, _, l)| plan.entry >= a && plan.entry < a + l)
    {
        return Err(bad(format!(
            "entry point {:#x} is not inside the loaded image",
            plan.entry
        )));
    }
    Ok(plan)
}

/// PT_LOAD segments of an ELF32 i386 image.
fn elf32_plan(b: &[u8]) -> Result<Plan, String> {
    if b.get(..4) != Some(b"\x7fELF".as_slice()) || b.get(4) != Some(&1) {
        return Err("without header flag 16 the image must be ELF32".into());
    }
    if le_u16(b, 18) != Some(3) {
        return Err("ELF32 image is not for i386 (e_machine 3)".into());
    }
    let entry = le_u32(b, 24).ok_or("truncated ELF32 header")?;
    let phoff = le_u32(b, 28).ok_or("truncated ELF32 header")? as usize;
    let phnum = le_u16(b, 44).ok_or("truncated ELF32 header")? as usize;
    let mut pieces = Vec::new();
    for i in 0..phnum.min(64) {
        let ph = phoff.saturating_add(i * 32);
        let f = |k: usize| {
            le_u32(b, ph.saturating_add(4 * k)).ok_or(format!("program header {i} is truncated"))
        };
        if f(0)? != 1 {
            continue;
        }
        let (off, paddr, filesz, memsz) = (f(1)? as usize, f(3)?, f(4)? as usize, f(5)?);
        if off.saturating_add(filesz) > b.len() || filesz as u64 > u64::from(memsz) {
            return Err(format!(
                "program header {i} describes bytes outside the file"
            ));
        }
        pieces.push((off, u64::from(paddr), filesz, u64::from(memsz)));
    }
    if pieces.is_empty() {
        return Err("ELF32 image has no PT_LOAD segments".into());
    }
    Ok(Plan {
        entry: u64::from(entry),
        pieces,
    })
}

/// Checks a Multiboot image before any KVM work.
pub fn validate(image: &KernelImage, mem_size: u64) -> Result<Header, LoadError> {
    let h = find_header(&image.bytes).ok_or_else(|| LoadError::Unsupported {
        name: image.name.clone(),
        problem: "no Multiboot v1 header in the first 8 KiB".into(),
    })?;
    plan(image, &h, mem_size)?;
    Ok(h)
}

/// Loads the image into guest memory.
pub fn load(
    image: &KernelImage,
    mem: &GuestMemory,
    mem_size: u64,
) -> Result<LoadedKernel, LoadError> {
    let h = validate(image, mem_size)?;
    let p = plan(image, &h, mem_size)?;
    let b = &image.bytes[..];
    for &(off, addr, filesz, memsz) in &p.pieces {
        let fail = |source| LoadError::Segment {
            name: image.name.clone(),
            index: 0,
            start: addr,
            end: addr + memsz,
            problem: format!("writing guest memory failed: {source}"),
        };
        mem.write_slice(&b[off..off + filesz], GuestAddress(addr))
            .map_err(fail)?;
        let zeros = vec![0u8; (memsz - filesz as u64) as usize];
        mem.write_slice(&zeros, GuestAddress(addr + filesz as u64))
            .map_err(fail)?;
    }
    let start = p.pieces.iter().map(|x| x.1).min().unwrap_or(p.entry);
    let end = p.pieces.iter().map(|x| x.1 + x.3).max().unwrap_or(p.entry);
    Ok(LoadedKernel {
        entry: p.entry,
        start,
        end,
        pvh_entry: None,
        notes: super::elf::Notes::default(),
    })
}

/// A boot module loaded into guest memory.
#[derive(Debug, Clone)]
pub struct Module {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Its string (the file name), NUL-terminated in guest memory at `string_at`.
    pub string_at: u64,
}

/// Loads `files` page-aligned from `from` upwards, their names after the command line
/// (from `strings_at`); returns the modules and the first free address.
pub fn load_modules(
    mem: &GuestMemory,
    files: &[(String, &[u8])],
    from: u64,
    strings_at: u64,
    limit: u64,
) -> Result<Vec<Module>, String> {
    let (mut next, mut strings) = (from.next_multiple_of(4096), strings_at);
    let mut out = Vec::new();
    for (name, bytes) in files {
        let end = next + bytes.len() as u64;
        if end > limit {
            return Err(format!(
                "module {name} ({} bytes) does not fit in guest memory",
                bytes.len()
            ));
        }
        mem.write_slice(bytes, GuestAddress(next))
            .map_err(|e| format!("module {name}: {e}"))?;
        let mut s = name.as_bytes().to_vec();
        s.push(0);
        mem.write_slice(&s, GuestAddress(strings))
            .map_err(|e| format!("module {name}: {e}"))?;
        out.push(Module {
            start: next,
            end,
            string_at: strings,
        });
        strings += s.len() as u64;
        next = end.next_multiple_of(4096);
    }
    Ok(out)
}

/// The Multiboot information structure at `at`, its memory map and module list after it,
/// the command line at `cmdline_at`; `ram` is (base, length) of usable RAM.
pub fn write_info(
    mem: &GuestMemory,
    at: u64,
    cmdline_at: u64,
    cmdline: &str,
    ram: &[(u64, u64)],
    modules: &[Module],
) -> Result<u64, vm_memory::GuestMemoryError> {
    const INFO_SIZE: u64 = 88;
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.write_slice(&c, GuestAddress(cmdline_at))?;
    let mmap_at = at + INFO_SIZE;
    let mut mmap = Vec::new();
    for &(base, len) in ram {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&base.to_le_bytes());
        mmap.extend_from_slice(&len.to_le_bytes());
        mmap.extend_from_slice(&1u32.to_le_bytes());
    }
    mem.write_slice(&mmap, GuestAddress(mmap_at))?;
    let mods_at = mmap_at + mmap.len() as u64;
    let mods: Vec<u8> = modules
        .iter()
        .flat_map(|m| [m.start as u32, m.end as u32, m.string_at as u32, 0])
        .flat_map(|w| w.to_le_bytes())
        .collect();
    mem.write_slice(&mods, GuestAddress(mods_at))?;
    // mem_lower: KiB of RAM from 0 (at most 640); mem_upper: KiB from 1 MiB to the first hole.
    let lower = ram
        .iter()
        .find(|r| r.0 == 0)
        .map_or(0, |r| r.1.min(640 << 10) >> 10);
    let upper = ram
        .iter()
        .find(|r| r.0 <= 1 << 20 && r.0 + r.1 > 1 << 20)
        .map_or(0, |r| (r.0 + r.1 - (1 << 20)) >> 10);
    let mut info = [0u32; (INFO_SIZE / 4) as usize];
    info[0] = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 6); // mem_*, cmdline, mods_*, mmap_*
    info[1] = lower as u32;
    info[2] = upper as u32;
    info[4] = cmdline_at as u32;
    info[5] = modules.len() as u32;
    info[6] = mods_at as u32;
    info[11] = mmap.len() as u32;
    info[12] = mmap_at as u32;
    let bytes: Vec<u8> = info.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(at))?;
    Ok(at)
}

/// A tiny Multiboot kernel for tests: checks EAX, the info flags and `mem_upper`, prints `M`
/// on COM1 and exits through the debug-exit port with 0 (or 7 when something is wrong).
/// `elf32`: an ELF32 image; otherwise a raw a.out-kludge image.
#[doc(hidden)]
pub fn tiny_kernel(elf32: bool) -> Vec<u8> {
    tiny_kernel_at(elf32, 0x10_0000)
}

/// [`tiny_kernel`] linked to load at `base` (below 1 MiB, for instance).
#[doc(hidden)]
pub fn tiny_kernel_at(elf32: bool, base: u32) -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 36] = [
        0x3d, 0x02, 0xb0, 0xad, 0x2b, // cmp eax, 0x2badb002
        0x75, 0x18,                   // jne bad
        0xf6, 0x03, 0x01,             // test byte [ebx], 1
        0x74, 0x13,                   // jz bad
        0x8b, 0x4b, 0x08,             // mov ecx, [ebx + 8]   (mem_upper)
        0x85, 0xc9,                   // test ecx, ecx
        0x74, 0x0c,                   // jz bad
        0x66, 0xba, 0xf8, 0x03,       // mov dx, 0x3f8
        0xb0, 0x4d,                   // mov al, 'M'
        0xee,                         // out dx, al
        0xb0, 0x00,                   // mov al, 0
        0xe6, 0xf4,                   // out 0xf4, al
        0xf4,                         // hlt
        0xb0, 0x07,                   // bad: mov al, 7
        0xe6, 0xf4,                   // out 0xf4, al
        0xf4,                         // hlt
    ];
    let header = |flags: u32, fields: [u32; 5]| -> Vec<u8> {
        let mut h = Vec::new();
        for w in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        ] {
            h.extend_from_slice(&w.to_le_bytes());
        }
        for w in fields {
            h.extend_from_slice(&w.to_le_bytes());
        }
        h
    };
    if !elf32 {
        // Header at file offset 0 = address base, code right after its 32 bytes.
        let mut img = header(
            FLAG_MEMORY_INFO | FLAG_ADDRESSES,
            [base, base, 0, 0, base + 32],
        );
        img.extend_from_slice(&code);
        return img;
    }
    // ELF32: header (52) + one program header (32) + Multiboot header (12) + code.
    let (mb_off, code_off) = (84u32, 96u32);
    let total = code_off as usize + code.len();
    let mut e = vec![0u8; 84];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 1;
    e[5] = 1;
    e[6] = 1;
    e[16..18].copy_from_slice(&2u16.to_le_bytes());
    e[18..20].copy_from_slice(&3u16.to_le_bytes());
    e[20..24].copy_from_slice(&1u32.to_le_bytes());
    e[24..28].copy_from_slice(&(base + code_off).to_le_bytes());
    e[28..32].copy_from_slice(&52u32.to_le_bytes());
    e[40..42].copy_from_slice(&52u16.to_le_bytes());
    e[42..44].copy_from_slice(&32u16.to_le_bytes());
    e[44..46].copy_from_slice(&1u16.to_le_bytes());
    let ph = [1u32, 0, base, base, total as u32, total as u32, 5, 0x1000];
    for (i, w) in ph.iter().enumerate() {
        e[52 + 4 * i..56 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    assert_eq!(e.len(), mb_off as usize);
    e.extend_from_slice(&header(FLAG_MEMORY_INFO, [0; 5])[..12]);
    e.extend_from_slice(&code);
    e
}

/// A tiny a.out-kludge Multiboot kernel that prints the first byte of module 0 on COM1 and
/// exits 0 (7 when no module was passed).
#[doc(hidden)]
pub fn tiny_module_kernel() -> Vec<u8> {
    #[rustfmt::skip]
    let code: [u8; 29] = [
        0x8b, 0x4b, 0x14,             // mov ecx, [ebx + 20]   (mods_count)
        0x85, 0xc9,                   // test ecx, ecx
        0x74, 0x11,                   // jz bad
        0x8b, 0x73, 0x18,             // mov esi, [ebx + 24]   (mods_addr)
        0x8b, 0x36,                   // mov esi, [esi]        (mod_start)
        0x8a, 0x06,                   // mov al, [esi]
        0x66, 0xba, 0xf8, 0x03,       // mov dx, 0x3f8
        0xee,                         // out dx, al
        0xb0, 0x00,                   // mov al, 0
        0xe6, 0xf4,                   // out 0xf4, al
        0xf4,                         // hlt
        0xb0, 0x07,                   // bad: mov al, 7
        0xe6, 0xf4,                   // out 0xf4, al
        0xf4,                         // hlt
    ];
    let mut k = tiny_kernel(false);
    k.truncate(32);
    k.extend_from_slice(&code);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: Vec<u8>) -> KernelImage<'static> {
        KernelImage {
            name: "mb".into(),
            bytes: bytes.into(),
        }
    }

    #[test]
    fn both_tiny_kernels_validate() {
        for elf32 in [false, true] {
            let img = image(tiny_kernel(elf32));
            let h = validate(&img, 64 << 20).unwrap();
            assert_eq!(h.flags & FLAG_ADDRESSES != 0, !elf32);
        }
    }

    #[test]
    fn a_bad_checksum_is_no_header() {
        let mut k = tiny_kernel(false);
        k[8] ^= 1;
        assert!(find_header(&k).is_none());
    }

    #[test]
    fn video_mode_requests_are_refused_by_name() {
        let mut k = tiny_kernel(false);
        let flags = FLAG_ADDRESSES | FLAG_VIDEO;
        k[4..8].copy_from_slice(&flags.to_le_bytes());
        k[8..12].copy_from_slice(
            &0u32
                .wrapping_sub(HEADER_MAGIC.wrapping_add(flags))
                .to_le_bytes(),
        );
        let e = validate(&image(k), 64 << 20).unwrap_err().to_string();
        assert!(e.contains("video mode"), "{e}");
    }

    #[test]
    fn load_beyond_the_file_is_refused() {
        let mut k = tiny_kernel(false);
        k[20..24].copy_from_slice(&0x20_0000u32.to_le_bytes()); // load_end_addr
        let e = validate(&image(k), 64 << 20).unwrap_err().to_string();
        assert!(e.contains("beyond"), "{e}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678u32;
        for len in [0usize, 12, 40, 100, 9000] {
            let mut v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if len >= 48 {
                // A valid header with random address fields.
                let flags = FLAG_ADDRESSES;
                v[0..4].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
                v[4..8].copy_from_slice(&flags.to_le_bytes());
                v[8..12].copy_from_slice(
                    &0u32
                        .wrapping_sub(HEADER_MAGIC.wrapping_add(flags))
                        .to_le_bytes(),
                );
            }
            let _ = validate(&image(v), 64 << 20);
        }
    }
}
