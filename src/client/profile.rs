//! What a SCIM service provider does differently from RFC 7644, where discovery cannot say it:
//! one [`Dialect`] trait whose default methods are the RFC behaviour, and one implementation per
//! profile that overrides only its quirks. Everything that depends on the kind of server asks
//! its dialect; nothing else checks which server it talks to.
//!
//! Sources of each fact are cited on the implementation that uses it (and in the README's
//! profile table).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::scim::ScimType;

/// The kind of SCIM service provider a target is, for what discovery cannot tell.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Profile {
    /// Any RFC 7643/7644 server: only what the standard and its `/ServiceProviderConfig` say.
    #[default]
    Generic,
    /// This project's own server: ownership markers in `externalId`, RoleMappings, effective
    /// roles and `If-None-Match: *` on creates.
    ScimOperator,
    /// Keycloak's native SCIM API (26.x, `scim-api` feature).
    Keycloak,
    /// Datadog (`https://api.datadoghq.com/api/v2/scim`).
    Datadog,
    /// Grafana (`https://<stack>/apis/scim.grafana.app/v0alpha1/namespaces/<namespace>`).
    Grafana,
}

impl Profile {
    /// The dialect that speaks to this kind of server.
    pub fn dialect(self) -> Arc<dyn Dialect> {
        match self {
            Profile::Generic => Arc::new(Generic),
            Profile::ScimOperator => Arc::new(ScimOperator),
            Profile::Keycloak => Arc::new(Keycloak),
            Profile::Datadog => Arc::new(Datadog),
            Profile::Grafana => Arc::new(Grafana),
        }
    }
}

/// Where a target keeps the `externalId` of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalIdRule {
    /// The operator's ownership marker goes there.
    Marker,
    /// It must carry a value the resource declares (Grafana: the SAML user id); a user without
    /// one cannot be created.
    Declared,
    /// The target does not keep it: it is not sent, and ownership lives only in the operator's
    /// own record.
    NotKept,
}

/// The detail and `scimType` of an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    pub detail: String,
    pub scim_type: Option<ScimType>,
}

