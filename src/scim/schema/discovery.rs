//! Discovery documents: `/Schemas` (RFC 7643 §7), `/ResourceTypes` (§6) and
//! `/ServiceProviderConfig` (§5).
//!
//! Conformance tools read these strictly, so every attribute carries all of its characteristics
//! rather than relying on the RFC's defaults.

use serde_json::{Map, Value, json};

use super::{
    AttrType, AttributeDef, RESOURCE_TYPE_SCHEMA, ResourceType, SCHEMA_SCHEMA, SERVICE_PROVIDER_CONFIG_SCHEMA,
    SchemaDef,
};

/// The base URL without a trailing slash, so `{base}/Schemas/...` never doubles it.
fn trim_base(base_url: &str) -> &str {
    base_url.trim_end_matches('/')
}

/// The §7 representation of one attribute, sub-attributes included.
pub fn attribute_json(attr: &AttributeDef) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(attr.name));
    out.insert("type".into(), json!(attr.attr_type.as_str()));
    out.insert("multiValued".into(), json!(attr.multi_valued));
    out.insert("description".into(), json!(attr.description));
    out.insert("required".into(), json!(attr.required));
    out.insert("caseExact".into(), json!(attr.case_exact));
    if !attr.canonical_values.is_empty() {
        out.insert("canonicalValues".into(), json!(attr.canonical_values));
    }
    if attr.attr_type == AttrType::Reference {
        out.insert("referenceTypes".into(), json!(attr.reference_types));
    }
    out.insert("mutability".into(), json!(attr.mutability.as_str()));
    out.insert("returned".into(), json!(attr.returned.as_str()));
    out.insert("uniqueness".into(), json!(attr.uniqueness.as_str()));
    if attr.attr_type == AttrType::Complex {
        let subs: Vec<Value> = attr.sub_attributes.iter().map(attribute_json).collect();
        out.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(out)
}

/// The §7 representation of a schema, as served at `{base_url}/Schemas/{id}`.
///
/// Common attributes are not part of any schema (RFC 7643 §3.1) and so are not listed.
pub fn schema_json(schema: &SchemaDef, base_url: &str) -> Value {
    let attributes: Vec<Value> = schema.attributes.iter().map(attribute_json).collect();
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": schema.id,
        "name": schema.name,
        "description": schema.description,
        "attributes": attributes,
        "meta": {
            "resourceType": "Schema",
            "location": format!("{}/Schemas/{}", trim_base(base_url), schema.id),
        },
    })
}

/// The §6 representation of a resource type, as served at `{base_url}/ResourceTypes/{name}`.
pub fn resource_type_json(rt: &ResourceType, base_url: &str) -> Value {
    let mut out = json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.schema.id,
    });
    // Optional in §6; omitted when empty, as in the RFC's own Group example.
    if !rt.extensions.is_empty() {
        let extensions: Vec<Value> = rt
            .extensions
            .iter()
            .map(|(schema, required)| json!({ "schema": schema.id, "required": required }))
            .collect();
        out["schemaExtensions"] = Value::Array(extensions);
    }
    out["meta"] = json!({
        "resourceType": "ResourceType",
        "location": format!("{}/ResourceTypes/{}", trim_base(base_url), rt.name),
    });
    out
}

/// One entry of `authenticationSchemes` (RFC 7643 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticationScheme {
    /// Scheme keyword, e.g. `oauthbearertoken`.
    pub scheme_type: String,
    /// Common name.
    pub name: String,
    /// Human-readable description.
    pub description: String,
    /// The specification of the scheme.
    pub spec_uri: Option<String>,
    /// Where this service documents its use of the scheme.
    pub documentation_uri: Option<String>,
    /// Whether this is the preferred scheme.
    pub primary: bool,
}

impl AuthenticationScheme {
    /// Bearer tokens (RFC 6750), the scheme Okta and Entra ID use for SCIM.
    pub fn oauth_bearer_token() -> Self {
        Self {
            scheme_type: "oauthbearertoken".into(),
            name: "OAuth Bearer Token".into(),
            description: "Authentication scheme using the OAuth Bearer Token Standard".into(),
            spec_uri: Some("https://www.rfc-editor.org/info/rfc6750".into()),
            documentation_uri: None,
            primary: true,
        }
    }
}

