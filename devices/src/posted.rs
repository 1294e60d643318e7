//! The producer side of posted-interrupt notification (`irqlab_abi::posted`): post a vector
//! into a vCPU's descriptor and send one notification only when none is outstanding.
//!
//! The sequence and its barriers follow Linux's `__vmx_deliver_posted_interrupt()` and
//! `pi_test_and_set_pir()` / `pi_test_and_set_on()` (arch/x86/kvm/vmx/posted_intr.h):
//!
//! 1. `lock or` the vector's PIR bit. A locked read-modify-write is a full barrier on x86;
//!    here `fetch_or(SeqCst)`. The bit must be globally visible *before* ON is tested and
//!    set: a consumer that clears ON and then harvests must find it, or the event would wait
//!    for a notification nobody sends.
//! 2. Read the control word; if SN is set, stop (the consumer polls).
//! 3. `lock bts` ON (`fetch_or(SeqCst)`); if it was already set, a notification is
//!    outstanding and the consumer will harvest this bit with the others: stop.
//! 4. Send exactly one notification: an MSI with NV to NDST.
//!
//! The consumer (guest) harvests each PIR word with an atomic exchange, clears ON *last* and
//! harvests once more, so a post that raced with the harvest is either seen or followed by a
//! new notification (it found ON clear).
//!
//! # Example
//! ```
//! use irqlab_abi::posted;
//! use irqlab_devices::posted::{post, DescriptorMemory, PostOutcome, Descriptor};
//! use irqlab_devices::{MsiMessage, MsiOutcome, MsiSink};
//! use std::sync::atomic::AtomicU64;
//!
//! struct Count(std::sync::atomic::AtomicU32);
//! impl MsiSink for Count {
//!     fn send(&self, _: MsiMessage) -> MsiOutcome {
//!         self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         MsiOutcome::Delivered
//!     }
//! }
//! let desc = Descriptor::new();
//! desc.word(posted::CONTROL_WORD).store(posted::control(0xeb, 0), std::sync::atomic::Ordering::SeqCst);
//! let sink = Count(Default::default());
//! assert_eq!(post(&desc, 0x41, &sink), PostOutcome::Notified);
//! assert_eq!(post(&desc, 0x42, &sink), PostOutcome::Coalesced);
//! ```

use crate::{MsiMessage, MsiOutcome, MsiSink};
use irqlab_abi::posted::{self as abi, CONTROL_WORD, ON, SN};
use std::sync::atomic::{AtomicU64, Ordering};

/// Words in a posted-interrupt descriptor (64 bytes).
pub const WORDS: usize = (abi::DESC_SIZE / 8) as usize;

/// Access to one descriptor's eight 64-bit words as atomics (guest memory in the VMM, through
/// vm-memory's checked atomic accessor; plain memory in tests).
pub trait DescriptorMemory: Send + Sync {
    /// Word `i` (`i < WORDS`) of the descriptor. Panics if `i` is out of range.
    fn word(&self, i: usize) -> &AtomicU64;
}

/// A descriptor in host memory (tests, examples).
#[repr(C, align(64))]
#[derive(Default)]
pub struct Descriptor([AtomicU64; WORDS]);

impl Descriptor {
    /// All zero.
    pub fn new() -> Self {
        Self::default()
    }
}

impl DescriptorMemory for Descriptor {
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.0[i]
    }
}

/// What a post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// ON went 0 → 1 and a notification was sent.
    Notified,
    /// A notification was already outstanding.
    Coalesced,
    /// SN was set: posted without notification.
    Suppressed,
    /// The notification could not be sent (errno).
    Failed(i32),
}

