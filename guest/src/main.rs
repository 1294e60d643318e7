//! The irqlab guest kernel.
//!
//! Entered by the VMM in 64-bit long mode (see `docs/guest-abi.md`) with the boot info address
//! in RDI. `kmain` brings the CPU structures up in a fixed order and then runs the experiments
//! the command line asks for, reporting `PASS`/`FAIL`/`SKIP` lines and a `SUMMARY`, and ends
//! the VM through the debug-exit port with status 0 only when nothing failed.
#![no_std]
#![no_main]

mod apic;
mod boot;
mod boot_cell;
mod boot_info_builder;
mod cost;
mod cost_cr3;
mod cost_user;
mod cpu;
mod exceptions;
mod exit;
mod experiments;
mod fmt;
mod frame;
mod gdt;
mod hostile;
mod idt;
mod interrupts;
mod ioapic;
mod msi_source;
mod paging;
mod percpu;
mod pic;
mod pit;
mod port;
mod posted;
mod process;
mod pvh;
mod reboot;
mod report;
mod rt;
mod selftest;
mod serial;
mod smp;
mod stack;
mod syscall;
mod trace;
mod uring;
mod user;
mod vclock;
mod vectors;

use boot::Boot;
use irqlab_abi::{boot_info, status};
use irqlab_guest_core::runs::Runs;
use stack::Stack;

/// Stack `_start` switches to before running any Rust code.
pub static BOOT_STACK: Stack<{ 64 * 1024 }> = Stack::new();
/// The stack system calls run on (per-CPU data points at its top).
pub static SYSCALL_STACK: Stack<{ 16 * 1024 }> = Stack::new();

/// The entry point: switch to our own stack, make SSE usable, call `kmain(boot_info)`.
///
/// The guest's own code is compiled without SSE (`guest/.cargo/config.toml`), but the
/// precompiled `core` it links (there is no rust-src to rebuild it) may use SSE, e.g. in
/// `core::fmt`'s integer formatting, and the `fpu-state`, `#NM` and `#XM` checks use it on
/// purpose. Kernel code avoids `core::fmt` numbers on hot paths (`fmt::Dec`) because on
/// kvm-pvm every SSE instruction is a KVM emulation failure.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text.entry"]
pub extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "cli",
        "lea rsp, [rip + {stack} + {top}]",
        "xor ebp, ebp",
        // CR0: clear EM (bit 2), set MP (bit 1); CR4: set OSFXSR (bit 9) and OSXMMEXCPT (bit 10).
        "mov rax, cr0",
        "and rax, ~4",
        "or rax, 2",
        "mov cr0, rax",
        "mov rax, cr4",
        "or rax, 0x600",
        "mov cr4, rax",
        "call {kmain}",
        "2: cli",
        "hlt",
        "jmp 2b",
        stack = sym BOOT_STACK,
        top = const 4096 + 64 * 1024,
        kmain = sym kmain,
    )
}

/// The kernel proper, entered with the boot info's address (native entry via `_start`, PVH
/// entry via `pvh::pvh_main`).
pub extern "C" fn kmain(boot_info_addr: u64) -> ! {
    serial::init();
    BOOT_STACK.arm();
    // SAFETY: RDI at entry carries the boot info address (guest ABI).
    let boot = match unsafe { Boot::from_addr(boot_info_addr) } {
        Ok(boot) => boot,
        Err(why) => {
            println!(
                "FAIL boot-info: rejected at {boot_info_addr:#x}: {}",
                boot::describe(why)
            );
            exit::exit(status::BAD_BOOT_INFO);
        }
    };
    println!(
        "irqlab guest {} (abi v{}) host={} vcpus={} irqchip={} cmdline=\"{}\"",
        env!("CARGO_PKG_VERSION"),
        boot.info.version,
        boot.info.host().name(),
        boot.info.vcpus,
        if boot.info.flags & boot_info::FLAG_SPLIT_IRQCHIP != 0 {
            "split"
        } else {
            "kernel"
        },
        boot.cmdline.raw,
    );
    check!(
        true,
        "boot-info",
        "magic, version {} and size {} accepted",
        boot.info.version,
        boot.info.size
    );

    // Bring-up order matters: the GDT/TSS provide the IST stacks the IDT's gates name; the
    // exception and `int 0x80` handlers are in place before the IDT is loaded; paging needs
    // the stacks' guard pages; syscall needs the GDT selectors and the per-CPU data.
    gdt::init();
    exceptions::install();
    syscall::install_int80();
    idt::init();
    SYSCALL_STACK.arm();
    // Every stack's guard page: 3 + 7 IST stacks + the task kernel stacks (slot 0, the idle
    // task, runs on the boot stack). No slot may stay 0: that would unmap page 0.
    let mut guards = [0u64; 10 + process::MAX_TASKS - 1];
    guards[0] = BOOT_STACK.guard_page();
    guards[1] = SYSCALL_STACK.guard_page();
    guards[2] = gdt::RSP0_STACK.guard_page();
    for (g, s) in guards[3..].iter_mut().zip(gdt::IST_STACKS.iter()) {
        *g = s.guard_page();
    }
    for (g, page) in guards[10..].iter_mut().zip(process::guard_pages()) {
        *g = page;
    }
    paging::init(&guards);
    percpu::init(SYSCALL_STACK.top());
    syscall::init();
    trace::init(boot.info.trace_ring_addr, boot.info.trace_ring_size);
    posted::init(boot.info.posted_desc_addr, boot.info.posted_desc_stride);
    // CR0.AM: alignment checking for ring-3 code that sets RFLAGS.AC.
    // SAFETY: only enables #AC for ring 3 with AC set.
    unsafe { core::arch::asm!("mov {t}, cr0", "or {t}, 0x40000", "mov cr0, {t}", t = out(reg) _) };

    crash_modes(&boot);
    hostile::run(&boot);
    // The `run=` list, parsed once into a set: every instruction counts on hosts that emulate
    // them (looking each name up in the string cost ~2,500 emulated instructions per boot).
    let runs = Runs::from_cmdline(&boot.cmdline, |other| {
        println!("run: unknown experiment {other} ignored");
    });
    if runs.has(Runs::PIO_LOOP) {
        cost::pio_loop(&boot);
        exit::exit(status::PASS);
    }
    if runs.has(Runs::SELFTEST) {
        selftest::run(&boot);
    }
    if runs.has(Runs::COST) {
        cost::run(&boot);
    }
    if runs.has(Runs::EXPERIMENTS) {
        experiments::init(&boot);
    }
    if runs.has(Runs::TIMER) {
        experiments::timer::run(&boot);
    }
    if runs.has(Runs::MSI) {
        experiments::msi::run(&boot);
    }
    if runs.has(Runs::ECHO) {
        experiments::echo::run(&boot);
    }
    if runs.has(Runs::AFFINITY) {
        experiments::affinity::run(&boot);
    }
    if runs.has(Runs::POSTED) {
        experiments::posted::run(&boot);
    }
    if runs.has(Runs::SCHED) {
        experiments::sched::run(&boot);
    }
    if runs.has(Runs::SIGNALS) {
        experiments::signals::run(&boot);
    }
    if runs.has(Runs::NESTING) {
        experiments::nesting::run(&boot);
    }
    if runs.has(Runs::NAPI) {
        experiments::napi::run(&boot);
    }
    if runs.has(Runs::SOFTIRQ) {
        experiments::softirq::run(&boot);
    }
    let st = report::summary();
    exit::exit(st)
}

