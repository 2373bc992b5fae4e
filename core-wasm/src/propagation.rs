//! What a service does with trace headers: read them on the way in, write them on the way out.
//! Both functions take and return JSON text because that is what crosses the component boundary
//! (see `wit/raceway.wit` for the shapes).

use crate::clock::VectorClock;
use crate::ids::{SpanId, TraceId};
use crate::raceway_clock::{self, ClockHeader};
use crate::{traceparent, tracestate};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The caller's position in the trace, from a valid `traceparent`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Parent {
    pub trace_id: String,
    /// The span the caller minted for us: our `distributed_span_id`.
    pub span_id: String,
    pub flags: u8,
    pub version: String,
}

/// What `raceway-clock` adds to a valid `traceparent`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub span_id: String,
    /// The caller's own span: our `upstream_span_id`.
    pub parent_span_id: Option<String>,
    pub service: String,
    pub instance: String,
    pub clock: VectorClock,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Incoming {
    pub parent: Option<Parent>,
    pub tracestate: Option<String>,
    pub upstream: Option<Upstream>,
    /// Why headers were dropped, for the host's debug log. Empty when all was well.
    pub errors: Vec<String>,
}

/// Reads incoming headers given as `{name: [value, …]}`. Never fails: malformed input is an
/// error entry and the affected headers are dropped, so the request starts a new trace.
pub fn parse_incoming_json(headers: &str) -> String {
    let incoming = match serde_json::from_str::<BTreeMap<String, serde_json::Value>>(headers) {
        Ok(map) => parse_incoming(&collect_values(map)),
        Err(e) => Incoming {
            errors: vec![format!("headers: not a JSON object of lists: {e}")],
            ..Default::default()
        },
    };
    serde_json::to_string(&incoming).expect("plain data serializes")
}

/// Lower-cases names and keeps string values (a single string counts as a one-element list).
fn collect_values(map: BTreeMap<String, serde_json::Value>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in map {
        let values = out.entry(name.to_ascii_lowercase()).or_default();
        match value {
            serde_json::Value::String(s) => values.push(s),
            serde_json::Value::Array(items) => values.extend(
                items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned)),
            ),
            _ => {}
        }
    }
    out
}

pub fn parse_incoming(headers: &BTreeMap<String, Vec<String>>) -> Incoming {
    let get = |name: &str| -> Vec<&str> {
        headers
            .get(name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default()
    };
    let mut out = Incoming::default();
    let tp = match traceparent::parse_values(&get("traceparent")) {
        Ok(tp) => tp,
        Err(traceparent::TraceParentError::Missing) => return out,
        Err(e) => {
            out.errors.push(e.to_string());
            return out;
        }
    };
    out.parent = Some(Parent {
        trace_id: tp.trace_id.to_uuid(),
        span_id: tp.parent_id.to_hex(),
        flags: tp.flags,
        version: format!("{:02x}", tp.version),
    });
    match tracestate::combine(&get("tracestate")) {
        Ok(ts) => out.tracestate = ts,
        Err(e) => out.errors.push(e.to_string()),
    }
    match get("raceway-clock").as_slice() {
        [] => {}
        [one] => match raceway_clock::decode_with_note(one) {
            Ok((h, _)) if h.trace_id != tp.trace_id => out
                .errors
                .push("raceway-clock: trace id differs from traceparent's".to_owned()),
            Ok((h, note)) => {
                out.errors.extend(note);
                out.upstream = Some(Upstream {
                    span_id: h.span_id.to_hex(),
                    parent_span_id: h.parent_span_id.map(SpanId::to_hex),
                    service: h.service,
                    instance: h.instance,
                    clock: h.clock,
                })
            }
            Err(e) => out.errors.push(e),
        },
        many => out
            .errors
            .push(format!("raceway-clock: present {} times", many.len())),
    }
    out
}

/// The strict shapes of canonical incoming headers (JSON, as the WIT's `incoming-template`
/// documents it): `traceparent`, `tracestate`, `raceway_clock`, `raceway_clock_json` and
/// `clock_entry` patterns, each made by the module that parses that header, next to its
/// parser. For headers that match them, `parse_incoming` answers what the WIT says, with no
/// error; a host reads them itself and passes anything else to `parse-incoming`. The host
/// tests pin that equality over every incoming vector and generated headers.
pub fn incoming_template_json() -> String {
    let clock = raceway_clock::canonical_patterns();
    serde_json::json!({
        "traceparent": traceparent::canonical_pattern(),
        "tracestate": tracestate::canonical_pattern(),
        "raceway_clock": clock.value,
        "raceway_clock_json": clock.json,
        "clock_entry": clock.entry,
    })
    .to_string()
}

/// What the host knows when it makes an outgoing call.
#[derive(Debug, Deserialize)]
pub struct Outgoing {
    pub trace_id: String,
    /// The new span minted for the callee; a fresh one for every call.
    pub span_id: String,
    /// Our own span.
    pub parent_span_id: String,
    #[serde(default = "sampled")]
    pub flags: u8,
    #[serde(default)]
    pub tracestate: Option<String>,
    pub service: String,
    pub instance: String,
    pub clock: VectorClock,
    /// The sender's own clock component: kept first when the clock is cut to the header's
    /// bound (`raceway_clock::MAX_OUTGOING_JSON`). Optional (other hosts may omit it).
    #[serde(default)]
    pub component: Option<String>,
}

fn sampled() -> u8 {
    1
}

/// Encodes the headers as `name: value` lines (`traceparent`, `raceway-clock`, then
/// `tracestate` when there is one): cheaper for a host to split than a JSON object to parse,
/// and this runs once per outgoing call. Values are ASCII without line breaks by construction.
pub fn encode_outgoing_lines(request: &str) -> Result<String, String> {
    let req: Outgoing = serde_json::from_str(request).map_err(|e| format!("outgoing: {e}"))?;
    let headers = encode_outgoing(&req)?;
    let mut out = String::with_capacity(512);
    for name in ["traceparent", "raceway-clock", "tracestate"] {
        if let Some(value) = headers.get(name) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
        }
    }
    Ok(out)
}

