//! Posting into a descriptor whose words hold anything (the guest owns that memory).
#![no_main]

mod common;
use common::Accept;
use irqlab_devices::posted::{post, DescriptorMemory};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::AtomicU64;

struct Words([AtomicU64; 8]);
impl DescriptorMemory for Words {
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }
}

fuzz_target!(|input: ([u64; 8], Vec<u8>)| {
    let (init, vectors) = input;
    let desc = Words(init.map(AtomicU64::new));
    for v in vectors.iter().take(512) {
        let _ = post(&desc, *v, &Accept);
    }
});
