//! The VMM reading a trace ring whose header and records the guest wrote with anything.
#![no_main]

use irqlab::trace::ring::RingReader;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress};

fuzz_target!(|input: (u32, Vec<Vec<u8>>)| {
    let (capacity, writes) = input;
    let capacity = capacity % 64;
    let mem = irqlab::memory::create(1 << 20).unwrap();
    let at = 0x1000;
    let Ok(mut ring) = RingReader::setup(&mem, at, capacity, irqlab_abi::trace::MODE_RING) else {
        return;
    };
    // Each write is the guest scribbling over the header and records, then the VMM drains.
    for w in writes.iter().take(64) {
        let _ = mem.write_slice(&w[..w.len().min(4096)], GuestAddress(at));
        ring.drain(&mem);
        assert!(ring.records.len() as u64 <= u64::from(capacity) * 64 + 64);
    }
});
