//! The decide step of a reconcile against one target, as pure functions: from what the target
//! holds (fetched before) and what is declared, the SCIM operations to send. Every difference
//! between servers comes from the target's [`Dialect`] and its discovered [`Capabilities`], so
//! each profile's plans are tested as tables (here and in tests/target_replays.rs).
//!
//! A plan converges: executing part of it and deciding again from what the target then holds
//! yields the rest, so a failure halfway leaves nothing that the next reconcile cannot finish.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

use super::discovery::Capabilities;
use super::profile::{Dialect, ExternalIdRule};
use super::{GROUP_SCHEMA, PATCH_OP};

/// Where a plan sends its requests.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The target's dialect.
    pub dialect: &'a dyn Dialect,
    /// What its discovery found.
    pub capabilities: &'a Capabilities,
    /// Membership operations per PATCH at most (the dialect's, or lower if the target's spec
    /// says so).
    pub max_member_operations: usize,
}

impl<'a> Target<'a> {
    /// A target with its dialect's own limit on membership operations, lowered to `limit`.
    pub fn new(dialect: &'a dyn Dialect, capabilities: &'a Capabilities, limit: Option<usize>) -> Self {
        let own = dialect.max_member_operations();
        Self { dialect, capabilities, max_member_operations: limit.map_or(own, |l| l.min(own)).max(1) }
    }
}

/// A group as the plan refers to it: by id, or the one an earlier step of the plan creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    /// An existing group.
    Id(String),
    /// The group the plan's `CreateGroup` made.
    Created,
}

/// One SCIM request.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// `POST /Users`.
    CreateUser { body: Value },
    /// `PUT /Users/{id}`.
    ReplaceUser { id: String, body: Value },
    /// `PATCH /Users/{id}`.
    PatchUser { id: String, operations: Vec<Value> },
    /// `DELETE /Users/{id}`.
    DeleteUser { id: String },
    /// `POST /Groups`; `exclusive` asks with `If-None-Match: *` that an existing group of the
    /// name is never linked (where the dialect supports it).
    CreateGroup { body: Value, exclusive: bool },
    /// `PUT /Groups/{id}`.
    ReplaceGroup { id: String, body: Value },
    /// `PATCH /Groups/{id}`.
    PatchGroup { group: GroupRef, operations: Vec<Value> },
    /// `DELETE /Groups/{id}`.
    DeleteGroup { id: String },
}

impl Operation {
    /// The PATCH message body of a list of operations.
    pub fn patch_body(operations: &[Value]) -> Value {
        json!({"schemas": [PATCH_OP], "Operations": operations})
    }
}

/// Something the plan did differently from what was declared, for the resource's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Roles were declared; the target keeps none, so none were sent (`RolesUnsupported`).
    RolesUnsupported,
    /// The deletion policy is `Delete`; the target cannot delete users, so it deactivates.
    DeactivatedInsteadOfDeleted,
    /// Declared attributes the target does not keep, so they were not sent.
    AttributesNotKept(Vec<String>),
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The target needs an `externalId` the resource does not declare.
    #[error("the target requires an externalId (its SAML user id) and the resource declares none")]
    ExternalIdRequired,
    /// The target cannot make this change.
    #[error("the target cannot make this change: {0}")]
    Unsupported(String),
}

/// The operations to send, and what to tell about them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub operations: Vec<Operation>,
    pub notices: Vec<Notice>,
}

/// A user as declared: the RFC 7643 document the operator builds from the resource (without
/// `externalId`), the ownership marker, and an `externalId` the resource declares.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredUser {
    pub document: Value,
    pub marker: Option<String>,
    pub external_id: Option<String>,
}

/// What becomes of a user on a target when its resource goes (or drops the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRemoval {
    Deactivate,
    Delete,
    Orphan,
}

