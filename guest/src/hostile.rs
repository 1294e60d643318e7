//! `hostile=KIND`: a guest that attacks the VMM's device models and KVM plumbing instead of
//! using them, for the VMM's robustness tests. Each ends in a documented way — a status, the
//! watchdog, or a reported fault — and must never take the VMM down or make it grow.
//!
//! | kind | what the guest does | how it ends |
//! |------|---------------------|-------------|
//! | `port-storm` | reads and writes every port (8/16/32-bit), forever, except the exit and reset ports | watchdog |
//! | `ioapic-garbage` | every IOREGSEL index with garbage through IOWIN, every offset and width of the window | status 0 |
//! | `low-vectors` | redirection entries with vectors 0–15 (illegal for fixed delivery), the PIT firing into them | status 0 |
//! | `pit-count1` | PIT channel 0 with count 1 in modes 0, 2 and 3, interrupts on | status 0 |
//! | `unmapped-mmio` | reads and writes of every width at MMIO addresses no device claims | status 0 |
//! | `msi-garbage` | garbage in every MSI-source register and runs with garbage address/data, from every CPU | status 0 |
//! | `sipi-storm` | INIT + STARTUP IPIs to every other CPU, over and over (they park in `cli; hlt`) | status 0 |
//! | `cli-hlt` | `cli; hlt` | watchdog |

use crate::boot::Boot;
use crate::fmt::Dec;
use crate::port;
use core::sync::atomic::{AtomicU64, Ordering};
use irqlab_abi::msi_source as ms;

/// A cheap deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Ports a storm leaves alone: the debug-exit port (would end the run with a random status)
/// and the reset registers (would end it as a reboot).
fn spared(p: u16) -> bool {
    matches!(p, 0xf4..=0xf7 | 0x64 | 0xcf9)
}

/// Volatile access of `width` bytes at `addr` (identity-mapped).
///
/// # Safety
/// `addr` must be identity-mapped (the low 4 GiB are) and an access there must not corrupt
/// the kernel (MMIO or unclaimed addresses only).
unsafe fn poke(addr: u64, width: u8, value: u64, write: bool) {
    // SAFETY: per the function's contract.
    unsafe {
        match (width, write) {
            (1, true) => core::ptr::write_volatile(addr as *mut u8, value as u8),
            (2, true) => core::ptr::write_volatile(addr as *mut u16, value as u16),
            (4, true) => core::ptr::write_volatile(addr as *mut u32, value as u32),
            (_, true) => core::ptr::write_volatile(addr as *mut u64, value),
            (1, false) => drop(core::ptr::read_volatile(addr as *const u8)),
            (2, false) => drop(core::ptr::read_volatile(addr as *const u16)),
            (4, false) => drop(core::ptr::read_volatile(addr as *const u32)),
            (_, false) => drop(core::ptr::read_volatile(addr as *const u64)),
        }
    }
}

