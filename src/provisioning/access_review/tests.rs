//! The review as of a past date, from rows and audit events written by hand: each case is a
//! history, and what the review must say before and after a change in it.

use serde_json::{Map, Value, json};

use super::*;
use crate::store::{
    AccountRecord, ApiKeyRecord, AuditEvent, KeyOwner, Membership, Role, RoleGrant, RoleMappingRecord, TeamRecord,
    UserRecord, UserRoleGrant,
};

const T1: &str = "2026-01-01T00:00:00.000Z";
const T2: &str = "2026-02-01T00:00:00.000Z";
const T3: &str = "2026-03-01T00:00:00.000Z";
const T4: &str = "2026-04-01T00:00:00.000Z";

fn role(id: &str, name: &str) -> Role {
    Role { id: id.into(), name: name.into(), builtin: true, description: String::new() }
}

fn catalog() -> Vec<Role> {
    vec![role("a", "Admin"), role("s", "Standard"), role("r", "Read Only")]
}

fn account(id: &str, active: bool, created: &str, deleted_at: Option<&str>) -> AccountRecord {
    let mut data = Map::new();
    data.insert("emails".into(), json!([{"value": format!("{id}@mail.example"), "primary": true}]));
    AccountRecord {
        user: UserRecord {
            id: id.into(),
            user_name: format!("{id}@example.com"),
            external_id: None,
            display_name: None,
            active,
            data,
            created: created.into(),
            last_modified: created.into(),
            version: 1,
        },
        deleted_at: deleted_at.map(str::to_string),
    }
}

fn grant(user: &str, role_id: &str, source: &str, at: Option<&str>, by: Option<&str>) -> UserRoleGrant {
    let role = catalog().into_iter().find(|r| r.id == role_id).expect("a role of the catalog");
    UserRoleGrant {
        user_id: user.into(),
        grant: RoleGrant {
            role_id: role.id.clone(),
            source: source.into(),
            granted_at: at.map(str::to_string),
            granted_by: by.map(str::to_string),
        },
        role,
    }
}

fn detail(g: &UserRoleGrant) -> Value {
    json!(GrantDetail::from(g))
}

fn event(time: &str, actor: &str, action: &str, target: &str, details: Value) -> AuditEvent {
    AuditEvent {
        id: format!("{action}-{time}"),
        time: time.into(),
        actor: actor.into(),
        action: action.into(),
        target_type: String::new(),
        target_id: target.into(),
        request_id: None,
        details,
    }
}

fn team(id: &str, name: &str) -> TeamRecord {
    TeamRecord {
        id: id.into(),
        name: name.into(),
        handle: name.to_lowercase(),
        scim_id: Some(format!("g-{id}")),
        external_id: None,
        declared_by: None,
        data: Map::new(),
        created: T1.into(),
        last_modified: T1.into(),
        version: 1,
    }
}

fn member(team: &str, user: &str, at: Option<&str>) -> Membership {
    Membership { team_id: team.into(), user_id: user.into(), added_at: at.map(str::to_string), added_by: None }
}

fn mapping(id: &str, roles: &[&str], teams: &[&str], created: &str) -> RoleMappingRecord {
    RoleMappingRecord {
        id: id.into(),
        display_name: id.into(),
        external_id: None,
        data: Map::new(),
        role_ids: roles.iter().map(|s| s.to_string()).collect(),
        teams: teams.iter().map(|s| s.to_string()).collect(),
        created: created.into(),
        last_modified: created.into(),
        version: 1,
    }
}

fn key(id: &str, owner: Option<&str>, created: &str, revoked: Option<&str>, used: Option<&str>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: format!("{id}-name"),
        owner: if owner.is_some() { KeyOwner::User } else { KeyOwner::ServiceAccount },
        owner_user_id: owner.map(str::to_string),
        secret_hash: String::new(),
        hint: String::new(),
        permissions: vec!["directory_read".into(), "audit_logs_read".into()],
        created: created.into(),
        revoked_at: revoked.map(str::to_string),
        revoked_reason: None,
        last_used_at: used.map(str::to_string),
    }
}

