//! Posted-interrupt descriptors (Intel SDM vol. 3 §30.6; VT-d spec §9.11 "Posted Interrupt
//! Descriptor"), one per vCPU, 64-byte aligned, at `BootInfo::posted_desc_addr +
//! vcpu * posted_desc_stride`. See `docs/posted-interrupts.md` for the protocol.
//!
//! | bits    | field | meaning |
//! |---------|-------|---------|
//! | 255:0   | PIR   | posted-interrupt requests, one bit per vector (words 0–3) |
//! | 256     | ON    | outstanding notification: a notification was sent and not yet handled |
//! | 257     | SN    | suppress notification: post, but do not notify (the guest polls) |
//! | 279:272 | NV    | notification vector |
//! | 319:288 | NDST  | notification destination (xAPIC: APIC ID in bits 303:296) |
//! | 511:320 | –     | reserved, zero |
//!
//! As 64-bit words: words 0–3 are the PIR, word 4 is the control word below.

/// Size and alignment of a descriptor.
pub const DESC_SIZE: u64 = 64;
/// Index of the control word (bits 319:256).
pub const CONTROL_WORD: usize = 4;
/// Control word: outstanding notification.
pub const ON: u64 = 1 << 0;
/// Control word: suppress notification.
pub const SN: u64 = 1 << 1;
/// Control word: notification vector shift (bits 23:16 of the word).
pub const NV_SHIFT: u32 = 16;
/// Control word: xAPIC destination APIC ID shift (bits 47:40 of the word).
pub const NDST_XAPIC_SHIFT: u32 = 40;
/// Linux's `POSTED_MSI_NOTIFICATION_VECTOR`, irqlab's default notification vector.
pub const DEFAULT_NV: u8 = crate::vectors::POSTED_NOTIFICATION;

/// The control word for vector `nv` to APIC `dest`, ON and SN clear.
pub const fn control(nv: u8, dest: u8) -> u64 {
    ((nv as u64) << NV_SHIFT) | ((dest as u64) << NDST_XAPIC_SHIFT)
}

/// The notification vector of a control word.
pub const fn nv(control: u64) -> u8 {
    (control >> NV_SHIFT) as u8
}

/// The destination APIC ID of a control word.
pub const fn ndst(control: u64) -> u8 {
    (control >> NDST_XAPIC_SHIFT) as u8
}

/// PIR word and bit of `vector`.
pub const fn pir_bit(vector: u8) -> (usize, u64) {
    ((vector / 64) as usize, 1u64 << (vector % 64))
}
