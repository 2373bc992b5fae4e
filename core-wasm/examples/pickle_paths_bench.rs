//! Times the three paths the Python host uses by default, natively, on pickled parts as the
//! host writes them: `encode` (`encode-batch-pickle`, 50 events per body), `observe50`
//! (`observe-pickle` with bodies) and `observe0` (`observe-pickle` without bodies).
//!
//! Usage: cargo run --release --example pickle_paths_bench -- <parts.pickles> [mode] [rounds]
//! `parts.pickles`: each part as the host passes it (latin-1 characters, UTF-8 encoded),
//! preceded by its length in bytes (u32, little-endian). `mode`: `all` (default), `read` (read only: `encode-batch-pickle` with 0
//! events per body) or one of the three (for `perf record` or `valgrind --tool=callgrind`); `--wire` as the mode prints a
//! digest-friendly dump of every answer instead (to diff before and after a change).

use raceway_core::detector::Detector;
use raceway_core::event::ProcessConfig;
use raceway_core::pipeline::process_pickle;
use std::io::Write;
use std::time::Instant;

fn run(mode: &str, config: &ProcessConfig, parts: &[String], out: Option<&mut Vec<u8>>) -> usize {
    let (per_body, detect) = match mode {
        "read" => (0, false),
        "encode" => (50, false),
        "observe50" => (50, true),
        "observe0" => (0, true),
        other => panic!("unknown mode {other}"),
    };
    let mut detector = Detector::default();
    let mut events = 0;
    let mut sink = out;
    for p in parts {
        let d = detect.then_some(&mut detector);
        let enc = process_pickle(config, p, per_body, d).unwrap();
        events += enc.summary.events;
        if let Some(o) = sink.as_deref_mut() {
            o.extend_from_slice(enc.into_wire().as_bytes());
            o.push(b'\n');
        }
    }
    if let Some(o) = sink {
        o.extend_from_slice(detector.findings_json().as_bytes());
        o.push(b'\n');
    }
    events
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: pickle_paths_bench <parts.pickles> [mode] [rounds]");
    let mode = args.get(1).map_or("all", String::as_str);
    let rounds: usize = args.get(2).map_or(5, |r| r.parse().unwrap());
    let raw = std::fs::read(path).expect("parts file");
    let mut parts = Vec::new();
    let mut at = 0;
    while at + 4 <= raw.len() {
        let n = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
        parts.push(
            std::str::from_utf8(&raw[at + 4..at + 4 + n])
                .unwrap()
                .to_owned(),
        );
        at += 4 + n;
    }
    let config = ProcessConfig::default();
    if mode == "--wire" {
        let mut out = Vec::new();
        for m in ["encode", "observe50", "observe0"] {
            run(m, &config, &parts, Some(&mut out));
        }
        std::io::stdout().write_all(&out).unwrap();
        return;
    }
    let modes: Vec<&str> = if mode == "all" {
        vec!["encode", "observe50", "observe0"]
    } else {
        vec![mode]
    };
    for m in modes {
        let mut best = f64::MAX;
        let mut events = 0;
        for _ in 0..rounds {
            let start = Instant::now();
            events = run(m, &config, &parts, None);
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{m:>10}: {events} events, {:.4} us/event (best of {rounds})",
            best / events as f64 * 1e6
        );
    }
}
