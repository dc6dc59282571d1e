//! SCIM responses: the media type, ETag and Location headers, and errors as SCIM bodies.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::scim::ScimError;

/// The SCIM media type (RFC 7644 §3.1).
pub const SCIM_MEDIA_TYPE: &str = "application/scim+json";

/// A JSON body served as `application/scim+json`.
pub struct ScimJson {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl ScimJson {
    /// 200 with a body.
    pub fn ok(body: Value) -> Self {
        Self { status: StatusCode::OK, body, headers: HeaderMap::new() }
    }
    /// Sets the status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    /// Adds a header; values that are not valid header text are skipped.
    pub fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }
}

impl IntoResponse for ScimJson {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body.to_string()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_MEDIA_TYPE));
        resp.headers_mut().extend(self.headers);
        resp
    }
}

/// Wrapper that renders a [`ScimError`] as an HTTP response.
pub struct ApiError(pub ScimError);

impl From<ScimError> for ApiError {
    fn from(e: ScimError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = ScimJson::ok(self.0.to_json()).status(status);
        if status == StatusCode::UNAUTHORIZED {
            r = r.header(header::WWW_AUTHENTICATE, "Bearer realm=\"SCIM\"");
        }
        r.into_response()
    }
}

/// Handler result.
pub type ApiResult<T = ScimJson> = Result<T, ApiError>;
