//! Adversarial end to end: namespaces are a trust boundary. On the real control plane
//! (tests/env/control-plane.sh) and the real SCIM server on loopback, with one trusted namespace
//! (`platform-*`) and one untrusted (`dev-*`), every attack of the security model is attempted.
//! Each must end with a condition naming why, and with the SCIM server's state unchanged: every
//! user, group and team and every user's access view are compared before and after.
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::k8s::*;
use common::{TestServer, create_key};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use reqwest::{Method, StatusCode};
use scim_operator::operator::crd::{ManagedTeam, RoleMapping, ScimUser};
use scim_operator::operator::ownership::Owner;
use serde_json::{Value, json};
use std::time::Duration;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// How long an attack is given to do harm before the state is compared (several reconciles:
/// every change the operator sees triggers one, and refused resources are retried).
const SETTLE: Duration = Duration::from_secs(3);

/// Everything an attack could change on the server: users, groups with members, every team
/// (also those no SCIM client manages, as the CLI lists them) and every user's access view.
async fn snapshot(scim: &TestServer) -> Value {
    let (s, users) = scim.get("/Users?count=1000&sortBy=userName").await;
    assert_eq!(s, StatusCode::OK, "{users}");
    let (s, groups) = scim.get("/Groups?count=1000&sortBy=displayName").await;
    assert_eq!(s, StatusCode::OK, "{groups}");
    let mut access = serde_json::Map::new();
    for u in users["Resources"].as_array().into_iter().flatten() {
        let id = u["id"].as_str().expect("user id");
        access.insert(id.to_string(), scim.access(id).await);
    }
    let mut teams = Vec::new();
    let mut read = scim.store.begin_read().await.expect("read handle");
    for (t, _) in scim.directory.teams().await.expect("teams") {
        let mut members = read.team_members(&t.id).await.expect("team members");
        members.sort();
        teams.push(json!({"id": t.id, "name": t.name, "groupId": t.scim_id, "externalId": t.external_id,
                          "version": t.version, "members": members}));
    }
    drop(read);
    teams.sort_by_key(|t| t["name"].as_str().unwrap_or_default().to_string());
    json!({"users": users["Resources"], "groups": groups["Resources"], "teams": teams, "access": access})
}

/// Asserts the server state equals `before`, naming the attack.
async fn unchanged(scim: &TestServer, before: &Value, attack: &str) {
    tokio::time::sleep(SETTLE).await;
    let after = snapshot(scim).await;
    assert_eq!(&after, before, "{attack}: the SCIM server's state changed");
}

fn team(name: &str, spec: Value) -> ManagedTeam {
    serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
        "metadata": {"name": name}, "spec": spec}))
    .expect("a ManagedTeam")
}

fn team_reason(t: &ManagedTeam) -> Option<(String, String)> {
    t.status.as_ref().and_then(|s| ready(&s.conditions))
}

