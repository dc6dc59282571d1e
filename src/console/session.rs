//! Cookies and the signed-in person: the session cookie is HttpOnly, SameSite=Lax and (unless
//! turned off for a loopback test server) Secure with the `__Host-` prefix; the person is read
//! again from the store on every request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};

use super::ConsoleState;
use super::pages::error_page;
use crate::provisioning::access::Action;
use crate::provisioning::console::{ConsoleUser, SessionRefusal};

/// Cookie of the session.
const SESSION: &str = "scimop_console";
/// Cookie of an OpenID Connect sign-in under way (binds the callback to this browser).
const FLOW: &str = "scimop_signin";

/// The cookie names for these settings: `__Host-` needs `Secure`.
fn name(base: &str, secure: bool) -> String {
    if secure { format!("__Host-{base}") } else { base.to_string() }
}

/// The value of cookie `base` in the request, if any.
fn read(headers: &HeaderMap, base: &str, secure: bool) -> Option<String> {
    let wanted = name(base, secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == wanted)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value: `max_age` zero deletes the cookie.
fn set(base: &str, value: &str, secure: bool, max_age: chrono::Duration) -> HeaderValue {
    let cookie = Cookie::build((name(base, secure), value.to_string()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age.num_seconds().max(0)))
        .build();
    // A cookie built from our own ASCII names and base64url values is a valid header value.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session id in the request's cookie.
pub fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    read(headers, SESSION, secure)
}

/// Sets the session cookie (living as long as the absolute timeout).
pub fn set_session(secure: bool, session_id: &str, lifetime: chrono::Duration) -> HeaderValue {
    set(SESSION, session_id, secure, lifetime)
}

/// Clears the session cookie.
pub fn clear_session(secure: bool) -> HeaderValue {
    set(SESSION, "", secure, chrono::Duration::zero())
}

/// The sign-in flow id in the request's cookie.
pub fn flow_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    read(headers, FLOW, secure)
}

/// Sets the sign-in flow cookie.
pub fn set_flow(secure: bool, flow_id: &str, lifetime: chrono::Duration) -> HeaderValue {
    set(FLOW, flow_id, secure, lifetime)
}

/// Clears the sign-in flow cookie.
pub fn clear_flow(secure: bool) -> HeaderValue {
    set(FLOW, "", secure, chrono::Duration::zero())
}

/// Whether two secrets are equal, compared as hashes (the comparison's time says nothing about
/// either).
pub fn same_secret(a: &str, b: &str) -> bool {
    use crate::provisioning::keys::hash_secret;
    !a.is_empty() && hash_secret(a) == hash_secret(b)
}

/// The signed-in person of a request; without one, the request is sent to the sign-in page.
pub struct Signed(pub ConsoleUser);

impl FromRequestParts<ConsoleState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let secure = state.config.secure_cookies;
        let Some(id) = session_cookie(&parts.headers, secure) else {
            return Err(Redirect::to("/console/signin").into_response());
        };
        match state.directory.console_session(&id, &state.config.policy).await {
            Ok(person) => Ok(Signed(person)),
            Err(SessionRefusal::NoSession) => {
                Err(([(header::SET_COOKIE, clear_session(secure))], Redirect::to("/console/signin?reason=expired"))
                    .into_response())
            }
            Err(SessionRefusal::Ended(reason)) => {
                let page = error_page(axum::http::StatusCode::FORBIDDEN, &format!("Signed out: {reason}."));
                Err(([(header::SET_COOKIE, clear_session(secure))], page).into_response())
            }
            Err(SessionRefusal::Failed(e)) => {
                tracing::warn!(error = %e, "reading a console session failed");
                Err(error_page(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "The session could not be read; try again.",
                ))
            }
        }
    }
}

/// A form that carries the session's CSRF token in its `csrf` field.
pub trait CsrfField {
    /// The token the form carried (empty when none).
    fn csrf(&self) -> &str;
}

/// A form posted by the signed-in person: what every console handler that changes something
/// takes. Extracting it reads the session ([`Signed`]: no session, no change), then the form,
/// then checks that the form carries this session's CSRF token (else a 403 page, nothing
/// changed). What the person may change is the handler's to ask, with [`Change::require`].
pub struct Change<F> {
    pub person: ConsoleUser,
    pub form: F,
    request_id: Option<String>,
}

impl<F> Change<F> {
    /// The request context of the change: audited with the person as actor and this request's id.
    pub fn context(&self) -> crate::provisioning::RequestContext {
        self.person.context(self.request_id.clone())
    }

    /// The request id (for the audit trail).
    pub fn request_id(&self) -> Option<String> {
        self.request_id.clone()
    }

    /// `None` when the person may do `action`, else the 403 page ([`require`]).
    pub fn require(&self, action: Action) -> Option<Response> {
        require(&self.person, action)
    }
}

/// The request id the server gave the request (`x-request-id`), for the audit trail.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string)
}

impl<F> axum::extract::FromRequest<ConsoleState> for Change<F>
where
    F: serde::de::DeserializeOwned + CsrfField + Send,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Signed(person) = Signed::from_request_parts(&mut parts, state).await?;
        let request_id = request_id(&parts.headers);
        let req = axum::extract::Request::from_parts(parts, body);
        let axum::Form(form) = axum::Form::<F>::from_request(req, state).await.map_err(|e| {
            error_page(axum::http::StatusCode::BAD_REQUEST, &format!("The form could not be read: {}", e.body_text()))
        })?;
        if !person.csrf_matches(form.csrf()) {
            return Err(error_page(
                axum::http::StatusCode::FORBIDDEN,
                "The form was refused: it did not carry this session's CSRF token. Reload the page and try again.",
            ));
        }
        Ok(Self { person, form, request_id })
    }
}

/// `None` when the person's permissions allow `action` (decided by `access::allowed`, as for a
/// key), else the 403 page saying what their roles do not allow.
pub fn require(person: &ConsoleUser, action: Action) -> Option<Response> {
    (!person.may(action)).then(|| refusal(person, action))
}

/// As [`require`], for `action` on the user `target` (a person may always read their own page).
pub fn require_on_user(person: &ConsoleUser, action: Action, target: &str) -> Option<Response> {
    (!person.may_on_user(action, target)).then(|| refusal(person, action))
}

fn refusal(person: &ConsoleUser, action: Action) -> Response {
    let roles: Vec<&str> = person.roles.iter().map(|r| r.name.as_str()).collect();
    error_page(
        axum::http::StatusCode::FORBIDDEN,
        &format!(
            "Your role ({}) may not {} here (README: The console, who may do what).",
            roles.join(", "),
            action.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_lax_and_secure_with_the_host_prefix() {
        let v = set_session(true, "abc", chrono::Duration::hours(12));
        let s = v.to_str().expect("ascii");
        assert!(s.starts_with("__Host-scimop_console=abc"), "{s}");
        for part in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
            assert!(s.contains(part), "{part} missing from {s}");
        }
        let insecure = set_session(false, "abc", chrono::Duration::hours(1));
        let s = insecure.to_str().expect("ascii");
        assert!(s.starts_with("scimop_console=abc") && !s.contains("Secure"), "{s}");
        assert!(clear_session(true).to_str().expect("ascii").contains("Max-Age=0"));
    }

    #[test]
    fn only_the_cookie_of_the_configured_name_is_read() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; scimop_console=plain; __Host-scimop_console=host"));
        assert_eq!(session_cookie(&h, true).as_deref(), Some("host"));
        assert_eq!(session_cookie(&h, false).as_deref(), Some("plain"));
        assert_eq!(flow_cookie(&h, true), None);
    }
}
