//! Benchmark port: counts writes and remembers when the first and last arrived. The guest's
//! PIO cost loop writes it; `irqlab bench` divides the elapsed host time by the count to get
//! the PIO exit round trip through irqlab's full vCPU loop.
//!
//! # Example
//! ```
//! use irqlab_devices::{bench_port::BenchPort, BusDevice};
//! let mut port = BenchPort::default();
//! port.write(0, &[1]);
//! port.write(0, &[2]);
//! assert_eq!(port.count(), 2);
//! ```

use crate::BusDevice;
use std::time::{Duration, Instant};

/// The benchmark port.
#[derive(Debug, Default)]
pub struct BenchPort {
    count: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl BenchPort {
    /// Writes seen.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Host time between the first and the last write.
    pub fn span(&self) -> Duration {
        match (self.first, self.last) {
            (Some(a), Some(b)) => b.duration_since(a),
            _ => Duration::ZERO,
        }
    }
}

impl BusDevice for BenchPort {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {
        let now = Instant::now();
        self.count += 1;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_covers_first_to_last_write() {
        let mut port = BenchPort::default();
        assert_eq!(port.span(), Duration::ZERO);
        port.write(0, &[0]);
        std::thread::sleep(Duration::from_millis(2));
        port.write(0, &[0]);
        assert_eq!(port.count(), 2);
        assert!(port.span() >= Duration::from_millis(2));
    }
}
