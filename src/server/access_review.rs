//! `GET /api/v1/access-review?asOf=...&format=json|csv`: the access review as of a date, for
//! access-review tools and auditors' scripts (the console's page and the CLI serve the same
//! review, see [`crate::provisioning::access_review`]).

use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::response::{ApiResult, ScimJson};
use crate::provisioning::RequestContext;
use crate::provisioning::access::Principal;
use crate::provisioning::access_review::{ReviewFormat, access_review_csv, access_review_json};
use crate::scim::ScimError;

/// The query: `asOf` (RFC 3339 or `YYYY-MM-DD`; absent: now) and `format`.
#[derive(Debug, Default, Deserialize)]
struct ReviewParams {
    #[serde(rename = "asOf")]
    as_of: Option<String>,
    format: Option<String>,
}

/// The format asked: `format=` if given, else CSV when `Accept` names `text/csv`, else JSON.
fn format_asked(params: &ReviewParams, headers: &HeaderMap) -> Result<ReviewFormat, ScimError> {
    if let Some(f) = &params.format {
        return ReviewFormat::parse(f);
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let csv = accept.split(',').any(|m| m.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv")));
    Ok(if csv { ReviewFormat::Csv } else { ReviewFormat::Json })
}

/// GET /api/v1/access-review. Needs what the console's access review needs (`directory_read`,
/// or `user_access_manage` with `keys_manage`); a bad or future `asOf` is a 400 `invalidValue`.
pub async fn access_review(
    State(s): State<AppState>,
    Extension(key): Extension<Principal>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let params: ReviewParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| ScimError::invalid_value(format!("the query is not asOf=...&format=json|csv: {e}")))?;
    let format = format_asked(&params, &headers)?;
    let request_id = headers.get("x-request-id").and_then(|h| h.to_str().ok()).map(str::to_string);
    // The review names no SCIM locations: no base URL needed.
    let ctx = RequestContext::for_principal(&key, request_id, String::new());
    let (at, rows) = s.directory.access_review(&ctx, params.as_of.as_deref()).await?;
    Ok(match format {
        ReviewFormat::Json => ScimJson::ok(access_review_json(&at, &rows))
            .header(header::CONTENT_TYPE, "application/json")
            .into_response(),
        ReviewFormat::Csv => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"access-review-{}.csv\"", at.get(..10).unwrap_or(&at)),
                ),
            ],
            access_review_csv(&rows)?,
        )
            .into_response(),
    })
}
