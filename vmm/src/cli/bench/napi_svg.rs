//! The SVG of `irqlab bench napi`: processed packets per second and interrupts per packet
//! against the offered rate (log scale), one polyline per design.

use super::napi::{load, Row, COLORS, DESIGNS};

/// A plot panel: title, the value plotted, its unit's smallest y maximum.
type Panel = (&'static str, fn(&Row) -> f64, f64);

/// The smallest of 1, 2, 5 × 10^k at or above `v` (at least `floor`).
fn nice_max(v: f64, floor: f64) -> f64 {
    let v = if v.is_finite() { v.max(floor) } else { floor };
    let mut m = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if m * step >= v {
            m *= step;
            break;
        }
    }
    m
}

/// Two panels against the offered rate (log scale; back to back drawn one decade past the
/// highest rate): packets processed per second, with the line processed = offered, and
/// interrupts per packet processed. One polyline per design and panel.
pub(super) fn napi_svg(rows: &[Row]) -> String {
    let (w, h, pad) = (460.0, 320.0, 55.0);
    let finite: Vec<u64> = rows
        .iter()
        .map(|r| r.line.rate)
        .filter(|&r| r > 0)
        .collect();
    let lo = finite
        .iter()
        .map(|&r| (r as f64).log10().floor())
        .fold(f64::INFINITY, f64::min);
    let lo = if lo.is_finite() { lo } else { 3.0 };
    let top = finite
        .iter()
        .map(|&r| (r as f64).log10().ceil())
        .fold(lo, f64::max);
    let b2b = top + 1.0;
    let lx = |rate: u64| {
        if rate == 0 {
            b2b
        } else {
            (rate as f64).log10()
        }
    };
    let x = |rate: u64| pad + (lx(rate) - lo) / (b2b - lo) * (w - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n",
        2.0 * w
    );
    let panels: [Panel; 2] = [
        ("packets processed per second", Row::processed_per_s, 1000.0),
        ("interrupts per packet processed", Row::irqs_per_packet, 1.0),
    ];
    for (i, (title, value, floor)) in panels.iter().enumerate() {
        let ox = i as f64 * w;
        let highest = rows
            .iter()
            .map(value)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let ymax = nice_max(highest, *floor);
        let y = |v: f64| h - pad - (v.clamp(0.0, ymax) / ymax) * (h - 2.0 * pad);
        s.push_str(&format!(
            "<text x=\"{}\" y=\"20\" font-size=\"13\">{title}</text>\n",
            ox + pad
        ));
        s.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/><line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" y2=\"{1}\" stroke=\"black\"/>\n",
            ox + pad, h - pad, ox + w - pad, pad
        ));
        let mut decade = lo;
        while decade <= top {
            let r = 10f64.powf(decade) as u64;
            let label = match r {
                r if r >= 1_000_000 => format!("{}M", r / 1_000_000),
                r if r >= 1000 => format!("{}k", r / 1000),
                r => r.to_string(),
            };
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\">{label}</text>\n",
                ox + x(r) - 8.0,
                h - pad + 15.0
            ));
            decade += 1.0;
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\">b2b</text><text x=\"{}\" y=\"{}\">offered packets/s (log)</text>\n",
            ox + x(0) - 8.0,
            h - pad + 15.0,
            ox + w / 2.0 - 50.0,
            h - pad + 32.0
        ));
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">{ymax}</text><text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\">0</text>\n",
            ox + 5.0,
            pad + 4.0,
            ox + 5.0,
            (h) / 2.0 + 4.0,
            ymax / 2.0,
            ox + 40.0,
            h - pad
        ));
        if i == 0 {
            // Processed = offered, where it fits in the panel (back to back has no offered rate).
            let mut pts = Vec::new();
            let mut decade = lo;
            while decade <= top {
                let r = 10f64.powf(decade);
                if r <= ymax {
                    pts.push(format!("{:.1},{:.1}", ox + x(r as u64), y(r)));
                }
                decade += 0.25;
            }
            if ymax > 10f64.powf(lo) && ymax < 10f64.powf(top) {
                // The line leaves the panel at its top: end it there.
                pts.push(format!("{:.1},{:.1}", ox + x(ymax as u64), y(ymax)));
            }
            s.push_str(&format!(
                "<polyline class=\"offered\" fill=\"none\" stroke=\"#999\" stroke-dasharray=\"4 3\" points=\"{}\"/>\n",
                pts.join(" ")
            ));
            s.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" fill=\"#999\">processed = offered</text>\n",
                ox + pad + 8.0,
                pad + 14.0
            ));
        }
        for (k, design) in DESIGNS.iter().enumerate() {
            let color = COLORS[k];
            let mut mine: Vec<&Row> = rows
                .iter()
                .filter(|r| r.line.design == *design && value(r).is_finite())
                .collect();
            mine.sort_by_key(|r| load(r.line.rate));
            let pts: Vec<String> = mine
                .iter()
                .map(|r| format!("{:.1},{:.1}", ox + x(r.line.rate), y(value(r))))
                .collect();
            s.push_str(&format!(
                "<polyline data-design=\"{design}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
                pts.join(" ")
            ));
            for p in &pts {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                s.push_str(&format!(
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"2.5\" fill=\"{color}\"/>\n"
                ));
            }
            s.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{design}</text>\n",
                ox + w - pad - 40.0,
                pad + 14.0 * k as f64
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}
