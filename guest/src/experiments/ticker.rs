//! The periodic tick the process experiments run on: the LAPIC timer (default) or the PIT
//! through the IO-APIC (`timer=lapic|pit`, `hz=`).

use crate::apic::{TimerMode, LAPIC};
use crate::boot::Boot;
use crate::interrupts::{self, Handler};
use crate::ioapic::{IoApic, Route};
use crate::vectors;

/// A running periodic tick.
pub struct Ticker {
    /// Its vector.
    pub vector: u8,
    /// `lapic` or `pit`.
    pub name: &'static str,
    /// The rate really programmed, in milli-Hz.
    pub rate_mhz: u64,
    pit_port: Option<u16>,
}

impl Ticker {
    /// The vector `timer=` will use, before starting it (`None` for an unknown name).
    pub fn vector_for(which: &str) -> Option<u8> {
        match which {
            "lapic" => Some(vectors::LAPIC_TIMER),
            "pit" => Some(vectors::PIT),
            _ => None,
        }
    }

    /// Registers `handler` and starts `which` at `hz`.
    pub fn start(boot: &Boot, which: &str, hz: u64, handler: Handler) -> Option<Ticker> {
        let hz = hz.max(1);
        match which {
            "lapic" => {
                let count = (super::lapic_per_ms() * 1000 / hz).max(1);
                interrupts::register(vectors::LAPIC_TIMER, handler);
                LAPIC.start_timer(TimerMode::Periodic, vectors::LAPIC_TIMER, count as u32);
                Some(Ticker {
                    vector: vectors::LAPIC_TIMER,
                    name: "lapic",
                    rate_mhz: super::lapic_per_ms() * 1_000_000 / count,
                    pit_port: None,
                })
            }
            "pit" => {
                let (_, real) = start_pit(boot, hz, handler);
                Some(Ticker {
                    vector: vectors::PIT,
                    name: "pit",
                    rate_mhz: real,
                    pit_port: Some(boot.info.devices.pit_port),
                })
            }
            _ => None,
        }
    }

    /// Stops the tick. Its handler becomes a no-op rather than going away: a tick already
    /// pending (in the LAPIC's IRR, or on its way from the IO-APIC) is still delivered once
    /// interrupts are enabled again, and must not count as unexpected.
    pub fn stop(self, boot: &Boot) {
        match self.pit_port {
            Some(port) => {
                crate::pit::stop(port);
                route_pit(boot, true);
            }
            None => LAPIC.stop_timer(),
        }
        interrupts::register(self.vector, late_tick);
    }
}

/// What a tick arriving after [`Ticker::stop`] does: nothing (the dispatcher sends the EOI).
fn late_tick() {}

/// Routes the PIT's GSI at [`vectors::PIT`], edge-triggered, to this CPU; `masked` or not.
fn route_pit(boot: &Boot, masked: bool) {
    let d = &boot.info.devices;
    IoApic::new(d.ioapic_base).route(
        d.pit_gsi,
        Route {
            vector: vectors::PIT,
            dest: LAPIC.id(),
            logical: false,
            level: false,
            masked,
        },
    );
}

/// Starts the PIT ticking at (about) `hz` on this CPU: `handler` at [`vectors::PIT`], the
/// IO-APIC pin unmasked, channel 0 in mode 2. Returns the divisor and the rate really
/// programmed (milli-Hz).
pub fn start_pit(boot: &Boot, hz: u64, handler: Handler) -> (u16, u64) {
    let (divisor, real) = crate::pit::divisor_for(hz);
    interrupts::register(vectors::PIT, handler);
    route_pit(boot, false);
    crate::pit::start_periodic(boot.info.devices.pit_port, divisor);
    (divisor, real)
}
