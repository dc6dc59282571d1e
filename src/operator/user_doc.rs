//! Pure steps of the ScimUser pipeline: validate the spec and build the SCIM document, and
//! tell whether the server's copy drifted on the fields the resource manages.

use serde_json::{Map, Value, json};

use super::crd::ScimUserSpec;
use crate::client::USER_SCHEMA;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// What ownership marker the SCIM user carries in `externalId`.
pub fn owner_marker(spec: &ScimUserSpec, uid: &str) -> String {
    spec.external_id.clone().unwrap_or_else(|| format!("k8s:{uid}"))
}

/// Whether an `externalId` marks a user as owned by some Kubernetes resource.
pub fn owned_by_a_resource(external_id: Option<&str>) -> bool {
    external_id.is_some_and(|e| e.starts_with("k8s:"))
}

/// Checks what the schema cannot: returns a message for an invalid spec.
pub fn validate(spec: &ScimUserSpec) -> Result<(), String> {
    if spec.user_name.trim().is_empty() {
        return Err("userName must not be empty".into());
    }
    if spec.emails.iter().filter(|e| e.primary).count() > 1 {
        return Err("at most one e-mail may be primary".into());
    }
    if let Some(r) = spec.roles.iter().find(|r| r.trim().is_empty()) {
        return Err(format!("role names must not be empty ({r:?})"));
    }
    Ok(())
}

/// The SCIM user the spec describes. Roles are included only when `send_roles`.
pub fn desired(spec: &ScimUserSpec, owner: &str, send_roles: bool) -> Value {
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([USER_SCHEMA]));
    doc.insert("userName".into(), json!(spec.user_name));
    doc.insert("externalId".into(), json!(owner));
    doc.insert("active".into(), json!(spec.active));
    if let Some(d) = &spec.display_name {
        doc.insert("displayName".into(), json!(d));
    }
    if let Some(t) = &spec.title {
        doc.insert("title".into(), json!(t));
    }
    if let Some(n) = &spec.name {
        let name = serde_json::to_value(n).unwrap_or(Value::Null);
        if name.as_object().is_some_and(|o| !o.is_empty()) {
            doc.insert("name".into(), name);
        }
    }
    if !spec.emails.is_empty() {
        let emails: Vec<Value> = spec
            .emails
            .iter()
            .map(|e| {
                let mut m = json!({"value": e.value, "primary": e.primary});
                if let Some(k) = &e.kind {
                    m["type"] = json!(k);
                }
                m
            })
            .collect();
        doc.insert("emails".into(), Value::Array(emails));
    }
    if let Some(ent) = &spec.enterprise {
        let v = serde_json::to_value(ent).unwrap_or(Value::Null);
        if v.as_object().is_some_and(|o| !o.is_empty()) {
            doc.insert(ENTERPRISE.into(), v);
            doc.insert("schemas".into(), json!([USER_SCHEMA, ENTERPRISE]));
        }
    }
    if send_roles && !spec.roles.is_empty() {
        doc.insert("roles".into(), Value::Array(spec.roles.iter().map(|r| json!({"value": r})).collect()));
    }
    Value::Object(doc)
}

fn norm_emails(v: Option<&Value>) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e.get("value").and_then(Value::as_str).unwrap_or("").to_lowercase(),
                        e.get("type").and_then(Value::as_str).unwrap_or("").to_string(),
                        e.get("primary").and_then(Value::as_bool).unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn role_values(v: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = v
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.get("value").and_then(Value::as_str).map(str::to_lowercase)).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// The managed fields where the server's user differs from the desired one (empty: no drift).
pub fn drift(current: &Value, desired: &Value) -> Vec<&'static str> {
    let mut out = Vec::new();
    let s = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let user_name = |v: &Value| v.get("userName").and_then(Value::as_str).unwrap_or("").to_lowercase();
    if user_name(current) != user_name(desired) {
        out.push("userName");
    }
    for k in ["displayName", "title", "externalId", "active", "name"] {
        if s(current, k) != s(desired, k) {
            out.push(match k {
                "displayName" => "displayName",
                "title" => "title",
                "externalId" => "externalId",
                "active" => "active",
                _ => "name",
            });
        }
    }
    if norm_emails(current.get("emails")) != norm_emails(desired.get("emails")) {
        out.push("emails");
    }
    if s(current, ENTERPRISE) != s(desired, ENTERPRISE) {
        out.push("enterprise");
    }
    if desired.get("roles").is_some() && role_values(current.get("roles")) != role_values(desired.get("roles")) {
        out.push("roles");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{Email, UserDeletionPolicy};

    fn spec() -> ScimUserSpec {
        ScimUserSpec {
            user_name: "Ada@example.com".into(),
            display_name: Some("Ada".into()),
            name: None,
            emails: vec![Email { value: "ada@example.com".into(), kind: Some("work".into()), primary: true }],
            title: None,
            active: true,
            external_id: None,
            enterprise: None,
            roles: vec!["Admin".into()],
            deletion_policy: UserDeletionPolicy::Deactivate,
            adopt: false,
        }
    }

    #[test]
    fn desired_document_marks_ownership_and_withholds_untrusted_roles() {
        let d = desired(&spec(), "k8s:uid-1", false);
        assert_eq!(d["externalId"], "k8s:uid-1");
        assert!(d.get("roles").is_none());
        assert_eq!(desired(&spec(), "k8s:uid-1", true)["roles"][0]["value"], "Admin");
        assert!(owned_by_a_resource(Some("k8s:x")));
        assert!(!owned_by_a_resource(Some("00u123")));
        assert_eq!(owner_marker(&ScimUserSpec { external_id: Some("okta-1".into()), ..spec() }, "u"), "okta-1");
    }

    #[test]
    fn drift_looks_only_at_managed_fields() {
        let d = desired(&spec(), "k8s:u", true);
        let mut server = d.clone();
        server["id"] = json!("abc");
        server["meta"] = json!({"version": "W/\"3\""});
        server["userName"] = json!("ada@EXAMPLE.com");
        server["nickName"] = json!("someone else's field");
        assert!(drift(&server, &d).is_empty(), "{:?}", drift(&server, &d));
        server["displayName"] = json!("Changed");
        server["active"] = json!(false);
        assert_eq!(drift(&server, &d), ["displayName", "active"]);
        let mut roles = d.clone();
        roles["roles"] = json!([{"value": "Standard"}]);
        assert_eq!(drift(&roles, &d), ["roles"]);
    }

    #[test]
    fn validation_catches_what_the_schema_cannot() {
        assert!(validate(&spec()).is_ok());
        assert!(validate(&ScimUserSpec { user_name: " ".into(), ..spec() }).is_err());
        let two = vec![
            Email { value: "a@x".into(), kind: None, primary: true },
            Email { value: "b@x".into(), kind: None, primary: true },
        ];
        assert!(validate(&ScimUserSpec { emails: two, ..spec() }).is_err());
    }
}
