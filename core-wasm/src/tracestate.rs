//! The W3C `tracestate` header: vendor `key=value` members passed on unchanged.
//!
//! All received values are combined as if joined with commas; empty members are skipped and
//! blanks around members ignored. One invalid member, or more than 32, discards the WHOLE
//! header (not just the member), as the recommendation requires.

use std::fmt;

pub const MAX_MEMBERS: usize = 32;
/// The longest combined value accepted: 32 members of the longest key and value, plus commas.
pub const MAX_LEN: usize = MAX_MEMBERS * (256 + 1 + 256 + 1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceStateError {
    TooManyMembers(usize),
    TooLong(usize),
    InvalidMember(String),
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyMembers(n) => {
                write!(f, "tracestate: {n} members, more than {MAX_MEMBERS}")
            }
            Self::TooLong(n) => write!(f, "tracestate: {n} characters, more than {MAX_LEN}"),
            Self::InvalidMember(m) => {
                let shown: String = m.chars().take(64).collect();
                write!(f, "tracestate: invalid member {shown:?}")
            }
        }
    }
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// Trace Context Level 2's key: `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@")`,
/// so `foo@`, `a@b@c` and a 242-character tenant before `@v` are keys. Level 1's multi-tenant
/// form `(lcalpha / DIGIT) 0*240(…) "@" lcalpha 0*13(…)` is accepted too, for its keys that
/// start with a digit (`1tenant@sys`): a receiver passes on what an older sender made.
pub fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    let level2 = !b.is_empty()
        && b.len() <= 256
        && b[0].is_ascii_lowercase()
        && b.iter().all(|&c| is_key_char(c) || c == b'@');
    level2 || is_level1_tenant_key(key)
}

fn is_level1_tenant_key(key: &str) -> bool {
    let Some((tenant, system)) = key.split_once('@') else {
        return false;
    };
    let (t, s) = (tenant.as_bytes(), system.as_bytes());
    (1..=241).contains(&t.len())
        && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
        && t.iter().all(|&c| is_key_char(c))
        && (1..=14).contains(&s.len())
        && s[0].is_ascii_lowercase()
        && s.iter().all(|&c| is_key_char(c))
}

/// 1 to 256 printable ASCII characters other than `,` and `=`, not ending in a space.
pub fn is_valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// One received value that `combine` passes on unchanged, as a pattern (see
/// `crate::propagation::incoming_template_json`): 1 to `MAX_MEMBERS` members joined by bare
/// commas, no blanks or empty members around them, each a Level 2 key (`lcalpha`, then up to
/// 255 of `lcalpha / DIGIT / _ - * / @`) and a valid value. No groups. A value it does not
/// match may still be valid (blanks, empty members, a Level 1 tenant key starting with a digit).
pub fn canonical_pattern() -> String {
    let member = r"[a-z][a-z0-9_*/@-]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]";
    format!("{member}(?:,{member}){{0,{}}}", MAX_MEMBERS - 1)
}

/// Combines and validates every received value. `Ok(None)` when there is nothing to pass on.
pub fn combine(values: &[&str]) -> Result<Option<String>, TraceStateError> {
    let total: usize = values.iter().map(|v| v.len() + 1).sum();
    if total > MAX_LEN + 1024 {
        return Err(TraceStateError::TooLong(total));
    }
    let mut members: Vec<&str> = Vec::new();
    for value in values {
        for member in value.split(',') {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue;
            }
            let valid = member
                .split_once('=')
                .is_some_and(|(k, v)| is_valid_key(k) && is_valid_value(v));
            if !valid {
                return Err(TraceStateError::InvalidMember(member.to_owned()));
            }
            members.push(member);
            if members.len() > MAX_MEMBERS {
                return Err(TraceStateError::TooManyMembers(members.len()));
            }
        }
    }
    Ok((!members.is_empty()).then(|| members.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_headers_in_order_and_skips_empties() {
        assert_eq!(
            combine(&["a=1, ,b=2", "", " c=3\t"]).unwrap().as_deref(),
            Some("a=1,b=2,c=3")
        );
        assert_eq!(combine(&[]).unwrap(), None);
        assert_eq!(combine(&[" , "]).unwrap(), None);
    }

    #[test]
    fn one_bad_member_discards_everything() {
        for bad in [
            "foo =1",
            "FOO=1",
            "foo.bar=1",
            "@foo=1",
            "foo=bar=baz",
            "foo=",
            "foo",
            "=1",
        ] {
            assert!(combine(&["ok=1", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_limits() {
        assert!(is_valid_key(&"z".repeat(256)));
        assert!(!is_valid_key(&"z".repeat(257)));
        assert!(is_valid_key(&format!(
            "{}@{}",
            "t".repeat(241),
            "s".repeat(14)
        )));
        // Level 2: '@' is a key character like any other after the first.
        assert!(is_valid_key(&format!("{}@v", "t".repeat(242))));
        assert!(is_valid_key(&format!("t@{}", "s".repeat(15))));
        assert!(is_valid_key("foo@"));
        assert!(is_valid_key("a@b@c"));
        assert!(!is_valid_key(&format!("{}@v", "t".repeat(255))));
        // Level 1's tenant keys may start with a digit.
        assert!(is_valid_key("1tenant@sys"));
        assert!(!is_valid_key("1foo"));
        assert!(!is_valid_key("1tenant@"));
        assert!(!is_valid_key("@foo"));
        assert!(!is_valid_key("foo@Bar"));
    }

    #[test]
    fn value_limits() {
        assert!(is_valid_value(&"v".repeat(256)));
        assert!(!is_valid_value(&"v".repeat(257)));
        assert!(is_valid_value("a b"));
        assert!(!is_valid_value("ab "));
        assert!(!is_valid_value("a\u{7f}"));
    }

    #[test]
    fn member_count_limit() {
        let ok: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(combine(&[&ok.join(",")]).is_ok());
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            combine(&[&too_many.join(",")]),
            Err(TraceStateError::TooManyMembers(33))
        );
    }
}
