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
    match spec.external_id.as_deref() {
        Some(e) if e.trim().is_empty() => return Err("spec.externalId must not be empty when set".into()),
        // The prefix of the operator's ownership markers: a spec may not imitate one.
        Some(e) if e.starts_with(crate::operator::ownership::MARKER_PREFIX) => {
            return Err(format!(
                "spec.externalId may not start with {}: that is the prefix of the operator's ownership markers",
                crate::operator::ownership::MARKER_PREFIX
            ));
        }
        _ => {}
    }
    super::crd::validate_targets(&spec.targets)?;
    if spec.emails.iter().filter(|e| e.primary).count() > 1 {
        return Err("at most one e-mail may be primary".into());
    }
    if let Some(r) = spec.roles.iter().find(|r| r.trim().is_empty()) {
        return Err(format!("role names must not be empty ({r:?})"));
    }
    Ok(())
}

/// The SCIM user the spec describes, with `owner` as its `externalId` and `roles` (the roles
/// the resource may ask for: none in an untrusted namespace) as its roles; attributes the
/// spec leaves unset are absent (not managed).
pub fn desired(spec: &ScimUserSpec, owner: &str, roles: &[String]) -> Value {
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
    if !roles.is_empty() {
        doc.insert("roles".into(), role_array(roles));
    }
    Value::Object(doc)
}

fn role_array(roles: &[String]) -> Value {
    Value::Array(roles.iter().map(|r| json!({"value": r})).collect())
}

/// The role values a SCIM user carries, as the server spells them.
pub fn roles_of(user: &Value) -> Vec<String> {
    user.get("roles")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|r| r.get("value").and_then(Value::as_str).map(str::to_string)).collect())
        .unwrap_or_default()
}

/// How a user's roles change so that they follow the spec.
#[derive(Debug, PartialEq, Eq)]
pub struct RolePlan {
    /// The user's new `roles` on the server, when they change (empty: remove them all).
    pub write: Option<Vec<String>>,
    /// The roles this resource holds as granted afterwards (`status.grantedRoles`).
    pub granted: Vec<String>,
}

/// Decides the user's roles from what the server holds (`server`), what this resource granted
/// before (`granted`) and what it asks for now (`asked`: empty when the spec names none or the
/// namespace may not assign roles). A role the resource granted and no longer asks for is
/// withdrawn; a role someone else granted stays, asked for or not, and is never recorded as
/// granted. Role names compare as the server matches them, without regard to case.
pub fn plan_roles(server: &[String], granted: &[String], asked: &[String]) -> RolePlan {
    let has = |list: &[String], r: &str| list.iter().any(|x| x.eq_ignore_ascii_case(r));
    let mut target: Vec<String> = server.iter().filter(|r| !has(granted, r)).cloned().collect();
    for r in asked {
        if !has(&target, r) {
            target.push(r.clone());
        }
    }
    let mut now_granted: Vec<String> = Vec::new();
    for r in asked.iter().filter(|r| has(granted, r) || !has(server, r)) {
        if !has(&now_granted, r) {
            now_granted.push(r.clone());
        }
    }
    let same = target.len() == server.len() && target.iter().all(|r| has(server, r));
    RolePlan { write: (!same).then_some(target), granted: now_granted }
}

