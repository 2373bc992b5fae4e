//! The `raceway-clock` header: `v1;` + base64url (no padding) of compact JSON
//! `{"trace_id","span_id","parent_span_id","service","instance","clock"}`, keys in that order.
//! It carries the caller's vector clock so that the callee's events are ordered after it.

use crate::base64url;
use crate::clock::VectorClock;
use crate::ids::{SpanId, TraceId};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "v1;";
/// Longest header value accepted from a peer.
pub const MAX_LEN: usize = 16 * 1024;
/// Longest service or instance name accepted from a peer.
pub const MAX_NAME_LEN: usize = 256;

/// A decoded, validated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockHeader {
    pub trace_id: TraceId,
    /// The span the caller minted for the callee (the same as in its `traceparent`).
    pub span_id: SpanId,
    /// The caller's own span: the callee's `upstream_span_id`.
    pub parent_span_id: Option<SpanId>,
    pub service: String,
    pub instance: String,
    pub clock: VectorClock,
}

/// The JSON as it is on the wire, field order included.
#[derive(Serialize, Deserialize)]
struct Wire {
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_span_id: Option<String>,
    service: String,
    instance: String,
    clock: VectorClock,
}

pub fn encode(h: &ClockHeader) -> String {
    let wire = Wire {
        trace_id: h.trace_id.to_uuid(),
        span_id: h.span_id.to_hex(),
        parent_span_id: h.parent_span_id.map(SpanId::to_hex),
        service: h.service.clone(),
        instance: h.instance.clone(),
        clock: h.clock.clone(),
    };
    let json = serde_json::to_string(&wire).expect("plain data serializes");
    format!("{PREFIX}{}", base64url::encode(json.as_bytes()))
}

pub fn decode(value: &str) -> Result<ClockHeader, String> {
    if value.len() > MAX_LEN {
        return Err(format!("raceway-clock: {} characters, more than {MAX_LEN}", value.len()));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let payload = value
        .strip_prefix(PREFIX)
        .ok_or_else(|| "raceway-clock: unsupported version (expected v1;)".to_owned())?;
    let bytes = base64url::decode(payload).ok_or("raceway-clock: not base64url")?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|e| format!("raceway-clock: {e}"))?;
    let span = |s: &str, what: &str| {
        SpanId::parse_hex(s).ok_or_else(|| format!("raceway-clock: {what} is not 16 lower-case hex digits"))
    };
    for (name, v) in [("service", &wire.service), ("instance", &wire.instance)] {
        if v.len() > MAX_NAME_LEN {
            return Err(format!("raceway-clock: {name} longer than {MAX_NAME_LEN}"));
        }
    }
    wire.clock.validate_foreign().map_err(|e| format!("raceway-clock: {e}"))?;
    Ok(ClockHeader {
        trace_id: TraceId::parse_uuid(&wire.trace_id).ok_or("raceway-clock: trace_id is not a UUID")?,
        span_id: span(&wire.span_id, "span_id")?,
        parent_span_id: wire.parent_span_id.as_deref().map(|s| span(s, "parent_span_id")).transpose()?,
        service: wire.service,
        instance: wire.instance,
        clock: wire.clock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE_JSON: &str = r#"{"trace_id":"0af76519-16cd-43dd-8448-eb211c80319c","span_id":"5ca1b17ca84ca5e5","parent_span_id":"b7ad6b7169203331","service":"banking-api","instance":"host-1","clock":[["banking-api#host-1",2]]}"#;

    #[test]
    fn reference_example_round_trips_byte_for_byte() {
        let value = format!("v1;{}", base64url::encode(REFERENCE_JSON.as_bytes()));
        let h = decode(&value).unwrap();
        assert_eq!(h.service, "banking-api");
        assert_eq!(h.clock.get("banking-api#host-1"), 2);
        assert_eq!(encode(&h), value);
    }

    #[test]
    fn hostile_payloads_are_errors_not_panics() {
        let enc = |json: &str| format!("v1;{}", base64url::encode(json.as_bytes()));
        let cases = [
            "v2;abc".to_owned(),
            "v1;***".to_owned(),
            enc("[1,2,3]"),
            enc("null"),
            enc(&REFERENCE_JSON.replace(",2]]", ",-2]]")),
            enc(&REFERENCE_JSON.replace(",2]]", ",2.5]]")),
            enc(&REFERENCE_JSON.replace(",2]]", ",true]]")),
            enc(&REFERENCE_JSON.replace("0af76519-", "0AF76519-")),
            format!("v1;{}", "A".repeat(MAX_LEN)),
        ];
        for c in cases {
            assert!(decode(&c).is_err(), "{c:.40}");
        }
    }
}
