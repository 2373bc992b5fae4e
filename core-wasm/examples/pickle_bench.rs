//! Times reading record batches in the pickle form against the same batches as JSON, natively
//! (`process_pickle` and `process_batch`, nothing rendered and no detector), to see the
//! readers' own cost apart from the component boundary.
//!
//! Usage: cargo run --release --example pickle_bench -- <batches.pickles> <batches.jsonl>
//! `batches.pickles`: each batch as the host passes it (latin-1 characters, UTF-8 encoded),
//! preceded by its length in bytes (u32, little-endian); `batches.jsonl`: the same batches in
//! the JSON form, one per line.

use raceway_core::event::ProcessConfig;
use raceway_core::pipeline::{process_batch, process_pickle};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pickles, jsons] = &args[..] else {
        eprintln!("usage: pickle_bench <batches.pickles> <batches.jsonl>");
        std::process::exit(2);
    };
    let raw = std::fs::read(pickles).expect("pickles file");
    let mut batches = Vec::new();
    let mut at = 0;
    while at + 4 <= raw.len() {
        let n = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
        batches.push(
            std::str::from_utf8(&raw[at + 4..at + 4 + n])
                .expect("UTF-8")
                .to_owned(),
        );
        at += 4 + n;
    }
    let text = std::fs::read_to_string(jsons).expect("jsonl file");
    let config = ProcessConfig::default();
    for (name, per_body) in [("read", 0), ("encode", 50)] {
        for form in ["pickle", "json"] {
            let mut best = f64::MAX;
            let mut events = 0;
            for _ in 0..5 {
                let start = Instant::now();
                events = 0;
                if form == "pickle" {
                    for b in &batches {
                        events += process_pickle(&config, b, per_body, None)
                            .unwrap()
                            .summary
                            .events;
                    }
                } else {
                    for b in text.lines() {
                        events += process_batch(&config, b, per_body, None)
                            .unwrap()
                            .summary
                            .events;
                    }
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            println!(
                "{name:>6} {form:>6}: {events} events, {:.3} us/event (best of 5)",
                best / events as f64 * 1e6
            );
        }
    }
}