/// Deliberate failures the VMM's tests use:
/// `crash=triple-fault|double-fault|kernel-fault|hang|park-apic-off|flood|panic|status:N|reboot-acpi|reboot-kbd|reboot-cf9`.
fn crash_modes(boot: &Boot) {
    match boot.cmdline.get("crash") {
        None => {}
        Some("triple-fault") => {
            println!("crash: loading an empty IDT and raising #UD");
            let empty = [0u16; 5];
            // SAFETY: deliberately fatal: with a zero-limit IDT the #UD cannot be delivered,
            // nor can the #DF that follows, so the CPU shuts down (triple fault).
            unsafe {
                core::arch::asm!("lidt [{}]", "ud2", in(reg) empty.as_ptr(), options(noreturn))
            }
        }
        Some("flood") => {
            // A console flood: output as fast as the UART takes it, until the watchdog.
            loop {
                println!("flood ................................................................");
            }
        }
        Some("hang") => {
            println!("crash: spinning with interrupts off");
            loop {
                core::hint::spin_loop();
            }
        }
        Some("park-apic-off") => {
            // The nested lane keeps one such guest alive for its whole run: while this vCPU's
            // local APIC is hardware-disabled, KVM's apic_hw_disabled static key never drops
            // to 0, so other VMs enabling and disabling their APICs never make the host
            // kernel re-patch its code (which QEMU's multi-threaded TCG gets wrong).
            println!("crash: local APIC hardware-disabled (IA32_APIC_BASE.EN clear), parked with interrupts off");
            // SAFETY: IA32_APIC_BASE (0x1b) with EN (bit 11) clear disables the local APIC;
            // this CPU takes no interrupt from here on and halts for ever.
            unsafe {
                let base = cpu::rdmsr(0x1b);
                cpu::wrmsr(0x1b, base & !(1 << 11));
            }
            loop {
                // SAFETY: interrupts are off: hlt parks the CPU (KVM blocks the vCPU).
                unsafe { core::arch::asm!("cli", "hlt") };
            }
        }
        Some("panic") => panic!("requested by the command line"),
        Some("double-fault") => {
            println!("crash: #GP gate marked not present, then a #GP");
            idt::clear_gate(irqlab_x86::error_code::Exception::GeneralProtection as u8);
            // SAFETY: deliberately fatal: the #GP cannot be delivered (#NP on its gate), and
            // two contributory exceptions make a #DF, whose handler reports and stops.
            unsafe {
                core::arch::asm!(".byte 0x48, 0x8b, 0x01", in("rcx") 0x8000_0000_0000_0000u64, out("rax") _)
            };
        }
        Some("kernel-fault") => {
            println!("crash: kernel #PF on an unmapped guard page");
            // SAFETY: deliberately fatal: nothing expects this #PF.
            unsafe { core::ptr::read_volatile(BOOT_STACK.guard_page() as *const u64) };
        }
        Some(other) if other.starts_with("reboot-") => {
            reboot::request(&other["reboot-".len()..]);
            println!("crash: the reboot request did not end the run");
        }
        Some(other) => match other.strip_prefix("status:").and_then(|n| n.parse().ok()) {
            Some(status) => exit::exit(status),
            None => println!("crash: unknown mode {other} ignored"),
        },
    }
}
