//! What a stopped vCPU looked like, for the reports: its registers and the instruction bytes
//! at CS:RIP, its run state when the run was stopped under it, and whether KVM kept the
//! state at all (SVM's SHUTDOWN intercept does not).

use crate::memory::GuestMemory;
use crate::outcome::{mp_state_name, CpuSnapshot, LastExit, VcpuAtStop};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

/// The linear address of CS:RIP: RIP itself in 64-bit code (CS's base is ignored there),
/// else CS's base plus RIP within 4 GiB (real mode after INIT: 0xffff0000 + 0xfff0).
fn code_linear(rip: u64, cs_base: u64, long_mode_cs: bool) -> u64 {
    if long_mode_cs {
        rip
    } else {
        cs_base.wrapping_add(rip) & 0xffff_ffff
    }
}

/// Why the registers read after `KVM_EXIT_SHUTDOWN` are not the guest's, if they are not.
///
/// On AMD SVM the VMCB is undefined after a SHUTDOWN intercept, so KVM INITs the vCPU before
/// it returns to userspace (`shutdown_interception` in arch/x86/kvm/svm/svm.c): what
/// `KVM_GET_REGS` then returns is the INIT state, not the state at the fault. On VMX and
/// kvm-pvm the state is kept. The INIT signature (real mode, CS 0xf000, RIP 0xfff0) is checked
/// too, so a host irqlab cannot name is not misreported either.
pub fn discarded_at_shutdown(
    host: irqlab_abi::boot_info::HostKind,
    cpu: &CpuSnapshot,
) -> Option<&'static str> {
    let init_state = cpu.cr0 & 1 == 0 && cpu.cs == 0xf000 && cpu.rip == 0xfff0;
    if host == irqlab_abi::boot_info::HostKind::Svm {
        Some("on AMD SVM, KVM INITs the vCPU at the SHUTDOWN intercept (the VMCB is undefined after it), so the state at the fault is gone")
    } else if init_state {
        Some("KVM returned the INIT state (real mode at f000:fff0), not the state at the fault")
    } else {
        None
    }
}

/// Where the vCPU is now that it has left `KVM_RUN` for a stop: its run state, RIP and CS,
/// the instruction bytes there, and its last exit to irqlab.
pub fn at_stop(fd: &VcpuFd, vcpu: u8, mem: &GuestMemory, last_exit: &LastExit) -> VcpuAtStop {
    let state = fd
        .get_mp_state()
        .map_or("in an unknown run state", |m| mp_state_name(m.mp_state));
    VcpuAtStop {
        vcpu,
        state,
        cpu: snapshot(fd, mem),
        last_exit: *last_exit,
        since_last_exit: last_exit.at.map(|t| t.elapsed()),
    }
}

/// Registers and the instruction bytes at CS:RIP (its linear address translated through
/// the guest's own page tables with `KVM_TRANSLATE`).
pub fn snapshot(fd: &VcpuFd, mem: &GuestMemory) -> CpuSnapshot {
    let mut cpu = CpuSnapshot::default();
    if let Ok(regs) = fd.get_regs() {
        cpu.rip = regs.rip;
        cpu.rsp = regs.rsp;
        cpu.rflags = regs.rflags;
    }
    let mut linear = cpu.rip;
    if let Ok(s) = fd.get_sregs() {
        (cpu.cr0, cpu.cr2, cpu.cr3, cpu.cr4, cpu.efer, cpu.cs) =
            (s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector);
        linear = code_linear(cpu.rip, s.cs.base, s.cs.l != 0);
    }
    let gpa = match fd.translate_gva(linear) {
        Ok(t) if t.valid != 0 => Some(t.physical_address),
        _ if cpu.cr0 & (1 << 31) == 0 => Some(linear),
        _ => None,
    };
    if let Some(gpa) = gpa {
        // Up to 15 bytes (the longest instruction): fewer where guest RAM ends.
        let mut code = [0u8; 15];
        let n = mem.read(&mut code, GuestAddress(gpa)).unwrap_or(0);
        cpu.code = code[..n].to_vec();
    }
    cpu
}

#[cfg(test)]
mod tests {
    use super::*;
    use irqlab_abi::boot_info::HostKind;

    fn init_state() -> CpuSnapshot {
        CpuSnapshot {
            rip: 0xfff0,
            cs: 0xf000,
            cr0: 0x6000_0010,
            ..Default::default()
        }
    }

    #[test]
    fn svm_shutdown_state_is_never_reported_as_the_guests() {
        let long_mode = CpuSnapshot {
            rip: 0x10_2000,
            cs: 0x8,
            cr0: 0x8000_0011,
            ..Default::default()
        };
        // SVM: KVM INITs the vCPU whatever registers it then returns.
        assert!(discarded_at_shutdown(HostKind::Svm, &init_state()).is_some());
        assert!(discarded_at_shutdown(HostKind::Svm, &long_mode).is_some());
        // Elsewhere the state is kept, unless it is the INIT signature.
        assert!(discarded_at_shutdown(HostKind::Vmx, &long_mode).is_none());
        assert!(discarded_at_shutdown(HostKind::Pvm, &long_mode).is_none());
        assert!(discarded_at_shutdown(HostKind::Unknown, &init_state()).is_some());
    }

    #[test]
    fn code_is_read_at_cs_base_plus_rip_outside_64_bit_code() {
        // An AP waiting for INIT: real mode, CS base 0xffff0000, RIP 0xfff0.
        assert_eq!(code_linear(0xfff0, 0xffff_0000, false), 0xffff_fff0);
        // Flat 32-bit protected mode, and 64-bit code whatever the base says.
        assert_eq!(code_linear(0x10_0000, 0, false), 0x10_0000);
        assert_eq!(
            code_linear(0xffff_ffff_8100_0000, 0x1000, true),
            0xffff_ffff_8100_0000
        );
    }
}
