//! The W3C `traceparent` header: `version-traceid-parentid-flags`.
//!
//! Parsing follows the Trace Context recommendation (level 1, with level 2's random flag):
//! strict lower-case hex, no all-zero ids, version `ff` forbidden, version `00` exact, higher
//! versions read by their first four fields. Anything else starts a new trace.

use crate::ids::{SpanId, TraceId};
use std::fmt;

/// Sampled (level 1) and random (level 2): the flag bits a version-00 sender may set.
pub const KNOWN_FLAGS: u8 = 0x03;
/// Longest value accepted, to bound work on hostile input (future versions may append fields).
pub const MAX_LEN: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceParentError {
    Missing,
    Repeated(usize),
    TooLong(usize),
    Malformed(&'static str),
    ForbiddenVersion,
    ZeroTraceId,
    ZeroParentId,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "traceparent: absent"),
            Self::Repeated(n) => write!(f, "traceparent: present {n} times"),
            Self::TooLong(n) => write!(f, "traceparent: {n} characters, more than {MAX_LEN}"),
            Self::Malformed(what) => write!(f, "traceparent: {what}"),
            Self::ForbiddenVersion => write!(f, "traceparent: version ff is invalid"),
            Self::ZeroTraceId => write!(f, "traceparent: all-zero trace id"),
            Self::ZeroParentId => write!(f, "traceparent: all-zero parent id"),
        }
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex_field<'a>(
    s: &'a str,
    start: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a str, TraceParentError> {
    let field = s
        .get(start..start + len)
        .ok_or(TraceParentError::Malformed(what))?;
    if is_lower_hex(field) {
        Ok(field)
    } else {
        Err(TraceParentError::Malformed(what))
    }
}

/// Parses every received value of the header (a repeated header is invalid).
pub fn parse_values(values: &[&str]) -> Result<TraceParent, TraceParentError> {
    match values {
        [] => Err(TraceParentError::Missing),
        [one] => parse(one),
        many => Err(TraceParentError::Repeated(many.len())),
    }
}

/// Parses one header value.
pub fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
    if value.len() > MAX_LEN {
        return Err(TraceParentError::TooLong(value.len()));
    }
    let s = value.trim_matches(|c| c == ' ' || c == '\t');
    if !s.is_ascii() {
        return Err(TraceParentError::Malformed("non-ASCII character"));
    }
    let version = hex_field(s, 0, 2, "version is not 2 lower-case hex digits")?;
    if version == "ff" {
        return Err(TraceParentError::ForbiddenVersion);
    }
    let b = s.as_bytes();
    if s.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return Err(TraceParentError::Malformed(
            "not version-traceid-parentid-flags",
        ));
    }
    let trace = hex_field(s, 3, 32, "trace id is not 32 lower-case hex digits")?;
    let parent = hex_field(s, 36, 16, "parent id is not 16 lower-case hex digits")?;
    let flags = hex_field(s, 53, 2, "flags are not 2 lower-case hex digits")?;
    let version = u8::from_str_radix(version, 16).expect("checked hex");
    if version == 0 && s.len() != 55 {
        return Err(TraceParentError::Malformed(
            "version 00 has data after the flags",
        ));
    }
    if version > 0 && s.len() > 55 && b[55] != b'-' {
        return Err(TraceParentError::Malformed(
            "future version: data after the flags must start with '-'",
        ));
    }
    Ok(TraceParent {
        version,
        trace_id: TraceId::parse_hex(trace).ok_or(TraceParentError::ZeroTraceId)?,
        parent_id: SpanId::parse_hex(parent).ok_or(TraceParentError::ZeroParentId)?,
        flags: u8::from_str_radix(flags, 16).expect("checked hex"),
    })
}

/// Formats an outgoing value. Always version 00, and only the flag bits version 00 defines.
pub fn format(trace_id: TraceId, parent_id: SpanId, flags: u8) -> String {
    let (head, tail) = format_parts(trace_id, flags);
    format!("{head}{}{tail}", parent_id.to_hex())
}

/// `format` around its parent id: the text before it and after it.
pub fn format_parts(trace_id: TraceId, flags: u8) -> (String, String) {
    (
        format!("00-{}-", trace_id.to_hex()),
        format!("-{:02x}", flags & KNOWN_FLAGS),
    )
}

/// The canonical value as a pattern (see `crate::propagation::incoming_template_json`): version
/// 00, nothing around it, ids not all zero. Groups: the trace id's 32 hex digits, the parent
/// id, the flags' 2 hex digits. Every value it matches `parse` reads as version 0 with those
/// fields; a value it does not match may still be valid (blanks around it, a future version).
pub fn canonical_pattern() -> String {
    "00-((?!0{32})[0-9a-f]{32})-((?!0{16})[0-9a-f]{16})-([0-9a-f]{2})".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn shared_vector() {
        let tp = parse(VALID).unwrap();
        assert_eq!(
            tp.trace_id.to_uuid(),
            "0af76519-16cd-43dd-8448-eb211c80319c"
        );
        assert_eq!(tp.parent_id.to_hex(), "b7ad6b7169203331");
        assert_eq!(tp.flags, 1);
        assert_eq!(format(tp.trace_id, tp.parent_id, tp.flags), VALID);
    }

    #[test]
    fn surrounding_blanks_are_ignored() {
        assert!(parse(&format!(" \t{VALID}\t ")).is_ok());
    }

    #[test]
    fn future_versions_read_four_fields() {
        let s = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future";
        assert_eq!(parse(s).unwrap().version, 0xcc);
        assert!(parse("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_ok());
        assert!(parse("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.what").is_err());
    }

    #[test]
    fn invalid_forms_are_rejected() {
        let bad = [
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0G",
            "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0x7651916cd43dd8448eb211c80319c0-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033é1-01",
        ];
        for s in bad {
            assert!(parse(s).is_err(), "{s:?} should be invalid");
        }
        assert_eq!(
            parse_values(&[VALID, VALID]),
            Err(TraceParentError::Repeated(2))
        );
        assert_eq!(parse_values(&[]), Err(TraceParentError::Missing));
    }

    #[test]
    fn outgoing_keeps_only_known_flags() {
        let tp = parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03").unwrap();
        assert!(format(tp.trace_id, tp.parent_id, 0xff).ends_with("-03"));
    }
}
