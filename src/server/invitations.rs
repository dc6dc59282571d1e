//! The link of an invitation e-mail. `GET` shows a small page with a button and changes
//! nothing, so mail scanners and link previews that open the link do not use it up; the
//! page's form `POST`s to the same address, which accepts the invitation (once).
//!
//! Both answer HTML, or JSON to a client that asks for it (`Accept: application/json`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::provisioning::RequestContext;
use crate::provisioning::invitations::InvitationError;

/// The HTTP status of a refused link: the one place that decides it.
fn status_of(e: &InvitationError) -> StatusCode {
    match e {
        InvitationError::Unknown => StatusCode::NOT_FOUND,
        InvitationError::Expired(_) | InvitationError::NotPending(_) => StatusCode::GONE,
        InvitationError::UserInactive => StatusCode::FORBIDDEN,
        // The database could not be reached or failed: nothing was accepted, try again.
        InvitationError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// Text for an HTML page: the five characters that could end or open markup, escaped.
/// (Hand-written: the pages are three fixed templates and one value each, no template engine
/// needed.)
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page, with headers that keep the token in its address to this page: never cached, never
/// sent on as a referrer, never framed, never indexed.
fn page(status: StatusCode, title: &str, body_html: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:32em;margin:4em auto;padding:0 1em}}\
         button{{font-size:1.1em;padding:.5em 1.5em}}</style></head>\n<body><h1>{title}</h1>\n{body_html}\n</body></html>\n",
        title = escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex"));
    resp
}

fn refused(e: &InvitationError, json: bool) -> Response {
    let status = status_of(e);
    if json {
        return (status, axum::Json(json!({"status": "refused", "detail": e.to_string()}))).into_response();
    }
    page(status, "Invitation not available", &format!("<p>{}</p>", escape(&e.to_string())))
}

/// `GET /invitations/{token}`: the page with the button; consumes nothing.
pub async fn show(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    match state.directory.open_invitation(&token).await {
        Ok(open) if json => (
            StatusCode::OK,
            axum::Json(json!({"status": "pending", "email": open.email, "expiresAt": open.expires_at})),
        )
            .into_response(),
        Ok(open) => page(
            StatusCode::OK,
            "Accept your invitation",
            &format!(
                "<p>This invitation for <strong>{}</strong> is valid until {} (UTC).</p>\n\
                 <form method=\"post\"><button type=\"submit\">Accept invitation</button></form>",
                escape(&open.email),
                escape(&open.expires_at)
            ),
        ),
        Err(e) => refused(&e, json),
    }
}

/// `POST /invitations/{token}`: accepts the invitation, once.
pub async fn accept(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let json = wants_json(&headers);
    let ctx = RequestContext {
        actor: "invitee".into(),
        request_id: headers.get("x-request-id").and_then(|h| h.to_str().ok()).map(str::to_string),
        base_url: String::new(),
        // The token is the invitee's only credential; it grants no permission of a key.
        permissions: crate::provisioning::access::Permissions::none(),
        withhold_invitation: false,
        declared_by: None,
    };
    match state.directory.accept_invitation(&ctx, &token).await {
        Ok(user) if json => (StatusCode::OK, axum::Json(json!({"status": "accepted", "user": user}))).into_response(),
        Ok(_) => page(StatusCode::OK, "Invitation accepted", "<p>Welcome! You can sign in now.</p>"),
        Err(e) => refused(&e, json),
    }
}
