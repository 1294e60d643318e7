//! `irqlab bench napi`: the receive-livelock curve of issue 15. Interrupt per packet (`irq`),
//! NAPI polling (`napi`) and posted interrupts (`posted`) receive packets from the NIC-like
//! ring device at a sweep of offered rates; per run: packets sent and processed, drops,
//! interrupts and userspace exits per packet, latency and the guest's time in handlers.
//!
//! One guest boot per design (`run=napi design=D rates=… ms=…`, up to 8 rates per boot): the
//! guest prints one `NAPI` line per run and brackets each run with the marks 1 and 2, so the
//! n-th pair of marks holds the n-th run's userspace exits and host time.

use super::windows;
use crate::cli::args::whole;
use clap::Args;
use irqlab::config::VmConfig;
use irqlab::outcome::Outcome;
use std::time::Duration;

/// The designs, in the order they run and are drawn.
pub(super) const DESIGNS: [&str; 3] = ["irq", "napi", "posted"];
/// Line colours of the designs in the plot.
pub(super) const COLORS: [&str; 3] = ["#c0504d", "#4f81bd", "#9bbb59"];
/// `irq` has collapsed at a rate where it processes less than this share (%) of what was sent.
const COLLAPSE_PCT: f64 = 90.0;
/// … while `napi` still processes at least this share (%) of its packets per second at the
/// previous rate of the sweep: a dip of a few per cent is this host's noise, not a collapse.
const NAPI_HOLD_PCT: f64 = 95.0;
/// Most rates the guest takes per boot.
const MAX_RATES: usize = 8;

#[derive(Args, Debug)]
pub struct NapiArgs {
    /// Also plot the livelock curve (processed/s) and interrupts per packet (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
    /// Offered packet rates per second, comma separated (1-8 of them, each 0-1000000;
    /// 0 = back to back).
    #[arg(long, value_name = "LIST", default_value = "1000,2000,5000,10000,20000,50000,100000,0",
          value_parser = rates)]
    rates: Rates,
    /// Milliseconds of offered traffic per run (50-10000).
    #[arg(long, default_value_t = 200, allow_hyphen_values = true,
          value_parser = |s: &str| whole::<u64>(s, 50, 10_000, ""))]
    ms: u64,
}

/// The `--rates` list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rates(Vec<u64>);

fn rates(s: &str) -> Result<Rates, String> {
    let v: Option<Vec<u64>> = s
        .split(',')
        .map(|r| r.trim().parse::<u64>().ok().filter(|&r| r <= 1_000_000))
        .collect();
    match v {
        Some(v) if (1..=MAX_RATES).contains(&v.len()) => Ok(Rates(v)),
        _ => Err(format!(
            "must be 1 to {MAX_RATES} comma-separated packet rates from 0 (back to back) to 1000000"
        )),
    }
}

/// One `NAPI design rate sent processed ring_drops backlog_drops irqs irqs/pkt p50_us p99_us
/// handler% process% polls` line of the guest.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NapiLine {
    pub(super) design: String,
    pub(super) rate: u64,
    sent: u64,
    processed: u64,
    ring_drops: u64,
    backlog_drops: u64,
    irqs: u64,
    p50_us: u64,
    p99_us: u64,
    handler_pct: f64,
    process_pct: f64,
    polls: u64,
}

/// The guest's `NAPI` result line, if `l` is one (not the `NAPI columns:` header).
fn parse_line(l: &str) -> Option<NapiLine> {
    let f: Vec<&str> = l.strip_prefix("NAPI ")?.split_whitespace().collect();
    if f.len() != 13 {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    let x = |i: usize| f[i].parse::<f64>().ok().filter(|v| v.is_finite());
    Some(NapiLine {
        design: f[0].to_string(),
        rate: n(1)?,
        sent: n(2)?,
        processed: n(3)?,
        ring_drops: n(4)?,
        backlog_drops: n(5)?,
        irqs: n(6)?,
        // f[7] is irqs/processed with two decimals: recomputed from the counts.
        p50_us: n(8)?,
        p99_us: n(9)?,
        handler_pct: x(10)?,
        process_pct: x(11)?,
        polls: n(12)?,
    })
}

/// One run: the guest's line and what the VMM saw between the run's marks.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) line: NapiLine,
    /// Userspace exits strictly between the run's marks.
    exits: Option<u64>,
    /// Host time between the run's marks (s).
    secs: Option<f64>,
}