pub fn encode_outgoing(req: &Outgoing) -> Result<BTreeMap<&'static str, String>, String> {
    let trace_id =
        TraceId::parse_uuid(&req.trace_id).ok_or("outgoing: trace_id is not a non-zero UUID")?;
    let span = |s: &str, what: &str| {
        SpanId::parse_hex(s)
            .ok_or_else(|| format!("outgoing: {what} is not 16 non-zero lower-case hex digits"))
    };
    let span_id = span(&req.span_id, "span_id")?;
    let parent_span_id = span(&req.parent_span_id, "parent_span_id")?;
    let mut headers = BTreeMap::new();
    headers.insert(
        "traceparent",
        traceparent::format(trace_id, span_id, req.flags),
    );
    if let Some(ts) = req.tracestate.as_deref() {
        if let Ok(Some(valid)) = tracestate::combine(&[ts]) {
            headers.insert("tracestate", valid);
        }
    }
    let clock = ClockHeader {
        trace_id,
        span_id,
        parent_span_id: Some(parent_span_id),
        service: req.service.clone(),
        instance: req.instance.clone(),
        clock: req.clock.clone(),
    };
    headers.insert(
        "raceway-clock",
        raceway_clock::encode_bounded(&clock, req.component.as_deref()),
    );
    Ok(headers)
}

/// What `outgoing-template` takes: the fields of `Outgoing` that do not change between the
/// calls one context makes from one state (no span id; the clock without the sender's own
/// entry, which `component` names).
#[derive(Debug, Deserialize)]
pub struct TemplateRequest {
    pub trace_id: String,
    pub parent_span_id: String,
    #[serde(default = "sampled")]
    pub flags: u8,
    #[serde(default)]
    pub tracestate: Option<String>,
    pub service: String,
    pub instance: String,
    pub component: String,
    pub clock: VectorClock,
}

