//! The event-loop side of tracing: a timer that drains the guest ring into the [`Tracer`]
//! every [`DRAIN_PERIOD`] and flushes `exits.jsonl`, and that starts the `trace-writer`
//! thread ([`super::stream::WriterThread`]).

use super::{lock, stream, Tracer};
use std::sync::Arc;

/// Event-loop subscriber: drains the guest ring and flushes `exits.jsonl` every 20 ms; it
/// also starts the `trace-writer` thread ([`stream::WriterThread`]), which correlates and
/// writes on its own thread so the event loop (PIT ticks) never waits for output.
pub struct TraceDrain {
    tracer: Arc<Tracer>,
    mem: crate::memory::GuestMemory,
    timer: vmm_sys_util::timerfd::TimerFd,
}

/// How often the ring is drained (and the writer takes what was collected).
pub const DRAIN_PERIOD: std::time::Duration = std::time::Duration::from_millis(20);

impl TraceDrain {
    /// A drain for `tracer` reading `mem`, and the writer thread.
    pub fn new(tracer: Arc<Tracer>, mem: crate::memory::GuestMemory) -> std::io::Result<Self> {
        Self::with_thread_start(tracer, mem, None)
    }

    /// As [`TraceDrain::new`]; the `trace-writer` thread runs `on_start` first (for a seccomp
    /// filter: it writes `interrupts.jsonl`/`trace.json`, sleeps on a futex, and at the end
    /// — when an output is not a regular file — reads its spool file back (`lseek`, `read`)
    /// and opens the output for writing).
    pub fn with_thread_start(
        tracer: Arc<Tracer>,
        mem: crate::memory::GuestMemory,
        on_start: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> std::io::Result<Self> {
        let mut timer = vmm_sys_util::timerfd::TimerFd::new().map_err(std::io::Error::from)?;
        timer
            .reset(DRAIN_PERIOD, Some(DRAIN_PERIOD))
            .map_err(std::io::Error::from)?;
        let mut writer = lock(&tracer.writer);
        if writer.is_none() {
            if let Some(outputs) = tracer.take_outputs() {
                *writer = Some(stream::WriterThread::spawn(&tracer, outputs, on_start)?);
            }
        }
        drop(writer);
        Ok(TraceDrain { tracer, mem, timer })
    }
}

impl event_manager::MutEventSubscriber for TraceDrain {
    fn init(&mut self, ops: &mut event_manager::EventOps) {
        use std::os::fd::AsRawFd;
        let _ = ops.add(event_manager::Events::new_raw(
            self.timer.as_raw_fd(),
            event_manager::EventSet::IN,
        ));
    }

    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        let _ = self.timer.wait();
        lock(&self.tracer.ring).drain(&self.mem);
        self.tracer.flush();
    }
}
