//! Times `encode_batch` natively on a record batch written by the Python host, to separate the
//! core's own cost from the cost of crossing the component boundary.
//! Usage: cargo run --release --example encode_bench -- <records.json> <config.json>

use raceway_core::event::ProcessConfig;
use raceway_core::pipeline::encode_batch;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records = std::fs::read_to_string(&args[1]).expect("records file");
    let config: ProcessConfig = serde_json::from_str(&std::fs::read_to_string(&args[2]).expect("config file")).unwrap();
    let rounds = 20;
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
