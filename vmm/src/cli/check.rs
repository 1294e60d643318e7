//! `irqlab check`: the host capability report.

use irqlab::host::HostReport;
use irqlab::outcome::code;

pub fn check() -> u8 {
    let r = HostReport::probe();
    println!("host kind:      {}", r.kind.name());
    match &r.kvm_open {
        Ok(()) => println!("/dev/kvm:       accessible"),
        Err(e) => println!("/dev/kvm:       NOT accessible: {e}"),
    }
    if let Some(v) = r.api_version {
        println!(
            "KVM API:        {v}{}",
            if v == kvm_bindings::KVM_API_VERSION as i32 {
                ""
            } else {
                " (irqlab needs 12)"
            }
        );
    }
    for (req, ok) in &r.caps {
        println!(
            "{:<9} {:<28} {}{}",
            if *ok { "present" } else { "MISSING" },
            req.name,
            req.used_for,
            if req.required { " (required)" } else { "" }
        );
    }
    if !r.kind.can_run_software_interrupts() {
        println!("note: on {} hosts `int n` and `int3` end in KVM emulation failures; the guest reports those checks as SKIP", r.kind.name());
    }
    if r.usable() {
        println!("irqlab can run guests on this host");
        0
    } else {
        println!("irqlab cannot run guests on this host");
        code::HOST
    }
}
