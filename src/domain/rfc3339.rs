//! Epoch milliseconds as RFC 3339 text (UTC, milliseconds), for serde:
//! `#[serde(with = "crate::domain::rfc3339")]` on an [`EpochMillis`] field.
//! The order's JSON document (stored as one row, answered by the query API)
//! carries its times this way. Pure formatting and parsing, no clock.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

use super::EpochMillis;

/// Formats epoch milliseconds; times beyond chrono's range (hundreds of
/// thousands of years, so only a corrupt value) are clamped to its ends.
pub fn format(ms: EpochMillis) -> String {
    let at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses RFC 3339 text with any offset back into epoch milliseconds.
pub fn parse(text: &str) -> Option<EpochMillis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.timestamp_millis())
}

pub fn serialize<S: Serializer>(ms: &EpochMillis, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*ms))
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<EpochMillis, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text)
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip_through_rfc3339_utc() {
        for ms in [0, 1, -1, 1_767_225_600_123, 253_402_300_799_999] {
            assert_eq!(parse(&format(ms)), Some(ms), "{ms}");
        }
        assert_eq!(format(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(
            parse("2026-01-01T01:00:00.123+01:00"),
            Some(1_767_225_600_123)
        );
        assert_eq!(parse("yesterday"), None);
        // Absurd values still format, never panic.
        assert!(!format(i64::MAX).is_empty());
        assert!(!format(i64::MIN).is_empty());
    }
}
