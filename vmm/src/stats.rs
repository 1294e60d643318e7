//! Counters of what the VMM did: userspace exits by reason, and marks the guest drops into
//! the run through the mark port (so a benchmark can count exits between two points of the
//! guest's own timeline).
//!
//! The mark port ([`irqlab_abi::ports::MARK`], 4 bytes wide; the device is
//! `irqlab_devices::mark`): a guest write of `v` records `(v, host time, exit counts so
//! far)`. The counts include the mark's own exit, so the exits strictly between two marks are
//! `b.exits.total - a.exits.total - 1`.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Userspace exits, by reason.
#[derive(Debug, Default)]
pub struct ExitCounters {
    pio: AtomicU64,
    mmio: AtomicU64,
    ioapic_eoi: AtomicU64,
    other: AtomicU64,
}

/// A snapshot of [`ExitCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExitCounts {
    /// Port I/O exits.
    pub pio: u64,
    /// MMIO exits.
    pub mmio: u64,
    /// `KVM_EXIT_IOAPIC_EOI` exits (split irqchip, level-triggered vectors).
    pub ioapic_eoi: u64,
    /// Everything else (signals, interrupt windows, shutdown, …).
    pub other: u64,
}

impl ExitCounts {
    /// All exits.
    pub fn total(&self) -> u64 {
        self.pio + self.mmio + self.ioapic_eoi + self.other
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &ExitCounts) -> ExitCounts {
        ExitCounts {
            pio: self.pio - earlier.pio,
            mmio: self.mmio - earlier.mmio,
            ioapic_eoi: self.ioapic_eoi - earlier.ioapic_eoi,
            other: self.other - earlier.other,
        }
    }
}

/// Exit kinds [`ExitCounters`] tells apart.
#[derive(Debug, Clone, Copy)]
pub enum ExitKind {
    /// Port I/O.
    Pio,
    /// MMIO.
    Mmio,
    /// IO-APIC EOI broadcast.
    IoapicEoi,
    /// Anything else.
    Other,
}

impl ExitCounters {
    /// Counts one exit.
    pub fn count(&self, kind: ExitKind) {
        match kind {
            ExitKind::Pio => &self.pio,
            ExitKind::Mmio => &self.mmio,
            ExitKind::IoapicEoi => &self.ioapic_eoi,
            ExitKind::Other => &self.other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> ExitCounts {
        ExitCounts {
            pio: self.pio.load(Ordering::Relaxed),
            mmio: self.mmio.load(Ordering::Relaxed),
            ioapic_eoi: self.ioapic_eoi.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }
}

/// Failures a run survived that may have changed what the guest saw: counted by the KVM
/// interrupt paths ([`crate::interrupts::KvmIrqErrors`]) and the userspace IO-APIC, shown at
/// the end of a run (when not zero) and in a trace's `summary.json` (where a summary written
/// before they existed reads as zeros).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureCounts {
    /// `KVM_SET_GSI_ROUTING` calls that failed when the userspace IO-APIC's routes changed
    /// (split irqchip): KVM may then miss the EOIs of level-triggered pins.
    pub routing_errors: u64,
    /// `KVM_IRQ_LINE` calls KVM refused, over every GSI line (kernel irqchip).
    pub gsi_line_errors: u64,
    /// Guest accesses to the userspace IO-APIC at an offset, width or register index it does
    /// not define (ignored; split irqchip).
    pub ioapic_bad_accesses: u64,
}

impl FailureCounts {
    /// One sentence per counter that is not zero (none for a clean run).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.routing_errors > 0 {
            lines.push(format!(
                "interrupts: {} KVM_SET_GSI_ROUTING calls failed (KVM may miss the EOIs of level-triggered IO-APIC pins)",
                self.routing_errors
            ));
        }
        if self.gsi_line_errors > 0 {
            lines.push(format!(
                "interrupts: {} KVM_IRQ_LINE calls failed (those GSI changes never reached the in-kernel irqchip)",
                self.gsi_line_errors
            ));
        }
        if self.ioapic_bad_accesses > 0 {
            lines.push(format!(
                "IO-APIC: {} guest accesses of an undefined offset, width or register were ignored",
                self.ioapic_bad_accesses
            ));
        }
        lines
    }
}

/// One guest mark: the exit counts at the guest's write of the mark port.
pub type Mark = irqlab_devices::mark::Mark<ExitCounts>;

/// The mark port device (in `irqlab_devices::mark`), snapshotting the exit counters.
pub type MarkPort = irqlab_devices::mark::MarkPort<ExitCounters>;

impl irqlab_devices::mark::MarkContext for ExitCounters {
    type Snapshot = ExitCounts;
    fn snapshot(&self) -> ExitCounts {
        ExitCounters::snapshot(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn marks_snapshot_the_exit_counts() {
        use irqlab_devices::BusDevice;
        let exits = Arc::new(ExitCounters::default());
        let marks = Arc::new(Mutex::new(Vec::new()));
        let mut port = MarkPort::new(exits.clone(), marks.clone());
        exits.count(ExitKind::Pio);
        port.write(0, &7u32.to_le_bytes());
        exits.count(ExitKind::Mmio);
        exits.count(ExitKind::Pio);
        port.write(0, &8u32.to_le_bytes());
        let m = marks.lock().unwrap();
        let d = m[1].exits.since(&m[0].exits);
        assert_eq!((d.pio, d.mmio, d.total()), (1, 1, 2));
    }

    #[test]
    fn failures_are_described_only_when_counted() {
        assert!(FailureCounts::default().describe().is_empty());
        let lines = FailureCounts {
            routing_errors: 0,
            gsi_line_errors: 2,
            ioapic_bad_accesses: 7,
        }
        .describe();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("interrupts: 2 KVM_IRQ_LINE calls failed"));
        assert!(lines[1].starts_with("IO-APIC: 7 guest accesses"));
        let lines = FailureCounts {
            routing_errors: 1,
            ..Default::default()
        }
        .describe();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("interrupts: 1 KVM_SET_GSI_ROUTING calls failed"));
    }

    #[test]
    fn failure_counts_read_from_partial_json() {
        let f: FailureCounts = serde_json::from_str(r#"{"ioapic_bad_accesses":3}"#).unwrap();
        assert_eq!(
            f,
            FailureCounts {
                ioapic_bad_accesses: 3,
                ..Default::default()
            }
        );
    }
}
