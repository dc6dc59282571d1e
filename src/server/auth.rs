//! Bearer-key authentication of SCIM requests.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::metrics::AuthLabels;
use super::response::ApiError;
use crate::provisioning::keys::{allows_scim, hash_secret};
use crate::scim::ScimError;

/// The key a request authenticated with, put into request extensions.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub id: String,
}

/// Extracts the bearer token: exactly `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Middleware: 401 without a valid key, 403 for a key lacking the SCIM permissions.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let refuse = |reason: &str, err: ScimError| {
        state.metrics.auth_failures.get_or_create(&AuthLabels { reason: reason.into() }).inc();
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
    let key = match state.directory.store().begin_read().await {
        Ok(mut tx) => tx.key_by_hash(&hash_secret(token)).await,
        Err(e) => Err(e),
    };
    match key {
        Ok(Some(key)) if allows_scim(&key) => {
            req.extensions_mut().insert(AuthenticatedKey { id: key.id });
            next.run(req).await
        }
        Ok(Some(_)) => refuse(
            "forbidden",
            ScimError::forbidden("this key lacks the user_access_invite and user_access_manage permissions"),
        ),
        Ok(None) => refuse("invalid", ScimError::unauthorized("the key is unknown or revoked")),
        Err(e) => ApiError(crate::provisioning::scim_from_store(e)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

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