fn message(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> String {
    conds.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default()
}

/// Waits until the team reports Ready=`status` with `reason`.
async fn team_becomes(api: &Api<ManagedTeam>, name: &str, status: &str, reason: &str) -> ManagedTeam {
    wait_for(api, name, reason, |t| {
        team_reason(t) == Some((status.into(), reason.into()))
            && t.status.as_ref().and_then(|s| s.observed_generation) == t.metadata.generation
    })
    .await
}

/// Runs the command-line administrator's `scim-operator ARGS --db DB`.
fn cli(db: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(args)
        .args(["--db", db])
        .output()
        .expect("run scim-operator");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespaces_touch_only_what_they_own() {
    if control_plane().is_none() {
        return;
    }
    let client = Client::try_default().await.expect("kubeconfig");
    install_crds(&client).await;
    forget_earlier_runs(&client).await;
    let platform = namespace(&client, "platform").await;
    let dev = namespace(&client, "dev").await;
    let cluster = Api::<Namespace>::all(client.clone()).get("kube-system").await.unwrap().uid().unwrap();
    let scim = TestServer::start().await;
    let okta = create_key(&scim.store, "okta", None).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &scim.token).unwrap();
    // A long resync: what happens must come from watches, not from polling.
    let operator = start_operator_with(&scim.base, &token_file, &[&platform], &platform, 3600);

    let pp = PostParams::default();
    let trusted_users: Api<ScimUser> = Api::namespaced(client.clone(), &platform);
    let dev_users: Api<ScimUser> = Api::namespaced(client.clone(), &dev);
    let trusted_teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &platform);
    let dev_teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &dev);
    let mappings: Api<RoleMapping> = Api::all(client.clone());

    // --- the victims: platform's ada, and dev's own user mallory
    trusted_users
        .create(&pp, &scim_user("ada", json!({"userName": "ada@sec.test", "displayName": "Ada"})))
        .await
        .unwrap();
    dev_users.create(&pp, &scim_user("mallory", json!({"userName": "mallory@sec.test"}))).await.unwrap();
    let ada = wait_for(&trusted_users, "ada", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    wait_for(&dev_users, "mallory", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    let ada_id = ada.status.as_ref().unwrap().scim_id.clone().unwrap();
    let ada_marker = Owner::new(&cluster, &platform, &ada.uid().unwrap()).marker().to_string();
    let (_, server_ada) = scim.get(&format!("/Users/{ada_id}")).await;
    assert_eq!(server_ada["externalId"], ada_marker.as_str(), "the marker names cluster, namespace and uid");

    // --- a user marked by an earlier release (`k8s:<uid>`) is recognised and moves to the marker.
    let (s, _) = scim
        .patch(
            &format!("/Users/{ada_id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "externalId", "value": format!("k8s:{}", ada.uid().unwrap())}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    trusted_users
        .patch("ada", &PatchParams::default(), &Patch::Merge(json!({"spec": {"title": "Engineer"}})))
        .await
        .unwrap();
    wait_until("the legacy marker migrated", || async {
        let (_, u) = scim.get(&format!("/Users/{ada_id}")).await;
        u["externalId"] == ada_marker.as_str() && u["title"] == "Engineer"
    })
    .await;
    wait_for(&trusted_users, "ada", "Ready", |u| user_ready(u, "True", "Provisioned")).await;

    // --- attack: a forged externalId. The schema refuses it before the operator sees it.
    let before = snapshot(&scim).await;
    let forged = scim_user(
        "ada-forged",
        json!({"userName": "ada@sec.test", "externalId": ada_marker, "deletionPolicy": "Delete"}),
    );
    let refused = dev_users.create(&pp, &forged).await.expect_err("a forged externalId is refused");
    assert!(refused.to_string().contains("may not start with k8s:"), "{refused}");
    let imitation = scim_user("ada-imitation", json!({"userName": "ada@sec.test", "externalId": "k8s:anything"}));
    assert!(dev_users.create(&pp, &imitation).await.is_err(), "any marker-like externalId is refused");

    // --- attack: claiming ada's userName from dev. Conflict, without ada's marker in the message.
    dev_users
        .create(&pp, &scim_user("ada-claim", json!({"userName": "ADA@sec.test", "deletionPolicy": "Delete"})))
        .await
        .unwrap();
    let claim = wait_for(&dev_users, "ada-claim", "Conflict", |u| user_ready(u, "False", "Conflict")).await;
    let said = message(&claim.status.as_ref().unwrap().conditions);
    assert!(said.contains("belongs to another Kubernetes resource"), "{said}");
    assert!(!said.contains(&ada_marker) && !said.contains(&ada.uid().unwrap()), "the owner's marker leaked: {said}");
    assert!(claim.status.as_ref().unwrap().scim_id.is_none(), "a refused claimant never records ada's id");
    unchanged(&scim, &before, "claiming another namespace's user").await;

    // --- attack: deleting the refused claimant (deletionPolicy Delete) must not touch ada.
    dev_users.delete("ada-claim", &DeleteParams::default()).await.unwrap();
    wait_gone(&dev_users, "ada-claim").await;
    unchanged(&scim, &before, "deleting a refused claimant").await;
    assert_eq!(scim.get(&format!("/Users/{ada_id}")).await.1["active"], true);

    // --- attack: adopting, from dev, a user the identity provider created.
    let (s, _, grace) = scim
        .call_as(
            &okta,
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "grace@sec.test", "externalId": "00u-okta-grace",
                "displayName": "Grace Hopper", "name": {"givenName": "Grace", "familyName": "Hopper"},
                "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
                "addresses": [{"locality": "Arlington", "type": "work"}],
                "roles": [{"value": "Read Only"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{grace}");
    let grace_id = grace["id"].as_str().unwrap().to_string();
    let before = snapshot(&scim).await;
    dev_users
        .create(
            &pp,
            &scim_user("grace", json!({"userName": "grace@sec.test", "displayName": "Mallory's Grace", "adopt": true})),
        )
        .await
        .unwrap();
    let adopt =
        wait_for(&dev_users, "grace", "AdoptionNotAllowed", |u| user_ready(u, "False", "AdoptionNotAllowed")).await;
    assert!(message(&adopt.status.as_ref().unwrap().conditions).contains("trusted namespaces"));
    unchanged(&scim, &before, "adoption from an untrusted namespace").await;

    // The same adoption from the trusted namespace works, and changes only what the spec declares.
    trusted_users
        .create(
            &pp,
            &scim_user("grace", json!({"userName": "grace@sec.test", "displayName": "Grace B. Hopper", "adopt": true})),
        )
        .await
        .unwrap();
    let adopted = wait_for(&trusted_users, "grace", "adopted", |u| user_ready(u, "True", "Provisioned")).await;
    assert_eq!(adopted.status.as_ref().unwrap().scim_id.as_deref(), Some(grace_id.as_str()));
    let (_, after) = scim.get(&format!("/Users/{grace_id}")).await;
    assert_eq!(after["displayName"], "Grace B. Hopper");
    assert_eq!(after["externalId"], Owner::new(&cluster, &platform, &adopted.uid().unwrap()).marker());
    for kept in ["phoneNumbers", "addresses", "roles", "name"] {
        assert_eq!(after[kept], grace[kept], "{kept} set by the identity provider is kept");
    }
    assert_eq!(adopted.status.as_ref().unwrap().effective_roles, ["Read Only"], "the IdP's role still applies");

    // --- an administrator's team (CLI), mapped to Admin by a RoleMapping, with ada in it
    cli(&scim.db_url, &["teams", "create", "Admins"]);
    cli(&scim.db_url, &["teams", "add-member", "Admins", &ada_id]);
    cli(&scim.db_url, &["teams", "create", "Auditors"]);
    let mapping_name = format!("admins-{dev}");
    let mapping: RoleMapping = serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping",
        "metadata": {"name": mapping_name}, "spec": {"roles": ["Admin"], "teams": ["Admins"]}}))
    .unwrap();
    mappings.create(&pp, &mapping).await.unwrap();
    wait_for(&mappings, &mapping_name, "Ready", |m| {
        m.status.as_ref().and_then(|s| ready(&s.conditions)).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert!(scim.access(&ada_id).await.to_string().contains("\"Admin\""), "ada is Admin through the team");

    // --- attack: linking the administrator's Admin-mapped team from dev, with and without asking.
    let before = snapshot(&scim).await;
    let members = json!([{"scimUserRef": "mallory"}]);
    dev_teams.create(&pp, &team("admins", json!({"displayName": "Admins", "members": members}))).await.unwrap();
    dev_teams
        .create(&pp, &team("admins-link", json!({"displayName": "Admins", "members": members, "linkExisting": true})))
        .await
        .unwrap();
    for name in ["admins", "admins-link"] {
        let t = team_becomes(&dev_teams, name, "False", "RoleMappedTeamNotAllowed").await;
        assert!(message(&t.status.as_ref().unwrap().conditions).contains("not trusted to grant roles"));
    }
    unchanged(&scim, &before, "linking an Admin-mapped team from an untrusted namespace").await;
    let mallory_id = dev_users.get("mallory").await.unwrap().status.unwrap().scim_id.unwrap();
    let access = scim.access(&mallory_id).await;
    assert!(!access.to_string().contains("\"Admin\""), "mallory gained Admin: {access}");

    // --- attack: linking an unmapped administrator's team from dev: LinkNotAllowed; without
    // linkExisting a Conflict (the operator creates with If-None-Match: *, never links).
    dev_teams
        .create(
            &pp,
            &team("auditors-link", json!({"displayName": "Auditors", "members": members, "linkExisting": true})),
        )
        .await
        .unwrap();
    dev_teams.create(&pp, &team("auditors", json!({"displayName": "Auditors", "members": members}))).await.unwrap();
    team_becomes(&dev_teams, "auditors-link", "False", "LinkNotAllowed").await;
    let t = team_becomes(&dev_teams, "auditors", "False", "Conflict").await;
    assert!(message(&t.status.as_ref().unwrap().conditions).contains("linkExisting"));
    // Even the trusted namespace does not link without asking.
    trusted_teams
        .create(&pp, &team("auditors", json!({"displayName": "Auditors", "members": [{"scimUserRef": "ada"}]})))
        .await
        .unwrap();
    team_becomes(&trusted_teams, "auditors", "False", "Conflict").await;
    unchanged(&scim, &before, "linking an existing team without the right to").await;

    // Asking, in the trusted namespace, links it.
    trusted_teams
        .patch("auditors", &PatchParams::default(), &Patch::Merge(json!({"spec": {"linkExisting": true}})))
        .await
        .unwrap();
    let linked = team_becomes(&trusted_teams, "auditors", "True", "Provisioned").await;
    let auditors_gid = linked.status.as_ref().unwrap().scim_id.clone().unwrap();
    let (_, g) = scim.get(&format!("/Groups/{auditors_gid}")).await;
    assert_eq!(g["displayName"], "Auditors");
    assert_eq!(g["members"][0]["value"], ada_id.as_str());

    // --- attack: taking over a team an identity provider pushed, from either namespace.
    let (s, _, pushed) = scim
        .call_as(
            &okta,
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Okta Engineers", "externalId": "00g-okta-eng",
                "members": [{"value": grace_id}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{pushed}");
    let before = snapshot(&scim).await;
    dev_teams
        .create(&pp, &team("okta-eng", json!({"displayName": "Okta Engineers", "members": members})))
        .await
        .unwrap();
    trusted_teams
        .create(
            &pp,
            &team(
                "okta-eng",
                json!({"displayName": "Okta Engineers", "members": [{"scimUserRef": "ada"}], "linkExisting": true}),
            ),
        )
        .await
        .unwrap();
    for api in [&dev_teams, &trusted_teams] {
        let t = team_becomes(api, "okta-eng", "False", "Conflict").await;
        assert!(message(&t.status.as_ref().unwrap().conditions).contains("identity provider"));
    }
    unchanged(&scim, &before, "rewriting a team the identity provider manages").await;

    // --- attack: a dev team naming a user dev does not own (ada, by userName).
    dev_teams
        .create(&pp, &team("friends", json!({"displayName": "Dev Friends", "members": [{"userName": "ada@sec.test"}]})))
        .await
        .unwrap();
    let t = team_becomes(&dev_teams, "friends", "False", "MemberNotAllowed").await;
    assert!(message(&t.status.as_ref().unwrap().conditions).contains("ada@sec.test"));
    unchanged(&scim, &before, "adding a user of another namespace").await;

    // --- attack: a userName squat. A trusted team names, by userName, a member not provisioned
    // yet; dev creates a ScimUser of that userName (dev chooses its e-mail and invitation). The
    // team hears of it through the watch (the resync is an hour away) and refuses it: the user
    // is owned by an untrusted namespace. (Before the fix the team took it in: Provisioned, with
    // 2 members.)
    trusted_teams
        .create(
            &pp,
            &team(
                "oncall",
                json!({"displayName": "On-call", "members": [{"userName": "zed@sec.test"}, {"scimUserRef": "ada"}]}),
            ),
        )
        .await
        .unwrap();
    let pending = team_becomes(&trusted_teams, "oncall", "False", "MembersPending").await;
    assert_eq!(pending.status.as_ref().unwrap().pending_members, ["zed@sec.test"]);
    let oncall_gid = pending.status.as_ref().unwrap().scim_id.clone().unwrap();
    dev_users.create(&pp, &scim_user("zed", json!({"userName": "zed@sec.test"}))).await.unwrap();
    let zed = wait_for(&dev_users, "zed", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    let zed_id = zed.status.as_ref().unwrap().scim_id.clone().unwrap();
    // An untrusted namespace may create users, not make the service e-mail them: dev's zed gets
    // no invitation (withheld, and audited); platform's ada got hers.
    let (invitations, _) = scim.directory.invitations_and_outbox(100).await.expect("invitations");
    let invited: Vec<&str> = invitations.iter().map(|i| i.user_id.as_str()).collect();
    assert!(invited.contains(&ada_id.as_str()), "a trusted namespace's user is invited: {invited:?}");
    assert!(!invited.contains(&zed_id.as_str()), "dev made the service e-mail zed@sec.test");
    let mut read = scim.store.begin_read().await.expect("read handle");
    let query = scim_operator::store::AuditQuery {
        action: Some("invitation.withheld".into()),
        target_id: Some(zed_id.clone()),
        ..Default::default()
    };
    assert_eq!(read.list_audit(&query).await.expect("audit trail").len(), 1, "the withheld invitation is audited");
    drop(read);
    let refused = team_becomes(&trusted_teams, "oncall", "False", "MemberNotAllowed").await;
    let said = message(&refused.status.as_ref().unwrap().conditions);
    assert!(said.contains("zed@sec.test") && said.contains(&dev), "{said}");
    let before = snapshot(&scim).await;
    let (_, g) = scim.get(&format!("/Groups/{oncall_gid}")).await;
    let members: Vec<&str> =
        g["members"].as_array().into_iter().flatten().filter_map(|m| m["value"].as_str()).collect();
    assert_eq!(members, [ada_id.as_str()], "only ada, never dev's zed ({zed_id})");
    unchanged(&scim, &before, "a userName squat from an untrusted namespace").await;

    // --- deleting refused teams (deletionPolicy Unlink by default) touches nothing.
    let before = snapshot(&scim).await;
    for name in ["admins", "admins-link", "auditors-link", "auditors", "okta-eng", "friends"] {
        dev_teams.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&dev_teams, name).await;
    }
    trusted_teams.delete("okta-eng", &DeleteParams::default()).await.unwrap();
    wait_gone(&trusted_teams, "okta-eng").await;
    unchanged(&scim, &before, "deleting refused teams").await;
    let (s, _, g) =
        scim.call_as(&okta, Method::GET, &format!("/Groups/{}", pushed["id"].as_str().unwrap()), None).await;
    assert_eq!((s, g["members"][0]["value"].as_str()), (StatusCode::OK, Some(grace_id.as_str())));
    for name in ["auditors", "oncall"] {
        trusted_teams.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&trusted_teams, name).await;
    }
    mappings.delete(&mapping_name, &DeleteParams::default()).await.unwrap();
    wait_gone(&mappings, &mapping_name).await;
    for (api, name) in [
        (&dev_users, "grace"),
        (&dev_users, "mallory"),
        (&dev_users, "zed"),
        (&trusted_users, "grace"),
        (&trusted_users, "ada"),
    ] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(api, name).await;
    }
    assert_eq!(scim.get(&format!("/Users/{ada_id}")).await.1["active"], false, "ada's own resource deactivates her");
    operator.stop().await;
    scim.stop().await;
}
