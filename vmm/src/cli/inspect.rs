//! `irqlab inspect`: what irqlab would do with a kernel image, without running it.

use clap::Args;
use irqlab::boot::{self, Entry};
use irqlab::config::BootProtocol;
use irqlab::loader::{Format, KernelImage};
use irqlab::outcome::code;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Kernel image (ELF64, PVH ELF, Multiboot ELF32/a.out, Linux bzImage or vmlinux).
    kernel: PathBuf,
    /// Boot protocol to check the image against.
    #[arg(long, value_enum, default_value = "auto")]
    boot: super::run::BootArg,
    /// Guest memory in MiB the image must fit in.
    #[arg(long, value_name = "N", default_value_t = 64)]
    mem_mib: u64,
}

pub fn inspect(a: InspectArgs) -> u8 {
    let fail = |e: &dyn std::fmt::Display, c: u8| {
        eprintln!("irqlab: {e}");
        c
    };
    let image = match KernelImage::from_file(&a.kernel) {
        Ok(i) => i,
        Err(e) => return fail(&e, code::KERNEL),
    };
    let mem_size = a.mem_mib << 20;
    let mem = match irqlab::memory::create(mem_size) {
        Ok(m) => m,
        Err(e) => return fail(&e, code::HOST),
    };
    let protocol: BootProtocol = a.boot.into();
    let plan = match boot::load(&image, protocol, &mem, mem_size) {
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
    println!(
        "loads at: {:#x}..{:#x} ({} KiB, including zero-filled memory)",
        k.start,
        k.end,
        (k.end - k.start) / 1024
    );
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
    0
}
