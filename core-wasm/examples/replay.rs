//! Feeds a records file (`Config(events_file=...)`, one batch per line) to the detector,
//! natively: for profiling the detector and for reproducing a failure outside the sandbox.
//!
//!     cargo run --release --example replay -- events.jsonl

use raceway_core::detector::Detector;
use raceway_core::event::ProcessConfig;
use raceway_core::pipeline::process_batch;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay FILE");
    let text = std::fs::read_to_string(&path).expect("readable file");
    let config = ProcessConfig {
        service_name: "replay".into(),
        ..ProcessConfig::default()
    };
    let mut detector = Detector::default();
    let started = Instant::now();
    let mut events = 0;
    for (n, line) in text.lines().enumerate() {
        match process_batch(&config, line, 0, Some(&mut detector)) {
            Ok(out) => events += out.summary.events,
            Err(e) => eprintln!("line {}: {e}", n + 1),
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{events} events in {elapsed:?} ({:.2} µs/event)",
        elapsed.as_secs_f64() * 1e6 / events.max(1) as f64
    );
    println!("{}", detector.findings_json());
}
