//! The `Request-Deadline` header: the instant (milliseconds since the Unix epoch) after which
//! the client no longer waits for a request. This project's client sends it with every request;
//! this project's server refuses a request that arrives after it and abandons one still running
//! at it (its transaction rolls back), so a write held up on the network cannot be applied
//! after the client gave up on it. The operator's leader fence relies on that: a request sent
//! while leading cannot land once a standby may have taken over.
//!
//! It compares the client's wall clock with the server's: clock skew between the two shifts the
//! bound by as much. It is an extension; other SCIM servers ignore it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ScimError;

/// Name of the header.
pub const HEADER: &str = "request-deadline";

/// The header value for `deadline`.
pub fn encode(deadline: SystemTime) -> String {
    deadline.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis().to_string()
}

/// The time a request with this header value has left at `now`: 400 `invalidValue` for a
/// value that is not a number of milliseconds, 408 once the deadline has passed.
pub fn remaining(value: &str, now: SystemTime) -> Result<Duration, ScimError> {
    let ms: u64 = value.trim().parse().map_err(|_| {
        ScimError::invalid_value(format!(
            "the {HEADER} header must be milliseconds since the Unix epoch, not {value:?}"
        ))
    })?;
    let deadline = UNIX_EPOCH + Duration::from_millis(ms);
    match deadline.duration_since(now) {
        Ok(left) if !left.is_zero() => Ok(left),
        _ => {
            Err(ScimError::new(408, None, format!("the request arrived after its {HEADER} ({ms}); it was not applied")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_round_trips_and_refuses_once_passed() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let value = encode(now + Duration::from_millis(750));
        assert_eq!(value, "1700000000750");
        assert_eq!(remaining(&value, now), Ok(Duration::from_millis(750)));
        let late = remaining(&value, now + Duration::from_millis(750)).expect_err("at the deadline");
        assert_eq!(late.status, 408);
        assert_eq!(remaining(&value, now + Duration::from_secs(60)).map_err(|e| e.status), Err(408));
        let bad = remaining("tomorrow", now).expect_err("not a number");
        assert_eq!((bad.status, bad.scim_type), (400, Some(crate::scim::ScimType::InvalidValue)));
    }
}
