//! The table `irqlab run` prints after a traced run and `irqlab trace summarize` prints for a
//! trace directory: one row per source with its counts, latency percentiles and exits per
//! interrupt.

use super::model::Summary;

/// A latency for a table: "–" when unknown.
fn us(v: Option<f64>) -> String {
    v.map_or("\u{2013}".to_string(), |v| format!("{v:.1}"))
}

/// The stdout table for a summary.
pub fn table(s: &Summary) -> String {
    let mut out = format!(
        "trace ({} mode): {} interrupts, {} userspace exits ({} exit records dropped past exits_max_records), {} records lost, order raise<=inject<=entry held for {:.2}%\n",
        s.mode,
        s.records,
        s.userspace_exits,
        s.dropped_exit_records,
        s.lost_records,
        s.order_ok_ratio * 100.0
    );
    out.push_str(&format!(
        "{:<16} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "source",
        "count",
        "injected",
        "merged",
        "p50 us",
        "p90 us",
        "p99 us",
        "max us",
        "exits per interrupt"
    ));
    for (name, v) in &s.sources {
        let exits: Vec<String> = v
            .exits_per_interrupt
            .iter()
            .filter(|(_, x)| x.abs() >= 0.005)
            .map(|(k, x)| format!("{k} {x:.2}"))
            .collect();
        out.push_str(&format!(
            "{:<16} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}  {}\n",
            name,
            v.count,
            v.injected,
            v.merged,
            us(v.latency_p50_us),
            us(v.latency_p90_us),
            us(v.latency_p99_us),
            us(v.latency_max_us),
            if exits.is_empty() {
                "-".to_string()
            } else {
                exits.join(", ")
            }
        ));
    }
    for (name, v) in s.sources.iter().filter(|(_, v)| v.preempting > 0) {
        out.push_str(&format!(
            "{name}: {} of {} ticks ended a time slice (the guest switched tasks on the way back to user mode; \"preempt\": true in interrupts.jsonl)\n",
            v.preempting, v.count
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_latencies_are_dashes_and_small_exit_counts_are_left_out() {
        let text = r#"{"mode":"ring","tsc_khz":1000,"sources":{"pit":{"count":1,"injected":1,
            "merged":0,"unhandled":0,"latency_p50_us":null,"latency_p90_us":1.0,
            "latency_p99_us":1.0,"latency_max_us":12.345,"handler_mean_us":1.0,
            "exits_per_interrupt":{"exits":2.5,"halt_exits":0.001}}},"records":1,
            "lost_records":0,"dropped_events":0,"order_violations":0,"order_ok_ratio":1.0,
            "userspace_exits":0,"kvm_totals":{},"kvm_attributed":{},"doorbell_exits":0,
            "kvm_after_last_doorbell":{},"tsc_offset_uncertainty":0}"#;
        let s: Summary = serde_json::from_str(text).unwrap();
        let t = table(&s);
        assert!(t.contains("0 exit records dropped"));
        let row = t.lines().find(|l| l.starts_with("pit")).unwrap();
        assert!(row.contains("\u{2013}") && row.contains("12.3"), "{row}");
        assert!(row.ends_with("  exits 2.50"), "{row}");
    }
}
