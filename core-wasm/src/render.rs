//! Low-level writers for the event encoder: ids, timestamps and numbers written straight into
//! the output buffer, because `format!` and intermediate `String`s were most of its cost.

use crate::timestamp::rfc3339_micros;

/// Each byte's two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    table
};

/// Writes 128 bits as a quoted lower-case hyphenated UUID.
pub fn uuid(out: &mut Vec<u8>, bits: u128) {
    let bytes = bits.to_be_bytes();
    let mut buf = [0u8; 38];
    buf[0] = b'"';
    buf[37] = b'"';
    let mut pos = 1;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[pos] = b'-';
            pos += 1;
        }
        buf[pos..pos + 2].copy_from_slice(&HEX_PAIRS[*b as usize]);
        pos += 2;
    }
    out.extend_from_slice(&buf);
}

pub fn u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string literal, escaped as serde_json escapes it. Most strings need no escape: they
/// are copied as they are (serde_json's writer costs a call per piece).
pub fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Timestamps of one batch mostly share their second: the date and time part is rendered once
/// per second and reused.
#[derive(Default)]
pub struct Timestamps {
    second: Option<u64>,
    prefix: Vec<u8>,
}

impl Timestamps {
    /// Writes `"2026-11-21T07:26:41.616516+00:00"` (quoted).
    pub fn write(&mut self, out: &mut Vec<u8>, unix_nanos: u64) {
        let second = unix_nanos / 1_000_000_000;
        if self.second != Some(second) {
            let full = rfc3339_micros(unix_nanos);
            self.prefix.clear();
            self.prefix.extend_from_slice(&full.as_bytes()[..20]); // through "SS."
            self.second = Some(second);
        }
        let micros = (unix_nanos % 1_000_000_000) / 1_000;
        out.push(b'"');
        out.extend_from_slice(&self.prefix);
        let mut digits = [b'0'; 6];
        let mut m = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out.extend_from_slice(&digits);
        out.extend_from_slice(b"+00:00\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_matches_the_slow_formatter() {
        for bits in [0u128, 1, u128::MAX, 0x0af7651916cd43dd8448eb211c80319c] {
            let mut out = Vec::new();
            uuid(&mut out, bits);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", crate::ids::format_uuid(bits)));
        }
    }

    #[test]
    fn timestamps_match_the_slow_formatter_across_seconds() {
        let mut ts = Timestamps::default();
        for nanos in [0u64, 999_999_999, 1_000_000_000, 1_795_246_001_000_516_000, 1_795_246_001_616_516_999] {
            let mut out = Vec::new();
            ts.write(&mut out, nanos);
            assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"", rfc3339_micros(nanos)));
        }
    }
}
