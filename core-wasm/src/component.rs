//! The component boundary: the WIT exports, implemented by calling the plain-Rust modules.
//! Only compiled for `wasm32`; everything it calls is tested natively.

use crate::event::ProcessConfig;
use crate::{pipeline, propagation};
use std::cell::RefCell;

wit_bindgen::generate!({ path: "../wit", world: "core" });

use exports::raceway::core::{pipeline as wit_pipeline, propagation as wit_propagation};

thread_local! {
    /// Set by `configure`; a component instance is single-threaded, so a thread-local is the
    /// whole of its state.
    static CONFIG: RefCell<Option<ProcessConfig>> = const { RefCell::new(None) };
}

struct Core;

impl wit_propagation::Guest for Core {
    fn parse_incoming(headers: String) -> String {
        propagation::parse_incoming_json(&headers)
    }

    fn encode_outgoing(request: String) -> Result<String, String> {
        propagation::encode_outgoing_lines(&request)
    }
}

impl wit_pipeline::Guest for Core {
    fn configure(config: String) -> Result<(), String> {
        let parsed: ProcessConfig = serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
        CONFIG.with(|c| *c.borrow_mut() = Some(parsed));
        Ok(())
    }

    fn encode_batch(records: String, max_events_per_body: u32) -> Result<String, String> {
        CONFIG.with(|c| {
            let config = c.borrow();
            let config = config.as_ref().ok_or("encode-batch called before configure")?;
            let out = pipeline::encode_batch(config, &records, max_events_per_body as usize)?;
            Ok(out.into_wire())
        })
    }
}

export!(Core);
