//! `irqlab trace summarize DIR` and `irqlab trace diff DIR_A DIR_B`.

use super::output::{table, Summary};
use std::path::{Path, PathBuf};

/// Reading a trace directory failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Missing or unreadable file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a summary irqlab wrote.
    #[error("{}: not an irqlab trace summary: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Reads `DIR/summary.json`.
pub fn read(dir: &Path) -> Result<Summary, ReadError> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ReadError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReadError::Parse { path, source })
}

/// The summary table of one trace.
pub fn summarize(dir: &Path) -> Result<String, ReadError> {
    Ok(table(&read(dir)?))
}

/// Two traces side by side, per source: count, latency p50/p99 and userspace-relevant exits
/// per interrupt.
pub fn diff(a: &Path, b: &Path) -> Result<String, ReadError> {
    let (sa, sb) = (read(a)?, read(b)?);
    let mut out = format!(
        "A = {} ({} mode)\nB = {} ({} mode)\n",
        a.display(),
        sa.mode,
        b.display(),
        sb.mode
    );
    out.push_str(&format!(
        "{:<16} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
        "source",
        "count A",
        "count B",
        "p50 A us",
        "p50 B us",
        "p99 A us",
        "p99 B us",
        "exits/irq A",
        "exits/irq B"
    ));
    let mut names: Vec<&String> = sa.sources.keys().chain(sb.sources.keys()).collect();
    names.sort();
    names.dedup();
    let exits = |s: Option<&super::output::SourceSummary>| {
        s.and_then(|s| s.exits_per_interrupt.get("exits").copied())
            .map_or("-".to_string(), |v| format!("{v:.2}"))
    };
    for n in names {
        let (x, y) = (sa.sources.get(n), sb.sources.get(n));
        let f = |s: Option<&super::output::SourceSummary>,
                 g: fn(&super::output::SourceSummary) -> Option<f64>| {
            s.and_then(g)
                .map_or("\u{2013}".to_string(), |v| format!("{v:.1}"))
        };
        out.push_str(&format!(
            "{:<16} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
            n,
            x.map_or(0, |s| s.count),
            y.map_or(0, |s| s.count),
            f(x, |s| s.latency_p50_us),
            f(y, |s| s.latency_p50_us),
            f(x, |s| s.latency_p99_us),
            f(y, |s| s.latency_p99_us),
            exits(x),
            exits(y),
        ));
    }
    Ok(out)
}
