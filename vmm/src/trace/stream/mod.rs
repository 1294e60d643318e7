//! The trace writer: correlates guest records with host injections on a bounded window and
//! writes `interrupts.jsonl` and `trace.json` as the run goes, keeping only aggregates for
//! the end-of-run summary.
//!
//! **Thread and cadence.** [`WriterThread`] (`trace-writer`) wakes every
//! [`super::DRAIN_PERIOD`], takes what the producers appended since (VMM events, doorbell
//! samples, exits, and the records the event loop drained from the guest ring — see
//! [`super::Tracer::take_pending`]) and advances the [`Engine`]. At the end of the run
//! [`super::output::write_all`] stops it; it takes the rest, finishes every record and
//! returns the [`Aggregates`].
//!
//! **Window.** Host events are stamped before they are appended (a thread can be preempted in
//! between) and records reach the writer up to a drain period after the handler ran, so the
//! engine works [`SETTLE`] behind the present: events stamped before `now − SETTLE` are
//! settled in timestamp order (each injection paired with the latest raise of its source and
//! pin), and records whose handler entry is before that horizon are matched, in entry order,
//! exactly as described in [`super::output`]. A record waits (up to [`EXPIRE`]) when its match
//! depends on data not yet settled: in lockstep mode its doorbell sample, and when two or
//! more injections are candidates, the next record of its vector. An injection still
//! unmatched [`EXPIRE`] behind the horizon is finalized: written to `trace.json` and counted
//! as unhandled — unless a later interrupt of its vector is matched, which then counts it as
//! merged, as if it had stayed a candidate. Memory is therefore bounded by the event rate
//! times `SETTLE + EXPIRE` (about 1.25 s of events), whatever the length of the run.
//!
//! **Outputs.** `interrupts.jsonl` gets one line per record as it is matched; `trace.json` is
//! a Chrome Trace Event array opened with `{"traceEvents":[` when the run starts, events
//! appended as they are finalized (order does not matter to the viewers), closed at the end.
//! An output path that exists and is not a regular file (a FIFO a reader drains after the
//! run, `/dev/null`) is written to an unlinked spool file in the trace directory instead and
//! copied into the path at the end: a reader that does not read during the run neither stalls
//! tracing nor costs records.
//!
//! **Stages**, each a module, in the order data flows through them (a module uses only those
//! before it):
//! * `spool`: the output files, written in place or spooled;
//! * `jsonl`: a file of one JSON value per line (`interrupts.jsonl`, the events of
//!   `trace.json`);
//! * `chrome`: `trace.json`, the Chrome Trace Event document;
//! * `correlate`: injections and records, each indexed per vector, and the pairing rule;
//! * `aggregate`: what the summary is made of, counted as records are matched;
//! * `lockstep`: the KVM statistic deltas of each doorbell, waiting for their record;
//! * `engine`: the window that drives them all;
//! * `writer`: the `trace-writer` thread running the engine.

mod aggregate;
mod chrome;
mod correlate;
mod engine;
mod jsonl;
mod lockstep;
mod spool;
mod writer;

pub use aggregate::{Aggregates, SourceAgg};
pub use engine::Engine;
pub use spool::Outputs;
pub(crate) use writer::finish_inline;
pub use writer::WriterThread;

use std::time::Duration;

/// How far behind the present the writer correlates (see the module documentation).
pub const SETTLE: Duration = Duration::from_millis(250);
/// How long behind the settle horizon an unmatched injection (or a record waiting for data)
/// is kept before it is finalized.
pub const EXPIRE: Duration = Duration::from_secs(1);
