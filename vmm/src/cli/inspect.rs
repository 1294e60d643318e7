//! `irqlab inspect`: what irqlab would do with a kernel image, without running it.

use clap::Args;
use irqlab::boot;
use irqlab::entry::BootProtocol;
use irqlab::entry::Entry;
use irqlab::loader::{Format, KernelImage};
use irqlab::outcome::code;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Kernel image (ELF64, PVH ELF, Multiboot ELF32/a.out, Linux bzImage or vmlinux), or
    /// `builtin` for the embedded guest.
    kernel: PathBuf,
    /// Boot protocol to check the image against.
    #[arg(long, value_enum, default_value = "auto")]
    boot: BootProtocol,
    /// Guest memory in MiB the image must fit in (1-3072).
    #[arg(long, value_name = "N", default_value_t = irqlab::config::DEFAULT_MEM_MIB,
          allow_hyphen_values = true, value_parser = super::args::inspect_mem_mib)]
    mem_mib: u64,
}

pub fn inspect(a: InspectArgs) -> u8 {
    let fail = |e: &dyn std::fmt::Display, c: u8| {
        eprintln!("irqlab: {e}");
        c
    };
    let mem_size = a.mem_mib << 20;
    // "builtin" names the embedded guest, as `run --kernel builtin` does.
    let image = if a.kernel.as_os_str() == "builtin" {
        KernelImage::builtin()
    } else {
        match KernelImage::from_file_within(&a.kernel, mem_size) {
            Ok(i) => i,
            Err(e) => return fail(&e, code::KERNEL),
        }
    };
    let mem = match irqlab::memory::create(mem_size) {
        Ok(m) => m,
        Err(e) => return fail(&e, code::HOST),
    };
    let plan = match boot::load(&image, a.boot, &mem, mem_size) {
        Ok(p) => p,
        Err(e) => return fail(&e, code::KERNEL),
    };
    let k = plan.kernel;
    let mut notes = Vec::new();
    if k.notes.irqlab {
        notes.push("irqlab ABI".to_string());
    }
    if k.notes.linux {
        notes.push("Linux".to_string());
    }
    if let Some(e) = k.pvh_entry {
        notes.push(format!("PVH entry {e:#x}"));
    }
    let format = match plan.format {
        Format::Elf64 => "ELF64 x86-64",
        Format::Multiboot => "Multiboot v1",
        Format::BzImage => "Linux bzImage",
    };
    println!("kernel:   {}", a.kernel.display());
    if notes.is_empty() {
        println!("format:   {format}");
    } else {
        println!("format:   {format} (notes: {})", notes.join(", "));
    }
    let bz = match plan.format {
        Format::BzImage => irqlab::loader::linux::layout(&image.bytes),
        _ => None,
    };
    match bz {
        Some(l) => println!(
            "loads at: {:#x}..{:#x} ({} KiB, the compressed kernel)",
            l.load,
            l.load_end,
            (l.load_end - l.load) / 1024
        ),
        None => println!(
            "loads at: {:#x}..{:#x} ({} KiB, including zero-filled memory)",
            k.start,
            k.end,
            (k.end - k.start) / 1024
        ),
    }
    let how = match plan.entry {
        Entry::Native => format!(
            "native: long mode at {:#x}, irqlab boot info in RDI (docs/guest-abi.md)",
            k.entry
        ),
        Entry::Pvh(e) => format!("pvh: 32-bit protected mode at {e:#x}, hvm_start_info in EBX"),
        Entry::Multiboot => format!(
            "multiboot: 32-bit protected mode at {:#x}, EAX = 0x2BADB002, Multiboot info in EBX",
            k.entry
        ),
        Entry::Linux(hdr) => format!(
            "linux: 64-bit boot protocol {}.{:02}, long mode at {:#x}, zero page in RSI",
            hdr.version >> 8,
            hdr.version & 0xff,
            k.entry
        ),
    };
    println!("entry:    {how}");
    if let Some(l) = bz {
        let from = match l.decompress {
            Some((start, end)) => format!(
                "it decompresses into {start:#x}..{end:#x}: setup header init_size from pref_address"
            ),
            None => "no init_size in the setup header: the compressed kernel only".into(),
        };
        println!(
            "memory:   at least {} MiB of guest memory ({from})",
            l.min_mem_mib()
        );
    }
    0
}
