//! `irqlab trace summarize DIR` and `irqlab trace diff DIR_A DIR_B`.

use super::model::{SourceSummary, Summary};
use super::table::table;
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

/// The most of `summary.json` that is read: 64 MiB. irqlab writes a few KiB (one entry per
/// interrupt source); a larger file is not one it wrote.
pub const SUMMARY_MAX: u64 = 64 << 20;

/// Reads `DIR/summary.json`: a regular file (a FIFO, a device — also through a symbolic link,
/// e.g. to /dev/zero — or a directory is an error naming what it is, without blocking or
/// reading it) of at most [`SUMMARY_MAX`] bytes (see [`crate::input::read_regular`]).
pub fn read(dir: &Path) -> Result<Summary, ReadError> {
    let path = dir.join("summary.json");
    let bytes =
        crate::input::read_regular(&path, SUMMARY_MAX, "64 MiB (the cap on a trace summary)")
            .map_err(|source| ReadError::Io {
                path: path.clone(),
                source,
            })?;
    serde_json::from_slice(&bytes).map_err(|source| ReadError::Parse { path, source })
}

/// The summary table of one trace.
pub fn summarize(dir: &Path) -> Result<String, ReadError> {
    Ok(table(&read(dir)?))
}

/// The vectors a source's interrupts arrived at: recorded in the summary, or (summaries
/// written before they were) read from an `in-kernel:0xVV` name.
fn vectors_of(name: &str, s: &SourceSummary) -> Vec<u8> {
    if !s.vectors.is_empty() {
        return s.vectors.clone();
    }
    name.strip_prefix("in-kernel:0x")
        .and_then(|v| u8::from_str_radix(v, 16).ok())
        .into_iter()
        .collect()
}

/// A row of a diff: label, A's source, B's source, the vector they share when paired by it.
type Row<'a> = (String, Option<&'a str>, Option<&'a str>, Option<u8>);

/// The rows of a diff: sources of the same name side by side, and a source only one trace
/// has next to a source only the other has that shares a vector with it — the same
/// interrupt seen by two irqchip models, e.g. split irqchip's `pit` and kernel irqchip's
/// `in-kernel:0x30` (KVM's own PIT, which irqlab only sees through the guest's records).
fn pair<'a>(a: &'a Summary, b: &'a Summary) -> Vec<Row<'a>> {
    let mut rows = Vec::new();
    let only_b: Vec<&String> = b
        .sources
        .keys()
        .filter(|n| !a.sources.contains_key(*n))
        .collect();
    let mut used_b = vec![false; only_b.len()];
    for (name, sa) in &a.sources {
        if b.sources.contains_key(name) {
            rows.push((name.clone(), Some(name.as_str()), Some(name.as_str()), None));
            continue;
        }
        let va = vectors_of(name, sa);
        let partner = only_b.iter().enumerate().find_map(|(k, nb)| {
            let vb = vectors_of(nb, &b.sources[*nb]);
            let shared = va.iter().find(|v| vb.contains(v))?;
            (!used_b[k]).then_some((k, *shared))
        });
        match partner {
            Some((k, v)) => {
                used_b[k] = true;
                rows.push((
                    format!("{name} / {}", only_b[k]),
                    Some(name.as_str()),
                    Some(only_b[k].as_str()),
                    Some(v),
                ));
            }
            None => rows.push((name.clone(), Some(name.as_str()), None, None)),
        }
    }
    for (k, nb) in only_b.iter().enumerate() {
        if !used_b[k] {
            rows.push(((*nb).clone(), None, Some(nb.as_str()), None));
        }
    }
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    rows
}

/// Two traces side by side, per source: count, latency p50/p99 and userspace-relevant exits
/// per interrupt. Sources named differently in the two traces are paired by vector (see
/// [`pair`]); the row is labelled `A's name / B's name`.
pub fn diff(a: &Path, b: &Path) -> Result<String, ReadError> {
    let (sa, sb) = (read(a)?, read(b)?);
    let mut out = format!(
        "A = {} ({} mode)\nB = {} ({} mode)\n",
        a.display(),
        sa.mode,
        b.display(),
        sb.mode
    );
    let rows = pair(&sa, &sb);
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(16);
    out.push_str(&format!(
        "{:<w$} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
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
    let exits = |s: Option<&SourceSummary>| {
        s.and_then(|s| s.exits_per_interrupt.get("exits").copied())
            .map_or("-".to_string(), |v| format!("{v:.2}"))
    };
    let f = |s: Option<&SourceSummary>, g: fn(&SourceSummary) -> Option<f64>| {
        s.and_then(g)
            .map_or("\u{2013}".to_string(), |v| format!("{v:.1}"))
    };
    let mut notes = Vec::new();
    for (label, na, nb, shared) in &rows {
        let x = na.and_then(|n| sa.sources.get(n));
        let y = nb.and_then(|n| sb.sources.get(n));
        out.push_str(&format!(
            "{:<w$} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}\n",
            label,
            x.map_or(0, |s| s.count),
            y.map_or(0, |s| s.count),
            f(x, |s| s.latency_p50_us),
            f(y, |s| s.latency_p50_us),
            f(x, |s| s.latency_p99_us),
            f(y, |s| s.latency_p99_us),
            exits(x),
            exits(y),
        ));
        if let (Some(na), Some(nb), Some(v)) = (na, nb, shared) {
            notes.push(format!("{na} (A) and {nb} (B) share vector {v:#04x}"));
        }
    }
    if !notes.is_empty() {
        out.push_str(&format!("paired by vector: {}\n", notes.join("; ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sources: &[(&str, &[u8])]) -> Summary {
        let mut s: Summary = serde_json::from_str(
            r#"{"mode":"ring","tsc_khz":1,"sources":{},"records":0,"lost_records":0,
            "dropped_events":0,"order_violations":0,"order_ok_ratio":1.0,"userspace_exits":0,
            "kvm_totals":{},"kvm_attributed":{},"doorbell_exits":0,
            "kvm_after_last_doorbell":{},"tsc_offset_uncertainty":0}"#,
        )
        .unwrap();
        for (name, vectors) in sources {
            s.sources.insert(
                name.to_string(),
                SourceSummary {
                    count: 1,
                    vectors: vectors.to_vec(),
                    ..Default::default()
                },
            );
        }
        s
    }

    #[test]
    fn sources_named_differently_pair_by_vector() {
        let split = summary(&[
            ("pit", &[0x30]),
            ("uart", &[0x31]),
            ("lapic-timer", &[0xec]),
        ]);
        // Kernel irqchip: KVM's PIT, seen only by the guest; an old summary without vectors.
        let kernel = summary(&[
            ("in-kernel:0x30", &[]),
            ("lapic-timer", &[0xec]),
            ("ipi", &[0xfd]),
        ]);
        let rows = pair(&split, &kernel);
        let labels: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            labels,
            vec!["ipi", "lapic-timer", "pit / in-kernel:0x30", "uart"]
        );
        let pit = rows.iter().find(|r| r.0.starts_with("pit")).unwrap();
        assert_eq!(
            (pit.1, pit.2, pit.3),
            (Some("pit"), Some("in-kernel:0x30"), Some(0x30))
        );
    }
}
