//! Driver for irqlab's MSI source device (register map: `irqlab_abi::msi_source`).

use irqlab_abi::msi_source as reg;

/// The device at `base`.
pub struct MsiSource {
    base: u64,
}

/// What a run did, as the device counted it.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    /// Raised.
    pub sent: u32,
    /// Merged into a pending interrupt.
    pub undelivered: u32,
    /// Host failures.
    pub failed: u32,
    /// Sent more than a period late.
    pub late: u32,
    /// Posted mode: events posted while SN was set.
    pub suppressed: u32,
}

impl MsiSource {
    /// The device whose window the boot info names.
    pub const fn new(base: u64) -> Self {
        MsiSource { base }
    }

    fn write(&self, offset: u64, value: u32) {
        // SAFETY: `base` is the identity-mapped MSI source window; registers are 32-bit.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn read(&self, offset: u64) -> u32 {
        // SAFETY: as in `write`.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    /// Whether the window holds the device.
    pub fn present(&self) -> bool {
        self.base != 0 && self.read(reg::ID) == reg::ID_VALUE
    }

    /// Starts a run: `count` MSIs of `vector` (fixed, edge) to APIC `dest` at `rate_hz`, the
    /// event counter written back to `write_back` (identity-mapped, so virtual = physical).
    pub fn start(
        &self,
        dest: u8,
        logical: bool,
        vector: u8,
        count: u32,
        rate_hz: u32,
        write_back: u64,
    ) {
        self.write(reg::WB_ADDR_LO, write_back as u32);
        self.write(reg::WB_ADDR_HI, (write_back >> 32) as u32);
        let msi = irqlab_x86::msi::Msi {
            logical,
            ..irqlab_x86::msi::Msi::fixed(dest, vector)
        };
        // The window is below 4 GiB (0xfee0_0000): the high half is zero.
        self.write(reg::ADDR_LO, msi.address() as u32);
        self.write(reg::ADDR_HI, 0);
        self.write(reg::DATA, msi.data());
        self.write(reg::COUNT, count);
        self.write(reg::RATE_HZ, rate_hz);
        self.write(reg::CONTROL, reg::CTRL_START);
    }

    /// Chooses direct (one MSI per event) or posted delivery into the descriptor at `pid`.
    pub fn set_mode(&self, posted: bool, pid: u64) {
        self.write(
            reg::MODE,
            if posted {
                reg::MODE_POSTED
            } else {
                reg::MODE_DIRECT
            },
        );
        self.write(reg::PID_LO, pid as u32);
        self.write(reg::PID_HI, (pid >> 32) as u32);
    }

    /// Notifications sent (posted mode).
    pub fn notified(&self) -> u32 {
        self.read(reg::NOTIFIED)
    }

    /// Whether a run is in progress.
    pub fn busy(&self) -> bool {
        self.read(reg::CONTROL) & reg::STATUS_BUSY != 0
    }

    /// The run's counters.
    pub fn counters(&self) -> Counters {
        Counters {
            sent: self.read(reg::SENT),
            undelivered: self.read(reg::UNDELIVERED),
            failed: self.read(reg::FAILED),
            late: self.read(reg::LATE),
            suppressed: self.read(reg::SUPPRESSED),
        }
    }
}
