//! The Raceway core: everything about events, clocks and headers that must behave the same in
//! every host language. It is compiled twice: natively for `cargo test`, and to a WASI component
//! (`wasm32-wasip2`) that the Python host (and later the Node host) runs sandboxed.
//!
//! Nothing here touches the network, the file system, the clock or the environment: hosts hand
//! in timestamps and random bits, so every function is a pure function of its input and can be
//! checked against the golden vectors in `tests/vectors/`.

pub mod base64url;
pub mod clock;
pub mod detector;
pub mod event;
pub mod hex;
pub mod ids;
pub mod pickle;
pub mod pipeline;
pub mod propagation;
pub mod raceway_clock;
pub mod read;
pub mod record;
pub mod render;
pub mod timestamp;
pub mod traceparent;
pub mod tracestate;

#[cfg(target_arch = "wasm32")]
mod component;
