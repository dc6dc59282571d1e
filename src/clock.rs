//! Time, passed in rather than read from the clock, so tests control it.

use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::Mutex;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that tests set and advance by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }
    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The one textual form of stored timestamps: RFC 3339, UTC, milliseconds, fixed width, so
/// that text order is time order in SQL.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored or client-given RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Rewrites an RFC 3339 timestamp into the stored form; other text is returned unchanged.
pub fn normalize_time(s: &str) -> String {
    parse_time(s).map(format_time).unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_sorts_as_time() {
        let a = normalize_time("2024-01-01T10:00:00+02:00");
        let b = normalize_time("2024-01-01T09:00:00.5Z");
        assert_eq!(a, "2024-01-01T08:00:00.000Z");
        assert!(a < b);
        assert_eq!(normalize_time("not a time"), "not a time");
    }
}
