//! Enforces a client's `Request-Deadline` ([`crate::scim::deadline`]): a request that arrives
//! after it is answered 408 without being handled; one still running at it is dropped, which
//! rolls back its transaction, and answered 408.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::SystemTime;

use super::response::ApiError;
use crate::scim::{ScimError, deadline};

/// The middleware; requests without the header pass untouched.
pub async fn enforce(req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(deadline::HEADER) else { return next.run(req).await };
    let left = value
        .to_str()
        .map_err(|_| ScimError::invalid_value(format!("the {} header is not text", deadline::HEADER)))
        .and_then(|v| deadline::remaining(v, SystemTime::now()));
    let left = match left {
        Ok(left) => left,
        Err(e) => return ApiError(e).into_response(),
    };
    match tokio::time::timeout(left, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError(ScimError::new(
            408,
            None,
            format!(
                "the request was still running at its {}; it was abandoned and nothing was changed",
                deadline::HEADER
            ),
        ))
        .into_response(),
    }
}
