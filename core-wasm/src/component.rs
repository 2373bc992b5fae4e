//! The component boundary: the WIT exports, implemented by calling the plain-Rust modules.
//! Only compiled for `wasm32`; everything it calls is tested natively.

use crate::detector::{Detector, Options};
use crate::event::ProcessConfig;
use crate::{pipeline, propagation};
use std::cell::RefCell;

wit_bindgen::generate!({ path: "../wit", world: "core" });

use exports::raceway::core::{
    detector as wit_detector, pipeline as wit_pipeline, propagation as wit_propagation,
};

thread_local! {
    /// Set by `configure`; a component instance is single-threaded, so a thread-local is the
    /// whole of its state.
    static CONFIG: RefCell<Option<ProcessConfig>> = const { RefCell::new(None) };
    /// Made on first use, so an instance that only encodes never pays for it.
    static DETECTOR: RefCell<Option<Detector>> = const { RefCell::new(None) };
}

struct Core;

impl wit_propagation::Guest for Core {
    fn parse_incoming(headers: String) -> String {
        propagation::parse_incoming_json(&headers)
    }

    fn encode_outgoing(request: String) -> Result<String, String> {
        propagation::encode_outgoing_lines(&request)
    }

    fn outgoing_template(request: String) -> Result<String, String> {
        propagation::outgoing_template_json(&request)
    }

    fn incoming_template() -> String {
        propagation::incoming_template_json()
    }
}

impl wit_pipeline::Guest for Core {
    fn configure(config: String) -> Result<(), String> {
        let parsed: ProcessConfig =
            serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        CONFIG.with(|c| *c.borrow_mut() = Some(parsed));
        Ok(())
    }

    fn encode_batch(records: String, max_events_per_body: u32) -> Result<String, String> {
        CONFIG.with(|c| {
            let config = c.borrow();
            let config = config
                .as_ref()
                .ok_or("encode-batch called before configure")?;
            let out = pipeline::encode_batch(config, &records, max_events_per_body as usize)?;
            Ok(out.into_wire())
        })
    }

    fn encode_batch_pickle(records: String, max_events_per_body: u32) -> Result<String, String> {
        CONFIG.with(|c| {
            let config = c.borrow();
            let config = config
                .as_ref()
                .ok_or("encode-batch-pickle called before configure")?;
            let out =
                pipeline::process_pickle(config, &records, max_events_per_body as usize, None)?;
            Ok(out.into_wire())
        })
    }
}

impl wit_detector::Guest for Core {
    fn reset_detector(options: String) -> Result<(), String> {
        let options: Options =
            serde_json::from_str(&options).map_err(|e| format!("detector options: {e}"))?;
        DETECTOR.with(|d| *d.borrow_mut() = Some(Detector::new(options)));
        Ok(())
    }

    fn observe(records: String, max_events_per_body: u32) -> Result<String, String> {
        observe_with(pipeline::process_batch, &records, max_events_per_body)
    }

    fn observe_pickle(records: String, max_events_per_body: u32) -> Result<String, String> {
        observe_with(pipeline::process_pickle, &records, max_events_per_body)
    }

    fn races() -> String {
        DETECTOR.with(|d| {
            d.borrow_mut()
                .get_or_insert_with(Detector::default)
                .findings_json()
        })
    }
}

/// `observe` in either form of record batches (`process` reads and encodes one), with the
/// instance's detector (made on first use) and configuration (an unconfigured default until
/// `configure`: the detector needs no process identity).
type Process =
    fn(&ProcessConfig, &str, usize, Option<&mut Detector>) -> Result<pipeline::Encoded, String>;

fn observe_with(
    process: Process,
    records: &str,
    max_events_per_body: u32,
) -> Result<String, String> {
    CONFIG.with(|c| {
        DETECTOR.with(|d| {
            let config = c.borrow();
            let unconfigured = ProcessConfig::default();
            let config = config.as_ref().unwrap_or(&unconfigured);
            let mut detector = d.borrow_mut();
            let detector = detector.get_or_insert_with(Detector::default);
            let out = process(
                config,
                records,
                max_events_per_body as usize,
                Some(detector),
            )?;
            Ok(out.into_wire())
        })
    })
}

export!(Core);
