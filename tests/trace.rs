//! End-to-end interrupt tracing on real guests.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn traced_run(
    name: &str,
    irqchip: &str,
    mode: &str,
    cmdline: &str,
) -> (std::path::PathBuf, String) {
    let dir = scratch(name).join("trace");
    let cmdline = &untrusted_clock_off(cmdline);
    let (code, out, err) = run(&[
        "run",
        "--irqchip",
        irqchip,
        "--cmdline",
        cmdline,
        "--trace",
        dir.to_str().unwrap(),
        "--trace-mode",
        mode,
        "--timeout",
        "30",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    (dir, out)
}

/// How many events of the Chrome trace at `path` `pick` keeps.
fn chrome_events(path: &Path, pick: impl Fn(&Value) -> bool) -> usize {
    json(path)["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| pick(e))
        .count()
}

/// The Chrome trace's handler slices (complete events, "X") in trace directory `dir`.
fn handler_slices(dir: &Path) -> usize {
    chrome_events(&dir.join("trace.json"), |e| e["ph"] == "X")
}

/// The guest's own count from "N of M ticks".
fn guest_ticks(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("PASS timer-pit: "))
        .expect("timer result");
    line["PASS timer-pit: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn lockstep_records_match_the_guest_and_the_device_and_add_up() {
    if !kvm_or_skip("trace lockstep") {
        return;
    }
    let (dir, out) = traced_run(
        "lockstep",
        "split",
        "lockstep",
        "run=timer timer=pit hz=1000 ticks=200 tolerance=100",
    );
    let irqs = jsonl(&dir.join("interrupts.jsonl"));
    let summary = json(&dir.join("summary.json"));
    let pit: Vec<&Value> = irqs.iter().filter(|i| i["source"] == "pit").collect();
    // As many PIT records as the guest's handler counted ...
    assert_eq!(pit.len() as u64, guest_ticks(&out));
    // ... and every tick the PIT raised was either handled or merged into a handled one.
    let s = &summary["sources"]["pit"];
    assert_eq!(
        s["count"].as_u64().unwrap() + s["merged"].as_u64().unwrap(),
        s["injected"].as_u64().unwrap()
    );
    // Per-interrupt KVM deltas + one doorbell exit each + the tail after the last doorbell
    // = the run's totals.
    let total = summary["kvm_totals"]["exits"].as_i64().unwrap();
    let attributed = summary["kvm_attributed"]["exits"].as_i64().unwrap();
    let doorbells = summary["doorbell_exits"].as_i64().unwrap();
    let tail = summary["kvm_after_last_doorbell"]["exits"]
        .as_i64()
        .unwrap();
    assert_eq!(total, attributed + doorbells + tail, "{summary}");
    assert_eq!(doorbells as usize, irqs.len(), "one doorbell per record");
    // Split irqchip, edge-triggered, LAPIC in KVM: a PIT tick costs no userspace exit. After
    // the first record (which also carries the guest's set-up) the only userspace exits
    // between two doorbells are the guest's own accesses after its first tick: the
    // window-start mark (port 0xf9) at once, then, once it has counted its ticks, the
    // window-end mark, the PIT stop (port 0x43) and the IO-APIC mask of the PIT's pin (two
    // IOREGSEL/IOWIN pairs: four MMIO exits). Those after the last doorbell are the run's
    // tail; how many of them precede a last tick or two depends on the host's speed (on
    // kvm-pvm none, on SVM some). So: the start mark always, never more than those seven,
    // never an EOI or other exit — 200 ticks that each cost one would show.
    let exits = |i: &Value, k: &str| i["exits"][k].as_i64().unwrap_or(0);
    let steady = |k: &str| -> i64 { irqs.iter().skip(1).map(|i| exits(i, k)).sum() };
    let with_user: Vec<String> = irqs
        .iter()
        .skip(1)
        .filter(|i| {
            [
                "userspace_pio",
                "userspace_mmio",
                "userspace_ioapic_eoi",
                "userspace_other",
            ]
            .iter()
            .any(|k| exits(i, k) != 0)
        })
        .map(|i| i.to_string())
        .collect();
    let (pio, mmio) = (steady("userspace_pio"), steady("userspace_mmio"));
    assert!(
        (1..=3).contains(&pio)
            && mmio <= 4
            && steady("userspace_ioapic_eoi") == 0
            && steady("userspace_other") == 0,
        "userspace exits attributed in steady state (pio {pio}, mmio {mmio}):\n{}",
        with_user.join("\n")
    );
    // Timestamps: raise <= inject <= entry <= eoi for (nearly) every record, seq increasing.
    assert!(
        summary["order_ok_ratio"].as_f64().unwrap() >= 0.999,
        "{summary}"
    );
    for i in &pit {
        let (r, j, e, o) = (
            i["raise_us"].as_f64().unwrap(),
            i["inject_us"].as_f64().unwrap(),
            i["entry_us"].as_f64().unwrap(),
            i["eoi_us"].as_f64().unwrap(),
        );
        assert!(r <= j && e <= o, "{i}");
    }
    let seqs: Vec<u64> = irqs.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "sequence numbers are unique");
    // The Chrome trace parses and has one handler slice per record.
    assert_eq!(handler_slices(&dir), irqs.len());
    // Every exit line parses and names a reason.
    assert!(jsonl(&dir.join("exits.jsonl"))
        .iter()
        .all(|e| e["reason"].is_string()));
    // latency.svg is well-formed XML (checked with a parser) with a bar per non-empty bucket
    // and every interrupt counted in its source's title.
    let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("latency.svg: {e}"));
    assert!(doc.root_element().has_tag_name("svg"));
    assert!(doc.descendants().any(|n| n.has_tag_name("rect")), "{svg}");
    let counted: u64 = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .filter_map(|t| t.split_once(" interrupts with a known latency"))
        .filter_map(|(head, tail)| {
            let known: u64 = head.rsplit('(').next()?.parse().ok()?;
            let unknown: u64 = tail
                .split("for ")
                .nth(1)
                .and_then(|n| n.trim_end_matches(')').parse().ok())
                .unwrap_or(0);
            Some(known + unknown)
        })
        .sum();
    assert_eq!(counted as usize, irqs.len(), "{svg}");
}

#[test]
fn ring_mode_adds_no_exits_and_msis_are_attributed() {
    if !kvm_or_skip("trace ring") {
        return;
    }
    let (dir, _) = traced_run("ring", "kernel", "ring", "run=msi count=300 rate=1000");
    let summary = json(&dir.join("summary.json"));
    assert_eq!(summary["doorbell_exits"], 0);
    let msi = &summary["sources"]["msi:source0"];
    assert_eq!(msi["injected"], 300, "{summary}");
    assert_eq!(
        msi["count"].as_u64().unwrap() + msi["merged"].as_u64().unwrap(),
        300
    );
    let irqs = jsonl(&dir.join("interrupts.jsonl"));
    assert!(irqs
        .iter()
        .filter(|i| i["source"] == "msi:source0")
        .all(|i| i["latency_us"].as_f64().unwrap() >= 0.0));
}

#[test]
fn uart_and_summarize_and_diff() {
    if !kvm_or_skip("trace cli") {
        return;
    }
    let (a, _) = traced_run(
        "diff-a",
        "split",
        "ring",
        "run=timer timer=pit hz=500 ticks=50 tolerance=100",
    );
    let (b, _) = traced_run(
        "diff-b",
        "kernel",
        "ring",
        "run=timer timer=pit hz=500 ticks=50 tolerance=100",
    );
    let (code, out, err) = run(&["trace", "summarize", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with("pit ")), "{out}");
    let (code, out, err) = run(&["trace", "diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // Split: the PIT is irqlab's; kernel: KVM's PIT, seen only by the guest.
    assert!(
        out.contains("pit ") && out.contains("in-kernel:0x30"),
        "{out}"
    );
    // Both are the PIT at vector 0x30: one row compares them, with counts on both sides.
    let row = out
        .lines()
        .find(|l| l.starts_with("pit / in-kernel:0x30 "))
        .unwrap_or_else(|| panic!("no paired PIT row:\n{out}"));
    let counts: Vec<u64> = row["pit / in-kernel:0x30".len()..]
        .split_whitespace()
        .take(2)
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(counts.iter().all(|c| *c >= 50), "{row}");
    assert!(out.contains("paired by vector: pit (A) and in-kernel:0x30 (B) share vector 0x30"));
    let (code, _, err) = run(&["trace", "summarize", "/nonexistent/irqlab-trace"]);
    assert_eq!(code, 65);
    assert!(
        err.starts_with("irqlab: ") && err.contains("summary.json"),
        "{err}"
    );
}

#[test]
fn trace_is_complete_after_sigint() {
    if !kvm_or_skip("trace sigint") {
        return;
    }
    let dir = scratch("sigint").join("trace");
    let child = spawn_piped(
        &[
            "run",
            "--cmdline",
            "run=timer timer=pit hz=1000 ticks=1000000 tolerance=100",
            "--trace",
            dir.to_str().unwrap(),
            "--timeout",
            "60",
        ],
        std::process::Stdio::inherit(),
    );
    // interrupts.jsonl and trace.json are written as the run goes, not at its end.
    let start = std::time::Instant::now();
    let mut streamed = 0;
    while streamed < 100 && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let text = std::fs::read_to_string(dir.join("interrupts.jsonl")).unwrap_or_default();
        // Whole lines only: the writer may be mid-line.
        streamed = text.matches('\n').count();
    }
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "irqlab ended before the test could look"
    );
    assert!(streamed >= 100, "{streamed} lines while running");
    let chrome_head = std::fs::read_to_string(dir.join("trace.json")).unwrap();
    assert!(
        chrome_head.starts_with("{\"traceEvents\":["),
        "{chrome_head:.80}"
    );
    send_signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let irqs = jsonl(&dir.join("interrupts.jsonl"));
    assert!(irqs.len() > 100, "{} records", irqs.len());
    assert!(irqs.len() >= streamed);
    jsonl(&dir.join("exits.jsonl"));
    let summary = json(&dir.join("summary.json"));
    assert_eq!(summary["records"].as_u64().unwrap() as usize, irqs.len());
    assert_eq!(handler_slices(&dir), irqs.len());
}

#[test]
fn exits_jsonl_is_capped_and_the_rest_counted() {
    if !kvm_or_skip("trace exits cap") {
        return;
    }
    let dir = scratch("exitcap");
    let cfg = dir.join("t.toml");
    let cmdline = untrusted_clock_off("run=timer timer=pit hz=1000 ticks=100 tolerance=100");
    std::fs::write(
        &cfg,
        format!("cmdline = \"{cmdline}\"\n[trace]\ndir = \"out\"\nexits_max_records = 25\n"),
    )
    .unwrap();
    let (code, out, err) = run(&["run", cfg.to_str().unwrap(), "--timeout", "30"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let exits = jsonl(&dir.join("out/exits.jsonl"));
    assert_eq!(exits.len(), 25);
    let summary = json(&dir.join("out/summary.json"));
    let total = summary["userspace_exits"].as_u64().unwrap();
    let dropped = summary["dropped_exit_records"].as_u64().unwrap();
    assert!(total > 25, "{summary}");
    assert_eq!(dropped, total - 25, "{summary}");
    assert_eq!(summary["exits_max_records"], 25);
    assert!(
        out.contains(&format!(
            "{total} userspace exits ({dropped} exit records dropped past exits_max_records)"
        )),
        "{out}"
    );
    // Only the written exits appear in the Chrome trace.
    let instants = chrome_events(&dir.join("out/trace.json"), |e| {
        e["name"].as_str().is_some_and(|n| n.starts_with("exit "))
    });
    assert_eq!(instants, 25);
    let (_, err) = refused_config(
        &dir,
        "t.toml",
        "[trace]\ndir = \"out\"\nexits_max_records = -1\n",
    );
    assert!(
        err.contains("t.toml:3:") && err.contains("exits_max_records"),
        "{err}"
    );
}

#[test]
fn bad_trace_settings_are_config_errors() {
    if !kvm_or_skip("trace config") {
        return;
    }
    let (_, err) = refused_config(
        &scratch("badtrace"),
        "t.toml",
        "[trace]\ndir = \"x\"\nring_records = 3\n",
    );
    assert!(
        err.contains("t.toml:3:") && err.contains("ring_records"),
        "{err}"
    );
    let (code, _, err) = run(&["run", "--trace-mode", "lockstep"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("--trace-mode"), "{err}");
}
