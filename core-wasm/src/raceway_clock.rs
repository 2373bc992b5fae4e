//! The `raceway-clock` header: `v1;` + base64url (no padding) of compact JSON
//! `{"trace_id","span_id","parent_span_id","service","instance","clock"}`, keys in that order.
//! It carries the caller's vector clock so that the callee's events are ordered after it.

use crate::base64url;
use crate::clock::VectorClock;
use crate::ids::{SpanId, TraceId};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "v1;";
/// Longest header value read from a peer (a longer one is refused; servers refuse such headers
/// long before: aiohttp and nginx at 8 KB per field by default).
pub const MAX_LEN: usize = 64 * 1024;
/// Bytes of JSON an outgoing header encodes at most: the clock is cut (`VectorClock::bounded`)
/// so that the whole object fits, whatever the names. With `v1;` and base64's 4/3 the header
/// value is at most 4,099 characters: well inside the 8 KB per field of common servers
/// (aiohttp, nginx), whatever the program did (docs/distributed.md).
pub const MAX_OUTGOING_JSON: usize = 3072;
/// Longest service or instance name accepted from a peer.
pub const MAX_NAME_LEN: usize = 256;

/// The header for `h`, its clock cut so that the JSON stays within `MAX_OUTGOING_JSON`.
/// With `own` (the sender's component, present in the clock) the header is its `Template`
/// filled in: the same bytes a host makes from the template. Without, the entries are kept in
/// order while they fit.
pub fn encode_bounded(h: &ClockHeader, own: Option<&str>) -> String {
    if let Some((own, counter)) =
        own.and_then(|own| h.clock.entries().iter().find(|(c, _)| c == own))
    {
        let others: VectorClock = h
            .clock
            .entries()
            .iter()
            .filter(|(c, _)| c != own)
            .cloned()
            .collect();
        let t = Template::new(
            h.trace_id,
            h.parent_span_id,
            &h.service,
            &h.instance,
            own,
            &others,
        );
        return t.fill(&h.span_id.to_hex(), *counter);
    }
    let bare = ClockHeader {
        clock: VectorClock::new(),
        ..h.clone()
    };
    let fixed = json_len(&bare);
    let budget = MAX_OUTGOING_JSON.saturating_sub(fixed) + 2; // the empty clock's `[]` is in `fixed`
    encode(&ClockHeader {
        clock: h.clock.bounded(None, budget),
        ..bare
    })
}

fn json_len(h: &ClockHeader) -> usize {
    let value = encode(h);
    // base64 without padding: 4 characters per 3 bytes.
    (value.len() - PREFIX.len()) * 3 / 4
}

/// An outgoing header's JSON with two holes: the span id minted for the call (16 hex digits)
/// and the sender's own counter. `head + span + middle + counter + tail` is the JSON; the
/// header is `v1;` + its base64url without padding. A host that makes several calls from one
/// state asks for the template once and fills it in per call, instead of a component call per
/// call; `encode_bounded` makes its headers the same way, so both give the same bytes.
///
/// The sender's entry comes first; the others follow in order while the whole stays within
/// `MAX_OUTGOING_JSON`, the counter counted at its longest (20 digits), so that the cut does
/// not depend on its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Template {
    pub head: String,
    pub middle: String,
    pub tail: String,
}