/// A team as declared: its name, marker and the target ids of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    pub display_name: String,
    pub marker: Option<String>,
    pub members: BTreeSet<String>,
    /// Members someone else added are removed (`Authoritative`) or kept (`Additive`).
    pub authoritative: bool,
}

/// A group as the target holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldGroup {
    pub id: String,
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: BTreeSet<String>,
}

/// What becomes of a group when its resource goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRemoval {
    /// Remove the members the operator manages there (on this project's server: unlink the team).
    Unlink,
    Keep,
}

/// The user document this target is sent: the declared one with the dialect's `externalId`,
/// without what the target does not keep, and always with `active` (a server may default it
/// to false).
pub fn user_document(dialect: &dyn Dialect, desired: &DesiredUser) -> Result<(Value, Vec<Notice>), PlanError> {
    let mut doc = match &desired.document {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut notices = Vec::new();
    doc.remove("externalId");
    match dialect.external_id() {
        ExternalIdRule::Marker => {
            if let Some(m) = &desired.marker {
                doc.insert("externalId".into(), json!(m));
            }
        }
        ExternalIdRule::Declared => match &desired.external_id {
            Some(e) if !e.is_empty() => {
                doc.insert("externalId".into(), json!(e));
            }
            _ => return Err(PlanError::ExternalIdRequired),
        },
        ExternalIdRule::NotKept => {}
    }
    if !dialect.keeps_roles() && doc.remove("roles").is_some_and(|r| r.as_array().is_some_and(|a| !a.is_empty())) {
        notices.push(Notice::RolesUnsupported);
    }
    if let Some(kept) = dialect.kept_user_attributes() {
        let dropped: Vec<String> =
            doc.keys().filter(|k| *k != "schemas" && !kept.contains(&k.as_str())).cloned().collect();
        for k in &dropped {
            doc.remove(k);
        }
        if !dropped.is_empty() {
            notices.push(Notice::AttributesNotKept(dropped));
        }
    }
    if let (Some(max), Some(Value::Array(emails))) = (dialect.max_emails(), doc.get_mut("emails")) {
        // The primary address first, so that it is the one kept.
        emails.sort_by_key(|e| !e.get("primary").and_then(Value::as_bool).unwrap_or(false));
        emails.truncate(max);
    }
    doc.entry("active").or_insert(json!(true));
    dialect.shape_user(&mut doc);
    Ok((Value::Object(doc), notices))
}

/// Whether `held` already has what `wanted` declares: objects by the keys `wanted` names,
/// arrays element by element in any order, `false` and an absent value alike, and strings that
/// servers fold (userName, e-mail addresses) without regard to case.
fn covers(held: Option<&Value>, wanted: &Value, fold_case: bool) -> bool {
    match (held, wanted) {
        (None | Some(Value::Null), Value::Bool(false) | Value::Null) => true,
        (None, Value::Array(a)) => a.is_empty(),
        (None, _) => false,
        (Some(Value::String(h)), Value::String(w)) if fold_case => h.to_lowercase() == w.to_lowercase(),
        (Some(Value::Object(h)), Value::Object(w)) => w.iter().all(|(k, v)| covers(h.get(k), v, fold_case)),
        (Some(Value::Array(h)), Value::Array(w)) => {
            h.len() == w.len() && w.iter().all(|wv| h.iter().any(|hv| covers(Some(hv), wv, fold_case)))
        }
        (Some(h), w) => h == w,
    }
}

/// Attributes whose strings servers compare (and may store) without regard to case.
fn folds_case(attribute: &str) -> bool {
    matches!(attribute, "userName" | "emails")
}

/// The plan that brings a user on the target to what is declared: create it when the target
/// holds none (`held` is the user the resource owns there, fetched before), else change what
/// differs.
pub fn user(target: Target<'_>, desired: &DesiredUser, held: Option<&Value>) -> Result<Plan, PlanError> {
    let (doc, notices) = user_document(target.dialect, desired)?;
    let Some(held) = held else {
        return Ok(Plan { operations: vec![Operation::CreateUser { body: doc }], notices });
    };
    let id = held_id(held)?;
    let changed: Vec<(&String, &Value)> = doc
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| *k != "schemas" && !covers(held.get(k.as_str()), v, folds_case(k)))
        .collect();
    if changed.is_empty() {
        return Ok(Plan { operations: vec![], notices });
    }
    let operation = if target.capabilities.patch {
        let operations = changed
            .into_iter()
            .map(|(k, v)| {
                if k.starts_with("urn:") {
                    // An extension is replaced as an object without a path (RFC 7644 §3.5.2.3).
                    json!({"op": "replace", "value": {k.clone(): v}})
                } else if v.as_array().is_some_and(Vec::is_empty) {
                    // Replacing with an empty list is not understood alike by every service
                    // provider (RFC 7644 §3.5.2.3 leaves it open); removing the attribute is
                    // (every role withdrawn).
                    json!({"op": "remove", "path": k})
                } else {
                    json!({"op": "replace", "path": k, "value": v})
                }
            })
            .collect();
        Operation::PatchUser { id, operations }
    } else if target.dialect.put_replaces() {
        Operation::ReplaceUser { id, body: doc }
    } else {
        return Err(PlanError::Unsupported(
            "it announces no PATCH and its PUT merges instead of replacing, so the user cannot be brought to the spec"
                .into(),
        ));
    };
    Ok(Plan { operations: vec![operation], notices })
}

