//! Times the race detector natively on record batches written by the Python host
//! (`python benchmarks/detector_workload.py <batches.jsonl> <accesses>`: one batch per line), to
//! see the detector's own share apart from reading the batch, rendering bodies and the
//! component boundary.
//!
//! Usage: cargo run --release --example detector_bench -- <batches.jsonl> [mode] [accesses]
//!
//! `mode`: `all` (default) times each of `read` (the batch read into typed events, nothing
//! rendered: `encode-batch` with 0 events per body), `detect` (read and fed to a fresh detector:
//! `observe` with 0), `encode` (read and rendered, 50 events per body: `encode-batch`) and
//! `both` (`observe` with 50); any one of them runs that mode alone (for `perf record`).
//! `accesses`: feed batches until this many accesses (default: the whole file).

use raceway_core::detector::Detector;
use raceway_core::event::ProcessConfig;
use raceway_core::pipeline::process_batch;
use std::time::Instant;

fn run(mode: &str, config: &ProcessConfig, batches: &[&str]) -> (f64, u64, usize) {
    let mut detector = Detector::default();
    let start = Instant::now();
    let mut events = 0;
    for b in batches {
        let (per_body, detect) = match mode {
            "read" => (0, false),
            "detect" => (0, true),
            "encode" => (50, false),
            "both" => (50, true),
            other => panic!("unknown mode {other}"),
        };
        let out = process_batch(
            config,
            b,
            per_body,
            if detect { Some(&mut detector) } else { None },
        )
        .unwrap();
        events += out.summary.events;
    }
    (
        start.elapsed().as_secs_f64(),
        detector.stats().accesses,
        events,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: detector_bench <batches.jsonl> [all|read|detect|encode|both] [accesses]");
        std::process::exit(2);
    };
    let mode = args.get(1).map(String::as_str).unwrap_or("all");
    let limit: u64 = args
        .get(2)
        .map(|s| s.parse().expect("accesses"))
        .unwrap_or(u64::MAX);
    let text = std::fs::read_to_string(path).expect("batches file");
    let config = ProcessConfig::default();
    // Accesses per batch, counted by a detector once (the same batches are fed in every mode).
    let mut counter = Detector::default();
    let mut batches = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if counter.stats().accesses >= limit {
            break;
        }
        process_batch(&config, line, 0, Some(&mut counter)).unwrap();
        batches.push(line);
    }
    let accesses = counter.stats().accesses;
    let modes: Vec<&str> = if mode == "all" {
        vec!["read", "detect", "encode", "both"]
    } else {
        vec![mode]
    };
    for m in modes {
        let mut best = f64::MAX;
        let mut events = 0;
        for _ in 0..3 {
            let (secs, _, ev) = run(m, &config, &batches);
            best = best.min(secs);
            events = ev;
        }
        println!(
            "{m:>6}: {accesses} accesses, {events} events: {:.3} us/access (best of 3)",
            best / accesses as f64 * 1e6
        );
    }
    let s = counter.stats();
    println!(
        "detector after the stream: {} live strands, {} variables",
        s.strands, s.variables
    );
}