/// What this service provider supports (RFC 7643 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProviderConfig {
    /// Human-readable help for the service.
    pub documentation_uri: Option<String>,
    /// PATCH support.
    pub patch: bool,
    /// Bulk support.
    pub bulk: bool,
    /// Bulk: maximum operations per request (0 when unsupported).
    pub bulk_max_operations: u64,
    /// Bulk: maximum payload size in bytes (0 when unsupported).
    pub bulk_max_payload_size: u64,
    /// Filter support.
    pub filter: bool,
    /// Maximum resources returned in one response (the `count` clamp).
    pub max_results: u64,
    /// Password change support.
    pub change_password: bool,
    /// Sorting support.
    pub sort: bool,
    /// ETag support.
    pub etag: bool,
    /// Accepted authentication schemes.
    pub authentication_schemes: Vec<AuthenticationScheme>,
}

/// The request limits a client may need to know before it sends a request (each refused with a
/// 400 naming it, or 413 for the body size). RFC 7643 has a place for `filter.maxResults` only,
/// and strict clients refuse extensions of the ServiceProviderConfig, so these are served
/// beside SCIM (`/api/v1/limits`), as [`limits_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedLimits {
    /// Largest request body, in bytes.
    pub max_payload_size: u64,
    /// Most operations in one PATCH request.
    pub max_patch_operations: u64,
    /// Most values of one multi-valued attribute in one request.
    pub max_values_per_attribute: u64,
    /// Longest filter, in bytes.
    pub max_filter_length: u64,
    /// Deepest filter expression tree (parentheses, `not`, value filters and `and`/`or`).
    pub max_filter_depth: u64,
    /// Largest page (also `filter.maxResults` of the ServiceProviderConfig).
    pub max_results: u64,
}

impl Default for ServiceProviderConfig {
    /// What this server implements: PATCH, filtering, sorting and ETags; no bulk, no password
    /// change; bearer tokens.
    fn default() -> Self {
        Self {
            documentation_uri: None,
            patch: true,
            bulk: false,
            bulk_max_operations: 0,
            bulk_max_payload_size: 0,
            filter: true,
            max_results: 1000,
            change_password: false,
            sort: true,
            etag: true,
            authentication_schemes: vec![AuthenticationScheme::oauth_bearer_token()],
        }
    }
}

/// The limits as JSON.
pub fn limits_json(l: &AdvertisedLimits) -> Value {
    json!({
        "maxPayloadSize": l.max_payload_size,
        "maxPatchOperations": l.max_patch_operations,
        "maxValuesPerAttribute": l.max_values_per_attribute,
        "maxFilterLength": l.max_filter_length,
        "maxFilterDepth": l.max_filter_depth,
        "maxResults": l.max_results,
    })
}

