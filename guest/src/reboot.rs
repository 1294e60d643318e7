//! The three ways a PC kernel asks for a reboot, as Linux tries them (`reboot=acpi,kbd,pci`):
//! the ACPI reset register the FADT names, the i8042's reset pulse, and the chipset's reset
//! control register at 0xCF9. `crash=reboot-acpi|reboot-kbd|reboot-cf9` uses one of them; the
//! VMM ends the run with "guest requested reboot".

use crate::port;

/// i8042 command/status port and its "pulse the reset line" command.
const I8042_COMMAND: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;
/// Reset control register: SYS_RST | RST_CPU.
const RESET_CONTROL: u16 = 0xcf9;
const RESET_CONTROL_VALUE: u8 = 0x06;

/// Reads `N` bytes at physical address `addr` (the low 4 GiB are identity-mapped).
fn phys<const N: usize>(addr: u64) -> [u8; N] {
    // SAFETY: the BIOS area and the ACPI tables below 4 GiB are identity-mapped RAM; reads
    // have no side effects.
    unsafe { core::ptr::read_unaligned(addr as *const [u8; N]) }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The FADT's reset register, if it names a system-I/O port: (port, value). Finds the RSDP
/// by scanning the BIOS area (0xE0000–0xFFFFF on 16-byte boundaries) as an OS without boot
/// information does, then walks XSDT → FACP.
pub fn acpi_reset_register() -> Option<(u16, u8)> {
    let rsdp = (0xe_0000u64..0x10_0000)
        .step_by(16)
        .find(|&a| phys::<8>(a) == *b"RSD PTR ")?;
    let head: [u8; 36] = phys(rsdp);
    if head[15] < 2 {
        return None;
    }
    let xsdt = u64::from_le_bytes(head[24..32].try_into().ok()?);
    let xsdt_head: [u8; 36] = phys(xsdt);
    let entries = (le32(&xsdt_head, 4) as u64).checked_sub(36)? / 8;
    for i in 0..entries.min(32) {
        let table = u64::from_le_bytes(phys(xsdt + 36 + 8 * i));
        let fadt: [u8; 129] = phys(table);
        if fadt[..4] != *b"FACP" {
            continue;
        }
        let reset_reg_sup = le32(&fadt, 112) & (1 << 10) != 0;
        let system_io = fadt[116] == 1;
        let addr = u64::from_le_bytes(fadt[120..128].try_into().ok()?);
        return (reset_reg_sup && system_io && addr <= 0xffff).then_some((addr as u16, fadt[128]));
    }
    None
}

/// Asks for a reboot the way `how` names (`acpi`, `kbd`, `cf9`); returns if the request did
/// not take (or `how` is unknown).
pub fn request(how: &str) {
    let (port, value) = match how {
        "kbd" => (I8042_COMMAND, I8042_RESET),
        "cf9" => (RESET_CONTROL, RESET_CONTROL_VALUE),
        "acpi" => match acpi_reset_register() {
            Some(reg) => reg,
            None => {
                crate::println!("reboot: no ACPI reset register (no RSDP, or RESET_REG_SUP clear)");
                return;
            }
        },
        other => {
            crate::println!("reboot: unknown method {other}");
            return;
        }
    };
    crate::println!("reboot: {how}: port {:#x} <- {:#x}", port, value);
    // SAFETY: writing a reset register: the VMM ends the run (or the machine resets).
    unsafe { port::outb(port, value) };
}