fn held_id(held: &Value) -> Result<String, PlanError> {
    held.get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| PlanError::Unsupported("the target answered a user without an id".into()))
}

/// The plan that applies a deletion policy to a user the resource owns on the target.
pub fn user_removal(target: Target<'_>, policy: UserRemoval, held: &Value) -> Result<Plan, PlanError> {
    let id = held_id(held)?;
    match policy {
        UserRemoval::Orphan => Ok(Plan::default()),
        UserRemoval::Delete if target.dialect.deletes_users() => {
            Ok(Plan { operations: vec![Operation::DeleteUser { id }], notices: vec![] })
        }
        UserRemoval::Delete => {
            let mut plan = deactivate(target, id, held)?;
            plan.notices.push(Notice::DeactivatedInsteadOfDeleted);
            Ok(plan)
        }
        UserRemoval::Deactivate => deactivate(target, id, held),
    }
}

fn deactivate(target: Target<'_>, id: String, held: &Value) -> Result<Plan, PlanError> {
    if held.get("active") == Some(&Value::Bool(false)) {
        return Ok(Plan::default());
    }
    let operation = if target.capabilities.patch {
        Operation::PatchUser { id, operations: vec![json!({"op": "replace", "path": "active", "value": false})] }
    } else if target.dialect.put_replaces() {
        let mut body = held.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("meta");
            m.insert("active".into(), json!(false));
        }
        Operation::ReplaceUser { id, body }
    } else {
        return Err(PlanError::Unsupported("it announces no PATCH and its PUT merges; cannot deactivate".into()));
    };
    Ok(Plan { operations: vec![operation], notices: vec![] })
}

/// Membership changes as PATCHes of at most the target's number of operations each: additions
/// first, then removals in the dialect's form.
fn member_patches(target: Target<'_>, group: &GroupRef, add: &[String], remove: &[String]) -> Vec<Operation> {
    let size = target.max_member_operations;
    let adds = add.chunks(size).map(|c| target.dialect.add_members(c));
    let removes = remove.chunks(size).map(|c| target.dialect.remove_members(c));
    adds.chain(removes).map(|operations| Operation::PatchGroup { group: group.clone(), operations }).collect()
}