/// Posts `vector` into `desc` and notifies through `sink` if needed.
pub fn post(desc: &dyn DescriptorMemory, vector: u8, sink: &dyn MsiSink) -> PostOutcome {
    let (word, bit) = abi::pir_bit(vector);
    // (1) PIR first, with a full barrier.
    desc.word(word).fetch_or(bit, Ordering::SeqCst);
    // (2) Suppressed: the consumer is polling.
    let control = desc.word(CONTROL_WORD).load(Ordering::SeqCst);
    if control & SN != 0 {
        return PostOutcome::Suppressed;
    }
    // (3) Only the 0 → 1 transition of ON notifies.
    if desc.word(CONTROL_WORD).fetch_or(ON, Ordering::SeqCst) & ON != 0 {
        return PostOutcome::Coalesced;
    }
    // (4) One notification: NV to NDST, fixed delivery, physical destination, edge.
    let msi = irqlab_x86::msi::Msi::fixed(abi::ndst(control), abi::nv(control));
    let msg = MsiMessage {
        address: msi.address(),
        data: msi.data(),
    };
    match sink.send(msg) {
        MsiOutcome::Failed(e) => PostOutcome::Failed(e),
        _ => PostOutcome::Notified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::sync::Arc;

    #[derive(Default)]
    struct Notes(AtomicU32);
    impl MsiSink for Notes {
        fn send(&self, _: MsiMessage) -> MsiOutcome {
            self.0.fetch_add(1, Ordering::SeqCst);
            MsiOutcome::Delivered
        }
    }

    fn desc() -> Descriptor {
        let d = Descriptor::new();
        d.0[CONTROL_WORD].store(abi::control(0xeb, 3), Ordering::SeqCst);
        d
    }

    #[test]
    fn first_post_notifies_nv_at_ndst_then_coalesces() {
        struct Rec(std::sync::Mutex<Vec<MsiMessage>>);
        impl MsiSink for Rec {
            fn send(&self, m: MsiMessage) -> MsiOutcome {
                self.0.lock().unwrap().push(m);
                MsiOutcome::Delivered
            }
        }
        let d = desc();
        let sink = Rec(Default::default());
        assert_eq!(post(&d, 0x41, &sink), PostOutcome::Notified);
        assert_eq!(post(&d, 0x41, &sink), PostOutcome::Coalesced);
        assert_eq!(post(&d, 0x80, &sink), PostOutcome::Coalesced);
        let sent = sink.0.lock().unwrap();
        assert_eq!(
            *sent,
            vec![MsiMessage {
                address: 0xfee0_3000,
                data: 0xeb
            }]
        );
        assert_eq!(
            d.0[1].load(Ordering::SeqCst),
            1 << 1,
            "vector 0x41 = word 1 bit 1"
        );
        assert_eq!(
            d.0[2].load(Ordering::SeqCst),
            1,
            "vector 0x80 = word 2 bit 0"
        );
    }

    #[test]
    fn suppressed_notification_still_posts() {
        let d = desc();
        d.0[CONTROL_WORD].fetch_or(SN, Ordering::SeqCst);
        let sink = Notes::default();
        assert_eq!(post(&d, 0x41, &sink), PostOutcome::Suppressed);
        assert_eq!(sink.0.load(Ordering::SeqCst), 0);
        assert_ne!(d.0[1].load(Ordering::SeqCst), 0);
        assert_eq!(d.0[CONTROL_WORD].load(Ordering::SeqCst) & ON, 0);
    }

    /// The guest's harvest, as `guest/src/posted.rs` does it.
    fn harvest(d: &Descriptor, seen: &mut [u64; 256]) -> u32 {
        let mut n = 0;
        for word in 0..4 {
            let mut bits = d.0[word].swap(0, Ordering::SeqCst);
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                seen[word * 64 + b as usize] += 1;
                n += 1;
            }
        }
        n
    }

    /// Many producers, one consumer that handles notifications like the guest: no event is
    /// lost (every producer's events are accounted for through its counter), and a
    /// notification is only sent on ON's 0 → 1 edge.
    #[test]
    fn stress_many_producers_no_lost_work() {
        const PRODUCERS: usize = 4;
        const EVENTS: u64 = 20_000;
        let d = Arc::new(desc());
        let notes = Arc::new(Notes::default());
        let produced: Arc<[AtomicU64; PRODUCERS]> = Arc::new(Default::default());
        let done = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (d, notes, produced) = (d.clone(), notes.clone(), produced.clone());
                std::thread::spawn(move || {
                    for _ in 0..EVENTS {
                        // The device's event counter first, then the post (as the MSI source
                        // writes its counter back before notifying).
                        produced[p].fetch_add(1, Ordering::SeqCst);
                        post(d.as_ref(), 0x40 + p as u8, notes.as_ref());
                    }
                })
            })
            .collect();
        let consumer = {
            let (d, produced, done) = (d.clone(), produced.clone(), done.clone());
            std::thread::spawn(move || {
                let mut consumed = [0u64; PRODUCERS];
                let mut seen = [0u64; 256];
                let drain = |seen: &mut [u64; 256], consumed: &mut [u64; PRODUCERS]| {
                    if harvest(&d, seen) > 0 {
                        for p in 0..PRODUCERS {
                            // The handler drains the source's counter: all events so far.
                            consumed[p] = produced[p].load(Ordering::SeqCst);
                        }
                    }
                };
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    if d.0[CONTROL_WORD].load(Ordering::SeqCst) & ON != 0 {
                        drain(&mut seen, &mut consumed);
                        d.0[CONTROL_WORD].fetch_and(!ON, Ordering::SeqCst);
                        drain(&mut seen, &mut consumed);
                    }
                    if finished {
                        break;
                    }
                }
                // After the producers stopped, nothing may remain posted without ON set.
                let pir: u64 = (0..4).map(|w| d.0[w].load(Ordering::SeqCst)).sum();
                let on = d.0[CONTROL_WORD].load(Ordering::SeqCst) & ON;
                assert!(
                    pir == 0 || on != 0,
                    "work posted but no notification outstanding"
                );
                if on != 0 {
                    drain(&mut seen, &mut consumed);
                }
                consumed
            })
        };
        for h in handles {
            h.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
        let consumed = consumer.join().unwrap();
        for (p, c) in consumed.iter().enumerate() {
            assert_eq!(*c, EVENTS, "producer {p}: events lost");
        }
        let n = notes.0.load(Ordering::SeqCst) as u64;
        assert!(
            n >= 1 && n <= PRODUCERS as u64 * EVENTS,
            "{n} notifications"
        );
    }
}
