//! How device interrupts reach KVM.
//!
//! * Split irqchip (default): devices drive IO-APIC pins ([`IoApicPin`]); the userspace
//!   IO-APIC turns each assertion into an MSI that [`KvmInterrupts`] sends with
//!   `KVM_SIGNAL_MSI` to the in-kernel local APICs. KVM only knows which vectors are
//!   level-triggered (and so must exit with `KVM_EXIT_IOAPIC_EOI` when the guest EOIs them)
//!   from the GSI routing table, so every change of the redirection table is mirrored into
//!   `KVM_SET_GSI_ROUTING` as one MSI route per pin.
//! * Kernel irqchip: devices drive GSIs with `KVM_IRQ_LINE` ([`KvmGsiLine`]); the routing
//!   table is set once so that ISA IRQ 0 (the in-kernel PIT) reaches IO-APIC pin 2, as on
//!   boards with an IO-APIC (KVM's default sends it to pin 0).
//!
//! MSI devices use `KVM_SIGNAL_MSI` in both models.

use irqlab_devices::ioapic::{IoApic, PinRoute};
use irqlab_devices::{IrqLine, MsiMessage, MsiOutcome, MsiSink};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// IO-APIC pin that ISA IRQ 0 (the PIT) is wired to.
const ISA_IRQ0_PIN: u32 = irqlab_abi::ports::PIT_GSI as u32;
/// The 8259 cascade input: no IO-APIC pin carries ISA IRQ 2.
const ISA_CASCADE: u32 = 2;

/// The KVM interrupt calls of one VM that failed: counted by its [`KvmInterrupts`] and its
/// [`KvmGsiLine`]s, read at the end of the run
/// ([`Devices::report`](crate::device_manager::Devices::report)). The guest runs on: such a
/// failure is reported, not fatal.
#[derive(Debug, Default)]
pub struct KvmIrqErrors {
    /// `KVM_SET_GSI_ROUTING` calls that failed when the IO-APIC's routes changed (the
    /// level-triggered EOI exits of those routes may be missing).
    pub routing: AtomicU64,
    /// `KVM_IRQ_LINE` calls KVM refused, over every GSI line.
    pub gsi_lines: AtomicU64,
}

/// Sends MSIs and mirrors IO-APIC routes into KVM.
pub struct KvmInterrupts {
    vm: Arc<VmFd>,
    errors: Arc<KvmIrqErrors>,
}

impl KvmInterrupts {
    /// Interrupts of `vm`, counting failed routing updates in `errors`.
    pub fn new(vm: Arc<VmFd>, errors: Arc<KvmIrqErrors>) -> Self {
        KvmInterrupts { vm, errors }
    }

    fn set_routing(&self, entries: &[kvm_irq_routing_entry]) -> Result<(), kvm_ioctls::Error> {
        let routing = KvmIrqRouting::from_entries(entries)
            .map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
        self.vm.set_gsi_routing(&routing)
    }

    /// Kernel irqchip: ISA IRQs 0–15 to the PICs, GSIs 0–23 to IO-APIC pins, except that ISA
    /// IRQ 0 goes to pin 2 and no GSI reaches pin 0 (the MADT interrupt-source override every
    /// PC firmware publishes).
    pub fn route_kernel_irqchip(&self) -> Result<(), kvm_ioctls::Error> {
        let chip = |gsi: u32, irqchip: u32, pin: u32| {
            let mut e = kvm_irq_routing_entry {
                gsi,
                type_: KVM_IRQ_ROUTING_IRQCHIP,
                ..Default::default()
            };
            e.u.irqchip.irqchip = irqchip;
            e.u.irqchip.pin = pin;
            e
        };
        let mut entries = Vec::new();
        for gsi in 0..crate::vm::IOAPIC_PINS as u32 {
            if gsi < 8 {
                entries.push(chip(gsi, KVM_IRQCHIP_PIC_MASTER, gsi));
            } else if gsi < 16 {
                entries.push(chip(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8));
            }
            match gsi {
                0 => entries.push(chip(0, KVM_IRQCHIP_IOAPIC, ISA_IRQ0_PIN)),
                ISA_CASCADE => {}
                _ => entries.push(chip(gsi, KVM_IRQCHIP_IOAPIC, gsi)),
            }
        }
        self.set_routing(&entries)
    }
}

impl MsiSink for KvmInterrupts {
    fn send(&self, msg: MsiMessage) -> MsiOutcome {
        let msi = kvm_msi {
            address_lo: msg.address as u32,
            address_hi: (msg.address >> 32) as u32,
            data: msg.data,
            ..Default::default()
        };
        // KVM_SIGNAL_MSI: > 0 accepted by that many LAPICs, 0 no destination, < 0 error.
        match self.vm.signal_msi(msi) {
            Ok(n) if n > 0 => MsiOutcome::Delivered,
            Ok(_) => MsiOutcome::Blocked,
            Err(e) => MsiOutcome::Failed(e.errno()),
        }
    }