fn input(accounts: Vec<AccountRecord>) -> ReviewInput {
    ReviewInput { accounts, roles: catalog(), ..ReviewInput::default() }
}

/// (account, role, source, via, granted_at, granted_by, status, teams) of each row.
type Line = (String, String, String, String, Option<String>, Option<String>, &'static str, String);

fn lines(input: &ReviewInput, at: &str) -> Vec<Line> {
    review_as_of(input, at)
        .into_iter()
        .map(|r| (r.account, r.access, r.source, r.via, r.granted_at, r.granted_by, r.status, r.teams))
        .collect()
}

fn line(account: &str, role: &str, source: &str, via: &str, at: Option<&str>, by: Option<&str>) -> Line {
    let s = |v: Option<&str>| v.map(str::to_string);
    (account.into(), role.into(), source.into(), via.into(), s(at), s(by), "active", String::new())
}

#[test]
fn a_role_granted_then_revoked_shows_between_the_two_only() {
    let admin = grant("ann", "a", "scim", Some(T1), Some("okta-key"));
    let mut i = input(vec![account("ann", true, T1, None)]);
    // Now: no role (revoked at T3). The grant at T1 is in the trail too.
    i.events = vec![
        event(
            T1,
            "okta-key",
            "role.provision",
            "ann",
            json!({"roles": ["Admin"], "source": "scim", "grantsBefore": []}),
        ),
        event(T3, "okta-key", "role.revoke", "ann", json!({"previous": ["Admin"], "grantsBefore": [detail(&admin)]})),
    ];
    assert_eq!(lines(&i, T2), [line("ann@example.com", "Admin", "scim", "", Some(T1), Some("okta-key"))]);
    assert_eq!(lines(&i, T4), [line("ann@example.com", "", "none", "", None, None)]);
    assert_eq!(lines(&i, T1), lines(&i, T2), "as of the grant's own instant the grant counts");
}

#[test]
fn a_user_deactivated_after_the_date_was_active_then_and_one_deactivated_before_was_not() {
    let mut i = input(vec![account("ann", false, T1, None), account("bob", false, T1, None)]);
    i.events =
        vec![event(T1, "k", "user.deactivate", "bob", json!({})), event(T3, "k", "user.deactivate", "ann", json!({}))];
    fn status(i: &ReviewInput, at: &str) -> Vec<(String, &'static str, Option<String>)> {
        review_as_of(i, at).into_iter().map(|r| (r.account_id, r.status, r.deactivated)).collect()
    }
    assert_eq!(
        status(&i, T2),
        [("ann".into(), "active", None), ("bob".into(), "deactivated", Some(T1.to_string()))],
        "ann is deactivated after the date, bob before"
    );
    assert_eq!(status(&i, T4)[0], ("ann".into(), "deactivated", Some(T3.to_string())));
    // Reactivated after the date: deactivated then.
    i.accounts[1].user.active = true;
    i.events.push(event(T3, "k", "user.reactivate", "bob", json!({})));
    assert_eq!(status(&i, T2)[1], ("bob".into(), "deactivated", Some(T1.to_string())));
    assert_eq!(status(&i, T4)[1], ("bob".into(), "active", None));
}

#[test]
fn a_team_membership_added_later_does_not_count_before_it() {
    let mut i = input(vec![account("carl", true, T1, None)]);
    i.teams = vec![team("t-ops", "Ops")];
    i.mappings = vec![mapping("ops-readers", &["r"], &["Ops"], T1)];
    i.memberships = vec![member("t-ops", "carl", Some(T3))];
    i.grants = vec![grant("carl", "r", "mapping", Some(T3), Some("okta-key"))];
    let standard = grant("carl", "s", "default", Some(T1), Some("okta-key"));
    i.events = vec![
        event(
            T3,
            "okta-key",
            "group.patch",
            "g-t-ops",
            json!({"team": "t-ops", "membersAdded": {"count": 1, "ids": ["carl"]}}),
        ),
        event(T3, "okta-key", "role.provision", "carl", json!({"grantsBefore": [detail(&standard)]})),
    ];
    assert_eq!(lines(&i, T2), [line("carl@example.com", "Standard", "default", "", Some(T1), Some("okta-key"))]);
    let mut after =
        line("carl@example.com", "Read Only", "mapping", "ops-readers through Ops", Some(T3), Some("okta-key"));
    after.7 = "Ops".into();
    assert_eq!(lines(&i, T4), [after]);
}

#[test]
fn a_membership_removed_later_and_a_renamed_team_count_as_they_were() {
    let mut i = input(vec![account("carl", true, T1, None)]);
    i.teams = vec![team("t-ops", "Operations")];
    i.mappings = vec![mapping("ops-readers", &["r"], &["Ops"], T1)];
    let reader = grant("carl", "r", "mapping", None, None);
    i.grants = vec![grant("carl", "s", "default", Some(T3), Some("okta-key"))];
    i.events = vec![
        event(
            T3,
            "okta-key",
            "group.patch",
            "g-t-ops",
            json!({"team": "t-ops", "name": "Operations", "renamedFrom": "Ops", "membersRemoved": {"count": 1, "ids": ["carl"]}}),
        ),
        event(T3, "okta-key", "role.provision", "carl", json!({"grantsBefore": [detail(&reader)]})),
    ];
    let mut then = line("carl@example.com", "Read Only", "mapping", "ops-readers through Ops", None, None);
    then.7 = "Ops".into();
    assert_eq!(lines(&i, T2), [then], "a grant from before grant times were recorded has no since");
}

#[test]
fn a_role_mapping_created_after_the_date_gives_nothing_before_it() {
    let mut i = input(vec![account("carl", true, T1, None)]);
    i.teams = vec![team("t-ops", "Ops"), team("t-sre", "SRE")];
    i.memberships = vec![member("t-ops", "carl", Some(T1)), member("t-sre", "carl", None)];
    // "oncall" was changed at T3 to name SRE too; "ops-readers" was made at T3.
    i.mappings = vec![mapping("ops-readers", &["r"], &["Ops"], T3), mapping("oncall", &["r"], &["Ops", "SRE"], T1)];
    i.grants = vec![grant("carl", "r", "mapping", Some(T1), Some("cli:root"))];
    i.events = vec![
        event(
            T3,
            "cli:root",
            "rolemapping.update",
            "oncall",
            json!({"before": {"displayName": "oncall", "roleIds": ["r"], "teams": ["Ops"], "created": T1}}),
        ),
        event(T3, "cli:root", "rolemapping.create", "ops-readers", json!({"displayName": "ops-readers"})),
    ];
    let via = |at: &str| review_as_of(&i, at).into_iter().map(|r| r.via).collect::<Vec<_>>();
    assert_eq!(via(T2), ["oncall through Ops"]);
    assert_eq!(via(T4), ["oncall through Ops;oncall through SRE;ops-readers through Ops"]);
    assert_eq!(review_as_of(&i, T2)[0].teams, "Ops;SRE", "a membership without a recorded time counts");
}

#[test]
fn a_key_counts_from_its_creation_and_is_revoked_from_its_revocation() {
    let mut i = input(vec![account("ann", true, T1, None)]);
    i.keys = vec![
        key("k-sa", None, T1, Some(T3), Some(T3)),
        key("k-ann", Some("ann"), T1, None, Some(T1)),
        key("k-new", None, T3, None, None),
    ];
    i.events = vec![event(T1, "cli:root", "key.create", "k-sa", json!({}))];
    let keys =
        |at: &str| -> Vec<AccessRow> { review_as_of(&i, at).into_iter().filter(|r| r.account_type == "key").collect() };
    let then = keys(T2);
    assert_eq!(then.len(), 2, "the key made at T3 did not exist");
    assert_eq!((then[0].status, then[0].deactivated.as_deref(), then[0].last_used.as_deref()), ("active", None, None));
    assert_eq!((then[0].owner.as_str(), then[0].granted_by.as_deref()), ("Not a person", Some("cli:root")));
    assert_eq!((then[1].owner.as_str(), then[1].via.as_str()), ("ann@example.com", "owned by ann@example.com"));
    assert_eq!(then[1].last_used.as_deref(), Some(T1));
    let now = keys(T4);
    assert_eq!(now.len(), 3);
    assert_eq!(
        (now[0].status, now[0].deactivated.as_deref(), now[0].last_used.as_deref()),
        ("revoked", Some(T3), Some(T3))
    );
    assert_eq!((now[0].access.as_str(), now[0].source.as_str()), ("directory_read;audit_logs_read", "key"));
}

#[test]
fn users_exist_from_creation_to_deletion_with_their_teams_and_state() {
    let mut i = input(vec![
        account("ann", false, T1, Some(T3)),
        account("bob", true, T3, None),
        account("old", false, T1, Some(T1)),
    ]);
    i.teams = vec![team("t-ops", "Ops")];
    i.grants = vec![grant("ann", "s", "default", Some(T1), Some("k"))];
    i.events = vec![
        event(T1, "k", "group.create", "g-t-ops", json!({"team": "t-ops", "members": {"count": 0, "ids": []}})),
        event(T3, "k", "user.create", "bob", json!({})),
        event(T3, "k", "user.delete", "ann", json!({"removedFromGroups": ["g-t-ops"], "wasActive": true})),
    ];
    let then = review_as_of(&i, T2);
    assert_eq!(then.len(), 1, "bob did not exist yet, old was deleted before: {then:?}");
    assert_eq!((then[0].account_id.as_str(), then[0].status), ("ann", "active"));
    assert_eq!((then[0].access.as_str(), then[0].teams.as_str()), ("Standard", "Ops"));
    assert_eq!(then[0].owner, "ann@mail.example", "the primary e-mail address owns a person's account");
    let now = review_as_of(&i, T4);
    assert_eq!(now.iter().map(|r| r.account_id.as_str()).collect::<Vec<_>>(), ["bob"]);
}

#[test]
fn old_events_without_grants_give_roles_of_unknown_path_and_age() {
    let mut i = input(vec![account("ann", true, T1, None)]);
    i.grants = vec![grant("ann", "a", "scim", Some(T3), Some("k"))];
    // Written before grants were recorded: names only.
    i.events = vec![event(T3, "k", "role.provision", "ann", json!({"roles": ["Admin"], "previous": ["Read Only"]}))];
    assert_eq!(lines(&i, T2), [line("ann@example.com", "Read Only", "unknown", "", None, None)]);
}

#[test]
fn a_role_deleted_after_the_date_is_held_before_it() {
    let mut i = input(vec![account("ann", true, T1, None)]);
    i.grants = vec![grant("ann", "s", "default", Some(T3), Some("cli:root"))];
    let held = GrantDetail {
        user: Some("ann".into()),
        role_id: "c".into(),
        role: "Contractor".into(),
        source: "scim".into(),
        granted_at: Some(T1.into()),
        granted_by: Some("okta-key".into()),
    };
    i.events = vec![
        event(T3, "cli:root", "role.delete", "c", json!({"name": "Contractor", "holders": [held]})),
        event(T3, "cli:root", "role.provision", "ann", json!({"grantsBefore": []})),
    ];
    // Undone newest first: the provision (no role before it), then the deletion (Contractor).
    assert_eq!(lines(&i, T2), [line("ann@example.com", "Contractor", "scim", "", Some(T1), Some("okta-key"))]);
}

#[test]
fn as_of_takes_times_and_days_and_refuses_the_future_and_nonsense() {
    let now = parse_time("2026-06-15T12:00:00Z").expect("time");
    assert_eq!(parse_as_of("2026-03-31", now).expect("day"), "2026-03-31T23:59:59.999Z", "the end of the day");
    assert_eq!(parse_as_of("2026-06-15", now).expect("today"), "2026-06-15T12:00:00.000Z", "today: now");
    assert_eq!(parse_as_of("2026-03-31T10:00:00+02:00", now).expect("time"), "2026-03-31T08:00:00.000Z");
    for bad in ["2026-06-16", "2026-06-15T12:00:01Z", "yesterday", "2026-02-30", ""] {
        let e = parse_as_of(bad, now).expect_err(bad);
        assert_eq!((e.status, e.scim_type), (400, Some(crate::scim::error::ScimType::InvalidValue)), "{bad}");
        assert!(e.detail.contains("asOf"), "{bad}: {}", e.detail);
    }
    assert!(ReviewFormat::parse("xml").is_err());
    assert_eq!(ReviewFormat::parse("CSV").expect("csv"), ReviewFormat::Csv);
}

#[test]
fn the_csv_starts_with_vantas_columns_and_quotes_what_needs_quoting() {
    let row = AccessRow {
        account_type: "person",
        account_id: "u1".into(),
        account: "ann@example.com".into(),
        display_name: "Ann, \"the admin\"".into(),
        owner: "ann@example.com".into(),
        status: "deactivated",
        created: T1.into(),
        deactivated: Some(T3.into()),
        access: "Read Only".into(),
        source: "mapping".into(),
        via: "ops through Ops;audit through Ops".into(),
        granted_at: None,
        granted_by: None,
        teams: "Ops".into(),
        last_used: None,
    };
    let csv = access_review_csv(&[row]).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "Account name,Account owner,Role,Status,Date created (UTC),Date deactivated (UTC),account_type,account_id,\
             display_name,source,via,granted_at,granted_by,teams,created_at,deactivated_at,last_used_at"
        )
    );
    assert_eq!(
        lines.next(),
        Some(
            "ann@example.com,ann@example.com,Read Only,Deactivated,2026-01-01,2026-03-01,person,u1,\"Ann, \"\"the admin\"\"\",\
             mapping,ops through Ops;audit through Ops,,,Ops,2026-01-01T00:00:00.000Z,2026-03-01T00:00:00.000Z,"
        )
    );
    assert_eq!(lines.next(), None);
}

