//! The `trace-writer` thread: wakes every [`crate::trace::DRAIN_PERIOD`], takes what the
//! producers appended since and advances an [`Engine`]; stopped at the end of the run, it
//! takes the rest, finishes every record and returns the [`Aggregates`].

use super::aggregate::Aggregates;
use super::engine::Engine;
use super::spool::Outputs;
use crate::trace::{Pending, Tracer};
use std::io;
use std::sync::{Arc, Condvar, Mutex, Weak};

/// The `trace-writer` thread.
pub struct WriterThread {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: std::thread::JoinHandle<io::Result<Aggregates>>,
}

impl WriterThread {
    /// Starts it; it runs `on_start` first, then an [`Engine`] every drain period until
    /// [`WriterThread::finish`] (or until the tracer is gone).
    pub fn spawn(
        tracer: &Arc<Tracer>,
        outputs: Outputs,
        on_start: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> io::Result<WriterThread> {
        let weak: Weak<Tracer> = Arc::downgrade(tracer);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let (tsc_khz, t0, mode) = (tracer.tsc_khz, tracer.t0, tracer.config.mode);
        let handle = std::thread::Builder::new()
            .name("trace-writer".into())
            .spawn(move || {
                if let Some(f) = on_start {
                    f();
                }
                let mut engine = Engine::new(tsc_khz, t0, mode, outputs);
                let mut spare = Pending::default();
                loop {
                    let stopping = {
                        let (m, cv) = &*flag;
                        let g = m.lock().unwrap_or_else(|p| p.into_inner());
                        let (g, _) = cv
                            .wait_timeout_while(g, crate::trace::DRAIN_PERIOD, |s| !*s)
                            .unwrap_or_else(|p| p.into_inner());
                        *g
                    };
                    let Some(t) = weak.upgrade() else {
                        return Err(io::Error::other("the run ended without writing its trace"));
                    };
                    if stopping {
                        return engine.finish(&t);
                    }
                    spare = engine.cycle(&t, Some(crate::trace::host_tsc()), spare);
                }
            })?;
        Ok(WriterThread { stop, handle })
    }

    /// Stops it after a last pass over everything collected; its aggregates.
    pub fn finish(self) -> io::Result<Aggregates> {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        self.handle
            .join()
            .map_err(|_| io::Error::other("the trace writer thread panicked"))?
    }
}

/// Runs an engine over `tracer` without a thread (nothing was streamed during the run).
pub(crate) fn finish_inline(tracer: &Tracer, outputs: Outputs) -> io::Result<Aggregates> {
    Engine::new(tracer.tsc_khz, tracer.t0, tracer.config.mode, outputs).finish(tracer)
}
