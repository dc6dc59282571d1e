//! SCIM resource endpoints: HTTP in, directory call, HTTP out.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::response::{ApiError, ApiResult, ScimJson};
use crate::provisioning::access::{Action, Principal, allowed};
use crate::provisioning::groups::{LinkExisting, PatchReply};
use crate::provisioning::{RequestContext, Resource};
use crate::scim::ScimError;
use crate::scim::list::{ListQuery, list_response};
use crate::scim::projection::Projection;
use crate::scim::schema::ResourceType;

/// The request's query parameters as pairs; undecodable text is a SCIM 400.
pub(super) fn query_pairs(raw: &Option<String>) -> Result<Vec<(String, String)>, ScimError> {
    match raw {
        None => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str(q)
            .map_err(|e| ScimError::invalid_value(format!("query string could not be decoded: {e}"))),
    }
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Base URL of the SCIM API as the client addressed it.
pub(super) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(b) = &state.config.base_url {
        return b.trim_end_matches('/').to_string();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{proto}://{host}/scim/v2")
}

/// The authenticated request: the context of the key that [`super::auth::require_key`] let
/// through (its permissions, the audit actor, the request id, the base URL, the invitation
/// hint). What every SCIM handler takes; on a route without that middleware it is a 401.
pub struct Authenticated(pub RequestContext);

impl axum::extract::FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts.extensions.get::<Principal>().ok_or_else(|| {
            ApiError(ScimError::unauthorized("authentication required: send 'Authorization: Bearer <key>'"))
        })?;
        Ok(Self(context(state, key, &parts.headers)?))
    }
}

/// The request's context; a malformed `Scim-Declared-By` header is a 400 `invalidValue`.
fn context(state: &AppState, key: &Principal, headers: &HeaderMap) -> Result<RequestContext, ApiError> {
    let request_id = headers.get("x-request-id").and_then(|h| h.to_str().ok()).map(str::to_string);
    let mut ctx = RequestContext::for_principal(key, request_id, base_url(state, headers));
    let hint = headers.get(crate::scim::invitation::HEADER).and_then(|h| h.to_str().ok());
    ctx.withhold_invitation = crate::scim::invitation::withholds(hint);
    let declared = headers.get(crate::scim::declared_by::HEADER).map(|h| h.as_bytes());
    ctx.declared_by = crate::scim::declared_by::DeclaredBy::from_header(declared).map_err(ApiError)?;
    Ok(ctx)
}