impl Row {
    /// Packets processed per second: over the host time between the marks, else over the
    /// time the device took to send at the offered rate.
    pub(super) fn processed_per_s(&self) -> f64 {
        let l = &self.line;
        match self.secs {
            Some(s) if s > 0.0 => l.processed as f64 / s,
            _ if l.rate > 0 && l.sent > 0 => l.processed as f64 / (l.sent as f64 / l.rate as f64),
            _ => f64::NAN,
        }
    }

    /// Processed / sent.
    fn processed_share(&self) -> f64 {
        self.line.processed as f64 / self.line.sent.max(1) as f64
    }

    pub(super) fn irqs_per_packet(&self) -> f64 {
        ratio(self.line.irqs, self.line.processed)
    }

    fn exits_per_packet(&self) -> f64 {
        self.exits
            .map_or(f64::NAN, |e| ratio(e, self.line.processed))
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        f64::NAN
    } else {
        n as f64 / d as f64
    }
}

/// Offered load of a rate: 0 (back to back) is the most.
pub(super) fn load(rate: u64) -> u64 {
    if rate == 0 {
        u64::MAX
    } else {
        rate
    }
}

/// An offered rate in a sentence.
fn offered(rate: u64) -> String {
    if rate == 0 {
        "back-to-back packets".to_string()
    } else {
        format!("{rate} packets/s")
    }
}

pub(super) fn rate_label(rate: u64) -> String {
    if rate == 0 {
        "b2b".to_string()
    } else {
        rate.to_string()
    }
}

/// Pairs the guest's lines with the mark windows in run order (the guest writes one pair
/// per line); without one window per line, no exits or times at all rather than wrong ones.
fn rows_of(console: &str, marks: &[irqlab::stats::Mark]) -> Vec<Row> {
    let lines: Vec<NapiLine> = console.lines().filter_map(parse_line).collect();
    let w = windows(marks);
    let matched = w.len() == lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| Row {
            line,
            exits: matched.then(|| w[i].0.total()),
            secs: matched.then(|| w[i].1.as_secs_f64()),
        })
        .collect()
}

/// What the collapse finder found.
#[derive(Debug, Clone, PartialEq)]
enum Collapse {
    /// The lowest offered rate at which `irq` processed less than the threshold share of what
    /// was sent while `napi` processed at least the hold share of its packets per second at
    /// the previous rate of the sweep (at the sweep's first rate: at least the threshold share
    /// of what was sent).
    At {
        rate: u64,
        irq_share: f64,
        napi_per_s: f64,
        /// The previous rate and NAPI's processed/s there.
        previous: Option<(u64, f64)>,
    },
    /// `irq` fell below the threshold somewhere, but NAPI fell too at each such rate.
    NapiFellToo { first_irq_rate: u64 },
    /// `irq` kept at least the threshold share at every rate.
    None,
}

/// Finds the collapse point in `rows` (any order; `irq` and `napi` rows are matched by rate):
/// `irq` below `pct` % processed, `napi` at `hold` % or more of its previous processed/s.
fn collapse_point(rows: &[Row], pct: f64, hold: f64) -> Collapse {
    let of = |design: &str| {
        let mut v: Vec<&Row> = rows.iter().filter(|r| r.line.design == design).collect();
        v.sort_by_key(|r| load(r.line.rate));
        v
    };
    let (irq, napi) = (of("irq"), of("napi"));
    let mut first_irq_rate = None;
    for r in &irq {
        let share = r.processed_share();
        if share * 100.0 >= pct {
            continue;
        }
        first_irq_rate.get_or_insert(r.line.rate);
        let Some(i) = napi.iter().position(|n| n.line.rate == r.line.rate) else {
            continue;
        };
        let now = napi[i].processed_per_s();
        let previous = i
            .checked_sub(1)
            .map(|p| (napi[p].line.rate, napi[p].processed_per_s()));
        let holds = match previous {
            Some((_, before)) => now * 100.0 >= before * hold,
            None => napi[i].processed_share() * 100.0 >= pct,
        };
        if holds {
            return Collapse::At {
                rate: r.line.rate,
                irq_share: share,
                napi_per_s: now,
                previous,
            };
        }
    }
    match first_irq_rate {
        Some(first_irq_rate) => Collapse::NapiFellToo { first_irq_rate },
        None => Collapse::None,
    }
}