#[test]
fn memberships_changed_by_hand_and_by_group_links_are_undone() {
    let mut i = input(vec![account("ann", true, T1, None), account("bob", true, T1, None)]);
    i.teams = vec![team("t-ops", "Ops"), team("t-sre", "SRE")];
    // Now: ann in SRE (added by hand at T3, removed from Ops by hand at T3); bob in Ops (the
    // group was linked at T3, which replaced ann by bob) and out of SRE (unlinked at T3).
    i.memberships = vec![member("t-sre", "ann", Some(T3)), member("t-ops", "bob", Some(T3))];
    i.events = vec![
        event(T3, "cli:root", "team.member.add", "t-sre", json!({"user": "ann"})),
        event(T3, "cli:root", "team.member.remove", "t-ops", json!({"user": "ann"})),
        event(
            T3,
            "okta-key",
            "group.link",
            "g-t-ops",
            json!({"team": "t-ops", "members": {"count": 1, "ids": ["bob"]}, "membersRemoved": {"count": 1, "ids": ["ann"]}}),
        ),
        event(
            T3,
            "okta-key",
            "group.unlink",
            "g-t-sre",
            json!({"team": "t-sre", "membersRemoved": {"count": 1, "ids": ["bob"]}, "removedCount": 1}),
        ),
    ];
    let teams = |at: &str| review_as_of(&i, at).into_iter().map(|r| (r.account_id, r.teams)).collect::<Vec<_>>();
    assert_eq!(teams(T2), [("ann".to_string(), "Ops".to_string()), ("bob".to_string(), "SRE".to_string())]);
    assert_eq!(teams(T4), [("ann".to_string(), "SRE".to_string()), ("bob".to_string(), "Ops".to_string())]);
}
