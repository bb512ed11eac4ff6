//! Event time: microseconds since the Unix epoch, rendered as RFC 3339 in UTC
//! with exactly six fraction digits so the encoding is canonical.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A point in time with microsecond precision, always UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

#[derive(Debug, thiserror::Error)]
pub enum TimestampError {
    #[error("not an RFC 3339 time or a plain date (YYYY-MM-DD): {0:?}")]
    Unparseable(String),
    #[error("time is out of range")]
    OutOfRange,
}

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    /// This time plus a duration, saturating.
    pub fn plus(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// How long from `self` until `later`; zero if `later` is not after `self`.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(later.0.saturating_sub(self.0)).unwrap_or(0))
    }

    fn to_datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000).ok()
    }

    /// Parses RFC 3339 (`2026-11-25T10:31:29Z`, any offset) or a plain date
    /// (`2026-11-25`, meaning its midnight UTC).
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let unparseable = || TimestampError::Unparseable(text.to_owned());
        let datetime = if text.len() == 10 {
            let date = time::Date::parse(text, format_description!("[year]-[month]-[day]"))
                .map_err(|_| unparseable())?;
            date.midnight().assume_utc()
        } else {
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| unparseable())?
        };
        let micros = datetime.unix_timestamp_nanos() / 1000;
        i64::try_from(micros)
            .map(Self)
            .map_err(|_| TimestampError::OutOfRange)
    }

    /// `HH:MM:SS` in UTC, for compact human output.
    pub fn clock(self) -> String {
        match self.to_datetime() {
            Some(dt) => format!("{:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second()),
            None => "??:??:??".to_owned(),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: the canonical text's length.
const CANONICAL_LEN: usize = 27;

impl Timestamp {
    /// The canonical text, written digit by digit, for years 0 to 9999
    /// (every real event). Every event's time is written through here, and
    /// `write!` with padded fields, or the `time` crate's formatter, cost
    /// about 3,000 instructions a time; this costs a few dozen.
    fn canonical_text(&self) -> Option<[u8; CANONICAL_LEN]> {
        let dt = self.to_datetime()?;
        let year = u32::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(dt.month())));
        put(8, 2, u32::from(dt.day()));
        put(11, 2, u32::from(dt.hour()));
        put(14, 2, u32::from(dt.minute()));
        put(17, 2, u32::from(dt.second()));
        put(20, 6, dt.microsecond());
        Some(out)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = self.canonical_text() {
            // Only ASCII digits and separators were written.
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        match self.to_datetime().and_then(|dt| dt.format(&format).ok()) {
            Some(text) => f.write_str(&text),
            None => write!(f, "@{}us", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.canonical_text();
        match text.as_ref().map(|t| std::str::from_utf8(t)) {
            Some(Ok(text)) => serializer.serialize_str(text),
            _ => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        match canonical_micros(text.as_bytes()) {
            Some(micros) => Ok(Self(micros)),
            None => Timestamp::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// Reads `YYYY-MM-DDTHH:MM:SS.ffffffZ` (what [`Timestamp`] writes) by
/// arithmetic; None for anything else, including valid times in other forms,
/// which go to the general RFC 3339 parser. Every event body carries one, and
/// verifying or indexing millions of events spent most of its parsing time
/// in that general parser.
pub(crate) fn canonical_micros(b: &[u8]) -> Option<i64> {
    if b.len() != 27
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
        || b[26] != b'Z'
    {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let fraction = digits(&b[20..26])?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    // Leap seconds and year 0 are left to the general parser.
    if year == 0 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second;
    Some(seconds * 1_000_000 + fraction)
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_six_fraction_digits_and_round_trips() {
        let t = Timestamp::from_micros(1_764_066_689_000_123);
        assert_eq!(t.to_string(), "2025-11-25T10:31:29.000123Z");
        assert_eq!(Timestamp::parse(&t.to_string()).ok(), Some(t));
    }

    #[test]
    fn the_canonical_fast_path_agrees_with_the_general_parser() {
        let mut micros = -86_400_000_000i64 * 365 * 3;
        while micros < 86_400_000_000i64 * 365 * 400 {
            let t = Timestamp::from_micros(micros);
            let text = t.to_string();
            assert_eq!(canonical_micros(text.as_bytes()), Some(micros), "{text}");
            assert_eq!(Timestamp::parse(&text).ok(), Some(t));
            micros += 3_599_999_999_977;
        }
        for leap in ["2024-02-29T23:59:59.999999Z", "2000-02-29T00:00:00.000000Z"] {
            let general = Timestamp::parse(leap).ok().map(|t| t.as_micros());
            assert_eq!(canonical_micros(leap.as_bytes()), general);
        }
        for bad in [
            "2023-02-29T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-11-25T24:00:00.000000Z",
            "2026-11-25T10:00:00.00000xZ",
        ] {
            assert_eq!(canonical_micros(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_fast_writer_agrees_with_the_time_crates_formatter() {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let general = |t: Timestamp| t.to_datetime().and_then(|dt| dt.format(&format).ok());
        let mut micros = -62_167_219_200_000_000i64; // 0000-01-01
        while micros < 253_402_300_800_000_000 {
            // up to 9999-12-31
            let t = Timestamp::from_micros(micros);
            assert_eq!(Some(t.to_string()), general(t), "{micros}");
            assert_eq!(serde_json::to_string(&t).ok(), Some(format!("\"{t}\"")));
            micros += 7_777_777_777_777; // about 90 days, a different time of day each step
        }
        // Before year 0 the general path writes it, as before.
        let t = Timestamp::from_micros(-62_167_219_200_000_001);
        assert_eq!(Some(t.to_string()), general(t));
    }

    #[test]
    fn parses_offsets_and_plain_dates() {
        let a = Timestamp::parse("2026-11-25T12:00:00+02:00").ok();
        let b = Timestamp::parse("2026-11-25T10:00:00Z").ok();
        assert_eq!(a, b);
        let d = Timestamp::parse("2026-11-25").ok();
        assert_eq!(d, Timestamp::parse("2026-11-25T00:00:00Z").ok());
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