/// How one kind of server differs from RFC 7644. Default methods are the RFC behaviour.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// The profile this dialect implements.
    fn profile(&self) -> Profile;

    /// Reads an error answer (RFC 7644 §3.12: `detail`, `scimType`).
    fn error_detail(&self, body: &Value) -> ErrorDetail {
        let detail = match body {
            Value::String(text) => text.chars().take(512).collect(),
            _ => body.get("detail").and_then(Value::as_str).unwrap_or("").to_string(),
        };
        let scim_type = body.get("scimType").and_then(Value::as_str).and_then(ScimType::parse);
        ErrorDetail { detail, scim_type }
    }

    /// Whether group POST and PUT accept `members` (otherwise members go in PATCHes after).
    fn members_on_group_write(&self) -> bool {
        true
    }

    /// Whether PUT replaces the whole resource (RFC 7644 §3.5.1). A PUT that merges cannot
    /// remove anything, so such a server is only ever updated with PATCH.
    fn put_replaces(&self) -> bool {
        true
    }

    /// Whether users may be deleted; otherwise a `Delete` policy deactivates them.
    fn deletes_users(&self) -> bool {
        true
    }

    /// Where the user's `externalId` comes from.
    fn external_id(&self) -> ExternalIdRule {
        ExternalIdRule::Marker
    }

    /// Whether the User resource keeps a `roles` attribute.
    fn keeps_roles(&self) -> bool {
        true
    }

    /// The only user attributes the target keeps (`None`: all it is sent); others are not
    /// sent, so that they do not look changed on every reconcile.
    fn kept_user_attributes(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Brings a user document to the form the target keeps (after `externalId`, roles and the
    /// kept attributes are settled), so that what it answers compares equal next time.
    fn shape_user(&self, _document: &mut Map<String, Value>) {}

    /// Whether `DELETE /Groups/{id}` unlinks a team (this project's server) rather than
    /// deleting it, so an `Unlink` policy sends it; elsewhere `Unlink` removes the members.
    fn deleting_a_group_unlinks_it(&self) -> bool {
        false
    }

    /// E-mail addresses a user keeps at most (`None`: any number).
    fn max_emails(&self) -> Option<usize> {
        None
    }

    /// Largest page the server answers, whatever `count` asks.
    fn page_cap(&self) -> Option<usize> {
        None
    }

    /// Membership operations sent in one PATCH at most (a target's spec may lower it).
    fn max_member_operations(&self) -> usize {
        100
    }

    /// Whether a create may carry `If-None-Match: *` to refuse linking an existing object.
    fn create_if_none_match(&self) -> bool {
        false
    }

    /// PATCH operations that add these members (RFC 7644 §3.5.2.1: one `add` with the values).
    fn add_members(&self, ids: &[String]) -> Vec<Value> {
        let values: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        vec![json!({"op": "add", "path": "members", "value": values})]
    }

    /// PATCH operations that remove these members: one `remove` per member, addressed by the
    /// value filter of RFC 7644 §3.5.2.2, the one form every server examined honours (a value
    /// list in the body is silently ignored by some, Keycloak among them).
    fn remove_members(&self, ids: &[String]) -> Vec<Value> {
        ids.iter()
            .map(|id| json!({"op": "remove", "path": format!("members[value eq {}]", super::quote(id))}))
            .collect()
    }
}

/// RFC 7643/7644 as written.
#[derive(Debug)]
pub struct Generic;

impl Dialect for Generic {
    fn profile(&self) -> Profile {
        Profile::Generic
    }
}

/// This project's server: it keeps the ownership marker, roles and RoleMappings, honours
/// `If-None-Match: *` on creates and takes 200 membership changes per PATCH.
#[derive(Debug)]
pub struct ScimOperator;

impl Dialect for ScimOperator {
    fn profile(&self) -> Profile {
        Profile::ScimOperator
    }
    fn max_member_operations(&self) -> usize {
        200
    }
    fn create_if_none_match(&self) -> bool {
        true
    }
    fn deleting_a_group_unlinks_it(&self) -> bool {
        true
    }
}

/// Keycloak 26.x native SCIM, as observed running it (the project's Keycloak notes and
/// tests/targets_client.rs): group POST/PUT with `members` answer 400 ("Managing members on
/// updates is not supported"); PUT merges; a user POSTed without `active` is disabled (the
/// operator always sends it); attributes beyond userName, name, one e-mail, active and groups
/// (so `externalId` and `roles`) are dropped unless the realm maps them; pages hold at most
/// 100 resources.
#[derive(Debug)]
pub struct Keycloak;

impl Dialect for Keycloak {
    fn profile(&self) -> Profile {
        Profile::Keycloak
    }
    fn members_on_group_write(&self) -> bool {
        false
    }
    fn put_replaces(&self) -> bool {
        false
    }
    fn external_id(&self) -> ExternalIdRule {
        ExternalIdRule::NotKept
    }
    fn keeps_roles(&self) -> bool {
        false
    }
    fn kept_user_attributes(&self) -> Option<&'static [&'static str]> {
        Some(&["userName", "name", "emails", "active"])
    }
    fn max_emails(&self) -> Option<usize> {
        Some(1)
    }
    fn page_cap(&self) -> Option<usize> {
        Some(100)
    }
}

/// Datadog's SCIM API (<https://docs.datadoghq.com/api/latest/scim/>): its User has no
/// `externalId` (the documented body is active, emails, name, title, userName; roles per the
/// role-provisioning guide), its `name` is `formatted` only and an e-mail's `type` can only be
/// `work` ("Create user"); errors come in Datadog's API form `{"errors": ["..."]}` rather than
/// the SCIM error schema.
#[derive(Debug)]
pub struct Datadog;