fn collapse_sentence(c: &Collapse, pct: f64, hold: f64) -> String {
    match c {
        Collapse::At {
            rate,
            irq_share,
            napi_per_s,
            previous,
        } => format!(
            "collapse point (X = {pct:.0} %; napi holding >= {hold:.0} % of its previous processed/s): with {} offered, irq processed {:.1} % of what was sent while napi processed {:.0} packets/s ({}).",
            offered(*rate),
            irq_share * 100.0,
            napi_per_s,
            match previous {
                Some((r, p)) => format!("{p:.0}/s at the previous rate {}", rate_label(*r)),
                None => format!("the sweep's first rate; napi processed >= {pct:.0} % there"),
            }
        ),
        Collapse::NapiFellToo { first_irq_rate } => format!(
            "no collapse seen in this sweep (X = {pct:.0} %): irq fell below {pct:.0} % processed from {} offered on, but napi's processed/s also fell below {hold:.0} % of its previous rate's at every such rate.",
            offered(*first_irq_rate)
        ),
        Collapse::None => format!(
            "no collapse seen in this sweep (X = {pct:.0} %): irq processed at least {pct:.0} % of what was sent at every offered rate."
        ),
    }
}

/// Boots the built-in guest once for `design` over all `rates`; its rows and its FAIL lines.
fn run_design(design: &str, rates: &[u64], ms: u64) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let list: Vec<String> = rates.iter().map(u64::to_string).collect();
    // The guest gives up on a run after 4 × ms + 5 s.
    let per_run = Duration::from_millis(ms * 4 + 5000);
    let cfg = VmConfig {
        cmdline: format!(
            "run=napi design={design} rates={} ms={ms} work=20 budget=64",
            list.join(",")
        ),
        mem_mib: 64,
        timeout: Some(per_run * rates.len() as u32 + Duration::from_secs(30)),
        ..VmConfig::default()
    };
    let (r, console) = super::captured_run(&cfg)?;
    // A failed guest check (a run that did not drain in time, a packet unaccounted for) is
    // reported with the numbers, not instead of them.
    if !matches!(r.outcome, Outcome::GuestExit { .. }) {
        anyhow::bail!(
            "guest run `{}` ended with {:?}:\n{console}",
            cfg.cmdline,
            r.outcome
        );
    }
    let rows = rows_of(&console, &r.marks);
    if rows.is_empty() {
        anyhow::bail!(
            "guest run `{}` printed no NAPI line:\n{console}",
            cfg.cmdline
        );
    }
    let notes = console
        .lines()
        .filter(|l| l.starts_with("FAIL ") || l.starts_with("SKIP "))
        .map(|l| format!("{design}: {l}"))
        .collect();
    Ok((rows, notes))
}

pub(super) fn napi(a: &NapiArgs) -> anyhow::Result<()> {
    let rates = &a.rates.0;
    println!(
        "receive livelock: interrupt per packet (irq) vs NAPI polling vs posted; {} ms of traffic per run, one boot per design; per packet = per packet processed; exits = userspace exits between the guest's marks; processed/s over the host time between the marks",
        a.ms
    );
    println!(
        "{:<6} {:>7} {:>7} {:>9} {:>11} {:>7} {:>10} {:>13} {:>9} {:>10} {:>7} {:>7} {:>9}",
        "design",
        "offered",
        "sent",
        "processed",
        "processed/s",
        "run ms",
        "ring drops",
        "backlog drops",
        "irqs/pkt",
        "exits/pkt",
        "p50 us",
        "p99 us",
        "handler %"
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for design in DESIGNS {
        let (got, n) = run_design(design, rates, a.ms)?;
        for r in &got {
            let l = &r.line;
            println!(
                "{:<6} {:>7} {:>7} {:>9} {:>11.0} {:>7} {:>10} {:>13} {:>9.3} {:>10.3} {:>7} {:>7} {:>9.2}",
                l.design,
                rate_label(l.rate),
                l.sent,
                l.processed,
                r.processed_per_s(),
                r.secs.map_or("-".to_string(), |s| format!("{:.0}", s * 1000.0)),
                l.ring_drops,
                l.backlog_drops,
                r.irqs_per_packet(),
                r.exits_per_packet(),
                l.p50_us,
                l.p99_us,
                l.handler_pct
            );
        }
        if got.iter().any(|r| r.exits.is_none()) {
            notes.push(format!(
                "{design}: the guest's marks did not pair up with its NAPI lines: no exits or run times"
            ));
        }
        rows.extend(got);
        notes.extend(n);
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!(
        "{}",
        collapse_sentence(
            &collapse_point(&rows, COLLAPSE_PCT, NAPI_HOLD_PCT),
            COLLAPSE_PCT,
            NAPI_HOLD_PCT
        )
    );
    println!("target: 0 lost (processed = sent) whenever the guest keeps up; NAPI's processed/s should not fall as the offered rate rises");
    if let Some(path) = &a.svg {
        std::fs::write(path, super::napi_svg::napi_svg(&rows))?;
        println!("plot: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
#[path = "napi_tests.rs"]
mod tests;
