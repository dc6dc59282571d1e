//! Role provisioning: which catalog roles a SCIM request asks for.
//!
//! Only roles that match the catalog (by id, or by name without regard to case) are granted;
//! everything else is reported as unmatched for the audit trail. Microsoft Entra ID sends each
//! role as a JSON document encoded in the `value` string; that form is unwrapped first.

use serde_json::Value;

/// A role of the catalog (the record lives with the store's other records).
pub use crate::store::Role;

/// Stable id of the built-in `Admin` role.
pub const ADMIN_ROLE_ID: &str = "7a1d0000-0000-4000-8000-000000000001";
/// Stable id of the built-in `Standard` role (the default unless configured otherwise).
pub const STANDARD_ROLE_ID: &str = "7a1d0000-0000-4000-8000-000000000002";
/// Stable id of the built-in `Read Only` role.
pub const READ_ONLY_ROLE_ID: &str = "7a1d0000-0000-4000-8000-000000000003";

/// The built-in roles: (id, name, description).
pub const BUILTIN_ROLES: [(&str, &str, &str); 3] = [
    (ADMIN_ROLE_ID, "Admin", "Full access, including user and role management"),
    (STANDARD_ROLE_ID, "Standard", "Read and write access to the product, no administration"),
    (READ_ONLY_ROLE_ID, "Read Only", "Read access only"),
];

/// The name of the default role when none is configured.
pub const DEFAULT_ROLE_NAME: &str = "Standard";

/// The outcome of matching requested roles against the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMatch {
    /// Catalog roles requested, without duplicates, in request order.
    pub matched: Vec<Role>,
    /// The request's values for the matched roles, with `value` set to the role's name (so an
    /// Entra JSON-encoded value or a role id reads back as the name).
    pub assigned: Vec<Value>,
    /// Requested role values that match nothing, as sent.
    pub unmatched: Vec<String>,
}

/// The candidate names of one requested role value: the value itself, or the fields of an
/// Entra JSON-encoded role (`{"id": ..., "value": ..., "displayName": ...}`), plus `display`.
fn candidates(entry: &Value) -> (String, Vec<String>) {
    let mut names = Vec::new();
    let raw = match entry {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let v = o.get("value").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            if let Some(d) = o.get("display").and_then(Value::as_str) {
                names.push(d.to_string());
            }
            v.unwrap_or_default()
        }
        other => other.to_string(),
    };
    let trimmed = raw.trim();
    if trimmed.starts_with('{') {
        if let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(trimmed) {
            for key in ["value", "id", "displayName", "display", "name"] {
                if let Some(s) = inner.get(key).and_then(Value::as_str) {
                    names.insert(0, s.to_string());
                }
            }
        }
    } else if !trimmed.is_empty() {
        names.insert(0, trimmed.to_string());
    }
    (raw, names)
}

/// Matches the `roles` values of a request against `catalog`.
pub fn match_roles(requested: &[Value], catalog: &[Role]) -> RoleMatch {
    let mut out = RoleMatch::default();
    for entry in requested {
        let (raw, names) = candidates(entry);
        let found = names.iter().find_map(|n| {
            catalog.iter().find(|r| r.id == *n).or_else(|| catalog.iter().find(|r| r.name.eq_ignore_ascii_case(n)))
        });
        match found {
            Some(role) => {
                if !out.matched.iter().any(|m| m.id == role.id) {
                    out.matched.push(role.clone());
                    let mut assigned = match entry {
                        Value::Object(o) => o.clone(),
                        _ => serde_json::Map::new(),
                    };
                    assigned.insert("value".into(), Value::String(role.name.clone()));
                    out.assigned.push(Value::Object(assigned));
                }
            }
            None => {
                if !raw.is_empty() && !out.unmatched.contains(&raw) {
                    out.unmatched.push(raw);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Vec<Role> {
        let mut c: Vec<Role> = BUILTIN_ROLES
            .iter()
            .map(|(id, name, d)| Role {
                id: id.to_string(),
                name: name.to_string(),
                builtin: true,
                description: d.to_string(),
            })
            .collect();
        c.push(Role { id: "custom-1".into(), name: "Billing".into(), builtin: false, description: String::new() });
        c
    }

    #[test]
    fn matches_by_name_ignoring_case_and_by_id() {
        let m = match_roles(
            &[json!({"value": "admin"}), json!({"value": READ_ONLY_ROLE_ID}), json!({"value": "Admin"})],
            &catalog(),
        );
        let names: Vec<&str> = m.matched.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["Admin", "Read Only"]);
        assert!(m.unmatched.is_empty());
    }

    #[test]
    fn unmatched_roles_are_reported_as_sent() {
        let m = match_roles(&[json!({"value": "Wizard"}), json!({"value": "billing"})], &catalog());
        assert_eq!(m.matched.len(), 1);
        assert_eq!(m.matched[0].name, "Billing");
        assert_eq!(m.unmatched, ["Wizard"]);
    }

    #[test]
    fn entra_json_encoded_roles_are_unwrapped() {
        let entra = json!({"value": "{\"id\":\"8a5b-xyz\",\"value\":\"Admin\",\"displayName\":\"Admin\"}"});
        let m = match_roles(&[entra], &catalog());
        assert_eq!(m.matched.len(), 1, "{m:?}");
        assert_eq!(m.matched[0].id, ADMIN_ROLE_ID);
        let unknown = json!({"value": "{\"id\":\"1\",\"value\":\"Nope\",\"displayName\":\"Nope\"}"});
        let m = match_roles(&[unknown], &catalog());
        assert!(m.matched.is_empty());
        assert_eq!(m.unmatched.len(), 1);
    }

    #[test]
    fn assigned_values_keep_the_request_but_name_the_role() {
        let m = match_roles(
            &[json!({"value": "admin", "display": "Boss", "primary": true}), json!({"value": READ_ONLY_ROLE_ID})],
            &catalog(),
        );
        assert_eq!(m.assigned[0], json!({"value": "Admin", "display": "Boss", "primary": true}));
        assert_eq!(m.assigned[1], json!({"value": "Read Only"}));
    }
}
