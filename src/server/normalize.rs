//! What runs before routing: requests whose size or path can be refused from the head alone
//! are answered at once, and the path is put in the router's spelling.
//!
//! Clients and test tools differ in how they write SCIM paths (`/scim/v2/users`,
//! `/scim/v2/Users/`, `/scim/v2/serviceproviderconfig`): the resource-type and discovery
//! segments are matched without regard to case (RFC 7644 gives them as names, not as
//! case-sensitive strings) by rewriting them to the canonical spelling, so that one route serves
//! every spelling. The trailing slash is trimmed by tower-http's `NormalizePath`, which wraps this.

use axum::extract::{Request, State};
use axum::http::{Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::response::ApiError;
use crate::scim::ScimError;

/// The endpoint names under `/scim/v2` in the spelling the router uses.
const SCIM_SEGMENTS: &[&str] =
    &["ServiceProviderConfig", "Schemas", "ResourceTypes", "Users", "Groups", "RoleMappings", "Bulk", "Me", ".search"];

/// Refuses what the request head already condemns, then rewrites the path for the router.
pub(super) async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(declared) = declared_length(&req)
        && declared > state.config.max_body_bytes as u64
    {
        // Answered before a byte of the body is read; the connection is closed afterwards by
        // the HTTP server, since the unread body cannot be skipped.
        return ApiError(body_too_large(state.config.max_body_bytes)).into_response();
    }
    if decoded_has_control(req.uri().path()) {
        // No resource id, endpoint or token contains a control character; PostgreSQL could not
        // even compare one (NUL).
        return ApiError(ScimError::not_found("no resource has a path with control characters")).into_response();
    }
    if let Some(path) = canonical_path(req.uri().path())
        && let Some(uri) = with_path(req.uri(), &path)
    {
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

/// The error for a body over the limit, naming the limit.
pub(super) fn body_too_large(limit: usize) -> ScimError {
    ScimError::new(
        413,
        None,
        format!("the request body is larger than the server accepts ({limit} bytes, --max-body-bytes)"),
    )
}

fn declared_length(req: &Request) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Whether the percent-decoded path holds a control character (NUL and C1 controls included).
fn decoded_has_control(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match escaped {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).chars().any(char::is_control)
}

/// The router's spelling of `path`, when it differs: `/scim/v2/<endpoint>[/<id or .search>]`
/// with the prefix and the endpoint in canonical case.
fn canonical_path(path: &str) -> Option<String> {
    let mut parts = path.splitn(5, '/');
    let (Some(""), Some(scim), Some(v2), Some(endpoint)) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if !scim.eq_ignore_ascii_case("scim") || !v2.eq_ignore_ascii_case("v2") {
        return None;
    }
    let endpoint = SCIM_SEGMENTS.iter().find(|s| s.eq_ignore_ascii_case(endpoint)).copied().unwrap_or(endpoint);
    let mut out = format!("/scim/v2/{endpoint}");
    if let Some(rest) = parts.next() {
        out.push('/');
        // `/Users/.SEARCH` is the search endpoint; any other second segment is an id, kept as is.
        out.push_str(if rest.eq_ignore_ascii_case(".search") { ".search" } else { rest });
    }
    (out != path).then_some(out)
}

fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_segments_take_their_canonical_case() {
        assert_eq!(canonical_path("/scim/v2/users").as_deref(), Some("/scim/v2/Users"));
        assert_eq!(canonical_path("/SCIM/V2/USERS/abc").as_deref(), Some("/scim/v2/Users/abc"));
        assert_eq!(canonical_path("/scim/v2/groups/.SEARCH").as_deref(), Some("/scim/v2/Groups/.search"));
        assert_eq!(canonical_path("/scim/v2/serviceproviderconfig").as_deref(), Some("/scim/v2/ServiceProviderConfig"));
        assert_eq!(canonical_path("/scim/v2/resourcetypes/User").as_deref(), Some("/scim/v2/ResourceTypes/User"));
        // Ids keep their case; canonical paths and other trees are left alone.
        assert_eq!(canonical_path("/scim/v2/Users/AbC"), None);
        assert_eq!(canonical_path("/scim/v2/Users"), None);
        assert_eq!(canonical_path("/api/v1/users/x/access"), None);
        assert_eq!(canonical_path("/scim/v2/Nope").as_deref(), None);
    }

    #[test]
    fn control_characters_are_seen_through_percent_encoding() {
        assert!(decoded_has_control("/scim/v2/Users/a%00b"));
        assert!(decoded_has_control("/scim/v2/Users/%1F"));
        assert!(decoded_has_control("/scim/v2/Users/%7f"));
        assert!(decoded_has_control("/scim/v2/Users/%C2%85"));
        assert!(!decoded_has_control("/scim/v2/Users/%C3%A4rzte"));
        assert!(!decoded_has_control("/scim/v2/Users/100%"));
        assert!(!decoded_has_control("/scim/v2/Users/%zz"));
    }
}
