//! The access review as of a past date, decided without I/O: the current rows, rolled back
//! through the audit events recorded after the date, newest first.
//!
//! Rolling back from the present (rather than replaying from the first event) keeps the review
//! exact for the common case, a recent date, and needs only the events after it. Each event
//! undone must say what it replaced; events written before the access review existed say less,
//! and what they do not say is reported as unknown, never guessed:
//! - a role change (`role.provision`, `role.revoke`) before then names the previous roles but
//!   not their path or grant: those roles come back with source `unknown` and no grant time;
//! - a role deletion before then does not name who held the role: they are shown without it;
//! - a RoleMapping change or deletion before then does not say what the mapping was: its
//!   current form (or nothing, once deleted) is used for the `via` column;
//! - a membership removed by a group link or unlink before then is not listed;
//! - grants and memberships made before then have no grant time or actor (`None`).
//!
//! Audit events list at most 100 member ids per change: members removed beyond those by one
//! change are missing from reviews as of a date before the change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::Value;

use super::{AccessRow, GrantDetail};
use crate::store::{
    AccountRecord, ApiKeyRecord, AuditEvent, KeyOwner, Membership, Role, RoleMappingRecord, TeamRecord, UserRoleGrant,
};

/// What the review of a date is built from: the current rows, and audit events.
#[derive(Debug, Clone, Default)]
pub struct ReviewInput {
    /// Every user row, deleted ones included.
    pub accounts: Vec<AccountRecord>,
    /// Every user's current roles with their grants.
    pub grants: Vec<UserRoleGrant>,
    pub memberships: Vec<Membership>,
    pub teams: Vec<TeamRecord>,
    pub mappings: Vec<RoleMappingRecord>,
    /// The role catalog (to name roles that old events name).
    pub roles: Vec<Role>,
    pub keys: Vec<ApiKeyRecord>,
    /// Audit events oldest first: every event of an [`UNDONE`] action after the date, and
    /// every event of an [`ALWAYS_READ`] action (those before the date date deactivations and
    /// name who made a key). Other events are ignored.
    pub events: Vec<AuditEvent>,
}

/// The actions whose events after the date the review undoes (a user's creation needs none:
/// the row's `created` says it).
pub const UNDONE: [&str; 17] = [
    "user.deactivate",
    "user.reactivate",
    "user.delete",
    "role.provision",
    "role.revoke",
    "role.delete",
    "team.member.add",
    "team.member.remove",
    "group.create",
    "group.link",
    "group.patch",
    "group.replace",
    "group.unlink",
    "rolemapping.create",
    "rolemapping.update",
    "rolemapping.delete",
    "key.create",
];

/// The actions [`ReviewInput::events`] must hold at every time, not only after the date.
pub const ALWAYS_READ: [&str; 3] = ["user.deactivate", "user.reactivate", "key.create"];

/// A user as of the date.
#[derive(Debug, Clone)]
struct Person {
    record: AccountRecord,
    active: bool,
    grants: Vec<GrantDetail>,
}

/// A RoleMapping as of the date.
#[derive(Debug, Clone)]
struct Mapping {
    name: String,
    role_ids: Vec<String>,
    teams: Vec<String>,
}

/// What `rolemapping.update` and `rolemapping.delete` record (`before`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingDetail {
    display_name: String,
    role_ids: Vec<String>,
    teams: Vec<String>,
}

