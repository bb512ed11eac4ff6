//! Durations written the way people write them: `15m`, `2h`, `90s`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use taskgate_audit::Timestamp;

/// Parses `15m`, `2h`, `1h30m`, `90s`. Zero is refused: a zero window or
/// timeout is always a mistake.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 15m or 2h ({e})"))?;
    if d.is_zero() {
        return Err(format!("{text:?}: a duration must be more than zero"));
    }
    Ok(d)
}

/// A duration read from config as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// A point in time as a search bound: RFC 3339, a plain date (its midnight,
/// UTC), or a duration meaning that long before `now` (`7d`, `2h`).
pub fn parse_time_bound(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(t) = Timestamp::parse(text) {
        return Ok(t);
    }
    match humantime::parse_duration(text) {
        Ok(ago) => {
            let micros = i64::try_from(ago.as_micros()).unwrap_or(i64::MAX);
            Ok(Timestamp::from_micros(
                now.as_micros().saturating_sub(micros),
            ))
        }
        Err(_) => Err(format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-25T14:00:00Z), a date (2026-11-25) or an age (7d, 2h)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_are_times_dates_or_ages() {
        let now = Timestamp::parse("2026-11-25T12:00:00Z").unwrap_or(Timestamp::from_micros(0));
        let at = |t: &str| Timestamp::parse(t).ok();
        assert_eq!(
            parse_time_bound("2026-11-20", now).ok(),
            at("2026-11-20T00:00:00Z")
        );
        assert_eq!(
            parse_time_bound("2026-11-20T10:00:00+01:00", now).ok(),
            at("2026-11-20T09:00:00Z")
        );
        assert_eq!(parse_time_bound("7d", now).ok(), at("2026-11-18T12:00:00Z"));
        assert_eq!(
            parse_time_bound("90m", now).ok(),
            at("2026-11-25T10:30:00Z")
        );
        let error = parse_time_bound("last tuesday", now)
            .err()
            .unwrap_or_default();
        assert!(error.contains("not a time"), "{error}");
    }

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
