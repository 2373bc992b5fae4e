//! Low-level writers for the event encoder: ids, timestamps and numbers written straight into
//! the output buffer, because `format!` and intermediate `String`s were most of its cost.

use crate::timestamp::rfc3339_micros;

/// Writes 128 bits as a quoted lower-case hyphenated UUID.
pub fn uuid(out: &mut Vec<u8>, bits: u128) {
    out.extend_from_slice(&uuid_bytes(bits));
}

/// 128 bits as a quoted lower-case hyphenated UUID (`"8-4-4-4-12"`, 38 bytes), assembled in
/// words: eight hex digits at a time (`hex8`), placed around the quotes and hyphens by shifts,
/// rather than a table look-up and a store per byte (ids are two of every event's few computed
/// fields).
pub fn uuid_bytes(bits: u128) -> [u8; 38] {
    let [a, b, c, d] = [96, 64, 32, 0].map(|shift| hex8((bits >> shift) as u32));
    const QUOTE: u64 = b'"' as u64;
    const DASH: u64 = b'-' as u64;
    // Little-endian words of the output: digit k of `a` is byte k of `a`.
    let words = [
        QUOTE | (a << 8),
        (a >> 56) | (DASH << 8) | ((b & 0xffff_ffff) << 16) | (DASH << 48) | ((b >> 32) << 56),
        (b >> 40) | (DASH << 24) | (c << 32),
        DASH | ((c >> 32) << 8) | (d << 40),
        (d >> 24) | (QUOTE << 40),
    ];
    let mut out = [0u8; 38];
    for (i, word) in words.iter().enumerate() {
        let bytes = word.to_le_bytes();
        let n = if i == 4 { 6 } else { 8 };
        out[8 * i..8 * i + n].copy_from_slice(&bytes[..n]);
    }
    out
}

/// The 8 lower-case hex digits of `x`, the most significant in the word's lowest byte (so that
/// `to_le_bytes` gives them in order).
fn hex8(x: u32) -> u64 {
    let x = u64::from(x);
    // Each nibble into a byte of its own, the top one lowest: halves, bytes, then nibbles.
    let x = (x >> 16) | ((x & 0xffff) << 32);
    let x = ((x >> 8) & 0x0000_00ff_0000_00ff) | ((x & 0x0000_00ff_0000_00ff) << 16);
    let x = ((x >> 4) & 0x000f_000f_000f_000f) | ((x & 0x000f_000f_000f_000f) << 8);
    // '0' + d, and 'a' - '0' - 10 more where d >= 10 (d + 6 carries into bit 4).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    x + 0x3030_3030_3030_3030 + letters * 0x27
}

pub fn u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string literal, escaped as serde_json escapes it. Most strings need no escape: they
/// are copied as they are (serde_json's writer costs a call per piece).
pub fn string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A one in each byte of a word, and each byte's top bit: the word-at-a-time byte tests'
/// constants (`json_escapes`, `pickle::written_as_is`).
pub const ONES: u64 = 0x0101_0101_0101_0101;
pub const HIGH: u64 = 0x8080_8080_8080_8080;

/// The bytes of the word `w` that JSON escapes (a control character, `"` or `\\`), each marked
/// by its top bit: the usual zero-byte test on the word less 0x20 in each byte (control
/// characters) and on the word xor each of the two. Bytes from 0x80 are never marked: `!w &
/// HIGH` clears them in the control test, and the zero tests on the xors cannot be set by them.
pub fn json_escapes(w: u64) -> u64 {
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    control | has_zero(w ^ (ONES * u64::from(b'"'))) | has_zero(w ^ (ONES * u64::from(b'\\')))
}

/// Whether a byte of `bytes` is one JSON escapes (`json_escapes`), eight bytes at a time.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        if json_escapes(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Timestamps of one batch mostly share their second: the date and time part is rendered once
/// per second and reused.
#[derive(Default)]
pub struct Timestamps {
    second: Option<u64>,
    /// `"2026-11-21T07:26:41.` (from the quote through the seconds' point).
    prefix: [u8; 21],
}

impl Timestamps {
    /// Writes `"2026-11-21T07:26:41.616516+00:00"` (quoted).
    pub fn write(&mut self, out: &mut Vec<u8>, unix_nanos: u64) {
        let second = unix_nanos / 1_000_000_000;
        if self.second != Some(second) {
            let full = rfc3339_micros(unix_nanos);
            self.prefix[0] = b'"';
            self.prefix[1..].copy_from_slice(&full.as_bytes()[..20]); // through "SS."
            self.second = Some(second);
        }
        let micros = ((unix_nanos % 1_000_000_000) / 1_000) as u32;
        // Six digits, two at a time, then the offset and the quote: two copies of fixed size.
        let pair = |n: u32| {
            let n = n as u8;
            [b'0' + n / 10, b'0' + n % 10]
        };
        let (high, low) = (micros / 10_000, micros % 10_000);
        let [a, b] = pair(high);
        let [c, d] = pair(low / 100);
        let [e, f] = pair(low % 100);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&[a, b, c, d, e, f, b'+', b'0', b'0', b':', b'0', b'0', b'"']);
    }
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut cases: Vec<String> = vec![
            "".into(),
            "plain ascii text, long enough".into(),
            "é ü 😀 \u{7f}".into(),
        ];
        for b in 0u8..0x80 {
            for at in 0..10 {
                let mut s = "x".repeat(at);
                s.push(b as char);
                s.push_str("tail-tail");
                cases.push(s);
            }
        }
        for s in cases {
            let mut ours = Vec::new();
            string(&mut ours, &s);
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_matches_the_slow_formatter() {
        let mut bits_seen = vec![0u128, 1, u128::MAX, 0x0af7651916cd43dd8448eb211c80319c];
        let mut x = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834u128;
        for _ in 0..1000 {
            x = x
                .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                .wrapping_add(1);
            bits_seen.push(x);
        }
        for bits in bits_seen {
            let mut out = Vec::new();
            uuid(&mut out, bits);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("\"{}\"", crate::ids::format_uuid(bits))
            );
        }
    }

    #[test]
    fn timestamps_match_the_slow_formatter_across_seconds() {
        let mut ts = Timestamps::default();
        for nanos in [
            0u64,
            999_999_999,
            1_000_000_000,
            1_795_246_001_000_516_000,
            1_795_246_001_616_516_999,
            1_795_246_001_000_009_000,
            1_795_246_001_000_099_999,
            1_795_246_001_090_010_000,
            1_795_246_001_100_000_000,
            1_795_246_001_999_999_000,
        ] {
            let mut out = Vec::new();
            ts.write(&mut out, nanos);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("\"{}\"", rfc3339_micros(nanos))
            );
        }
    }
}
