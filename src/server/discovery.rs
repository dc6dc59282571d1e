//! Discovery endpoints (RFC 7644 §4): what this server supports, exactly.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::Value;

use super::AppState;
use super::handlers::base_url;
use super::response::{ApiResult, ScimJson};
use crate::scim::ScimError;
use crate::scim::list::list_response;
use crate::scim::schema::{
    AdvertisedLimits, ServiceProviderConfig, limits_json, resource_type_json, schema_json, service_provider_config_json,
};

fn provider_config(s: &AppState) -> ServiceProviderConfig {
    ServiceProviderConfig { max_results: s.config.max_count, ..ServiceProviderConfig::default() }
}

/// `/api/v1/limits`: the request limits SCIM's ServiceProviderConfig has no place for.
pub async fn limits(State(s): State<AppState>) -> ApiResult {
    use crate::scim::filter::parser::{MAX_DEPTH, MAX_FILTER_LEN};
    Ok(ScimJson::ok(limits_json(&AdvertisedLimits {
        max_payload_size: s.config.max_body_bytes as u64,
        max_patch_operations: s.config.max_patch_operations as u64,
        max_values_per_attribute: s.config.max_values as u64,
        max_filter_length: MAX_FILTER_LEN as u64,
        max_filter_depth: MAX_DEPTH as u64,
        max_results: s.config.max_count,
    })))
}

pub async fn service_provider_config(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    Ok(ScimJson::ok(service_provider_config_json(&provider_config(&s), &base_url(&s, &headers))))
}

async fn all_schemas(s: &AppState, base: &str) -> Result<Vec<Value>, ScimError> {
    let types = s.directory.advertised_types().await?;
    let mut out: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for rt in [&types.user, &types.group, &types.role_mapping] {
        for (schema, _) in rt.schemas() {
            if !seen.contains(&schema.id) {
                seen.push(schema.id);
                out.push(schema_json(schema, base));
            }
        }
    }
    Ok(out)
}

pub async fn schemas(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    let all = all_schemas(&s, &base_url(&s, &headers)).await?;
    Ok(ScimJson::ok(list_response(all.len() as u64, 1, all)))
}

pub async fn schema(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult {
    all_schemas(&s, &base_url(&s, &headers))
        .await?
        .into_iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some(id.as_str()))
        .map(ScimJson::ok)
        .ok_or_else(|| ScimError::not_found(format!("Schema {id} not found")).into())
}

fn all_types(s: &AppState, base: &str) -> Vec<Value> {
    let types = s.directory.types();
    vec![
        resource_type_json(&types.user, base),
        resource_type_json(&types.group, base),
        resource_type_json(&types.role_mapping, base),
    ]
}

pub async fn resource_types(State(s): State<AppState>, headers: HeaderMap) -> ApiResult {
    let all = all_types(&s, &base_url(&s, &headers));
    Ok(ScimJson::ok(list_response(all.len() as u64, 1, all)))
}

pub async fn resource_type(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult {
    all_types(&s, &base_url(&s, &headers))
        .into_iter()
        .find(|v| {
            v.get("id").and_then(Value::as_str) == Some(id.as_str())
                || v.get("name").and_then(Value::as_str) == Some(id.as_str())
        })
        .map(ScimJson::ok)
        .ok_or_else(|| ScimError::not_found(format!("ResourceType {id} not found")).into())
}
