//! The VMM side of the guest trace ring (`irqlab_abi::trace`): set-up and draining.

use crate::memory::GuestMemory;
use irqlab_abi::trace::{self as abi, Record, RingHeader};
use std::mem::size_of;
use vm_memory::{Bytes, GuestAddress};

/// Most records waiting for the trace writer (8 MiB); more are counted as lost. The writer
/// takes them every [`super::DRAIN_PERIOD`], so this is only reached if it stalls.
pub const MAX_RECORDS: usize = 256 << 10;

/// Reads records out of the ring as the guest writes them.
#[derive(Debug, Default)]
pub struct RingReader {
    addr: u64,
    capacity: u64,
    next: u64,
    /// Complete records drained and not yet taken by the trace writer ([`RingReader::take`]),
    /// in sequence order.
    pub records: Vec<Record>,
    /// Records overwritten before they were read (the ring was lapped) or torn.
    pub lost: u64,
}

/// Ring errors.
#[derive(Debug, thiserror::Error)]
#[error("trace ring at {addr:#x}: {source}")]
pub struct RingError {
    /// Guest-physical address.
    pub addr: u64,
    /// Why.
    #[source]
    pub source: vm_memory::GuestMemoryError,
}

impl RingReader {
    /// Writes the header for a ring of `capacity` records at `addr` in `mode`.
    pub fn setup(
        mem: &GuestMemory,
        addr: u64,
        capacity: u32,
        mode: u32,
    ) -> Result<RingReader, RingError> {
        let header = RingHeader {
            magic: abi::RING_MAGIC,
            version: 1,
            capacity,
            record_size: size_of::<Record>() as u32,
            mode,
            ..Default::default()
        };
        mem.write_obj(header, GuestAddress(addr))
            .map_err(|source| RingError { addr, source })?;
        Ok(RingReader {
            addr,
            capacity: capacity.into(),
            next: 1,
            records: Vec::new(),
            lost: 0,
        })
    }

    /// The records drained since the last call, leaving `spare` (emptied) in their place so
    /// its allocation is reused.
    pub fn take(&mut self, spare: Vec<Record>) -> Vec<Record> {
        let mut spare = spare;
        spare.clear();
        std::mem::replace(&mut self.records, spare)
    }

    /// Copies every record the guest completed since the last call.
    pub fn drain(&mut self, mem: &GuestMemory) {
        if self.capacity == 0 {
            return;
        }
        let head_addr = GuestAddress(self.addr + std::mem::offset_of!(RingHeader, head) as u64);
        let Ok(head) = mem.load::<u64>(head_addr, std::sync::atomic::Ordering::Acquire) else {
            return;
        };
        // `head` is guest-written: keep the arithmetic below far from overflow.
        let head = head.min(u64::MAX / 4);
        // A guest that claims more than it could have written is not trusted beyond the ring.
        if head >= self.next + self.capacity {
            let skip = head + 1 - self.capacity - self.next;
            self.lost += skip;
            self.next += skip;
        }
        while self.next <= head {
            let slot = (self.next - 1) % self.capacity;
            let at = GuestAddress(self.addr + size_of::<RingHeader>() as u64 + slot * 32);
            let Ok(seq) = mem.load::<u64>(at, std::sync::atomic::Ordering::Acquire) else {
                return;
            };
            if seq < self.next {
                // Claimed but not yet published: read it next time.
                return;
            }
            let Ok(rec) = mem.read_obj::<Record>(at) else {
                return;
            };
            if seq == self.next && rec.seq == seq && self.records.len() < MAX_RECORDS {
                self.records.push(rec);
            } else {
                self.lost += 1;
            }
            self.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(mem: &GuestMemory, addr: u64, cap: u64, seq: u64, vector: u8) {
        let slot = (seq - 1) % cap;
        let rec = Record {
            seq,
            vector,
            tsc_entry: seq * 10,
            tsc_eoi: seq * 10 + 5,
            ..Default::default()
        };
        mem.write_obj(rec, GuestAddress(addr + 64 + slot * 32))
            .unwrap();
        mem.write_obj(seq, GuestAddress(addr + 24)).unwrap();
    }

    #[test]
    fn drains_in_order_and_counts_lapped_records() {
        let mem = crate::memory::create(1 << 20).unwrap();
        let mut r = RingReader::setup(&mem, 0x1000, 4, abi::MODE_RING).unwrap();
        for s in 1..=3 {
            put(&mem, 0x1000, 4, s, 0x30);
        }
        r.drain(&mem);
        assert_eq!(
            r.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // The guest laps the ring: 4..=10 written, only the last 4 survive.
        for s in 4..=10 {
            put(&mem, 0x1000, 4, s, 0x31);
        }
        r.drain(&mem);
        assert_eq!(r.lost, 3);
        assert_eq!(r.records.last().unwrap().seq, 10);
        assert_eq!(r.records.len(), 3 + 4);
    }

    #[test]
    fn a_garbage_head_cannot_overflow_the_reader() {
        let mem = crate::memory::create(1 << 20).unwrap();
        let mut r = RingReader::setup(&mem, 0x1000, 4, abi::MODE_RING).unwrap();
        mem.write_obj(u64::MAX, GuestAddress(0x1000 + 24)).unwrap();
        r.drain(&mem);
        r.drain(&mem);
        assert!(r.records.is_empty());
        assert!(r.lost > 0);
    }

    #[test]
    fn a_claimed_but_unpublished_record_waits() {
        let mem = crate::memory::create(1 << 20).unwrap();
        let mut r = RingReader::setup(&mem, 0x1000, 8, abi::MODE_RING).unwrap();
        put(&mem, 0x1000, 8, 1, 0x30);
        mem.write_obj(2u64, GuestAddress(0x1000 + 24)).unwrap(); // head = 2, record 2 not yet
        r.drain(&mem);
        assert_eq!(r.records.len(), 1);
        put(&mem, 0x1000, 8, 2, 0x30);
        r.drain(&mem);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.lost, 0);
    }
}
