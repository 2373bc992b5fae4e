//! Trace and span identifiers. Both are non-zero by construction: the W3C rules make an
//! all-zero id invalid, so a value of these types can always be sent.

use crate::hex;
use std::fmt;

/// A 128-bit trace id. On the W3C wire it is 32 hex digits; in Raceway events it is the same
/// bits as a hyphenated UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(u128);

/// A 64-bit span id, 16 hex digits on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(u64);

impl TraceId {
    pub fn new(bits: u128) -> Option<Self> {
        (bits != 0).then_some(Self(bits))
    }

    pub fn bits(self) -> u128 {
        self.0
    }

    /// 32 lower-case hex digits, as in `traceparent`.
    pub fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        hex::parse_lower(s).and_then(Self::new)
    }

    /// A lower-case hyphenated UUID (8-4-4-4-12), as in Raceway events.
    pub fn parse_uuid(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let digits: String = s.split('-').collect();
        Self::parse_hex(&digits)
    }

    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn to_uuid(self) -> String {
        format_uuid(self.0)
    }
}

impl SpanId {
    pub fn new(bits: u64) -> Option<Self> {
        (bits != 0).then_some(Self(bits))
    }

    pub fn parse_hex(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        hex::parse_lower(s).and_then(|v| Self::new(v as u64))
    }

    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Formats 128 bits as a lower-case hyphenated UUID.
pub fn format_uuid(bits: u128) -> String {
    let h = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The bits of the id of the `seq`-th event of an execution context whose id base is `base`.
///
/// Ids are derived rather than drawn so that the core needs no memory between batches to link
/// an event to its predecessor (`parent_id` is just the id of the previous `seq`), and a lost
/// batch cannot break the chain of the ones after it. Bases are 128 random bits per context,
/// so two contexts' id ranges overlap with negligible probability.
pub fn event_id_bits(base: u128, seq: u64) -> u128 {
    base.wrapping_add(u128::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_vector_converts_both_ways() {
        let t = TraceId::parse_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
        assert_eq!(t.to_uuid(), "0af76519-16cd-43dd-8448-eb211c80319c");
        assert_eq!(TraceId::parse_uuid(&t.to_uuid()), Some(t));
        assert_eq!(t.to_hex(), "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn zero_and_malformed_ids_are_rejected() {
        assert_eq!(TraceId::parse_hex(&"0".repeat(32)), None);
        assert_eq!(SpanId::parse_hex(&"0".repeat(16)), None);
        assert_eq!(
            TraceId::parse_uuid("0af7651916cd43dd8448eb211c80319c"),
            None
        );
        assert_eq!(
            TraceId::parse_uuid("0AF76519-16cd-43dd-8448-eb211c80319c"),
            None
        );
        assert_eq!(SpanId::parse_hex("B7AD6B7169203331"), None);
    }

    #[test]
    fn event_ids_chain_by_sequence() {
        assert_eq!(event_id_bits(u128::MAX, 1), 0);
        assert_eq!(
            format_uuid(event_id_bits(1, 2)),
            "00000000-0000-0000-0000-000000000003"
        );
    }
}
