//! Times `encode_batch` natively on a record batch written by the Python host, to separate the
//! core's own cost from the cost of crossing the component boundary.
//!
//! Usage: cargo run --release --example encode_bench -- [--wire] <records.json> <config.json>
//!
//! `--wire` prints what one call returns to the host (summary line, then the bodies) instead of
//! timing: diffing it before and after a change to the encoder shows the output did not move.

use raceway_core::event::ProcessConfig;
use raceway_core::pipeline::encode_batch;
use std::io::Write;
use std::time::Instant;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wire = args.first().is_some_and(|a| a == "--wire");
    if wire {
        args.remove(0);
    }
    let [records, config] = &args[..] else {
        eprintln!("usage: encode_bench [--wire] <records.json> <config.json>");
        std::process::exit(2);
    };
    let records = std::fs::read_to_string(records).expect("records file");
    let config = std::fs::read_to_string(config).expect("config file");
    let config: ProcessConfig = serde_json::from_str(&config).unwrap();
    if wire {
        let out = encode_batch(&config, &records, 50).unwrap();
        std::io::stdout()
            .write_all(out.into_wire().as_bytes())
            .unwrap();
        return;
    }
    // Enough rounds for ~80k events, so that small batches (the host sends a few hundred
    // records per call) are timed as steadily as large ones.
    let per_round = encode_batch(&config, &records, 50)
        .unwrap()
        .summary
        .events
        .max(1);
    let rounds = (80_000 / per_round).max(20);
    let start = Instant::now();
    let mut events = 0;
    let mut bytes = 0;
    for _ in 0..rounds {
        let out = encode_batch(&config, &records, 50).unwrap();
        events += out.summary.events;
        bytes += out.bodies.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{events} events, {:.0} events/s, {:.2} us/event, {} bytes/event",
        events as f64 / secs,
        secs / events as f64 * 1e6,
        bytes / events.max(1)
    );
}
