//! `latency.svg`: one histogram of interrupt delivery latency per source, drawn by hand (no
//! plotting dependency): log2 buckets in µs, a y-axis with its scale, the count above every
//! non-empty bar, and the interrupts whose latency is unknown counted separately — never
//! drawn as 0 µs.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Buckets: < 1 µs, 1–2, 2–4, …, 2^14 µs and more.
pub const BUCKETS: usize = 16;
/// A non-empty bucket is at least this tall, however small next to the tallest.
const MIN_BAR: f64 = 2.0;

/// One source's latencies, counted as the run goes: interrupts per bucket (raise → handler
/// entry), and how many interrupts had no known latency (no device-side raise was seen, or
/// the guest did not record its entry).
#[derive(Debug, Default, Clone)]
pub struct SourceLatencies {
    /// Interrupts per [`bucket`].
    pub buckets: [u64; BUCKETS],
    /// Interrupts of this source whose latency is unknown.
    pub unknown: u64,
}

impl SourceLatencies {
    /// Counts one interrupt: its latency in µs, or `None` when unknown.
    pub fn add(&mut self, latency_us: Option<f64>) {
        match latency_us {
            Some(l) => self.buckets[bucket(l)] += 1,
            None => self.unknown += 1,
        }
    }

    /// Interrupts with a known latency.
    pub fn known(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The bucket of a latency in µs.
pub fn bucket(us: f64) -> usize {
    if us.is_nan() || us < 1.0 {
        0
    } else {
        (us.log2() as usize + 1).min(BUCKETS - 1)
    }
}

/// The label under bucket `b` (its lower bound in µs; the first is "<1").
fn label(b: usize) -> String {
    match b {
        0 => "&lt;1".into(),
        b if b == BUCKETS - 1 => format!("{}+", 1u64 << (b - 1)),
        b => format!("{}", 1u64 << (b - 1)),
    }
}

/// Escapes text for XML content and attribute values.
pub fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole SVG document.
pub fn latency_svg(by_source: &BTreeMap<String, SourceLatencies>) -> String {
    let (w, row_h, left, right) = (780.0, 160.0, 70.0, 20.0);
    let h = 40.0 + row_h * by_source.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"20\" font-size=\"14\">interrupt delivery latency (raise \u{2192} handler entry), log2 \u{b5}s buckets</text>"
    );
    if by_source.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"50\">no interrupts were traced</text>"
        );
    }
    let bw = (w - left - right) / BUCKETS as f64;
    let plot_h = row_h - 60.0;
    for (row, (name, lat)) in by_source.iter().enumerate() {
        let counts = lat.buckets;
        let max = counts.iter().copied().max().unwrap_or(0);
        let y0 = 40.0 + row as f64 * row_h;
        let base = y0 + 20.0 + plot_h;
        let unknown = if lat.unknown > 0 {
            format!(", latency unknown (\u{2013}) for {}", lat.unknown)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "<text x=\"10\" y=\"{:.1}\">{} ({} interrupts with a known latency{})</text>",
            y0 + 12.0,
            xml(name),
            lat.known(),
            unknown
        );
        // The y-axis: a line, ticks at 0, max/2 and max, and its unit.
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{left}\" y2=\"{base:.1}\" stroke=\"#444\"/>",
            base - plot_h
        );
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#444\"/>",
            w - right
        );
        for t in [0, max / 2, max] {
            let y = base
                - if max > 0 {
                    t as f64 / max as f64 * plot_h
                } else {
                    0.0
                };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\">{t}</text>",
                left - 4.0,
                y + 3.0
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"12\" y=\"{:.1}\" font-size=\"9\">interrupts</text>",
            base - plot_h / 2.0
        );
        for (b, c) in counts.iter().enumerate() {
            let x = left + 2.0 + b as f64 * bw;
            if *c > 0 {
                let bh = (*c as f64 / max as f64 * plot_h).max(MIN_BAR);
                let _ = writeln!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4878a8\"><title>{c} interrupts, {} \u{b5}s bucket</title></rect>",
                    base - bh,
                    bw - 3.0,
                    label(b)
                );
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{c}</text>",
                    x + (bw - 3.0) / 2.0,
                    base - bh - 3.0
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{}</text>",
                x,
                base + 12.0,
                label(b)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\">\u{b5}s</text>",
            w - right,
            base + 24.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("invalid XML: {e}\n{svg}"))
    }

    #[test]
    fn the_chart_is_valid_xml_with_axis_counts_and_every_bucket_visible() {
        let mut by = BTreeMap::new();
        // One bucket dwarfs another: the small one must still be drawn.
        let mut lat = SourceLatencies::default();
        for _ in 0..10_000 {
            lat.add(Some(0.5));
        }
        lat.add(Some(300.0));
        for _ in 0..3 {
            lat.add(None);
        }
        by.insert("ioapic:pin2 <&> \"pit\"".to_string(), lat);
        let svg = latency_svg(&by);
        let d = doc(&svg);
        let rects: Vec<_> = d.descendants().filter(|n| n.has_tag_name("rect")).collect();
        assert_eq!(rects.len(), 2, "one bar per non-empty bucket");
        for r in &rects {
            let h: f64 = r.attribute("height").unwrap().parse().unwrap();
            assert!(h >= MIN_BAR, "bar of height {h} is invisible");
        }
        let texts: Vec<&str> = d
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .collect();
        for want in ["10000", "1", "<1", "interrupts", "5000", "256"] {
            assert!(texts.contains(&want), "no text {want:?} in {texts:?}");
        }
        assert!(
            texts.iter().any(|t| t.contains("ioapic:pin2 <&> \"pit\"")
                && t.contains("latency unknown (\u{2013}) for 3")),
            "{texts:?}"
        );
    }

    #[test]
    fn no_sources_is_still_a_document() {
        let svg = latency_svg(&BTreeMap::new());
        let d = doc(&svg);
        assert!(d.root_element().has_tag_name("svg"));
    }

    #[test]
    fn buckets_are_log2_microseconds() {
        assert_eq!(bucket(0.2), 0);
        assert_eq!(bucket(f64::NAN), 0);
        assert_eq!(bucket(1.0), 1);
        assert_eq!(bucket(3.9), 2);
        assert_eq!(bucket(4.0), 3);
        assert_eq!(bucket(1e12), BUCKETS - 1);
    }
}
