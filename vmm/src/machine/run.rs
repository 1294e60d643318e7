//! [`Machine::run`]: the vCPU threads, the event loop until the run ends, then stopping,
//! the trace and the report.

use super::run_end::sandbox_outcome;
use super::{os, Machine, RunReport, SetupError};
use crate::memory;
use crate::outcome::Outcome;
use crate::pit_timer::PitTicker;
use crate::sandbox::{SandboxScope, ThreadKind};
use crate::stop::{StopSignals, VcpuThreads};
use crate::trace::TraceDrain;
use crate::vcpu::StopControl;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use std::sync::{Arc, Mutex};

impl Machine {
    /// Runs the machine to its end: starts the vCPU threads, runs the event loop until the
    /// guest exits or faults, the watchdog fires or a stop signal arrives, then stops and
    /// joins the vCPUs, writes the trace and reports. The errors are those of starting the
    /// run (a thread or the event loop that cannot be created); once it runs, how it ended
    /// is the report's [`Outcome`].
    pub fn run(mut self) -> Result<RunReport, SetupError> {
        // The stop signals stay blocked until everything else of the run is gone (`run_with`
        // consumes the machine); the mask is restored when this returns.
        let signals = self.signals.take();
        self.run_with(signals.as_ref())
    }

    fn run_with(self, signals: Option<&StopSignals>) -> Result<RunReport, SetupError> {
        // Bound in the order setup created them, so dropped in the reverse order at the end.
        let Machine {
            started,
            mem,
            _kvm,
            vm_fd,
            vcpus,
            tracer,
            end,
            capture,
            scope,
            sandbox,
            devices,
            watcher,
            signals: _,
        } = self;
        let hook = |kind| sandbox.as_ref().map(|s| s.hook(kind));

        // Stopped and joined when dropped: an early return from here on cannot leave them
        // running.
        let mut vcpu_threads = VcpuThreads::new({
            let end = end.clone();
            move || end.request_stop()
        });
        let vcpu_count = vcpus.len();
        for vcpu in vcpus {
            let (devices, mem, ctl, sandbox) = (
                devices.clone(),
                mem.clone(),
                end.clone() as Arc<dyn StopControl>,
                sandbox.clone(),
            );
            vcpu_threads
                .spawn(&vm_fd, vcpu, move |vcpu| {
                    if let Some(s) = sandbox {
                        if let Err(e) = s.enter(ThreadKind::Vcpu, vcpu.id) {
                            ctl.finish(Outcome::SandboxSetup(e.to_string()));
                            return;
                        }
                    }
                    vcpu.run(devices, mem, ctl)
                })
                .map_err(os("spawn vCPU thread"))?;
        }

        let mut manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().map_err(|e| SetupError::Os {
                what: "epoll",
                source: std::io::Error::other(format!("{e:?}")),
            })?;
        if let Some((pit, timer)) = &devices.pit {
            manager.add_subscriber(Arc::new(Mutex::new(PitTicker {
                pit: pit.clone(),
                timer: timer.clone(),
            })));
        }
        if let Some(t) = &tracer {
            manager.add_subscriber(Arc::new(Mutex::new(
                TraceDrain::with_thread_start(
                    t.clone(),
                    mem.clone(),
                    hook(ThreadKind::TraceWriter),
                )
                .map_err(|e| SetupError::Os {
                    what: "trace drain timer",
                    source: e,
                })?,
            )));
        }
        manager.add_subscriber(Arc::new(Mutex::new(watcher)));
        // Every thread of the run exists: the calling thread confines itself too, for the rest
        // of its life (the CLI's case; see crate::sandbox).
        if let Some(s) = sandbox.as_ref().filter(|_| scope == SandboxScope::Process) {
            s.enter_or_report(ThreadKind::Main, 0);
        }
        log::info!("running: {vcpu_count} vCPU thread(s) and the event loop");
        while !end.stopping() {
            if let Err(e) = manager.run_with_timeout(100) {
                end.finish(Outcome::VcpuFailed {
                    vcpu: 0,
                    what: format!("event loop: {e:?}"),
                });
            }
        }

        log::info!(
            "stopping the vCPUs ({:.3} s into the run)",
            started.elapsed().as_secs_f64()
        );
        let stopped = vcpu_threads.stop();
        for vcpu in stopped.panicked {
            end.finish(Outcome::VcpuFailed {
                vcpu,
                what: "vCPU thread panicked".into(),
            });
        }
        let stop_error = (!stopped.stuck.is_empty()).then(|| {
            format!(
                "vCPU {:?} did not stop within {} s of the stop request (thread left running)",
                stopped.stuck,
                crate::stop::STOP_TIMEOUT.as_secs()
            )
        });
        devices.shutdown();
        // The vCPUs are stopped, the MSI source's worker too and the console flushed: what
        // the devices counted is final.
        let counted = devices.report();
        log::debug!(
            "userspace exits: {:?}; PIT {:?}; unhandled accesses {}",
            counted.exits,
            counted.pit,
            counted.unhandled_accesses
        );
        // Whatever ended the run, the trace is completed and written.
        let (trace, trace_error) = match &tracer {
            Some(t) => {
                t.ring.lock().unwrap_or_else(|p| p.into_inner()).drain(&mem);
                match crate::trace::output::write_all(t, counted.failures) {
                    Ok(s) => {
                        log::info!("trace written to {}", t.dir().display());
                        (Some(s), None)
                    }
                    Err(e) => (
                        None,
                        Some(format!("{}: writing the trace: {e}", t.dir().display())),
                    ),
                }
            }
            None => (None, None),
        };
        // A signal that arrived while the vCPUs stopped or the trace was written. The mask is
        // restored when `signals` drops after this returns (see `Machine::run`): a signal
        // after this look then has its normal disposition (for the CLI, which blocked the
        // signals itself, still blocked).
        if let Some(signo) = signals.and_then(StopSignals::take_pending) {
            end.signal(signo);
        }
        // A forbidden system call at any moment of the run decides how it ended, also one made
        // while the vCPUs stopped or the trace was written (after the outcome was set).
        if let Some(o) = sandbox_outcome(sandbox.as_deref()) {
            end.overrule(o);
        }
        if let Some(s) = &sandbox {
            s.disarm();
        }
        let signal_after_end = end.take_signal_after_end();
        let outcome = end.take_outcome().unwrap_or(Outcome::VcpuFailed {
            vcpu: 0,
            what: "run ended without an outcome".into(),
        });
        let console = std::mem::take(&mut *capture.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(RunReport {
            outcome,
            elapsed: started.elapsed(),
            guest_resident: memory::resident_bytes(&mem),
            console,
            bench_writes: counted.bench_writes,
            console_dropped: counted.console_dropped,
            unhandled_accesses: counted.unhandled_accesses,
            failures: counted.failures,
            exits: counted.exits,
            marks: counted.marks,
            pit: counted.pit,
            ioapic: counted.ioapic,
            trace,
            trace_error,
            signal_after_end,
            stop_error,
        })
    }
}
