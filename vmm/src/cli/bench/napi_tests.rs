//! Unit tests of `irqlab bench napi` (parsing, the collapse finder, the SVG).
use super::*;
use crate::cli::bench::napi_svg::napi_svg;
use irqlab::stats::{ExitCounts, Mark};
use std::time::Instant;

fn line(design: &str, rate: u64, sent: u64, processed: u64) -> NapiLine {
    NapiLine {
        design: design.into(),
        rate,
        sent,
        processed,
        ring_drops: 0,
        backlog_drops: sent - processed,
        irqs: processed,
        p50_us: 10,
        p99_us: 20,
        handler_pct: 1.0,
        process_pct: 2.0,
        polls: 0,
    }
}

/// A row whose run took 1 s: processed/s = processed.
fn row(design: &str, rate: u64, sent: u64, processed: u64) -> Row {
    Row {
        line: line(design, rate, sent, processed),
        exits: Some(3 * processed),
        secs: Some(1.0),
    }
}

#[test]
fn parses_napi_lines_and_skips_the_header() {
    let console = "NAPI columns: design rate sent processed ring_drops backlog_drops irqs irqs/pkt p50_us p99_us handler% process% polls\n\
                   NAPI irq 10000 2000 1500 100 400 1510 1.00 37 912 71.25 20.50 0\n\
                   NAPI napi 0 20000 9000 11000 0 12 0.00 80 300 0.10 60.00 150\n\
                   PASS napi-accounting: every packet\n\
                   NAPI irq 10000 2000\n";
    let lines: Vec<NapiLine> = console.lines().filter_map(parse_line).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        NapiLine {
            design: "irq".into(),
            rate: 10_000,
            sent: 2000,
            processed: 1500,
            ring_drops: 100,
            backlog_drops: 400,
            irqs: 1510,
            p50_us: 37,
            p99_us: 912,
            handler_pct: 71.25,
            process_pct: 20.5,
            polls: 0,
        }
    );
    assert_eq!(lines[1].design, "napi");
    assert_eq!(lines[1].rate, 0);
    assert_eq!(lines[1].polls, 150);
    assert_eq!(parse_line("NAPI irq x 1 2 3 4 5 6 7 8 9 10 11"), None);
}

#[test]
fn rates_flag_takes_one_to_eight_rates() {
    assert_eq!(rates("1000,0"), Ok(Rates(vec![1000, 0])));
    for bad in [
        "",
        "1,2,3,4,5,6,7,8,9",
        "1000,x",
        "2000000",
        "-1",
        "1000,,0",
    ] {
        assert!(rates(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_nth_pair_of_marks_is_the_nth_run() {
    let t0 = Instant::now();
    let mark = |value, pio, ms| Mark {
        value,
        at: t0 + Duration::from_millis(ms),
        exits: ExitCounts {
            pio,
            mmio: pio * 10,
            ..ExitCounts::default()
        },
    };
    // Two runs: 5 then 7 PIO exits in between (plus the end mark's own exit).
    let marks = [
        mark(1, 1, 0),
        mark(2, 7, 100),
        mark(1, 8, 150),
        mark(2, 16, 400),
    ];
    let w = windows(&marks);
    assert_eq!(w.len(), 2);
    assert_eq!((w[0].0.pio, w[0].0.mmio), (5, 60));
    assert_eq!((w[1].0.pio, w[1].0.mmio), (7, 80));
    assert_eq!(w[1].1, Duration::from_millis(250));
    let console = "NAPI irq 1000 100 100 0 0 100 1.00 5 9 1.00 2.00 0\n\
                   NAPI irq 0 200 150 50 0 150 1.00 5 9 1.00 2.00 0\n";
    let rows = rows_of(console, &marks);
    assert_eq!(rows[1].exits, Some(87));
    assert_eq!(rows[1].secs, Some(0.25));
    assert_eq!(rows[1].processed_per_s(), 600.0);
    // One window short: no exits rather than the wrong run's.
    assert!(rows_of(console, &marks[..2])
        .iter()
        .all(|r| r.exits.is_none()));
}

#[test]
fn collapse_is_where_irq_drops_and_napi_still_climbs() {
    let mut rows = vec![
        row("irq", 1000, 1000, 1000),
        row("irq", 10_000, 10_000, 9950),
        row("irq", 0, 20_000, 300),
        row("irq", 100_000, 100_000, 2000),
        row("napi", 1000, 1000, 1000),
        row("napi", 10_000, 10_000, 10_000),
        row("napi", 100_000, 100_000, 30_000),
        row("napi", 0, 20_000, 29_000),
    ];
    let c = collapse_point(&rows, 90.0, 95.0);
    assert_eq!(
        c,
        Collapse::At {
            rate: 100_000,
            irq_share: 0.02,
            napi_per_s: 30_000.0,
            previous: Some((10_000, 10_000.0)),
        }
    );
    assert!(collapse_sentence(&c, 90.0, 95.0)
        .contains("with 100000 packets/s offered, irq processed 2.0 %"));
    // NAPI falling at the first rate irq drops: the next rate, back to back, is judged
    // against it.
    rows[6] = row("napi", 100_000, 100_000, 5000);
    assert_eq!(
        collapse_point(&rows, 90.0, 95.0),
        Collapse::At {
            rate: 0,
            irq_share: 0.015,
            napi_per_s: 29_000.0,
            previous: Some((100_000, 5000.0)),
        }
    );
    // A dip within the hold share is noise: NAPI still holds.
    rows[7] = row("napi", 0, 20_000, 4800);
    assert!(matches!(
        collapse_point(&rows, 90.0, 95.0),
        Collapse::At { rate: 0, .. }
    ));
    assert!(matches!(
        collapse_point(&rows, 90.0, 100.0),
        Collapse::NapiFellToo { .. }
    ));
    rows[7] = row("napi", 0, 20_000, 4000);
    assert_eq!(
        collapse_point(&rows, 90.0, 95.0),
        Collapse::NapiFellToo {
            first_irq_rate: 100_000
        }
    );
    let calm: Vec<Row> = rows
        .iter()
        .filter(|r| r.line.rate <= 10_000 && r.line.rate > 0)
        .cloned()
        .collect();
    assert_eq!(collapse_point(&calm, 90.0, 95.0), Collapse::None);
    assert!(collapse_sentence(&Collapse::None, 90.0, 95.0).starts_with("no collapse seen"));
}

#[test]
fn svg_is_well_formed_with_one_polyline_per_design_and_panel() {
    let mut rows = Vec::new();
    for design in DESIGNS {
        for (rate, processed) in [(1000, 1000), (10_000, 8000), (100_000, 5000), (0, 4000)] {
            rows.push(row(design, rate, rate.max(20_000), processed));
        }
    }
    // A run without a processed packet has no interrupts per packet: left out, not NaN.
    rows.push(row("posted", 50_000, 10_000, 0));
    let svg = napi_svg(&rows);
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    for design in DESIGNS {
        let lines: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("data-design") == Some(design))
            .collect();
        assert_eq!(lines.len(), 2, "{design}: {svg}");
        for l in lines {
            let pts = l.attribute("points").unwrap();
            assert!(!pts.contains("NaN") && !pts.contains("inf"), "{pts}");
            assert!(pts.split(' ').count() >= 4, "{pts}");
        }
    }
    assert!(!svg.contains("NaN"), "{svg}");
}
