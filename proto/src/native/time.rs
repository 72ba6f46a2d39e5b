//! RFC 3339 times as the native protocol carries them.
//!
//! The envelopes keep times as text: `ProcessInfo.start_time` is written by chrono's serde
//! support (`2026-01-02T03:04:05.123456789Z`), `Block.begin_time`/`end_time` by
//! `to_rfc3339_opts(SecondsFormat::Nanos, false)` (`2026-01-02T03:04:05.123456789+00:00`), and the
//! Unreal producer writes its own variant. These helpers convert between such text and Unix
//! nanoseconds without a date library.

use super::error::{NativeError, excerpt};

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Parses an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) to nanoseconds since
/// the Unix epoch.
///
/// Accepts `t` or a space as the separator, `z` for UTC, any number of fraction digits (digits
/// past the ninth are truncated) and a leap second (`:60`, counted as the next second). Fails on
/// anything else, and on times outside the range of `i64` nanoseconds (years 1677 to 2262).
pub fn parse_rfc3339_nanos(text: &str) -> Result<i64, NativeError> {
    let fail = |reason: &'static str| NativeError::InvalidTime {
        value: excerpt(text),
        reason,
    };
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let slice = b.get(from..from.checked_add(len)?)?;
        slice.iter().try_fold(0i64, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let byte = |at: usize| b.get(at).copied();
    let year = digits(0, 4).ok_or_else(|| fail("expected a four-digit year"))?;
    if byte(4) != Some(b'-') || byte(7) != Some(b'-') {
        return Err(fail("expected YYYY-MM-DD"));
    }
    let month = digits(5, 2).ok_or_else(|| fail("expected a two-digit month"))?;
    let day = digits(8, 2).ok_or_else(|| fail("expected a two-digit day"))?;
    if !matches!(byte(10), Some(b'T' | b't' | b' ')) {
        return Err(fail("expected `T` between date and time"));
    }
    let hour = digits(11, 2).ok_or_else(|| fail("expected a two-digit hour"))?;
    if byte(13) != Some(b':') || byte(16) != Some(b':') {
        return Err(fail("expected HH:MM:SS"));
    }
    let minute = digits(14, 2).ok_or_else(|| fail("expected two-digit minutes"))?;
    let second = digits(17, 2).ok_or_else(|| fail("expected two-digit seconds"))?;
    if !(1..=12).contains(&month) {
        return Err(fail("month out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail("day out of range"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(fail("time of day out of range"));
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if byte(pos) == Some(b'.') {
        pos += 1;
        let start = pos;
        let mut scale = 100_000_000;
        while let Some(c) = byte(pos).filter(u8::is_ascii_digit) {
            nanos += i64::from(c - b'0') * scale;
            scale /= 10;
            pos += 1;
        }
        if pos == start {
            return Err(fail("expected digits after the decimal point"));
        }
    }
    let offset_seconds = match byte(pos) {
        Some(b'Z' | b'z') => {
            pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let oh = digits(pos + 1, 2).ok_or_else(|| fail("expected a two-digit offset hour"))?;
            if byte(pos + 3) != Some(b':') {
                return Err(fail("expected ±HH:MM offset"));
            }
            let om = digits(pos + 4, 2).ok_or_else(|| fail("expected two-digit offset minutes"))?;
            if oh > 23 || om > 59 {
                return Err(fail("offset out of range"));
            }
            pos += 6;
            let magnitude = oh * 3600 + om * 60;
            if sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return Err(fail("expected `Z` or a ±HH:MM offset")),
    };
    if pos != b.len() {
        return Err(fail("unexpected text after the offset"));
    }
    let days = days_from_civil(year, month, day);
    let seconds = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second)
        - i128::from(offset_seconds);
    let total = seconds * NANOS_PER_SECOND + i128::from(nanos);
    i64::try_from(total).map_err(|_| fail("outside the range of i64 nanoseconds"))
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 with nine fraction digits and a
/// `+00:00` offset, the form `micromegas-telemetry-sink` writes in blocks
/// (`2026-01-02T03:04:05.123456789+00:00`).
pub fn format_rfc3339_nanos(nanos: i64) -> String {
    let total = i128::from(nanos);
    let seconds = total.div_euclid(NANOS_PER_SECOND);
    let fraction = total.rem_euclid(NANOS_PER_SECOND);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // `days` fits in i64: |nanos| / 86_400e9 < 2^47.
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or_default());
    let hour = second_of_day / 3600;
    let minute = second_of_day / 60 % 60;
    let second = second_of_day % 60;
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{fraction:09}+00:00")
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_producers_send() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_nanos("2026-01-02T03:04:05.123456789+00:00").unwrap(),
            1_767_323_045_123_456_789
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-01-02T03:04:05.123456789Z").unwrap(),
            1_767_323_045_123_456_789
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-01-02T05:04:05.5+02:00").unwrap(),
            1_767_323_045_500_000_000
        );
        assert_eq!(
            parse_rfc3339_nanos("2026-01-02t03:04:05.1234567891234z").unwrap(),
            1_767_323_045_123_456_789
        );
        assert_eq!(
            parse_rfc3339_nanos("1969-12-31T23:59:59.999999999Z").unwrap(),
            -1
        );
        assert_eq!(
            parse_rfc3339_nanos("2016-12-31T23:59:60Z").unwrap(),
            parse_rfc3339_nanos("2017-01-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2026",
            "2026-01-02",
            "2026-01-02T03:04:05",
            "2026-13-02T03:04:05Z",
            "2026-02-29T03:04:05Z",
            "2026-01-02T24:00:00Z",
            "2026-01-02T03:04:05.Z",
            "2026-01-02T03:04:05+0200",
            "2026-01-02T03:04:05Z ",
            "2026-01-02T03:04:05Zjunk",
            "9999-01-01T00:00:00Z",
            "+026-01-02T03:04:05Z",
            "2026-01-02T03:04:05+99:00",
            "２０２６-01-02T03:04:05Z",
        ] {
            assert!(parse_rfc3339_nanos(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_and_parses_back() {
        for nanos in [
            0,
            -1,
            1,
            1_767_323_045_123_456_789,
            i64::MIN,
            i64::MAX,
            951_782_400_000_000_000, // 2000-02-29
        ] {
            let text = format_rfc3339_nanos(nanos);
            assert_eq!(parse_rfc3339_nanos(&text).unwrap(), nanos, "{text}");
        }
        assert_eq!(
            format_rfc3339_nanos(1_767_323_045_123_456_789),
            "2026-01-02T03:04:05.123456789+00:00"
        );
    }
}
