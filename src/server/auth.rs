//! Bearer-key authentication of SCIM requests, through the provisioning layer's one door
//! ([`Directory::authenticate`](crate::provisioning::Directory::authenticate)); what each key
//! may do is decided there too, per operation.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::metrics::AuthLabels;
use super::response::ApiError;
use crate::scim::ScimError;

/// Extracts the bearer token: exactly `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Middleware: 401 without a valid key; with one, its
/// [`Principal`](crate::provisioning::access::Principal) goes into the request's extensions
/// (for the handler) and the response's (for the request log: which key it was).
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let refuse = |reason: &'static str, err: ScimError| {
        state.metrics.auth_failures.get_or_create(&AuthLabels { reason }).inc();
        ApiError(err).into_response()
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(
            "missing",
            ScimError::unauthorized("authentication required: send 'Authorization: Bearer <key>'"),
        );
    };
    let Some(token) = value.to_str().ok().and_then(bearer) else {
        return refuse("malformed", ScimError::unauthorized("malformed Authorization header: expected 'Bearer <key>'"));
    };
    match state.directory.authenticate(token).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal.clone());
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(principal);
            resp
        }
        Ok(None) => refuse("invalid", ScimError::unauthorized("the key is unknown or revoked")),
        Err(e) => ApiError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_is_strict() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("abc"), None);
    }
}