impl Dialect for Datadog {
    fn profile(&self) -> Profile {
        Profile::Datadog
    }
    fn error_detail(&self, body: &Value) -> ErrorDetail {
        match body.get("errors").and_then(Value::as_array) {
            Some(errors) => ErrorDetail {
                detail: errors
                    .iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join("; "),
                scim_type: None,
            },
            None => Generic.error_detail(body),
        }
    }
    fn external_id(&self) -> ExternalIdRule {
        ExternalIdRule::NotKept
    }
    fn kept_user_attributes(&self) -> Option<&'static [&'static str]> {
        Some(&["userName", "name", "emails", "title", "active", "roles"])
    }
    fn shape_user(&self, document: &mut Map<String, Value>) {
        if let Some(name) = document.get("name") {
            let part = |k: &str| name.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let formatted = part("formatted").map(str::to_string).or_else(|| {
                let parts: Vec<&str> = ["givenName", "middleName", "familyName"].into_iter().filter_map(part).collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            });
            match formatted {
                Some(f) => document.insert("name".into(), json!({"formatted": f})),
                None => document.remove("name"),
            };
        }
        if let Some(Value::Array(emails)) = document.get_mut("emails") {
            for e in emails.iter_mut().filter_map(Value::as_object_mut) {
                e.insert("type".into(), json!("work"));
            }
        }
    }
}

/// Grafana's SCIM API (<https://grafana.com/docs/grafana/latest/setup-grafana/configure-access/configure-scim-provisioning/>):
/// a user's `externalId` must be the identifier its SAML assertion carries (the `userUID`
/// assertion), and a user provisioned through SCIM cannot be deleted, only deactivated
/// ("Manage users and teams with SCIM"). Its SCIM guides document no `roles` attribute (the
/// Okta guide provisions user profiles and teams only), so none is sent.
#[derive(Debug)]
pub struct Grafana;

impl Dialect for Grafana {
    fn profile(&self) -> Profile {
        Profile::Grafana
    }
    fn deletes_users(&self) -> bool {
        false
    }
    fn external_id(&self) -> ExternalIdRule {
        ExternalIdRule::Declared
    }
    fn keeps_roles(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_in_each_dialects_form() {
        let scim = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409", "scimType": "uniqueness", "detail": "taken"});
        assert_eq!(
            Keycloak.error_detail(&scim),
            ErrorDetail { detail: "taken".into(), scim_type: Some(ScimType::Uniqueness) }
        );
        // Datadog's API error form (every endpoint's documented 400/403/429 answer).
        let dd = json!({"errors": ["Bad Request", "userName is required"]});
        assert_eq!(Datadog.error_detail(&dd).detail, "Bad Request; userName is required");
        assert_eq!(Generic.error_detail(&dd).detail, "", "the generic dialect reads only the SCIM form");
        assert_eq!(Datadog.error_detail(&scim).detail, "taken", "Datadog also answers SCIM errors");
        assert_eq!(Generic.error_detail(&json!("<html>bad gateway</html>")).detail, "<html>bad gateway</html>");
    }

    #[test]
    fn member_removal_is_one_value_filter_per_member() {
        let ops = Keycloak.remove_members(&["a".into(), "b\"c".into()]);
        assert_eq!(
            ops,
            vec![
                json!({"op": "remove", "path": "members[value eq \"a\"]"}),
                json!({"op": "remove", "path": "members[value eq \"b\\\"c\"]"})
            ]
        );
        assert_eq!(
            Generic.add_members(&["a".into()]),
            vec![json!({"op": "add", "path": "members", "value": [{"value": "a"}]})]
        );
    }

    #[test]
    fn every_profile_has_its_dialect() {
        for p in [Profile::Generic, Profile::ScimOperator, Profile::Keycloak, Profile::Datadog, Profile::Grafana] {
            assert_eq!(p.dialect().profile(), p);
        }
    }
}