fn group_body(dialect: &dyn Dialect, desired: &DesiredGroup, members: Option<&BTreeSet<String>>) -> Value {
    let mut body = json!({"schemas": [GROUP_SCHEMA], "displayName": desired.display_name});
    if let (ExternalIdRule::Marker, Some(m)) = (dialect.external_id(), &desired.marker) {
        body["externalId"] = json!(m);
    }
    if let Some(members) = members {
        body["members"] = members.iter().map(|m| json!({"value": m})).collect();
    }
    body
}

/// The plan that brings a group on the target to what is declared.
pub fn group(target: Target<'_>, desired: &DesiredGroup, held: Option<&HeldGroup>) -> Result<Plan, PlanError> {
    let dialect = target.dialect;
    let Some(held) = held else {
        let exclusive = dialect.create_if_none_match();
        if dialect.members_on_group_write() {
            let body = group_body(dialect, desired, Some(&desired.members));
            return Ok(Plan { operations: vec![Operation::CreateGroup { body, exclusive }], notices: vec![] });
        }
        let mut operations = vec![Operation::CreateGroup { body: group_body(dialect, desired, None), exclusive }];
        let add: Vec<String> = desired.members.iter().cloned().collect();
        operations.extend(member_patches(target, &GroupRef::Created, &add, &[]));
        return Ok(Plan { operations, notices: vec![] });
    };
    let add: Vec<String> = desired.members.difference(&held.members).cloned().collect();
    let remove: Vec<String> =
        if desired.authoritative { held.members.difference(&desired.members).cloned().collect() } else { vec![] };
    let marker_differs = dialect.external_id() == ExternalIdRule::Marker
        && desired.marker.is_some()
        && held.external_id != desired.marker;
    let renamed = held.display_name != desired.display_name;
    if !target.capabilities.patch {
        if add.is_empty() && remove.is_empty() && !renamed && !marker_differs {
            return Ok(Plan::default());
        }
        if !(dialect.put_replaces() && dialect.members_on_group_write()) {
            return Err(PlanError::Unsupported(
                "it announces no PATCH and refuses members on PUT, so membership cannot be changed".into(),
            ));
        }
        let mut members: BTreeSet<String> = held.members.union(&desired.members).cloned().collect();
        members.retain(|m| !remove.contains(m));
        let body = group_body(dialect, desired, Some(&members));
        return Ok(Plan { operations: vec![Operation::ReplaceGroup { id: held.id.clone(), body }], notices: vec![] });
    }
    let group = GroupRef::Id(held.id.clone());
    let mut operations = Vec::new();
    let mut attributes = Vec::new();
    if renamed {
        attributes.push(json!({"op": "replace", "path": "displayName", "value": desired.display_name}));
    }
    if marker_differs {
        attributes.push(json!({"op": "replace", "path": "externalId", "value": desired.marker}));
    }
    if !attributes.is_empty() {
        operations.push(Operation::PatchGroup { group: group.clone(), operations: attributes });
    }
    operations.extend(member_patches(target, &group, &add, &remove));
    Ok(Plan { operations, notices: vec![] })
}

