//! Strict lower-case hexadecimal, the only spelling the wire formats allow.

/// Parses exactly `s.len()` lower-case hex digits (at most 32) into an integer.
/// Upper case, `0x`, signs and spaces are all rejected, unlike `u128::from_str_radix`.
pub fn parse_lower(s: &str) -> Option<u128> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut v: u128 = 0;
    for b in s.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_from_str_radix_accepts() {
        assert_eq!(parse_lower("0a"), Some(10));
        for bad in ["", "0A", "+a", "0x1", " a", "g0"] {
            assert_eq!(parse_lower(bad), None, "{bad:?}");
        }
    }
}