/// The templates of one context's outgoing headers (JSON, as the WIT's `outgoing-template`
/// documents it): `traceparent` as the text before and after the span id, `raceway-clock`'s
/// JSON as a `raceway_clock::Template`, `tracestate` as it is sent or null.
pub fn outgoing_template_json(request: &str) -> Result<String, String> {
    let req: TemplateRequest =
        serde_json::from_str(request).map_err(|e| format!("outgoing: {e}"))?;
    let trace_id =
        TraceId::parse_uuid(&req.trace_id).ok_or("outgoing: trace_id is not a non-zero UUID")?;
    let parent = SpanId::parse_hex(&req.parent_span_id)
        .ok_or("outgoing: parent_span_id is not 16 non-zero lower-case hex digits")?;
    let others: VectorClock = req
        .clock
        .entries()
        .iter()
        .filter(|(c, _)| *c != req.component)
        .cloned()
        .collect();
    let clock = raceway_clock::Template::new(
        trace_id,
        Some(parent),
        &req.service,
        &req.instance,
        &req.component,
        &others,
    );
    let tracestate = req
        .tracestate
        .as_deref()
        .and_then(|ts| tracestate::combine(&[ts]).ok().flatten());
    let traceparent = traceparent::format_parts(trace_id, req.flags);
    let out = serde_json::json!({
        "traceparent": [traceparent.0, traceparent.1],
        "raceway_clock": clock,
        "tracestate": tracestate,
    });
    Ok(out.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_template_is_byte_for_byte_the_direct_encoding() {
        let clock: VectorClock = (0..300)
            .map(|i| (format!("svc#host/{i:08x}"), i * 7))
            .collect();
        for (own, counter) in [
            ("svc#host/own", 5u64),
            ("svc#host/0000002a", 18_446_744_073_709_551_615),
        ] {
            let mut full = clock.clone();
            full.observe(own, counter);
            let counter = full.get(own);
            let req = Outgoing {
                trace_id: "0af76519-16cd-43dd-8448-eb211c80319c".into(),
                span_id: "5ca1b17ca84ca5e5".into(),
                parent_span_id: "b7ad6b7169203331".into(),
                flags: 1,
                tracestate: Some("a=1".into()),
                service: "svc".into(),
                instance: "host".into(),
                clock: full,
                component: Some(own.into()),
            };
            let direct = encode_outgoing(&req).unwrap();
            let template: serde_json::Value = serde_json::from_str(
                &outgoing_template_json(&format!(
                    r#"{{"trace_id":"{}","parent_span_id":"{}","flags":1,"tracestate":"a=1","service":"svc","instance":"host","component":"{own}","clock":{}}}"#,
                    req.trace_id, req.parent_span_id, serde_json::to_string(&clock).unwrap()
                ))
                .unwrap(),
            )
            .unwrap();
            let tp = format!(
                "{}{}{}",
                template["traceparent"][0].as_str().unwrap(),
                req.span_id,
                template["traceparent"][1].as_str().unwrap()
            );
            assert_eq!(tp, direct["traceparent"]);
            let t = &template["raceway_clock"];
            let json = format!(
                "{}{}{}{counter}{}",
                t["head"].as_str().unwrap(),
                req.span_id,
                t["middle"].as_str().unwrap(),
                t["tail"].as_str().unwrap()
            );
            assert_eq!(
                format!("v1;{}", crate::base64url::encode(json.as_bytes())),
                direct["raceway-clock"]
            );
            assert!(json.len() <= raceway_clock::MAX_OUTGOING_JSON);
            assert_eq!(template["tracestate"], "a=1");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn no_headers_is_a_new_trace_without_errors() {
        assert_eq!(parse_incoming(&headers(&[])), Incoming::default());
    }

    #[test]
    fn tracestate_without_valid_traceparent_is_dropped() {
        let got = parse_incoming(&headers(&[
            ("traceparent", "garbage"),
            ("tracestate", "a=1"),
        ]));
        assert!(got.parent.is_none() && got.tracestate.is_none());
        assert_eq!(got.errors.len(), 1);
    }

    #[test]
    fn round_trip_through_outgoing_and_incoming() {
        let out = encode_outgoing(&Outgoing {
            trace_id: "0af76519-16cd-43dd-8448-eb211c80319c".into(),
            span_id: "5ca1b17ca84ca5e5".into(),
            parent_span_id: "b7ad6b7169203331".into(),
            flags: 1,
            tracestate: Some("a=1".into()),
            service: "banking-api".into(),
            instance: "host-1".into(),
            clock: [("banking-api#host-1".to_string(), 2)]
                .into_iter()
                .collect(),
            component: None,
        })
        .unwrap();
        let pairs: Vec<(&str, &str)> = out.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = parse_incoming(&headers(&pairs));
        assert_eq!(got.errors, Vec::<String>::new());
        let parent = got.parent.unwrap();
        assert_eq!(parent.span_id, "5ca1b17ca84ca5e5");
        let up = got.upstream.unwrap();
        assert_eq!(up.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(up.clock.get("banking-api#host-1"), 2);
        assert_eq!(got.tracestate.as_deref(), Some("a=1"));
    }

    #[test]
    fn json_entry_points_accept_case_insensitive_names_and_bad_json() {
        let got = parse_incoming_json(&format!(r#"{{"TraceParent": ["{TP}"]}}"#));
        assert!(got.contains("b7ad6b7169203331"), "{got}");
        assert!(parse_incoming_json("[1]").contains("not a JSON object"));
        assert!(encode_outgoing_lines("{}").is_err());
    }
}