/// The §5 document served at `{base_url}/ServiceProviderConfig`.
pub fn service_provider_config_json(config: &ServiceProviderConfig, base_url: &str) -> Value {
    let schemes: Vec<Value> = config
        .authentication_schemes
        .iter()
        .map(|s| {
            let mut v = json!({
                "type": s.scheme_type,
                "name": s.name,
                "description": s.description,
            });
            if let Some(uri) = &s.spec_uri {
                v["specUri"] = json!(uri);
            }
            if let Some(uri) = &s.documentation_uri {
                v["documentationUri"] = json!(uri);
            }
            v["primary"] = json!(s.primary);
            v
        })
        .collect();
    let mut out = json!({ "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA] });
    if let Some(uri) = &config.documentation_uri {
        out["documentationUri"] = json!(uri);
    }
    out["patch"] = json!({ "supported": config.patch });
    out["bulk"] = json!({
        "supported": config.bulk,
        "maxOperations": config.bulk_max_operations,
        "maxPayloadSize": config.bulk_max_payload_size,
    });
    out["filter"] = json!({ "supported": config.filter, "maxResults": config.max_results });
    out["changePassword"] = json!({ "supported": config.change_password });
    out["sort"] = json!({ "supported": config.sort });
    out["etag"] = json!({ "supported": config.etag });
    out["authenticationSchemes"] = Value::Array(schemes);
    out["meta"] = json!({
        "resourceType": "ServiceProviderConfig",
        "location": format!("{}/ServiceProviderConfig", trim_base(base_url)),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{
        ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA, group_resource_type, user_resource_type,
    };

    const BASE: &str = "https://scim.example.com/scim/v2/";

    fn find<'a>(attrs: &'a Value, name: &str) -> &'a Value {
        attrs.as_array().unwrap().iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("{name} listed"))
    }

    /// Every attribute, at every depth, carries every §7 characteristic.
    fn assert_complete(attr: &Value) {
        for key in [
            "name",
            "type",
            "multiValued",
            "description",
            "required",
            "caseExact",
            "mutability",
            "returned",
            "uniqueness",
        ] {
            assert!(attr.get(key).is_some(), "{} lacks {key}", attr["name"]);
        }
        let complex = attr["type"] == "complex";
        assert_eq!(attr.get("subAttributes").is_some(), complex, "{}", attr["name"]);
        assert_eq!(attr.get("referenceTypes").is_some(), attr["type"] == "reference", "{}", attr["name"]);
        if let Some(values) = attr.get("canonicalValues") {
            assert!(!values.as_array().unwrap().is_empty());
        }
        if complex {
            attr["subAttributes"].as_array().unwrap().iter().for_each(assert_complete);
        }
    }

    #[test]
    fn user_schema_json_is_complete_and_exact() {
        let rt = user_resource_type();
        let v = schema_json(&rt.schema, BASE);
        assert_eq!(v["schemas"], json!([SCHEMA_SCHEMA]));
        assert_eq!((v["id"].as_str(), v["name"].as_str()), (Some(USER_SCHEMA), Some("User")));
        assert_eq!(v["meta"]["resourceType"], "Schema");
        assert_eq!(v["meta"]["location"], format!("https://scim.example.com/scim/v2/Schemas/{USER_SCHEMA}"));
        v["attributes"].as_array().unwrap().iter().for_each(assert_complete);
        let user_name = find(&v["attributes"], "userName");
        assert_eq!(
            *user_name,
            json!({
                "name": "userName", "type": "string", "multiValued": false,
                "description": user_name["description"], "required": true, "caseExact": false,
                "mutability": "readWrite", "returned": "default", "uniqueness": "server",
            })
        );
        let password = find(&v["attributes"], "password");
        assert_eq!((&password["mutability"], &password["returned"]), (&json!("writeOnly"), &json!("never")));
        let emails = find(&v["attributes"], "emails");
        assert_eq!(emails["multiValued"], true);
        assert_eq!(find(&emails["subAttributes"], "type")["canonicalValues"], json!(["work", "home", "other"]));
        let groups = find(&v["attributes"], "groups");
        assert_eq!(find(&groups["subAttributes"], "$ref")["referenceTypes"], json!(["User", "Group"]));
        // roles.value has no canonical values until the server sets its catalogue.
        assert!(find(&find(&v["attributes"], "roles")["subAttributes"], "value").get("canonicalValues").is_none());
    }

    #[test]
    fn common_attributes_are_not_listed() {
        for rt in [user_resource_type(), group_resource_type()] {
            for (schema, _) in rt.schemas() {
                let v = schema_json(schema, BASE);
                for common in ["id", "externalId", "meta"] {
                    assert!(
                        !v["attributes"].as_array().unwrap().iter().any(|a| a["name"] == common),
                        "{common} in {}",
                        schema.id
                    );
                }
            }
        }
    }

    #[test]
    fn run_time_canonical_values_are_rendered() {
        let mut rt = user_resource_type();
        assert!(rt.set_canonical_values("roles.value", vec!["admin".into(), "auditor".into()]));
        let v = schema_json(&rt.schema, BASE);
        let value = find(&find(&v["attributes"], "roles")["subAttributes"], "value").clone();
        assert_eq!(value["canonicalValues"], json!(["admin", "auditor"]));
    }

    #[test]
    fn enterprise_and_group_schemas_render() {
        let rt = user_resource_type();
        let v = schema_json(&rt.extensions[0].0, "https://h");
        assert_eq!(v["id"], ENTERPRISE_USER_SCHEMA);
        assert_eq!(v["meta"]["location"], format!("https://h/Schemas/{ENTERPRISE_USER_SCHEMA}"));
        v["attributes"].as_array().unwrap().iter().for_each(assert_complete);
        let manager = find(&v["attributes"], "manager");
        assert_eq!(find(&manager["subAttributes"], "displayName")["mutability"], "readOnly");
        let g = schema_json(&group_schema_for_test(), "https://h");
        g["attributes"].as_array().unwrap().iter().for_each(assert_complete);
        assert_eq!(find(&g["attributes"], "displayName")["required"], true);
        let members = find(&g["attributes"], "members");
        assert_eq!(find(&members["subAttributes"], "value")["mutability"], "immutable");
        assert_eq!(find(&members["subAttributes"], "type")["canonicalValues"], json!(["User", "Group"]));
    }

    fn group_schema_for_test() -> SchemaDef {
        group_resource_type().schema
    }

    #[test]
    fn resource_types_render_with_extensions() {
        let v = resource_type_json(&user_resource_type(), BASE);
        assert_eq!(v["schemas"], json!([RESOURCE_TYPE_SCHEMA]));
        assert_eq!((&v["id"], &v["name"], &v["endpoint"]), (&json!("User"), &json!("User"), &json!("/Users")));
        assert_eq!(v["schema"], USER_SCHEMA);
        assert_eq!(v["schemaExtensions"], json!([{ "schema": ENTERPRISE_USER_SCHEMA, "required": false }]));
        assert_eq!(
            v["meta"],
            json!({ "resourceType": "ResourceType", "location": "https://scim.example.com/scim/v2/ResourceTypes/User" })
        );
        let g = resource_type_json(&group_resource_type(), BASE);
        assert_eq!((&g["endpoint"], &g["schema"]), (&json!("/Groups"), &json!(GROUP_SCHEMA)));
        assert!(g.get("schemaExtensions").is_none());
    }

    #[test]
    fn service_provider_config_renders_section_5() {
        let config = ServiceProviderConfig {
            max_results: 200,
            documentation_uri: Some("https://docs".into()),
            ..Default::default()
        };
        let v = service_provider_config_json(&config, BASE);
        assert_eq!(v["schemas"], json!([SERVICE_PROVIDER_CONFIG_SCHEMA]));
        assert_eq!(v["documentationUri"], "https://docs");
        assert_eq!(v["patch"], json!({ "supported": true }));
        assert_eq!(v["bulk"], json!({ "supported": false, "maxOperations": 0, "maxPayloadSize": 0 }));
        assert_eq!(v["filter"], json!({ "supported": true, "maxResults": 200 }));
        assert_eq!(v["changePassword"], json!({ "supported": false }));
        assert_eq!(v["sort"], json!({ "supported": true }));
        assert_eq!(v["etag"], json!({ "supported": true }));
        let schemes = v["authenticationSchemes"].as_array().unwrap();
        assert_eq!(schemes.len(), 1);
        assert_eq!(schemes[0]["type"], "oauthbearertoken");
        assert_eq!(schemes[0]["primary"], true);
        assert!(schemes[0]["name"].is_string() && schemes[0]["description"].is_string());
        assert_eq!(v["meta"]["location"], "https://scim.example.com/scim/v2/ServiceProviderConfig");
        assert_eq!(v["meta"]["resourceType"], "ServiceProviderConfig");
        assert!(
            service_provider_config_json(&ServiceProviderConfig::default(), BASE).get("documentationUri").is_none()
        );
    }
}