static TICKS: AtomicU64 = AtomicU64::new(0);
fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Runs `hostile=KIND` if the command line asks for it; returns only for unknown kinds.
pub fn run(boot: &Boot) {
    let Some(kind) = boot.cmdline.get("hostile") else {
        return;
    };
    let d = &boot.info.devices;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    crate::println!("hostile: {}", kind);
    match kind {
        "port-storm" => loop {
            for p in 0..=u16::MAX {
                if spared(p) {
                    continue;
                }
                let v = rng.next();
                // SAFETY: no port irqlab or KVM offers can corrupt this kernel's memory; the
                // exit and reset ports are spared.
                unsafe {
                    match v % 4 {
                        0 => port::outb(p, v as u8),
                        1 => port::outl(p, v as u32),
                        _ => drop(port::inb(p)),
                    }
                }
            }
        },
        "ioapic-garbage" => {
            let base = d.ioapic_base;
            for index in 0..=255u64 {
                for width in [1u8, 2, 4, 8] {
                    // SAFETY: the IO-APIC window is MMIO.
                    unsafe {
                        poke(base, width, index, true);
                        poke(base + 0x10, width, rng.next(), true);
                        poke(base + 0x10, width, 0, false);
                    }
                }
            }
            for off in 0..0x100u64 {
                for width in [1u8, 2, 4, 8] {
                    // SAFETY: as above.
                    unsafe {
                        poke(base + off, width, rng.next(), true);
                        poke(base + off, width, 0, false);
                    }
                }
            }
            // Leave every pin masked again, so nothing garbage-routed fires later. The pin
            // count is the IO-APIC's own (IOAPICVER), which the garbage above cannot change.
            let io = crate::ioapic::IoApic::new(base);
            for pin in 0..io.pins() {
                // At most 256 entries (an 8-bit field plus one): every pin fits a u8.
                io.mask(pin as u8);
            }
        }
        "low-vectors" => {
            crate::experiments::init(boot);
            let io = crate::ioapic::IoApic::new(d.ioapic_base);
            crate::pit::start_periodic(d.pit_port, crate::pit::divisor_for(1000).0);
            for vector in 0..16u8 {
                io.route(
                    d.pit_gsi,
                    crate::ioapic::Route {
                        vector,
                        dest: crate::apic::LAPIC.id(),
                        logical: false,
                        level: false,
                        masked: false,
                    },
                );
                crate::experiments::wait_until(boot, 20, true, || false);
            }
            io.mask(d.pit_gsi);
            crate::pit::stop(d.pit_port);
        }
        "pit-count1" => {
            crate::experiments::init(boot);
            let io = crate::ioapic::IoApic::new(d.ioapic_base);
            crate::interrupts::register(crate::vectors::PIT, tick);
            io.route(
                d.pit_gsi,
                crate::ioapic::Route {
                    vector: crate::vectors::PIT,
                    dest: crate::apic::LAPIC.id(),
                    logical: false,
                    level: false,
                    masked: false,
                },
            );
            for mode in [0u8, 2, 3] {
                TICKS.store(0, Ordering::Relaxed);
                // SAFETY: the PIT's ports: channel 0, LSB then MSB, `mode`, count 1.
                unsafe {
                    port::outb(d.pit_port + 3, 0x30 | (mode << 1));
                    port::outb(d.pit_port, 1);
                    port::outb(d.pit_port, 0);
                }
                crate::experiments::wait_until(boot, 200, true, || false);
                crate::println!(
                    "hostile: PIT mode {} count 1: {} interrupts in 200 ms",
                    Dec(mode.into()),
                    Dec(TICKS.load(Ordering::Relaxed))
                );
            }
            io.mask(d.pit_gsi);
            crate::pit::stop(d.pit_port);
        }
        "unmapped-mmio" => {
            for addr in [
                0xc000_0000u64,
                0xd000_1000,
                0xe000_0000,
                0xfeb0_0000,
                0xfed0_0000,
                0xfec0_1000,
                0xff00_0000,
                0xffff_e000,
            ] {
                for width in [1u8, 2, 4, 8] {
                    for off in [0u64, 1, 3, 7, 0xff0] {
                        // SAFETY: addresses in the MMIO hole that no device (or only the
                        // optional test device) claims: no RAM is touched.
                        unsafe {
                            poke(addr + off, width, rng.next(), true);
                            poke(addr + off, width, 0, false);
                        }
                    }
                }
            }
        }
        "msi-garbage" => {
            crate::experiments::init(boot);
            let cpus = crate::smp::start_aps(boot);
            let base = d.msi_source_base;
            for round in 0..2000u64 {
                let off = rng.next() % (ms::WINDOW + 16);
                let width = [1u8, 2, 4, 8][(rng.next() % 4) as usize];
                let mut v = rng.next();
                // Keep runs short: a count or rate from the generator could keep the device
                // busy for hours, which is the device's business but not this test's.
                if off & !3 == ms::COUNT {
                    v %= 64;
                }
                if off & !3 == ms::RATE_HZ {
                    v = 0;
                }
                // SAFETY: the MSI source window is MMIO (and a little past it, unclaimed).
                unsafe {
                    poke(base + off, width, v, round % 3 != 0);
                }
            }
            // SAFETY: stop any run still going.
            unsafe { poke(base + ms::CONTROL, 4, ms::CTRL_STOP.into(), true) };
            crate::println!("hostile: {} CPUs online", Dec(cpus as u64));
        }
        "sipi-storm" => {
            crate::experiments::init(boot);
            // A page the APs can start in: `cli; hlt; jmp $-1` at 0x60000 (free low memory
            // below the entry stack's top at 0x80000, far from it).
            const PARK: u64 = 0x6_0000;
            // SAFETY: the page is free, identity-mapped RAM.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    [0xfau8, 0xf4, 0xeb, 0xfd].as_ptr(),
                    PARK as *mut u8,
                    4,
                )
            };
            let all_but_self = 3 << 18;
            for _ in 0..1000 {
                crate::apic::LAPIC.send_ipi(0, all_but_self | (5 << 8) | (1 << 14));
                crate::apic::LAPIC.send_ipi(0, all_but_self | (6 << 8) | (PARK >> 12) as u32);
            }
        }
        "cli-hlt" => loop {
            // SAFETY: deliberately stops the CPU for good (only the watchdog ends the run).
            unsafe { core::arch::asm!("cli", "hlt") };
        },
        other => {
            crate::println!("hostile: unknown kind {} ignored", other);
            return;
        }
    }
    crate::println!("hostile: {} done, still standing", kind);
    crate::exit::exit(irqlab_abi::status::PASS);
}