    fn routes_changed(&self, routes: &[PinRoute]) {
        let entries: Vec<_> = routes
            .iter()
            // A masked level pin can still owe an EOI (Remote IRR set, e.g. a handler that
            // masks its pin before EOI). Dropping its route would drop the vector from KVM's
            // EOI-exit bitmap and leave Remote IRR stuck; QEMU keeps the last route of a masked
            // pin for the same reason. irqlab never delivers through these routes (it sends
            // KVM_SIGNAL_MSI), so keeping them has no other effect.
            .filter(|r| !r.masked || r.level)
            .map(|r| {
                let mut e = kvm_irq_routing_entry {
                    gsi: r.pin,
                    type_: KVM_IRQ_ROUTING_MSI,
                    ..Default::default()
                };
                e.u.msi.address_lo = r.msi.address as u32;
                e.u.msi.address_hi = (r.msi.address >> 32) as u32;
                e.u.msi.data = r.msi.data;
                e
            })
            .collect();
        if self.set_routing(&entries).is_err() {
            self.errors.routing.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A GSI of the in-kernel irqchip, driven with `KVM_IRQ_LINE`.
pub struct KvmGsiLine {
    vm: Arc<VmFd>,
    gsi: u32,
    errors: Arc<KvmIrqErrors>,
}

impl KvmGsiLine {
    /// Line `gsi` of `vm`, counting the calls KVM refuses in `errors`.
    pub fn new(vm: Arc<VmFd>, gsi: u32, errors: Arc<KvmIrqErrors>) -> Self {
        KvmGsiLine { vm, gsi, errors }
    }
}

impl IrqLine for KvmGsiLine {
    fn set_level(&self, level: bool) {
        if self.vm.set_irq_line(self.gsi, level).is_err() {
            self.errors.gsi_lines.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An input pin of the userspace IO-APIC.
pub struct IoApicPin {
    ioapic: Arc<Mutex<IoApic>>,
    pin: usize,
}

impl IoApicPin {
    /// Pin `pin` of `ioapic`.
    pub fn new(ioapic: Arc<Mutex<IoApic>>, pin: u8) -> Self {
        IoApicPin {
            ioapic,
            pin: pin.into(),
        }
    }
}

impl IrqLine for IoApicPin {
    fn set_level(&self, level: bool) {
        self.ioapic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_irq(self.pin, level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM without an in-kernel irqchip: KVM refuses both routing and `KVM_IRQ_LINE`.
    fn bare_vm() -> Option<Arc<VmFd>> {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            println!("SKIP: no /dev/kvm");
            return None;
        };
        Some(Arc::new(kvm.create_vm().unwrap()))
    }

    #[test]
    fn refused_calls_are_counted_in_the_shared_errors() {
        let Some(vm) = bare_vm() else {
            return;
        };
        let errors = Arc::new(KvmIrqErrors::default());
        let lines: Vec<KvmGsiLine> = (0..2)
            .map(|gsi| KvmGsiLine::new(vm.clone(), gsi, errors.clone()))
            .collect();
        lines[0].set_level(true);
        lines[1].set_level(true);
        lines[1].set_level(false);
        assert_eq!(errors.gsi_lines.load(Ordering::Relaxed), 3);

        let irqs = KvmInterrupts::new(vm, errors.clone());
        irqs.routes_changed(&[PinRoute {
            pin: 0,
            msi: MsiMessage {
                address: 0xfee0_0000,
                data: 0x30,
            },
            level: true,
            masked: false,
        }]);
        assert_eq!(errors.routing.load(Ordering::Relaxed), 1);
        assert_eq!(errors.gsi_lines.load(Ordering::Relaxed), 3);
    }

    fn kvm() -> Option<kvm_ioctls::Kvm> {
        match crate::vm::open_kvm() {
            Ok(kvm) => Some(kvm),
            Err(e) => {
                println!("SKIP: /dev/kvm not accessible: {e}");
                None
            }
        }
    }

    fn vm(mode: crate::config::IrqchipMode) -> Option<Arc<VmFd>> {
        let kvm = kvm()?;
        match crate::vm::create(&kvm, mode) {
            Ok(vm) => Some(Arc::new(vm)),
            Err(e @ crate::vm::VmError::MissingCap { .. }) => {
                println!("SKIP: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// The in-kernel IO-APIC's IRR: the pins whose line is asserted.
    fn ioapic_irr(vm: &VmFd) -> u32 {
        let mut chip = kvm_bindings::kvm_irqchip {
            chip_id: KVM_IRQCHIP_IOAPIC,
            ..Default::default()
        };
        vm.get_irqchip(&mut chip).unwrap();
        // SAFETY: KVM filled the `ioapic` member, as `chip_id` asked; every bit pattern is a
        // valid `kvm_ioapic_state`.
        unsafe { chip.chip.ioapic.irr }
    }

    #[test]
    fn kernel_irqchip_routes_isa_irq0_to_pin2_and_nothing_to_pin0() {
        let Some(vm) = vm(crate::config::IrqchipMode::Kernel) else {
            return;
        };
        let errors = Arc::new(KvmIrqErrors::default());
        let line = |gsi| KvmGsiLine::new(vm.clone(), gsi, errors.clone());
        // KVM's default routing, for contrast: GSI 0 reaches pin 0.
        line(0).set_level(true);
        assert_eq!(ioapic_irr(&vm), 1 << 0);
        line(0).set_level(false);
        assert_eq!(ioapic_irr(&vm), 0);

        KvmInterrupts::new(vm.clone(), errors.clone())
            .route_kernel_irqchip()
            .unwrap();
        line(0).set_level(true);
        assert_eq!(ioapic_irr(&vm), 1 << ISA_IRQ0_PIN, "ISA IRQ 0 at pin 2");
        line(0).set_level(false);
        // The cascade GSI reaches no IO-APIC pin.
        line(ISA_CASCADE).set_level(true);
        assert_eq!(ioapic_irr(&vm), 0, "GSI 2 reaches no pin");
        line(ISA_CASCADE).set_level(false);
        // The others are identity-mapped, PIC-routed or not.
        for gsi in [1, 9, 15, 16, 23] {
            line(gsi).set_level(true);
            assert_eq!(ioapic_irr(&vm), 1 << gsi, "GSI {gsi}");
            line(gsi).set_level(false);
        }
        assert_eq!(errors.gsi_lines.load(Ordering::Relaxed), 0);
        assert_eq!(errors.routing.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn signal_msi_results_map_to_outcomes() {
        let Some(vm) = vm(crate::config::IrqchipMode::Split) else {
            return;
        };
        let irqs = KvmInterrupts::new(vm.clone(), Default::default());
        let to = |apic: u64| MsiMessage {
            address: 0xfee0_0000 | apic << 12,
            data: 0x30,
        };
        // A vCPU whose local APIC is software-enabled (SVR bit 8) accepts a fixed MSI.
        let vcpu = vm.create_vcpu(0).unwrap();
        let mut lapic = vcpu.get_lapic().unwrap();
        lapic.regs[0xf1] |= 1;
        vcpu.set_lapic(&lapic).unwrap();
        assert_eq!(irqs.send(to(0)), MsiOutcome::Delivered);
        assert_eq!(irqs.send(to(7)), MsiOutcome::Blocked, "no APIC 7");
        // Without an in-kernel irqchip KVM refuses the call.
        let Some(bare) = bare_vm() else { return };
        let irqs = KvmInterrupts::new(bare, Default::default());
        assert_eq!(irqs.send(to(0)), MsiOutcome::Failed(libc::EINVAL));
    }

    #[test]
    fn split_irqchip_accepts_the_ioapic_routes() {
        let Some(vm) = vm(crate::config::IrqchipMode::Split) else {
            return;
        };
        let errors = Arc::new(KvmIrqErrors::default());
        let irqs = KvmInterrupts::new(vm, errors.clone());
        let route = |pin, level, masked| PinRoute {
            pin,
            msi: MsiMessage {
                address: 0xfee0_0000,
                data: 0x30 + pin,
            },
            level,
            masked,
        };
        irqs.routes_changed(&[
            route(0, false, false),
            route(1, true, false),
            route(2, true, true),
            route(3, false, true),
            route(23, true, false),
        ]);
        irqs.routes_changed(&[]);
        assert_eq!(errors.routing.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ioapic_pin_drives_the_userspace_ioapic() {
        use irqlab_devices::ioapic::{IOREGSEL_OFFSET, IOWIN_OFFSET};
        use irqlab_devices::BusDevice;
        #[derive(Default)]
        struct Rec(Mutex<Vec<MsiMessage>>);
        impl MsiSink for Rec {
            fn send(&self, m: MsiMessage) -> MsiOutcome {
                self.0.lock().unwrap().push(m);
                MsiOutcome::Delivered
            }
        }
        let sink = Arc::new(Rec::default());
        let ioapic = Arc::new(Mutex::new(IoApic::new(sink.clone())));
        let pin = IoApicPin::new(ioapic.clone(), 4);
        // Masked at reset: the edge is counted, not sent.
        pin.set_level(true);
        pin.set_level(false);
        assert_eq!(ioapic.lock().unwrap().stats(4).unwrap().masked_edges, 1);
        assert!(sink.0.lock().unwrap().is_empty());
        // Unmasked, edge-triggered, vector 0x34 to APIC 0.
        {
            let mut chip = ioapic.lock().unwrap();
            chip.write(IOREGSEL_OFFSET, &[0x10 + 2 * 4]);
            chip.write(IOWIN_OFFSET, &0x34u32.to_le_bytes());
        }
        pin.set_level(true);
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec![MsiMessage {
                address: 0xfee0_0000,
                data: 0x34
            }]
        );
        assert_eq!(ioapic.lock().unwrap().stats(4).unwrap().delivered, 1);
    }
}
