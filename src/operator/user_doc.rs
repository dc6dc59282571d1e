//! Pure steps of the ScimUser pipeline: validate the spec, build the SCIM document, tell where
//! the server's copy differs on the attributes the resource declares, and the PATCH operations
//! that change exactly those (every other attribute stays as the server holds it).

use serde_json::{Map, Value, json};

use super::crd::ScimUserSpec;
use crate::client::USER_SCHEMA;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Checks what the schema cannot: returns a message for an invalid spec.
pub fn validate(spec: &ScimUserSpec) -> Result<(), String> {
    if spec.user_name.trim().is_empty() {
        return Err("userName must not be empty".into());
    }
    if spec.external_id.is_some() {
        return Err("spec.externalId is not supported: the operator writes its own ownership marker into the SCIM \
                    externalId, and no spec may set or imitate it; remove the field"
            .into());
    }
    if spec.emails.iter().filter(|e| e.primary).count() > 1 {
        return Err("at most one e-mail may be primary".into());
    }
    if let Some(r) = spec.roles.iter().find(|r| r.trim().is_empty()) {
        return Err(format!("role names must not be empty ({r:?})"));
    }
    Ok(())
}

/// The SCIM user the spec describes, with `owner` as its `externalId`. Roles are included
/// only when `send_roles`; attributes the spec leaves unset are absent (not managed).
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

/// Whether the declared sub-attributes of a complex attribute (`name`, the Enterprise block)
/// hold the same values on the server.
fn same_declared(current: Option<&Value>, desired: &Value) -> bool {
    desired.as_object().is_none_or(|want| {
        want.iter().all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v) || (v.is_null() && current.is_none()))
    })
}

/// The declared attributes where the server's user differs from the desired one (empty: no
/// drift). Attributes the desired document does not carry are not looked at.
pub fn drift(current: &Value, desired: &Value) -> Vec<&'static str> {
    let mut out = Vec::new();
    let user_name = |v: &Value| v.get("userName").and_then(Value::as_str).unwrap_or("").to_lowercase();
    if user_name(current) != user_name(desired) {
        out.push("userName");
    }
    for k in ["displayName", "title", "externalId", "active"] {
        if let Some(want) = desired.get(k)
            && current.get(k) != Some(want)
        {
            out.push(k);
        }
    }
    if let Some(want) = desired.get("name")
        && !same_declared(current.get("name"), want)
    {
        out.push("name");
    }
    if desired.get("emails").is_some() && norm_emails(current.get("emails")) != norm_emails(desired.get("emails")) {
        out.push("emails");
    }
    if let Some(want) = desired.get(ENTERPRISE)
        && !same_declared(current.get(ENTERPRISE), want)
    {
        out.push(ENTERPRISE);
    }
    if desired.get("roles").is_some() && role_values(current.get("roles")) != role_values(desired.get("roles")) {
        out.push("roles");
    }
    out
}

/// PATCH operations that set exactly the drifted attributes to their desired values: complex
/// attributes by their declared sub-attributes, so that the server keeps the others.
pub fn operations(desired: &Value, drifted: &[&str]) -> Vec<Value> {
    let mut ops = Vec::new();
    for &k in drifted {
        match (k, desired.get(k)) {
            ("name" | ENTERPRISE, Some(Value::Object(fields))) => {
                // `name.givenName`; an extension's attributes are `urn:...:User:department`.
                let separator = if k == ENTERPRISE { ':' } else { '.' };
                for (sub, v) in fields {
                    ops.push(json!({"op": "replace", "path": format!("{k}{separator}{sub}"), "value": v}));
                }
            }
            (_, Some(v)) => ops.push(json!({"op": "replace", "path": k, "value": v})),
            (_, None) => {}
        }
    }
    ops
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
        let d = desired(&spec(), "k8s:c/ns/uid-1", false);
        assert_eq!(d["externalId"], "k8s:c/ns/uid-1");
        assert!(d.get("roles").is_none());
        assert_eq!(desired(&spec(), "k8s:c/ns/uid-1", true)["roles"][0]["value"], "Admin");
    }

    #[test]
    fn a_spec_cannot_set_the_external_id() {
        let forged = ScimUserSpec { external_id: Some("k8s:c/platform/uid-of-ada".into()), ..spec() };
        let msg = validate(&forged).unwrap_err();
        assert!(msg.contains("spec.externalId is not supported"), "{msg}");
        assert!(validate(&ScimUserSpec { external_id: Some("00u-okta".into()), ..spec() }).is_err());
    }

    #[test]
    fn only_declared_attributes_are_patched() {
        let mut declared = spec();
        declared.name = Some(crate::operator::crd::PersonName { given_name: Some("Ada".into()), ..Default::default() });
        let want = desired(&declared, "k8s:c/ns/u", false);
        // What an identity provider created: more than the spec declares.
        let server = json!({
            "id": "1", "userName": "ada@example.com", "externalId": "00u-okta", "active": true,
            "displayName": "Ada", "name": {"givenName": "Augusta", "familyName": "King"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+1 555 0100"}], "addresses": [{"locality": "London"}],
            "roles": [{"value": "Billing"}]
        });
        let drifted = drift(&server, &want);
        assert_eq!(drifted, ["externalId", "name"]);
        let ops = operations(&want, &drifted);
        assert_eq!(
            ops,
            [
                json!({"op": "replace", "path": "externalId", "value": "k8s:c/ns/u"}),
                json!({"op": "replace", "path": "name.givenName", "value": "Ada"}),
            ]
        );
        let paths: Vec<&str> = ops.iter().filter_map(|o| o["path"].as_str()).collect();
        assert!(!paths.iter().any(|p| ["phoneNumbers", "addresses", "roles", "name.familyName"].contains(p)));
        let mut enterprise = spec();
        enterprise.enterprise =
            Some(crate::operator::crd::EnterpriseFields { department: Some("R&D".into()), ..Default::default() });
        let want = desired(&enterprise, "k8s:c/ns/u", false);
        let ops = operations(&want, &drift(&server, &want));
        assert!(
            ops.contains(&json!({"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "R&D"})),
            "{ops:?}"
        );
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
        server["title"] = json!("not declared, not managed");
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