/// The plan that applies a team's deletion policy to its group on the target.
pub fn group_removal(target: Target<'_>, policy: GroupRemoval, held: &HeldGroup) -> Plan {
    match policy {
        GroupRemoval::Keep => Plan::default(),
        GroupRemoval::Unlink if target.dialect.deleting_a_group_unlinks_it() => {
            Plan { operations: vec![Operation::DeleteGroup { id: held.id.clone() }], notices: vec![] }
        }
        GroupRemoval::Unlink => {
            let remove: Vec<String> = held.members.iter().cloned().collect();
            let operations = member_patches(target, &GroupRef::Id(held.id.clone()), &[], &remove);
            Plan { operations, notices: vec![] }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::profile::{Datadog, Generic, Grafana, Keycloak, ScimOperator};
    use super::*;

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn desired(roles: &[&str], external_id: Option<&str>) -> DesiredUser {
        DesiredUser {
            document: json!({"schemas": [USER], "userName": "Ada.Lovelace", "displayName": "Ada", "title": "Countess",
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"value": "ada@home.example", "type": "home"}, {"value": "Ada@Example.com", "type": "work", "primary": true}],
                "roles": roles.iter().map(|r| json!({"value": r})).collect::<Vec<_>>()}),
            marker: Some("k8s:c1/team-a/uid-1".into()),
            external_id: external_id.map(str::to_string),
        }
    }

    fn patching() -> Capabilities {
        Capabilities::assumed()
    }

    fn put_only() -> Capabilities {
        Capabilities { filter: true, ..Default::default() }
    }

    fn created(plan: &Plan) -> &Value {
        match plan.operations.as_slice() {
            [Operation::CreateUser { body }] => body,
            other => panic!("expected one create, got {other:?}"),
        }
    }

    #[test]
    fn user_creation_per_profile() {
        let caps = patching();
        // (dialect, declared externalId) -> externalId sent, roles sent, attributes sent, notices
        type Case<'a> = (&'a dyn Dialect, Option<&'a str>, Option<&'a str>, bool, usize, Vec<Notice>);
        let cases: [Case; 5] = [
            (&Generic, None, Some("k8s:c1/team-a/uid-1"), true, 2, vec![]),
            (&ScimOperator, None, Some("k8s:c1/team-a/uid-1"), true, 2, vec![]),
            (&Datadog, None, None, true, 2, vec![Notice::AttributesNotKept(vec!["displayName".into()])]),
            (&Grafana, Some("00u1saml"), Some("00u1saml"), false, 2, vec![Notice::RolesUnsupported]),
            (
                &Keycloak,
                None,
                None,
                false,
                1,
                vec![Notice::RolesUnsupported, Notice::AttributesNotKept(vec!["displayName".into(), "title".into()])],
            ),
        ];
        for (dialect, declared, external_id, roles, emails, notices) in cases {
            let name = format!("{:?}", dialect.profile());
            let plan = user(Target::new(dialect, &caps, None), &desired(&["Admin"], declared), None).unwrap();
            let body = created(&plan);
            assert_eq!(body.get("externalId").and_then(Value::as_str), external_id, "{name}");
            assert_eq!(body.get("roles").is_some(), roles, "{name}");
            assert_eq!(body["emails"].as_array().unwrap().len(), emails, "{name}");
            assert_eq!(body["active"], true, "{name}: active is always sent (Keycloak disables a user without it)");
            assert_eq!(plan.notices, notices, "{name}");
        }
        let kc = user(Target::new(&Keycloak, &caps, None), &desired(&[], None), None).unwrap();
        assert_eq!(created(&kc)["emails"][0]["value"], "Ada@Example.com", "the primary address is the one kept");
        assert!(kc.notices.iter().all(|n| *n != Notice::RolesUnsupported), "no roles declared, none dropped");
        assert_eq!(
            user(Target::new(&Grafana, &caps, None), &desired(&[], None), None),
            Err(PlanError::ExternalIdRequired),
            "Grafana needs the SAML user id"
        );
    }

    #[test]
    fn a_user_the_target_already_matches_needs_no_request() {
        // As servers answer: userName and addresses folded to lower case, extra fields, `primary`
        // omitted where false, attributes in another order.
        let held = json!({"id": "u1", "userName": "ada.lovelace", "displayName": "Ada", "title": "Countess", "active": true,
            "externalId": "k8s:c1/team-a/uid-1", "meta": {"resourceType": "User"},
            "name": {"familyName": "Lovelace", "givenName": "Ada", "formatted": "Ada Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}, {"value": "ada@home.example", "type": "home"}],
            "roles": [{"value": "Admin", "primary": false}]});
        let caps = patching();
        for dialect in [&Generic as &dyn Dialect, &ScimOperator] {
            let plan = user(Target::new(dialect, &caps, None), &desired(&["Admin"], None), Some(&held)).unwrap();
            assert_eq!(plan.operations, vec![], "{:?}", dialect.profile());
        }
        let kc_held = json!({"id": "u1", "userName": "ada.lovelace", "active": true,
            "name": {"familyName": "Lovelace", "givenName": "Ada"}, "emails": [{"value": "ada@example.com", "primary": true, "type": "work"}]});
        let plan = user(Target::new(&Keycloak, &caps, None), &desired(&[], None), Some(&kc_held)).unwrap();
        assert_eq!(plan.operations, vec![], "Keycloak is compared on what it keeps only");
    }

    #[test]
    fn withdrawing_every_role_removes_the_attribute() {
        let held = json!({"id": "u1", "userName": "ada.lovelace", "active": true,
            "roles": [{"value": "admin"}, {"value": "billing"}]});
        let want = |roles: &[&str]| DesiredUser {
            document: json!({"schemas": [USER], "userName": "Ada.Lovelace",
                "roles": roles.iter().map(|r| json!({"value": r})).collect::<Vec<_>>()}),
            marker: None,
            external_id: None,
        };
        let caps = patching();
        let ops = |roles: &[&str]| match user(Target::new(&Generic, &caps, None), &want(roles), Some(&held)) {
            Ok(Plan { operations, .. }) => operations,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            ops(&[]),
            [Operation::PatchUser { id: "u1".into(), operations: vec![json!({"op": "remove", "path": "roles"})] }]
        );
        assert_eq!(
            ops(&["billing"]),
            [Operation::PatchUser {
                id: "u1".into(),
                operations: vec![json!({"op": "replace", "path": "roles", "value": [{"value": "billing"}]})]
            }]
        );
        assert!(ops(&["billing", "admin"]).is_empty(), "the same roles in another order: nothing to send");
    }

    #[test]
    fn a_changed_user_is_patched_or_replaced_as_the_target_allows() {
        let held = json!({"id": "u1", "userName": "ada.lovelace", "active": true, "title": "Clerk", "displayName": "Ada",
            "externalId": "k8s:uid-1", "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}, {"value": "ada@home.example", "type": "home"}]});
        let want = desired(&[], None);
        let plan = user(Target::new(&Generic, &patching(), None), &want, Some(&held)).unwrap();
        assert_eq!(
            plan.operations,
            vec![Operation::PatchUser {
                id: "u1".into(),
                operations: vec![
                    json!({"op": "replace", "path": "title", "value": "Countess"}),
                    json!({"op": "replace", "path": "externalId", "value": "k8s:c1/team-a/uid-1"}),
                ]
            }],
            "only what differs, the legacy marker rewritten"
        );
        let put = user(Target::new(&Generic, &put_only(), None), &want, Some(&held)).unwrap();
        assert!(
            matches!(&put.operations[..], [Operation::ReplaceUser { id, body }] if id == "u1" && body["title"] == "Countess")
        );
        // Keycloak's PUT merges, so without PATCH nothing can be removed: refuse, do not half-apply.
        let kc = user(Target::new(&Keycloak, &put_only(), None), &want, Some(&json!({"id": "u1", "userName": "x"})));
        assert!(matches!(kc, Err(PlanError::Unsupported(_))));
        let mut enterprise = want.clone();
        enterprise.document["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
            json!({"department": "R&D"});
        let plan = user(Target::new(&Generic, &patching(), None), &enterprise, Some(&held)).unwrap();
        let Operation::PatchUser { operations, .. } = &plan.operations[0] else { panic!("{plan:?}") };
        assert!(operations.contains(&json!({"op": "replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}}})));
    }

    #[test]
    fn deletion_policies_per_profile() {
        let active = json!({"id": "u1", "userName": "a", "active": true});
        let inactive = json!({"id": "u1", "userName": "a", "active": false});
        let off = Operation::PatchUser {
            id: "u1".into(),
            operations: vec![json!({"op": "replace", "path": "active", "value": false})],
        };
        let caps = patching();
        // (dialect, policy, held) -> operations, notices
        type Case<'a> = (&'a dyn Dialect, UserRemoval, &'a Value, Vec<Operation>, Vec<Notice>);
        let cases: Vec<Case> = vec![
            (&Generic, UserRemoval::Delete, &active, vec![Operation::DeleteUser { id: "u1".into() }], vec![]),
            (&Keycloak, UserRemoval::Delete, &active, vec![Operation::DeleteUser { id: "u1".into() }], vec![]),
            (&Datadog, UserRemoval::Delete, &active, vec![Operation::DeleteUser { id: "u1".into() }], vec![]),
            (&Grafana, UserRemoval::Delete, &active, vec![off.clone()], vec![Notice::DeactivatedInsteadOfDeleted]),
            (&Grafana, UserRemoval::Delete, &inactive, vec![], vec![Notice::DeactivatedInsteadOfDeleted]),
            (&Generic, UserRemoval::Deactivate, &active, vec![off.clone()], vec![]),
            (&Keycloak, UserRemoval::Deactivate, &inactive, vec![], vec![]),
            (&Datadog, UserRemoval::Orphan, &active, vec![], vec![]),
        ];
        for (dialect, policy, held, operations, notices) in cases {
            let plan = user_removal(Target::new(dialect, &caps, None), policy, held).unwrap();
            assert_eq!(plan, Plan { operations, notices }, "{:?} {policy:?} {held}", dialect.profile());
        }
        let put = user_removal(Target::new(&Generic, &put_only(), None), UserRemoval::Deactivate, &active).unwrap();
        assert!(matches!(&put.operations[..], [Operation::ReplaceUser { body, .. }] if body["active"] == false));
        assert!(user_removal(Target::new(&Keycloak, &put_only(), None), UserRemoval::Deactivate, &active).is_err());
    }

    fn team(members: &[&str], authoritative: bool) -> DesiredGroup {
        DesiredGroup {
            display_name: "Platform".into(),
            marker: Some("k8s:c1/team-a/g1".into()),
            members: members.iter().map(|m| m.to_string()).collect(),
            authoritative,
        }
    }

    fn held(members: &[&str]) -> HeldGroup {
        HeldGroup {
            id: "g1".into(),
            display_name: "Platform".into(),
            external_id: Some("k8s:c1/team-a/g1".into()),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn group_creation_sends_members_where_the_target_takes_them() {
        let caps = patching();
        let plan = group(Target::new(&Generic, &caps, None), &team(&["u1", "u2"], true), None).unwrap();
        assert_eq!(
            plan.operations,
            vec![Operation::CreateGroup {
                body: json!({"schemas": [GROUP_SCHEMA], "displayName": "Platform", "externalId": "k8s:c1/team-a/g1",
                    "members": [{"value": "u1"}, {"value": "u2"}]}),
                exclusive: false
            }]
        );
        let ours = group(Target::new(&ScimOperator, &caps, None), &team(&[], true), None).unwrap();
        assert!(matches!(&ours.operations[..], [Operation::CreateGroup { exclusive: true, .. }]));
        // Keycloak refuses members on POST: create, then add in PATCHes of at most 2 here.
        let kc = group(Target::new(&Keycloak, &caps, Some(2)), &team(&["u1", "u2", "u3"], true), None).unwrap();
        assert_eq!(
            kc.operations,
            vec![
                Operation::CreateGroup {
                    body: json!({"schemas": [GROUP_SCHEMA], "displayName": "Platform"}),
                    exclusive: false
                },
                Operation::PatchGroup {
                    group: GroupRef::Created,
                    operations: vec![
                        json!({"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]})
                    ]
                },
                Operation::PatchGroup {
                    group: GroupRef::Created,
                    operations: vec![json!({"op": "add", "path": "members", "value": [{"value": "u3"}]})]
                },
            ]
        );
    }

    #[test]
    fn membership_changes_are_only_the_difference_in_chunks() {
        let caps = patching();
        let kc =
            group(Target::new(&Keycloak, &caps, None), &team(&["u1", "u3"], true), Some(&held(&["u1", "u2"]))).unwrap();
        assert_eq!(
            kc.operations,
            vec![
                Operation::PatchGroup {
                    group: GroupRef::Id("g1".into()),
                    operations: vec![json!({"op": "add", "path": "members", "value": [{"value": "u3"}]})]
                },
                Operation::PatchGroup {
                    group: GroupRef::Id("g1".into()),
                    operations: vec![json!({"op": "remove", "path": "members[value eq \"u2\"]"})]
                },
            ]
        );
        let additive =
            group(Target::new(&Keycloak, &caps, None), &team(&["u1"], false), Some(&held(&["u1", "u2"]))).unwrap();
        assert_eq!(additive.operations, vec![], "Additive keeps members someone else added");
        // 250 new members on a target that takes 100 membership operations per PATCH (AWS).
        let many: Vec<String> = (0..250).map(|i| format!("u{i:03}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let plan = group(Target::new(&Generic, &caps, Some(100)), &team(&refs, true), Some(&held(&[]))).unwrap();
        let sizes: Vec<usize> = plan
            .operations
            .iter()
            .map(|op| match op {
                Operation::PatchGroup { operations, .. } => operations[0]["value"].as_array().unwrap().len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(Target::new(&ScimOperator, &caps, Some(500)).max_member_operations, 200, "a spec only lowers it");
        let mut renamed = team(&["u1"], true);
        renamed.display_name = "Platform Team".into();
        let plan = group(Target::new(&Datadog, &caps, None), &renamed, Some(&held(&["u1"]))).unwrap();
        assert_eq!(
            plan.operations,
            vec![Operation::PatchGroup {
                group: GroupRef::Id("g1".into()),
                operations: vec![json!({"op": "replace", "path": "displayName", "value": "Platform Team"})]
            }]
        );
    }

    #[test]
    fn without_patch_groups_are_replaced_where_put_takes_members() {
        let plan = group(Target::new(&Generic, &put_only(), None), &team(&["u1"], true), Some(&held(&["u2"]))).unwrap();
        assert_eq!(
            plan.operations,
            vec![Operation::ReplaceGroup {
                id: "g1".into(),
                body: json!({"schemas": [GROUP_SCHEMA], "displayName": "Platform", "externalId": "k8s:c1/team-a/g1", "members": [{"value": "u1"}]})
            }]
        );
        let unchanged = group(Target::new(&Keycloak, &put_only(), None), &team(&["u1"], true), Some(&held(&["u1"])));
        assert_eq!(unchanged, Ok(Plan::default()));
        let kc = group(Target::new(&Keycloak, &put_only(), None), &team(&["u1"], true), Some(&held(&[])));
        assert!(matches!(kc, Err(PlanError::Unsupported(_))));
    }

    #[test]
    fn unlinking_a_team_per_profile() {
        let caps = patching();
        let g = held(&["u1", "u2"]);
        assert_eq!(
            group_removal(Target::new(&ScimOperator, &caps, None), GroupRemoval::Unlink, &g).operations,
            vec![Operation::DeleteGroup { id: "g1".into() }],
            "this server unlinks on DELETE"
        );
        let kc = group_removal(Target::new(&Keycloak, &caps, None), GroupRemoval::Unlink, &g);
        assert_eq!(
            kc.operations,
            vec![Operation::PatchGroup {
                group: GroupRef::Id("g1".into()),
                operations: vec![
                    json!({"op": "remove", "path": "members[value eq \"u1\"]"}),
                    json!({"op": "remove", "path": "members[value eq \"u2\"]"})
                ]
            }]
        );
        assert_eq!(group_removal(Target::new(&Grafana, &caps, None), GroupRemoval::Keep, &g), Plan::default());
    }
}
