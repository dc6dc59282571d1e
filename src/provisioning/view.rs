//! SCIM representations of stored rows (RFC 7643 §3.1 common attributes and `meta`).

use serde_json::{Map, Value, json};

use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use crate::store::{TeamRecord, UserRecord};

/// The weak ETag of a resource version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` / `If-None-Match` header value names `version` (or is `*`).
pub fn etag_matches(header: &str, version: i64) -> bool {
    let current = etag(version);
    header.split(',').map(str::trim).any(|t| t == "*" || t == current || t.trim_start_matches("W/") == &current[2..])
}

/// A user resource. `groups` are (group id, display name) of the managed teams it belongs to.
pub fn user_json(rec: &UserRecord, groups: &[(String, String)], base_url: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut schemas = vec![Value::String(USER_SCHEMA.into())];
    if rec.data.contains_key(ENTERPRISE_USER_SCHEMA) {
        schemas.push(Value::String(ENTERPRISE_USER_SCHEMA.into()));
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(rec.id.clone()));
    for (k, v) in &rec.data {
        if k != "schemas" && k != "id" && k != "meta" && k != "groups" {
            out.insert(k.clone(), v.clone());
        }
    }
    if !groups.is_empty() {
        let gs = groups
            .iter()
            .map(|(id, name)| json!({"value": id, "$ref": format!("{base_url}/Groups/{id}"), "display": name, "type": "direct"}))
            .collect();
        out.insert("groups".into(), Value::Array(gs));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rec.created,
            "lastModified": rec.last_modified,
            "location": format!("{base_url}/Users/{}", rec.id),
            "version": etag(rec.version),
        }),
    );
    out
}

/// A group resource; `members` is `None` when the caller excluded them (they were not read).
pub fn group_json(rec: &TeamRecord, scim_id: &str, members: Option<&[String]>, base_url: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("schemas".into(), json!([GROUP_SCHEMA]));
    out.insert("id".into(), Value::String(scim_id.to_string()));
    for (k, v) in &rec.data {
        if k != "schemas" && k != "id" && k != "meta" && k != "members" {
            out.insert(k.clone(), v.clone());
        }
    }
    out.insert("displayName".into(), Value::String(rec.name.clone()));
    // No members: the attribute is unassigned and left out (RFC 7643 §2.5), not `[]`.
    if let Some(members) = members.filter(|m| !m.is_empty()) {
        let ms = members
            .iter()
            .map(|id| json!({"value": id, "$ref": format!("{base_url}/Users/{id}"), "type": "User"}))
            .collect();
        out.insert("members".into(), Value::Array(ms));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "Group",
            "created": rec.created,
            "lastModified": rec.last_modified,
            "location": format!("{base_url}/Groups/{scim_id}"),
            "version": etag(rec.version),
        }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weak_and_strong_forms() {
        assert_eq!(etag(3), "W/\"3\"");
        assert!(etag_matches("W/\"3\"", 3));
        assert!(etag_matches("\"3\"", 3));
        assert!(etag_matches("*", 9));
        assert!(etag_matches("W/\"1\", W/\"3\"", 3));
        assert!(!etag_matches("W/\"2\"", 3));
    }
}
