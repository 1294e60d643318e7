//! `trace.json`, the Chrome Trace Event format (Perfetto, `chrome://tracing`), streamed: a
//! `{"traceEvents":[` array opened when the run starts, typed events appended as they are
//! finalized (order does not matter to the viewers) — a track per vCPU (pid 1: handler slices,
//! exit instants) and per device (pid 2: raise and inject instants), a flow from each
//! injection to the handler it reached — and the document closed at the end.

use super::jsonl::Sink;
use super::spool::OutFile;
use crate::trace::model::Interrupt;
use crate::trace::{ExitRecord, Source};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One Chrome Trace Event (only the fields an event of its phase uses are written).
#[derive(Serialize)]
struct Ev<'a, A: Serialize> {
    ph: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    s: Option<&'static str>,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bp: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<A>,
}

impl<'a> Ev<'a, ()> {
    fn new(ph: &'static str, pid: u32, name: &'a str) -> Self {
        Ev {
            ph,
            s: None,
            pid,
            tid: None,
            ts: None,
            dur: None,
            name,
            id: None,
            bp: None,
            cat: None,
            args: None,
        }
    }

    fn instant(pid: u32, tid: u64, ts: f64, name: &'a str) -> Self {
        Ev {
            s: Some("t"),
            tid: Some(tid),
            ts: Some(ts),
            ..Ev::new("i", pid, name)
        }
    }

    fn with<A: Serialize>(self, args: A) -> Ev<'a, A> {
        Ev {
            ph: self.ph,
            s: self.s,
            pid: self.pid,
            tid: self.tid,
            ts: self.ts,
            dur: self.dur,
            name: self.name,
            id: self.id,
            bp: self.bp,
            cat: self.cat,
            args: Some(args),
        }
    }
}

#[derive(Serialize)]
struct NameArgs<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct ExitArgs {
    addr: String,
    size: u8,
    write: bool,
    value: u64,
    vmm_ns: u64,
}

#[derive(Serialize)]
struct SliceArgs<'a> {
    seq: u64,
    latency_us: Option<f64>,
    merged: u32,
    exits: &'a BTreeMap<String, i64>,
}

/// `trace.json`, streamed: a track per vCPU (pid 1) and per device (pid 2).
pub(super) struct Chrome {
    pub(super) sink: Sink,
    /// Events written.
    pub(super) events: u64,
    device_tids: HashMap<Source, u64>,
}

impl Chrome {
    /// Opens the document and announces the two processes.
    pub(super) fn new(out: OutFile) -> Chrome {
        let mut c = Chrome {
            sink: Sink::new(out),
            events: 0,
            device_tids: HashMap::new(),
        };
        c.sink.raw(b"{\"traceEvents\":[\n");
        c.ev(&Ev::new("M", 1, "process_name").with(NameArgs { name: "vCPUs" }));
        c.ev(&Ev::new("M", 2, "process_name").with(NameArgs { name: "devices" }));
        c
    }

    /// Appends one event.
    fn ev<A: Serialize>(&mut self, e: &Ev<'_, A>) {
        let sep: &[u8] = if self.events == 0 { b"" } else { b"," };
        self.sink.line(sep, e);
        self.events += 1;
    }

    /// The device track of `source`, announced when first seen.
    pub(super) fn device_tid(&mut self, source: &Source) -> u64 {
        if let Some(t) = self.device_tids.get(source) {
            return *t;
        }
        let tid = self.device_tids.len() as u64 + 1;
        self.device_tids.insert(source.clone(), tid);
        let e = Ev {
            tid: Some(tid),
            ..Ev::new("M", 2, "thread_name")
        }
        .with(NameArgs {
            name: source.name(),
        });
        self.ev(&e);
        tid
    }

    /// A userspace exit: an instant on its vCPU's track at `ts` (µs).
    pub(super) fn exit(&mut self, e: &ExitRecord, ts: f64, tsc_khz: u64) {
        let name = format!("exit {}", e.reason);
        let ev = Ev::instant(1, u64::from(e.vcpu), ts, &name).with(ExitArgs {
            addr: format!("{:#x}", e.addr),
            size: e.size,
            write: e.write,
            value: e.value,
            vmm_ns: e.vmm_cycles * 1_000_000 / tsc_khz,
        });
        self.ev(&ev);
    }

    /// The raise and inject instants (µs) of an injection on its device's track.
    pub(super) fn injection(&mut self, source: &Source, raise: f64, call: f64) {
        let tid = self.device_tid(source);
        self.ev(&Ev::instant(2, tid, raise, "raise"));
        self.ev(&Ev::instant(2, tid, call, "inject"));
    }

    /// A matched interrupt: its handler slice on the vCPU's track and, when `device` injected
    /// it, a flow from the device's track to the slice.
    pub(super) fn interrupt(&mut self, i: &Interrupt, device: Option<&Source>) {
        let name = format!("{} vector {:#04x}", i.source, i.vector);
        let slice = Ev {
            tid: Some(u64::from(i.cpu)),
            ts: Some(i.entry_us),
            dur: Some((i.eoi_us - i.entry_us).max(0.0)),
            ..Ev::new("X", 1, &name)
        }
        .with(SliceArgs {
            seq: i.seq,
            latency_us: i.latency_us,
            merged: i.merged,
            exits: &i.exits,
        });
        self.ev(&slice);
        if let (Some(start), Some(dev)) = (i.raise_us.or(i.inject_us), device) {
            let tid = self.device_tid(dev);
            self.ev(&Ev {
                tid: Some(tid),
                ts: Some(start),
                id: Some(i.seq),
                cat: Some("irq"),
                ..Ev::new("s", 2, "delivery")
            });
            self.ev(&Ev {
                tid: Some(u64::from(i.cpu)),
                ts: Some(i.entry_us),
                id: Some(i.seq),
                bp: Some("e"),
                cat: Some("irq"),
                ..Ev::new("f", 1, "delivery")
            });
        }
    }

    /// Closes the array and the document.
    pub(super) fn end(&mut self) {
        self.sink.raw(b"],\"displayTimeUnit\":\"ns\"}\n");
    }
}
