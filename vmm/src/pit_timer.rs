//! The host side of the userspace PIT: its clock, the timerfd that produces channel 0's
//! ticks, and the event-loop subscriber that turns timerfd expirations into interrupts.
//!
//! The vCPU thread that programs the PIT arms the timerfd ([`HostPitTimer`]); the event loop
//! thread reads the expiration count and hands it to [`Pit::timer_expired`]
//! ([`PitTicker`]). The two never hold the PIT and the timer locks at the same time.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use irqlab_devices::pit::{Clock, Pit, PitTimer};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vmm_sys_util::timerfd::TimerFd;

/// Host monotonic time since the VM was built.
pub struct HostClock(Instant);

impl HostClock {
    /// A clock starting now.
    pub fn new() -> Self {
        HostClock(Instant::now())
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// A non-blocking timerfd shared by the PIT (arming) and the event loop (reading).
pub type SharedTimer = Arc<Mutex<TimerFd>>;

/// Creates the timerfd, non-blocking so a read racing with a re-arm cannot stall the loop.
pub fn new_timer() -> std::io::Result<SharedTimer> {
    let t = TimerFd::new().map_err(std::io::Error::from)?;
    // SAFETY: F_GETFL on a descriptor this function owns.
    let flags = unsafe { libc::fcntl(t.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on a descriptor this function owns, adding O_NONBLOCK.
    let rc = unsafe { libc::fcntl(t.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Arc::new(Mutex::new(t)))
}

/// [`PitTimer`] on a timerfd.
pub struct HostPitTimer(pub SharedTimer);

impl PitTimer for HostPitTimer {
    fn arm(&mut self, first_ns: u64, period_ns: u64) {
        let period = (period_ns > 0).then(|| Duration::from_nanos(period_ns));
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = t.reset(Duration::from_nanos(first_ns.max(1)), period);
    }

    fn disarm(&mut self) {
        let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Event-loop subscriber: timerfd expirations become PIT ticks.
pub struct PitTicker {
    /// The PIT.
    pub pit: Arc<Mutex<Pit>>,
    /// Its timer.
    pub timer: SharedTimer,
}

impl MutEventSubscriber for PitTicker {
    fn init(&mut self, ops: &mut EventOps) {
        let fd = self
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_raw_fd();
        let _ = ops.add(Events::new_raw(fd, EventSet::IN));
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let expirations = self
            .timer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait()
            .unwrap_or(0);
        if expirations > 0 {
            self.pit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .timer_expired(expirations);
        }
    }
}