/// `want` with its roles set as a [`RolePlan`] writes them: replaced when they change, else absent, so
/// that drift does not look at them.
pub fn with_roles(mut want: Value, write: Option<&[String]>) -> Value {
    if let Some(doc) = want.as_object_mut() {
        match write {
            Some(roles) => doc.insert("roles".into(), role_array(roles)),
            None => doc.remove("roles"),
        };
    }
    want
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
            // Replacing with an empty list is not understood alike by every service provider
            // (RFC 7644 3.5.2.3 leaves it open); removing the attribute is.
            ("roles", Some(Value::Array(a))) if a.is_empty() => ops.push(json!({"op": "remove", "path": "roles"})),
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
            targets: vec![],
        }
    }

    #[test]
    fn desired_document_marks_ownership_and_withholds_untrusted_roles() {
        let d = desired(&spec(), "k8s:c/ns/uid-1", &[]);
        assert_eq!(d["externalId"], "k8s:c/ns/uid-1");
        assert!(d.get("roles").is_none());
        assert_eq!(desired(&spec(), "k8s:c/ns/uid-1", &spec().roles)["roles"][0]["value"], "Admin");
    }

    #[test]
    fn a_spec_cannot_imitate_an_ownership_marker() {
        let forged = ScimUserSpec { external_id: Some("k8s:c/platform/uid-of-ada".into()), ..spec() };
        let msg = validate(&forged).unwrap_err();
        assert!(msg.contains("may not start with k8s:"), "{msg}");
        assert!(validate(&ScimUserSpec { external_id: Some(" ".into()), ..spec() }).is_err());
        // A SAML user id, for a target that requires one: never sent as the marker.
        let saml = ScimUserSpec { external_id: Some("00u-okta".into()), ..spec() };
        assert!(validate(&saml).is_ok());
        assert_eq!(desired(&saml, "k8s:c/ns/uid-1", &[])["externalId"], "k8s:c/ns/uid-1");
    }

    #[test]
    fn only_declared_attributes_are_patched() {
        let mut declared = spec();
        declared.name = Some(crate::operator::crd::PersonName { given_name: Some("Ada".into()), ..Default::default() });
        let want = desired(&declared, "k8s:c/ns/u", &[]);
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
        let want = desired(&enterprise, "k8s:c/ns/u", &[]);
        let ops = operations(&want, &drift(&server, &want));
        assert!(
            ops.contains(&json!({"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "R&D"})),
            "{ops:?}"
        );
    }

    #[test]
    fn drift_looks_only_at_managed_fields() {
        let d = desired(&spec(), "k8s:u", &spec().roles);
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

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_follow_the_spec_and_only_what_it_granted_is_withdrawn() {
        // (server holds, granted before, asked) -> (roles written, granted after)
        type Row<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], Option<&'a [&'a str]>, &'a [&'a str]);
        let table: &[(&str, Row)] = &[
            ("first grant", (&[], &[], &["Admin"], Some(&["Admin"]), &["Admin"])),
            ("steady", (&["Admin"], &["Admin"], &["Admin"], None, &["Admin"])),
            ("emptied list withdraws", (&["Admin"], &["Admin"], &[], Some(&[]), &[])),
            ("an administrator's role stays", (&["Admin", "Billing"], &["Admin"], &[], Some(&["Billing"]), &[])),
            ("no drift in someone else's role", (&["Admin", "Billing"], &["Admin"], &["Admin"], None, &["Admin"])),
            ("asked but granted by another: not ours", (&["Admin"], &[], &["Admin"], None, &[])),
            ("never granted, nothing asked: untouched", (&["Billing"], &[], &[], None, &[])),
            ("replaced by another role", (&["Admin"], &["Admin"], &["Standard"], Some(&["Standard"]), &["Standard"])),
            ("removed on the server: granted again", (&[], &["Admin"], &["Admin"], Some(&["Admin"]), &["Admin"])),
            ("case does not matter", (&["admin"], &["ADMIN"], &["Admin"], None, &["Admin"])),
            ("duplicates asked once", (&[], &[], &["Admin", "admin"], Some(&["Admin"]), &["Admin"])),
        ];
        for (name, (server, before, asked, write, after)) in table {
            let plan = plan_roles(&names(server), &names(before), &names(asked));
            assert_eq!(plan.write, write.map(names), "{name}: roles written");
            assert_eq!(plan.granted, names(after), "{name}: granted afterwards");
        }
    }

    #[test]
    fn withdrawing_every_role_removes_the_attribute() {
        let server = json!({"id": "1", "userName": "ada@example.com", "roles": [{"value": "Admin"}]});
        let plan = plan_roles(&roles_of(&server), &names(&["Admin"]), &[]);
        let want = with_roles(desired(&spec(), "k8s:u", &[]), plan.write.as_deref());
        let drifted = drift(&server, &want);
        assert!(drifted.contains(&"roles"), "{drifted:?}");
        let ops = operations(&want, &drifted);
        assert!(ops.contains(&json!({"op": "remove", "path": "roles"})), "{ops:?}");
        let steady = with_roles(
            desired(&spec(), "k8s:u", &spec().roles),
            plan_roles(&names(&["Admin"]), &names(&["Admin"]), &spec().roles).write.as_deref(),
        );
        assert!(steady.get("roles").is_none(), "unchanged roles are not compared: {steady}");
    }
}