/// Parses a JSON request body; any media type is read as JSON (identity providers differ).
/// The body must be UTF-8 (RFC 8259 §8.1) and within the request limits.
fn json_body(s: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Value, ScimError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            super::normalize::body_too_large(s.config.max_body_bytes)
        } else {
            ScimError::invalid_syntax(format!("the request body could not be read: {e}"))
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ScimError::invalid_syntax(format!("the request body is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })?;
    let value = serde_json::from_str(text)
        .map_err(|e| ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}")))?;
    crate::scim::limits::check_body(&value, &s.config.request_limits())?;
    Ok(value)
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers.get(header::IF_MATCH).and_then(|h| h.to_str().ok()).map(str::to_string)
}

fn projection(pairs: &[(String, String)], rt: &ResourceType) -> Result<Projection, ScimError> {
    Projection::parse(param(pairs, "attributes"), param(pairs, "excludedAttributes"), rt)
}

/// One resource with ETag and, on creation, Location.
fn resource_response(mut r: Resource, status: StatusCode, rt: &ResourceType, p: &Projection) -> ScimJson {
    let etag = crate::provisioning::view::etag(r.version);
    let location = r.json.get("meta").and_then(|m| m.get("location")).and_then(Value::as_str).map(str::to_string);
    p.apply(rt, &mut r.json);
    let mut out = ScimJson::ok(Value::Object(r.json)).status(status).header(header::ETAG, &etag);
    if status == StatusCode::CREATED
        && let Some(loc) = location
    {
        out = out.header(header::LOCATION, &loc);
    }
    out
}

fn list_out(total: u64, start_index: u64, items: Vec<Resource>, rt: &ResourceType, p: &Projection) -> ScimJson {
    let resources = items
        .into_iter()
        .map(|mut r| {
            p.apply(rt, &mut r.json);
            Value::Object(r.json)
        })
        .collect();
    ScimJson::ok(list_response(total, start_index, resources))
}

/// Answers a GET with 304 when `If-None-Match` names the current version.
fn not_modified(headers: &HeaderMap, r: &Resource) -> Option<Response> {
    let h = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    crate::provisioning::view::etag_matches(h, r.version).then(|| {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = crate::provisioning::view::etag(r.version).parse() {
            resp.headers_mut().insert(header::ETAG, v);
        }
        resp
    })
}

// ---------------------------------------------------------------- users

pub async fn create_user(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().user;
    let pairs = query_pairs(&q)?;
    let p = projection(&pairs, rt)?;
    let body = json_body(&s, body)?;
    let r = s.directory.create_user(&ctx, &body).await?;
    Ok(resource_response(r, StatusCode::CREATED, rt, &p))
}

pub async fn get_user(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rt = &s.directory.types().user;
    let p = projection(&query_pairs(&q)?, rt)?;
    let r = s.directory.get_user(&ctx, &id, &p).await?;
    if let Some(resp) = not_modified(&headers, &r) {
        return Ok(resp);
    }
    Ok(resource_response(r, StatusCode::OK, rt, &p).into_response())
}

pub async fn replace_user(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().user;
    let p = projection(&query_pairs(&q)?, rt)?;
    let body = json_body(&s, body)?;
    let r = s.directory.replace_user(&ctx, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(resource_response(r, StatusCode::OK, rt, &p))
}

pub async fn patch_user(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().user;
    let p = projection(&query_pairs(&q)?, rt)?;
    let body = json_body(&s, body)?;
    let r = s.directory.patch_user(&ctx, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(resource_response(r, StatusCode::OK, rt, &p))
}

pub async fn delete_user(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    s.directory.delete_user(&ctx, &id, if_match(&headers).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_users(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let query = ListQuery::from_query(&query_pairs(&q)?, s.config.default_count, s.config.max_count)?;
    users_page(&s, &ctx, query).await
}

pub async fn search_users(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let query = ListQuery::from_search_body(&json_body(&s, body)?, s.config.default_count, s.config.max_count)?;
    users_page(&s, &ctx, query).await
}

async fn users_page(s: &AppState, ctx: &RequestContext, query: ListQuery) -> ApiResult {
    let rt = &s.directory.types().user;
    let p = Projection::parse(query.attributes.as_deref(), query.excluded_attributes.as_deref(), rt)?;
    let (total, items) = s.directory.list_users(ctx, &query, &p).await?;
    Ok(list_out(total, query.start_index, items, rt, &p))
}

// ---------------------------------------------------------------- groups

pub async fn create_group(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().group;
    let p = projection(&query_pairs(&q)?, rt)?;
    let body = json_body(&s, body)?;
    // `If-None-Match: *`: create only, never link an existing team of that name.
    let link = match headers.get(header::IF_NONE_MATCH) {
        None => LinkExisting::Allowed,
        Some(v) if v.as_bytes().trim_ascii() == b"*" => LinkExisting::Never,
        Some(_) => return Err(ScimError::invalid_value("on POST /Groups, If-None-Match accepts only *").into()),
    };
    let r = s.directory.create_group_with(&ctx, &body, &p, link).await?;
    Ok(resource_response(r, StatusCode::CREATED, rt, &p))
}

pub async fn get_group(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rt = &s.directory.types().group;
    let p = projection(&query_pairs(&q)?, rt)?;
    let r = s.directory.get_group(&ctx, &id, &p).await?;
    if let Some(resp) = not_modified(&headers, &r) {
        return Ok(resp);
    }
    Ok(resource_response(r, StatusCode::OK, rt, &p).into_response())
}

pub async fn replace_group(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().group;
    let p = projection(&query_pairs(&q)?, rt)?;
    let body = json_body(&s, body)?;
    let r = s.directory.replace_group(&ctx, &id, &body, if_match(&headers).as_deref(), &p).await?;
    Ok(resource_response(r, StatusCode::OK, rt, &p))
}

pub async fn patch_group(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let rt = &s.directory.types().group;
    let p = projection(&query_pairs(&q)?, rt)?;
    let body = json_body(&s, body)?;
    // Neither `attributes` nor `excludedAttributes` (or both empty): the client did not ask
    // for the resource, and a membership PATCH is answered 204 (see `Directory::patch_group`).
    let asked = p != Projection::default();
    match s.directory.patch_group(&ctx, &id, &body, if_match(&headers).as_deref(), asked.then_some(&p)).await? {
        PatchReply::Resource(r) => Ok(resource_response(r, StatusCode::OK, rt, &p).into_response()),
        PatchReply::NoContent { version } => {
            let mut resp = StatusCode::NO_CONTENT.into_response();
            if let Ok(etag) = header::HeaderValue::from_str(&crate::provisioning::view::etag(version)) {
                resp.headers_mut().insert(header::ETAG, etag);
            }
            Ok(resp)
        }
    }
}

pub async fn delete_group(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    s.directory.delete_group(&ctx, &id, if_match(&headers).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_groups(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let query = ListQuery::from_query(&query_pairs(&q)?, s.config.default_count, s.config.max_count)?;
    groups_page(&s, &ctx, query).await
}

pub async fn search_groups(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let query = ListQuery::from_search_body(&json_body(&s, body)?, s.config.default_count, s.config.max_count)?;
    groups_page(&s, &ctx, query).await
}

async fn groups_page(s: &AppState, ctx: &RequestContext, query: ListQuery) -> ApiResult {
    let rt = &s.directory.types().group;
    let p = Projection::parse(query.attributes.as_deref(), query.excluded_attributes.as_deref(), rt)?;
    let (total, items) = s.directory.list_groups(ctx, &query, &p).await?;
    Ok(list_out(total, query.start_index, items, rt, &p))
}

// ---------------------------------------------------------------- role mappings

pub async fn create_role_mapping(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().role_mapping;
    let body = json_body(&s, body)?;
    let r = s.directory.create_role_mapping(&ctx, &body).await?;
    Ok(resource_response(r, StatusCode::CREATED, rt, &Projection::default()))
}

pub async fn get_role_mapping(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let rt = &s.directory.types().role_mapping;
    let p = projection(&query_pairs(&q)?, rt)?;
    let r = s.directory.get_role_mapping(&ctx, &id).await?;
    Ok(resource_response(r, StatusCode::OK, rt, &p))
}

pub async fn replace_role_mapping(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().role_mapping;
    let body = json_body(&s, body)?;
    let r = s.directory.replace_role_mapping(&ctx, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(resource_response(r, StatusCode::OK, rt, &Projection::default()))
}

pub async fn patch_role_mapping(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let rt = &s.directory.types().role_mapping;
    let body = json_body(&s, body)?;
    let r = s.directory.patch_role_mapping(&ctx, &id, &body, if_match(&headers).as_deref()).await?;
    Ok(resource_response(r, StatusCode::OK, rt, &Projection::default()))
}

pub async fn delete_role_mapping(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    s.directory.delete_role_mapping(&ctx, &id, if_match(&headers).as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_role_mappings(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let query = ListQuery::from_query(&query_pairs(&q)?, s.config.default_count, s.config.max_count)?;
    role_mappings_page(&s, &ctx, query).await
}

pub async fn search_role_mappings(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let query = ListQuery::from_search_body(&json_body(&s, body)?, s.config.default_count, s.config.max_count)?;
    role_mappings_page(&s, &ctx, query).await
}

async fn role_mappings_page(s: &AppState, ctx: &RequestContext, query: ListQuery) -> ApiResult {
    let rt = &s.directory.types().role_mapping;
    let p = Projection::parse(query.attributes.as_deref(), query.excluded_attributes.as_deref(), rt)?;
    let (total, items) = s.directory.list_role_mappings(ctx, &query).await?;
    Ok(list_out(total, query.start_index, items, rt, &p))
}

// ---------------------------------------------------------------- all resource types

/// POST /.search: Users, then Groups, then RoleMappings, one page across them (RFC 7644 §3.4.3).
pub async fn search_all(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let query = ListQuery::from_search_body(&json_body(&s, body)?, s.config.default_count, s.config.max_count)?;
    let types = s.directory.types();
    let pu = Projection::parse(query.attributes.as_deref(), query.excluded_attributes.as_deref(), &types.user)?;
    let pg = Projection::parse(query.attributes.as_deref(), query.excluded_attributes.as_deref(), &types.group)?;
    let skip = query.start_index.saturating_sub(1);
    // Only the resource types the key may read; none at all is a 403.
    if ![Action::ReadUsers, Action::ReadTeams, Action::ReadRoleMappings]
        .into_iter()
        .any(|a| allowed(&ctx.permissions, a))
    {
        ctx.authorize(Action::ReadUsers)?;
    }
    let (user_total, users) = if allowed(&ctx.permissions, Action::ReadUsers) {
        s.directory.list_users(&ctx, &query, &pu).await?
    } else {
        (0, Vec::new())
    };
    let group_query = ListQuery {
        start_index: skip.saturating_sub(user_total) + 1,
        count: query.count.saturating_sub(users.len() as u64),
        ..query.clone()
    };
    let (group_total, groups) = if allowed(&ctx.permissions, Action::ReadTeams) {
        s.directory.list_groups(&ctx, &group_query, &pg).await?
    } else {
        (0, Vec::new())
    };
    let pm = Projection::parse(query.attributes.as_deref(), query.excluded_attributes.as_deref(), &types.role_mapping)?;
    let mapping_query = ListQuery {
        start_index: skip.saturating_sub(user_total + group_total) + 1,
        count: group_query.count.saturating_sub(groups.len() as u64),
        ..query.clone()
    };
    let (mapping_total, mappings) = if allowed(&ctx.permissions, Action::ReadRoleMappings) {
        s.directory.list_role_mappings(&ctx, &mapping_query).await?
    } else {
        (0, Vec::new())
    };
    let mut resources: Vec<Value> = users
        .into_iter()
        .map(|mut r| {
            pu.apply(&types.user, &mut r.json);
            Value::Object(r.json)
        })
        .collect();
    resources.extend(groups.into_iter().map(|mut r| {
        pg.apply(&types.group, &mut r.json);
        Value::Object(r.json)
    }));
    resources.extend(mappings.into_iter().map(|mut r| {
        pm.apply(&types.role_mapping, &mut r.json);
        Value::Object(r.json)
    }));
    Ok(ScimJson::ok(list_response(user_total + group_total + mapping_total, query.start_index, resources)))
}

/// GET /api/v1/users/{id}/access: effective roles (with their source) and teams.
pub async fn user_access(
    State(s): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
) -> ApiResult {
    let access = s.directory.user_access(&ctx, &id).await?;
    Ok(ScimJson::ok(access).header(header::CONTENT_TYPE, "application/json"))
}

// ---------------------------------------------------------------- others

pub async fn not_implemented() -> ApiError {
    ApiError(ScimError::not_implemented("this endpoint is not supported by this service provider"))
}

pub async fn unknown_endpoint() -> ApiError {
    ApiError(ScimError::not_found("no such SCIM endpoint"))
}
