//! The golden vectors in `tests/vectors/`, checked against the native build of the core.
//! The Python host checks the same files against the compiled component
//! (`tests/test_vectors.py`), and every future host does the same.

use raceway_core::clock::{Causality, VectorClock};
use raceway_core::propagation::{encode_outgoing_lines, parse_incoming_json};
use serde_json::Value;
use std::path::PathBuf;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn incoming() {
    for case in load("incoming.json")["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let got: Value =
            serde_json::from_str(&parse_incoming_json(&case["headers"].to_string())).unwrap();
        for key in ["parent", "tracestate", "upstream"] {
            assert_eq!(got[key], case["expect"][key], "{name}: {key}");
        }
        if let Some(n) = case.get("expect_errors") {
            assert_eq!(
                got["errors"].as_array().unwrap().len() as u64,
                n.as_u64().unwrap(),
                "{name}: {got}"
            );
        }
    }
}

#[test]
fn outgoing() {
    let vectors = load("outgoing.json");
    for case in vectors["cases"].as_array().unwrap() {
        let lines = encode_outgoing_lines(&case["request"].to_string()).unwrap();
        let got: serde_json::Map<String, Value> = lines
            .lines()
            .map(|l| l.split_once(": ").unwrap())
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        assert_eq!(Value::Object(got), case["expect"], "{}", case["name"]);
    }
    for case in vectors["errors"].as_array().unwrap() {
        assert!(
            encode_outgoing_lines(&case["request"].to_string()).is_err(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn clock() {
    for case in load("clock.json")["cases"].as_array().unwrap() {
        let a: VectorClock = serde_json::from_value(case["a"].clone()).unwrap();
        let b: VectorClock = serde_json::from_value(case["b"].clone()).unwrap();
        let expected = match case["compare"].as_str().unwrap() {
            "Before" => Causality::Before,
            "After" => Causality::After,
            "Equal" => Causality::Equal,
            _ => Causality::Concurrent,
        };
        assert_eq!(a.compare(&b), expected, "{case}");
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(
            serde_json::to_value(&merged).unwrap(),
            case["merge"],
            "{case}"
        );
    }
}

/// Each case's batches fed in order to one detector; its races summarised as the file states
/// them (kind, severity, variable, count, locations), in the detector's order.
#[test]
fn detector() {
    use raceway_core::detector::Detector;
    use raceway_core::event::ProcessConfig;
    use raceway_core::pipeline::process_batch;

    let config = ProcessConfig {
        service_name: "svc".into(),
        ..ProcessConfig::default()
    };
    for case in load("detector.json")["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut detector = Detector::default();
        for batch in case["batches"].as_array().unwrap() {
            let out = process_batch(&config, &batch.to_string(), 0, Some(&mut detector)).unwrap();
            assert_eq!(out.summary.dropped, 0, "{name}: {:?}", out.summary.errors);
        }
        let findings: Value = serde_json::from_str(&detector.findings_json()).unwrap();
        let got: Vec<Value> = findings["races"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let locations: Vec<Value> = r["accesses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["location"].clone())
                    .collect();
                serde_json::json!({"kind": r["kind"], "severity": r["severity"], "variable": r["variable"],
                                   "count": r["count"], "locations": locations})
            })
            .collect();
        assert_eq!(
            Value::Array(got),
            case["expect"],
            "{name}: {}",
            case["description"]
        );
    }
}
