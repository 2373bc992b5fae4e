//! RFC 3339 UTC timestamps from nanoseconds since the Unix epoch (the host reads the clock).

/// Days since 1970-01-01 to a civil (year, month, day), proleptic Gregorian.
/// (H. Hinnant's `civil_from_days`; exact for every date a u64 of nanoseconds can hold.)
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-21T07:26:41.616516+00:00`: microseconds and an explicit offset, like the
/// reference SDKs, so the server and humans read the same thing from every SDK.
pub fn rfc3339_micros(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let micros = (unix_nanos % 1_000_000_000) / 1_000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            rfc3339_micros(1_795_246_001_616_516_000),
            "2026-11-21T07:26:41.616516+00:00"
        );
        assert_eq!(
            rfc3339_micros(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000+00:00"
        );
    }
}
