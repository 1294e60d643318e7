//! How a run ends: the state the event loop, the vCPU threads and the devices share
//! ([`RunEnd`]: the stop flag, the outcome, the wake-up eventfd), and the event-loop
//! subscriber that wakes for anything that ends the run ([`StopWatcher`]: the wake-up
//! eventfd, the watchdog timer, the stop signals' signalfd).

use crate::outcome::{Outcome, VcpuAtStop};
use crate::sandbox::Sandbox;
use crate::vcpu::StopControl;
use event_manager::{EventOps, Events, MutEventSubscriber};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

/// State shared by the event loop and the vCPU threads.
pub(super) struct RunEnd {
    stop: AtomicBool,
    outcome: Mutex<Option<Outcome>>,
    /// The first stop signal that arrived after `outcome` was set to something else.
    signal_after_end: Mutex<Option<i32>>,
    /// Where each vCPU was when it saw the stop (for the watchdog's report).
    stopped: Mutex<Vec<VcpuAtStop>>,
    wake: EventFd,
}

impl RunEnd {
    /// No outcome yet; fails only if the wake-up eventfd cannot be created.
    pub(super) fn new() -> std::io::Result<RunEnd> {
        Ok(RunEnd {
            stop: AtomicBool::new(false),
            outcome: Mutex::new(None),
            signal_after_end: Mutex::new(None),
            stopped: Mutex::new(Vec::new()),
            wake: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// The wake-up eventfd (the sandbox's SIGSYS handler writes it).
    pub(super) fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Sets the stop flag without an outcome (for [`crate::stop::VcpuThreads`]: an early
    /// return has none).
    pub(super) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// A stop signal: ends the run, or, when it has already ended another way, is kept as
    /// [`super::RunReport::signal_after_end`]. A second signal after a first one changes
    /// nothing.
    pub(super) fn signal(&self, signo: i32) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            None => {
                // Set under the lock, so a vCPU finishing at the same moment cannot make the
                // signal vanish between "no outcome yet" and `finish`.
                *slot = Some(Outcome::Signal(signo));
                drop(slot);
                self.stop.store(true, Ordering::Release);
                let _ = self.wake.write(1);
            }
            Some(Outcome::Signal(_)) => {}
            Some(_) => {
                self.signal_after_end
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(signo);
            }
        }
    }

    /// Replaces the outcome, whatever it was (a sandbox violation decides how the run ended).
    pub(super) fn overrule(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    }

    /// Takes the signal kept by [`RunEnd::signal`] after the run had ended.
    pub(super) fn take_signal_after_end(&self) -> Option<i32> {
        self.signal_after_end
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Takes the outcome. A watchdog's outcome gets where each vCPU was when it stopped
    /// (call this after the vCPU threads are joined), in vCPU order.
    pub(super) fn take_outcome(&self) -> Option<Outcome> {
        let outcome = self
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match outcome {
            Some(Outcome::Timeout { after, .. }) => {
                let mut vcpus =
                    std::mem::take(&mut *self.stopped.lock().unwrap_or_else(|p| p.into_inner()));
                vcpus.sort_by_key(|v| v.vcpu);
                Some(Outcome::Timeout { after, vcpus })
            }
            other => other,
        }
    }
}

impl StopControl for RunEnd {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn finish(&self, outcome: Outcome) {
        let mut slot = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(outcome);
        }
        self.stop.store(true, Ordering::Release);
        // A full eventfd counter only means the loop is already awake.
        let _ = self.wake.write(1);
    }

    fn stopped(&self, at: VcpuAtStop) {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(at);
    }
}

impl irqlab_devices::ExitSink for RunEnd {
    fn request_exit(&self, status: u32) {
        self.finish(Outcome::GuestExit { status });
    }

    fn request_reset(&self, source: irqlab_devices::reset::ResetSource) {
        self.finish(Outcome::Reboot {
            via: source.to_string(),
        });
    }
}

/// Wakes the event loop for anything that ends the run.
pub(super) struct StopWatcher {
    pub(super) end: Arc<RunEnd>,
    /// The watchdog and its period (`timeout_secs`).
    pub(super) timer: Option<(TimerFd, Duration)>,
    /// The stop signals' signalfd (a duplicate), with `handle_signals`.
    pub(super) signals: Option<OwnedFd>,
    pub(super) sandbox: Option<Arc<Sandbox>>,
}

/// How the sandbox ends the run, if it does: a forbidden system call (its SIGSYS handler
/// wrote the wake-up eventfd), or a thread whose filter could not be installed.
pub(super) fn sandbox_outcome(sandbox: Option<&Sandbox>) -> Option<Outcome> {
    let sandbox = sandbox?;
    if let Some(v) = crate::sandbox::violation() {
        return Some(Outcome::SandboxViolation {
            thread: v.thread,
            syscall: v.syscall,
        });
    }
    sandbox.failure().map(Outcome::SandboxSetup)
}

impl MutEventSubscriber for StopWatcher {
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.end.wake, event_manager::EventSet::IN));
        if let Some((t, _)) = &self.timer {
            let _ = ops.add(Events::new(t, event_manager::EventSet::IN));
        }
        if let Some(s) = &self.signals {
            let _ = ops.add(Events::new_raw(s.as_raw_fd(), event_manager::EventSet::IN));
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.end.wake.as_raw_fd() {
            let _ = self.end.wake.read();
            if let Some(o) = sandbox_outcome(self.sandbox.as_deref()) {
                self.end.finish(o);
            }
        } else if let Some((t, after)) = self.timer.as_mut().filter(|(t, _)| t.as_raw_fd() == fd) {
            let _ = t.wait();
            self.end.finish(Outcome::Timeout {
                after: *after,
                vcpus: Vec::new(),
            });
        } else if let Some(s) = self.signals.as_ref().filter(|s| s.as_raw_fd() == fd) {
            while let Some(signo) = crate::stop::read_signal(s.as_fd()) {
                self.end.signal(signo);
            }
        }
    }
}
