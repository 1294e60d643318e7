//! The mark port: a guest write of `v` records `(v, host time, what the VMM had counted so
//! far)`, so a benchmark can count the VMM's work (exits) between two points of the guest's
//! own timeline.
//!
//! The device knows nothing of what is counted: the VMM gives it a [`MarkContext`] (irqlab's
//! exit counters) whose snapshot each mark keeps. Writes outside offset 0 are ignored, and at
//! most [`MAX_MARKS`] are kept, so a guest writing the port in a loop cannot grow the VMM.

use crate::BusDevice;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most marks kept.
pub const MAX_MARKS: usize = 4096;

/// What a mark snapshots besides its value and time.
pub trait MarkContext: Send + Sync {
    /// The snapshot type.
    type Snapshot: Copy + Send;
    /// The state at the moment of a mark (the mark's own exit included, if it is counted).
    fn snapshot(&self) -> Self::Snapshot;
}

/// One guest mark.
#[derive(Debug, Clone, Copy)]
pub struct Mark<S> {
    /// The value the guest wrote.
    pub value: u32,
    /// Host time of the write.
    pub at: Instant,
    /// The context's snapshot at the write.
    pub exits: S,
}

/// The marks a run has recorded, shared between the port and whoever reports them.
pub type Marks<S> = Arc<Mutex<Vec<Mark<S>>>>;

/// The mark port device.
pub struct MarkPort<C: MarkContext> {
    context: Arc<C>,
    marks: Marks<C::Snapshot>,
}

impl<C: MarkContext> MarkPort<C> {
    /// A port snapshotting `context` into `marks`.
    pub fn new(context: Arc<C>, marks: Marks<C::Snapshot>) -> Self {
        MarkPort { context, marks }
    }
}

impl<C: MarkContext> BusDevice for MarkPort<C> {
    fn read(&mut self, _offset: u64, _data: &mut [u8]) {}

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(value) = crate::le_value(data).filter(|_| offset == 0) else {
            return;
        };
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if marks.len() < MAX_MARKS {
            marks.push(Mark {
                value: value as u32,
                at: Instant::now(),
                exits: self.context.snapshot(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Default)]
    struct Counter(AtomicU64);

    impl MarkContext for Counter {
        type Snapshot = u64;
        fn snapshot(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn marks_snapshot_the_context() {
        let counter = Arc::new(Counter::default());
        let marks = Marks::default();
        let mut port = MarkPort::new(counter.clone(), marks.clone());
        counter.0.fetch_add(1, Ordering::Relaxed);
        port.write(0, &7u32.to_le_bytes());
        counter.0.fetch_add(2, Ordering::Relaxed);
        port.write(0, &8u32.to_le_bytes());
        port.write(2, &[1]); // outside the port: ignored
        let m = marks.lock().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].value, m[1].value), (7, 8));
        assert_eq!((m[0].exits, m[1].exits), (1, 3));
        assert!(m[1].at >= m[0].at);
    }

    #[test]
    fn marks_are_bounded() {
        let marks = Marks::default();
        let mut port = MarkPort::new(Arc::new(Counter::default()), marks.clone());
        for _ in 0..MAX_MARKS + 10 {
            port.write(0, &[1]);
        }
        assert_eq!(marks.lock().unwrap().len(), MAX_MARKS);
    }
}
