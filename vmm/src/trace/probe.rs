//! The VMM-side probes: an IRQ line and an MSI sink that wrap the real ones and record, with
//! host TSC stamps, each rising edge (a device raising its interrupt) and each
//! `KVM_SIGNAL_MSI` / `KVM_IRQ_LINE` call and return as [`HostEvent`]s for the [`Tracer`].

use super::{host_tsc, HostEvent, Source, Tracer};
use irqlab_devices::ioapic::PinRoute;
use irqlab_devices::{IrqLine, MsiMessage, MsiOutcome, MsiSink};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An [`IrqLine`] that records rising edges as raise events.
pub struct TracedLine {
    inner: Arc<dyn IrqLine>,
    tracer: Arc<Tracer>,
    source: Source,
    pin: Option<u8>,
    level: std::sync::atomic::AtomicBool,
    /// With the kernel irqchip the line *is* the injection (`KVM_IRQ_LINE`).
    injects: bool,
}

impl TracedLine {
    /// Wraps `inner`; `injects` when setting the line is itself the KVM call.
    pub fn new(
        inner: Arc<dyn IrqLine>,
        tracer: Arc<Tracer>,
        source: Source,
        pin: Option<u8>,
        injects: bool,
    ) -> Self {
        TracedLine {
            inner,
            tracer,
            source,
            pin,
            level: std::sync::atomic::AtomicBool::new(false),
            injects,
        }
    }
}

impl IrqLine for TracedLine {
    fn set_level(&self, level: bool) {
        let was = self.level.swap(level, Ordering::Relaxed);
        let rising = level && !was;
        if !rising {
            self.inner.set_level(level);
            return;
        }
        let call = host_tsc();
        self.tracer.host_event(HostEvent::Raise {
            source: self.source.clone(),
            pin: self.pin,
            tsc: call,
        });
        self.inner.set_level(level);
        if self.injects {
            self.tracer.host_event(HostEvent::Inject {
                source: self.source.clone(),
                pin: self.pin,
                msi: None,
                call,
                ret: host_tsc(),
                outcome: MsiOutcome::Delivered,
            });
        }
    }
}

/// An [`MsiSink`] that records every injection.
pub struct TracedSink {
    inner: Arc<dyn MsiSink>,
    tracer: Arc<Tracer>,
    /// Source of messages not coming from an IO-APIC pin.
    source: Source,
}

impl TracedSink {
    /// Wraps `inner`; messages sent without a pin are attributed to `source`.
    pub fn new(inner: Arc<dyn MsiSink>, tracer: Arc<Tracer>, source: Source) -> Self {
        TracedSink {
            inner,
            tracer,
            source,
        }
    }

    fn traced(&self, source: Source, pin: Option<u8>, msg: MsiMessage) -> MsiOutcome {
        let call = host_tsc();
        if pin.is_none() {
            // An MSI device's "raise" is its decision to send.
            self.tracer.host_event(HostEvent::Raise {
                source: source.clone(),
                pin,
                tsc: call,
            });
        }
        let outcome = self.inner.send(msg);
        let ret = host_tsc();
        self.tracer.host_event(HostEvent::Inject {
            source,
            pin,
            msi: Some(msg),
            call,
            ret,
            outcome,
        });
        outcome
    }
}

impl MsiSink for TracedSink {
    fn send(&self, msg: MsiMessage) -> MsiOutcome {
        self.traced(self.source.clone(), None, msg)
    }

    fn send_from_pin(&self, pin: u8, msg: MsiMessage) -> MsiOutcome {
        self.traced(Source::for_pin(pin), Some(pin), msg)
    }

    fn routes_changed(&self, routes: &[PinRoute]) {
        self.inner.routes_changed(routes)
    }
}