impl Template {
    pub fn new(
        trace_id: TraceId,
        parent_span_id: Option<SpanId>,
        service: &str,
        instance: &str,
        own: &str,
        others: &VectorClock,
    ) -> Self {
        let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
        let head = format!(r#"{{"trace_id":"{}","span_id":""#, trace_id.to_uuid());
        let parent =
            parent_span_id.map_or_else(|| "null".to_owned(), |p| format!(r#""{}""#, p.to_hex()));
        let middle = format!(
            r#"","parent_span_id":{parent},"service":{},"instance":{},"clock":[[{},"#,
            quoted(service),
            quoted(instance),
            quoted(own)
        );
        const SPAN_DIGITS: usize = 16;
        const COUNTER_DIGITS: usize = 20;
        let fixed = head.len() + SPAN_DIGITS + middle.len() + COUNTER_DIGITS + "]]}".len();
        let kept = others.bounded(None, MAX_OUTGOING_JSON.saturating_sub(fixed) + 2);
        let mut tail = String::from("]");
        for entry in kept.entries() {
            tail.push(',');
            tail.push_str(&serde_json::to_string(entry).expect("plain data serializes"));
        }
        tail.push_str("]}");
        Template { head, middle, tail }
    }

    /// The header value for one call.
    pub fn fill(&self, span_hex: &str, counter: u64) -> String {
        let json = format!(
            "{}{span_hex}{}{counter}{}",
            self.head, self.middle, self.tail
        );
        format!("{PREFIX}{}", base64url::encode(json.as_bytes()))
    }
}

/// The canonical header as patterns (see `crate::propagation::incoming_template_json`), the
/// form `encode` and `Template` write when no string needs an escape:
///
/// - `value`: `v1;` and the payload in base64url's alphabet, without padding; group 1 is the
///   payload. (Its length is left to the decoding, as `base64url::decode` does: a length one
///   more than a multiple of 4 does not decode. A repetition of 4-character groups would say
///   it in the pattern, at 5 times the cost of matching in Python.)
/// - `json`: the payload's bytes, one character per byte: the keys in their order, no
///   whitespace, ids in lower-case hex (the span ids not all zero), names without escapes or
///   control characters (service and instance up to `MAX_NAME_LEN` bytes), and at most
///   `MAX_COMPONENTS` clock entries, each as `entry`. Groups: the trace id (a UUID), the span
///   id, the parent span id (absent for `null`), the service, the instance, the clock's
///   entries (the text between its brackets).
/// - `entry`: one clock entry: a component of 1 to `MAX_COMPONENT_LEN` bytes and a counter
///   of at most 19 digits without leading zeros. Groups: the component, the counter.
///
/// A header whose payload matches `json` and is UTF-8 decodes without an error or a note:
/// nothing is cut from such a clock. The largest payload `json` matches stays within
/// `MAX_LEN` (tested below).
pub struct CanonicalPatterns {
    pub value: String,
    pub json: String,
    pub entry: String,
}

pub fn canonical_patterns() -> CanonicalPatterns {
    use crate::clock::{MAX_COMPONENTS, MAX_COMPONENT_LEN};
    // A character of a JSON string that needs no escape: not `"`, `\` or a control character.
    const PLAIN: &str = r#"[^"\\\x00-\x1f]"#;
    const SPAN: &str = "(?!0{16})[0-9a-f]{16}";
    let entry = format!(r#"\["({PLAIN}{{1,{MAX_COMPONENT_LEN}}})",(0|[1-9][0-9]{{0,18}})\]"#);
    let bare_entry = format!(r#"\["{PLAIN}{{1,{MAX_COMPONENT_LEN}}}",(?:0|[1-9][0-9]{{0,18}})\]"#);
    let json = format!(
        concat!(
            r#"\{{"trace_id":"([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})","#,
            r#""span_id":"({span})","parent_span_id":(?:null|"({span})"),"#,
            r#""service":"({plain}{{0,{name}}})","instance":"({plain}{{0,{name}}})","#,
            r#""clock":\[((?:{entry}(?:,{entry}){{0,{more}}})?)\]\}}"#
        ),
        span = SPAN,
        plain = PLAIN,
        name = MAX_NAME_LEN,
        entry = bare_entry,
        more = MAX_COMPONENTS - 1,
    );
    CanonicalPatterns {
        value: format!("{PREFIX}([A-Za-z0-9_-]*)"),
        json,
        entry,
    }
}

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
    decode_with_note(value).map(|(header, _)| header)
}

/// `decode`, and what had to be cut from the clock (for the host's debug log).
pub fn decode_with_note(value: &str) -> Result<(ClockHeader, Option<String>), String> {
    if value.len() > MAX_LEN {
        return Err(format!(
            "raceway-clock: {} characters, more than {MAX_LEN}",
            value.len()
        ));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let payload = value
        .strip_prefix(PREFIX)
        .ok_or_else(|| "raceway-clock: unsupported version (expected v1;)".to_owned())?;
    let bytes = base64url::decode(payload).ok_or("raceway-clock: not base64url")?;
    let mut wire: Wire =
        serde_json::from_slice(&bytes).map_err(|e| format!("raceway-clock: {e}"))?;
    let span = |s: &str, what: &str| {
        SpanId::parse_hex(s)
            .ok_or_else(|| format!("raceway-clock: {what} is not 16 lower-case hex digits"))
    };
    for (name, v) in [("service", &wire.service), ("instance", &wire.instance)] {
        if v.len() > MAX_NAME_LEN {
            return Err(format!("raceway-clock: {name} longer than {MAX_NAME_LEN}"));
        }
    }
    let sender = format!("{}#{}", wire.service, wire.instance);
    let note = wire
        .clock
        .cut_foreign(|c| {
            c == sender
                || c.strip_prefix(sender.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(|n| format!("raceway-clock: {n}"));
    let header = ClockHeader {
        trace_id: TraceId::parse_uuid(&wire.trace_id)
            .ok_or("raceway-clock: trace_id is not a UUID")?,
        span_id: span(&wire.span_id, "span_id")?,
        parent_span_id: wire
            .parent_span_id
            .as_deref()
            .map(|s| span(s, "parent_span_id"))
            .transpose()?,
        service: wire.service,
        instance: wire.instance,
        clock: wire.clock,
    };
    Ok((header, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_headers_stay_within_the_bound_whatever_the_names() {
        let long = "é".repeat(60); // 120 bytes: a component of two stays within a peer's 256
        let clock: VectorClock = (0..500)
            .map(|i| (format!("{long}#{long}/{i:08x}\u{1}\""), u64::MAX - i))
            .collect();
        let h = ClockHeader {
            trace_id: TraceId::parse_uuid("0af76519-16cd-43dd-8448-eb211c80319c").unwrap(),
            span_id: SpanId::parse_hex("5ca1b17ca84ca5e5").unwrap(),
            parent_span_id: SpanId::parse_hex("b7ad6b7169203331"),
            service: long.clone(),
            instance: long.clone(),
            clock,
        };
        let own = format!("{long}#{long}/{:08x}\u{1}\"", 499);
        let value = encode_bounded(&h, Some(&own));
        assert!(
            value.len() <= PREFIX.len() + MAX_OUTGOING_JSON * 4 / 3 + 3,
            "{}",
            value.len()
        );
        let back = decode(&value).unwrap();
        assert_eq!(back.clock.entries()[0].0, own);
        assert!(back.clock.len() > 1);
    }

    #[test]
    fn a_huge_clock_is_cut_not_refused_and_the_senders_own_entry_stays() {
        let mut entries: Vec<String> = (0..500)
            .map(|i| format!(r#"["other#x/{i:08x}",{i}]"#))
            .collect();
        entries.push(r#"["banking-api#host-1/0000abcd",9]"#.to_owned());
        let json = REFERENCE_JSON.replace(
            r#"[["banking-api#host-1",2]]"#,
            &format!("[{}]", entries.join(",")),
        );
        let (h, note) =
            decode_with_note(&format!("v1;{}", base64url::encode(json.as_bytes()))).unwrap();
        assert_eq!(h.clock.len(), crate::clock::MAX_COMPONENTS);
        assert_eq!(
            h.clock.entries()[0],
            ("banking-api#host-1/0000abcd".to_string(), 9)
        );
        assert!(note.unwrap().contains("past"));
    }

    #[test]
    fn the_longest_canonical_header_stays_within_max_len() {
        use crate::clock::{MAX_COMPONENTS, MAX_COMPONENT_LEN};
        let skeleton = r#"{"trace_id":"","span_id":"","parent_span_id":"","service":"","instance":"","clock":[]}"#;
        let ids = 36 + 16 + 18; // a UUID, two span ids (one quoted in the skeleton's place)
        let entry = MAX_COMPONENT_LEN + 19 + r#",["",]"#.len();
        let json = skeleton.len() + ids + 2 * MAX_NAME_LEN + MAX_COMPONENTS * entry;
        assert!(PREFIX.len() + (json * 4).div_ceil(3) <= MAX_LEN);
        let p = canonical_patterns();
        assert!(p.json.contains(&format!("{{0,{}}}", MAX_COMPONENTS - 1)));
        assert!(p.entry.contains(&format!("{{1,{MAX_COMPONENT_LEN}}}")));
    }

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