fn ids_in(v: &Value) -> Vec<String> {
    // `{"count": n, "ids": [...]}` (an old `membersRemoved` of a link or unlink is a number).
    v.get("ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn text<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// The review as of `as_of` (a stored-form timestamp, see [`crate::clock::format_time`]):
/// people by userName (each role with its path and grant; one row with none for a person
/// without a role), then keys by creation. Pure: see the module docs for what it can know.
pub fn review_as_of(input: &ReviewInput, as_of: &str) -> Vec<AccessRow> {
    // Only the actions the store is asked for (so a test of an action also tests the list).
    let undone = |e: &&AuditEvent| e.time.as_str() > as_of && UNDONE.contains(&e.action.as_str());
    let later: Vec<&AuditEvent> = input.events.iter().filter(undone).collect();

    // Current state.
    let mut people: BTreeMap<String, Person> = input
        .accounts
        .iter()
        .map(|a| (a.user.id.clone(), Person { record: a.clone(), active: a.user.active, grants: Vec::new() }))
        .collect();
    for g in &input.grants {
        if let Some(p) = people.get_mut(&g.user_id) {
            p.grants.push(GrantDetail::from(g));
        }
    }
    let mut members: BTreeMap<(String, String), (Option<String>, Option<String>)> = input
        .memberships
        .iter()
        .filter(|m| m.added_at.as_deref().is_none_or(|t| t <= as_of))
        .map(|m| ((m.team_id.clone(), m.user_id.clone()), (m.added_at.clone(), m.added_by.clone())))
        .collect();
    let mut team_names: HashMap<String, String> = input.teams.iter().map(|t| (t.id.clone(), t.name.clone())).collect();
    // Groups are named by their SCIM id in events; a group unlinked since has no SCIM id now.
    let mut team_of_group: HashMap<String, String> =
        input.teams.iter().filter_map(|t| Some((t.scim_id.clone()?, t.id.clone()))).collect();
    for e in &input.events {
        if e.action.starts_with("group.")
            && let Some(team) = text(&e.details, "team")
        {
            team_of_group.insert(e.target_id.clone(), team.to_string());
        }
    }
    let mut mappings: BTreeMap<String, Mapping> = input
        .mappings
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                Mapping { name: m.display_name.clone(), role_ids: m.role_ids.clone(), teams: m.teams.clone() },
            )
        })
        .collect();
    let role_named = |name: &str| input.roles.iter().find(|r| r.name == name);

    // Undo, newest first.
    for e in later.iter().rev() {
        let d = &e.details;
        let group_team = || text(d, "team").map(str::to_string).or_else(|| team_of_group.get(&e.target_id).cloned());
        match e.action.as_str() {
            "user.deactivate" => set_active(&mut people, &e.target_id, true),
            "user.reactivate" => set_active(&mut people, &e.target_id, false),
            "user.delete" => {
                let was = d.get("wasActive").and_then(Value::as_bool).unwrap_or_else(|| {
                    // Older events do not say: the user's last (de)activation before it does.
                    input
                        .events
                        .iter()
                        .filter(|x| x.target_id == e.target_id && x.time <= e.time)
                        .rfind(|x| x.action == "user.deactivate" || x.action == "user.reactivate")
                        .is_none_or(|x| x.action != "user.deactivate")
                });
                set_active(&mut people, &e.target_id, was);
                for group in d.get("removedFromGroups").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(team) = group.as_str().and_then(|g| team_of_group.get(g)) {
                        members.insert((team.clone(), e.target_id.clone()), (None, None));
                    }
                }
            }
            "role.provision" | "role.revoke" => {
                if let Some(p) = people.get_mut(&e.target_id) {
                    p.grants = match d.get("grantsBefore") {
                        Some(before) => serde_json::from_value(before.clone()).unwrap_or_default(),
                        None => d
                            .get("previous")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .map(|name| GrantDetail {
                                user: Some(e.target_id.clone()),
                                role_id: role_named(name).map_or_else(String::new, |r| r.id.clone()),
                                role: name.to_string(),
                                source: "unknown".into(),
                                granted_at: None,
                                granted_by: None,
                            })
                            .collect(),
                    };
                }
            }
            "role.delete" => {
                let holders: Vec<GrantDetail> =
                    d.get("holders").and_then(|h| serde_json::from_value(h.clone()).ok()).unwrap_or_default();
                for h in holders {
                    if let Some(p) = h.user.as_ref().and_then(|u| people.get_mut(u))
                        && !p.grants.iter().any(|g| g.role_id == h.role_id)
                    {
                        p.grants.push(h);
                    }
                }
            }
            "team.member.add" | "team.member.remove" => {
                if let Some(user) = text(d, "user") {
                    let key = (e.target_id.clone(), user.to_string());
                    if e.action == "team.member.add" {
                        members.remove(&key);
                    } else {
                        members.insert(key, (None, None));
                    }
                }
            }
            "group.create" | "group.link" | "group.patch" | "group.replace" | "group.unlink" => {
                let Some(team) = group_team() else { continue };
                let added = ids_in(d.get("members").or_else(|| d.get("membersAdded")).unwrap_or(&Value::Null));
                for user in added {
                    members.remove(&(team.clone(), user));
                }
                for user in ids_in(d.get("membersRemoved").unwrap_or(&Value::Null)) {
                    members.insert((team.clone(), user), (None, None));
                }
                if let Some(old) = text(d, "renamedFrom") {
                    team_names.insert(team.clone(), old.to_string());
                }
            }
            "rolemapping.create" => {
                mappings.remove(&e.target_id);
            }
            "rolemapping.update" | "rolemapping.delete" => {
                if let Some(before) =
                    d.get("before").and_then(|b| serde_json::from_value::<MappingDetail>(b.clone()).ok())
                {
                    mappings.insert(
                        e.target_id.clone(),
                        Mapping { name: before.display_name, role_ids: before.role_ids, teams: before.teams },
                    );
                }
            }
            _ => {}
        }
    }

    // Rows: people who existed then, by userName.
    let mut teams_of: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for (team, user) in members.keys() {
        if let Some(name) = team_names.get(team) {
            teams_of.entry(user.as_str()).or_default().insert(name.clone());
        }
    }
    // Looked up per account: read once (the trail may be long, the accounts many).
    let mut deactivated_at: HashMap<&str, &str> = HashMap::new();
    let mut key_creator: HashMap<&str, &str> = HashMap::new();
    for e in &input.events {
        match e.action.as_str() {
            "user.deactivate" if e.time.as_str() <= as_of => {
                deactivated_at.insert(&e.target_id, &e.time);
            }
            "key.create" => {
                key_creator.entry(&e.target_id).or_insert(&e.actor);
            }
            _ => {}
        }
    }
    let mut existing: Vec<&Person> = people
        .values()
        .filter(|p| p.record.user.created.as_str() <= as_of)
        .filter(|p| p.record.deleted_at.as_deref().is_none_or(|t| t > as_of))
        .collect();
    existing.sort_by(|a, b| a.record.user.user_name.cmp(&b.record.user.user_name));
    let mut rows = Vec::new();
    for p in &existing {
        let user = &p.record.user;
        let teams: Vec<String> =
            teams_of.get(user.id.as_str()).map(|t| t.iter().cloned().collect()).unwrap_or_default();
        let deactivated = if p.active { None } else { deactivated_at.get(user.id.as_str()).map(|t| t.to_string()) };
        let person = |access: String, source: String, via: String, grant: Option<&GrantDetail>| AccessRow {
            account_type: "person",
            account_id: user.id.clone(),
            account: user.user_name.clone(),
            display_name: user.display_name.clone().unwrap_or_default(),
            owner: person_email(user.data.get("emails")).unwrap_or_else(|| user.user_name.clone()),
            status: if p.active { "active" } else { "deactivated" },
            created: user.created.clone(),
            deactivated: deactivated.clone(),
            access,
            source,
            via,
            granted_at: grant.and_then(|g| g.granted_at.clone()),
            granted_by: grant.and_then(|g| g.granted_by.clone()),
            teams: teams.join(";"),
            last_used: None,
        };
        if p.grants.is_empty() {
            rows.push(person(String::new(), "none".into(), String::new(), None));
        }
        for g in &p.grants {
            let mut via: Vec<String> = if g.source == "mapping" {
                mappings
                    .values()
                    .filter(|m| m.role_ids.contains(&g.role_id))
                    .flat_map(|m| {
                        m.teams.iter().filter(|t| teams.contains(t)).map(move |t| format!("{} through {t}", m.name))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            via.sort();
            rows.push(person(g.role.clone(), g.source.clone(), via.join(";"), Some(g)));
        }
    }

    // Keys made by then.
    for key in input.keys.iter().filter(|k| k.created.as_str() <= as_of) {
        let revoked = key.revoked_at.clone().filter(|t| t.as_str() <= as_of);
        let owner = match (&key.owner, &key.owner_user_id) {
            (KeyOwner::User, Some(id)) => {
                people.get(id).map_or_else(|| id.clone(), |p| p.record.user.user_name.clone())
            }
            _ => "Not a person".into(),
        };
        let made_by = key_creator.get(key.id.as_str());
        rows.push(AccessRow {
            account_type: "key",
            account_id: key.id.clone(),
            account: key.name.clone(),
            display_name: String::new(),
            via: if key.owner == KeyOwner::User { format!("owned by {owner}") } else { String::new() },
            owner,
            status: if revoked.is_some() { "revoked" } else { "active" },
            created: key.created.clone(),
            deactivated: revoked,
            access: key.permissions.join(";"),
            source: "key".into(),
            granted_at: Some(key.created.clone()),
            granted_by: made_by.map(|a| a.to_string()),
            teams: String::new(),
            last_used: key.last_used_at.clone().filter(|t| t.as_str() <= as_of),
        });
    }
    rows
}

fn set_active(people: &mut BTreeMap<String, Person>, id: &str, active: bool) {
    if let Some(p) = people.get_mut(id) {
        p.active = active;
    }
}

/// The primary e-mail address of a SCIM `emails` value, or else its first.
fn person_email(emails: Option<&Value>) -> Option<String> {
    let list = emails?.as_array()?;
    let primary = list.iter().find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
    primary.or(list.first())?.get("value")?.as_str().map(str::to_string)
}
