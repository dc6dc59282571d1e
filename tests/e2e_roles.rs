//! Adversarial end to end: roles granted from Git follow Git. On the real control plane and the
//! real SCIM server, a trusted ScimUser asks for Admin; then the spec stops asking in each of
//! the three ways an issue report found Admin staying: an empty list, the field deleted, and
//! the namespace taken off the trusted list (an operator restart with the new setting). Each
//! time the operator withdraws exactly what it granted, the user falls back to the default
//! role, and a role an administrator granted beside it stays.
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::TestServer;
use common::k8s::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use reqwest::StatusCode;
use scim_operator::operator::crd::ScimUser;
use serde_json::{Value, json};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The names of the user's effective roles, from the access view the seeds' audit relies on.
async fn effective_roles(scim: &TestServer, id: &str) -> Vec<String> {
    let resp = scim
        .http
        .get(format!("{}/api/v1/users/{id}/access", scim.root()))
        .bearer_auth(&scim.token)
        .send()
        .await
        .expect("access view");
    assert_eq!(resp.status(), StatusCode::OK);
    let view: Value = resp.json().await.expect("access JSON");
    let mut names: Vec<String> = view["effectiveRoles"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles in the access view: {view}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_else(|| panic!("a role without a name: {r}")).to_string())
        .collect();
    names.sort();
    names
}

/// The roles the SCIM user carries on the server (its explicit roles), sorted.
async fn server_roles(scim: &TestServer, id: &str) -> Vec<String> {
    let (s, u) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    let mut out: Vec<String> = u["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["value"].as_str().unwrap_or_default().to_string())
        .collect();
    out.sort();
    out
}

/// The roles the operator recorded as granted by the resource (`status.grantedRoles`).
fn granted(u: &ScimUser) -> Vec<String> {
    let status = serde_json::to_value(&u.status).expect("status as JSON");
    serde_json::from_value(status["grantedRoles"].clone()).unwrap_or_default()
}

async fn roles_become(scim: &TestServer, id: &str, what: &str, want: &[&str]) {
    wait_until(what, || async { effective_roles(scim, id).await == want }).await;
}

/// The audit trail's role events (`role.provision`, `role.revoke`) for the user.
async fn role_events(scim: &TestServer, id: &str) -> Vec<String> {
    let mut tx = scim.store.begin_read().await.expect("read handle");
    let query = scim_operator::store::AuditQuery { target_id: Some(id.to_string()), ..Default::default() };
    let events = tx.list_audit(&query).await.expect("audit trail");
    events.into_iter().map(|e| e.action).filter(|a| a == "role.provision" || a == "role.revoke").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_granted_from_git_are_withdrawn_when_git_stops_asking() {
    if control_plane().is_none() {
        return;
    }
    let client = Client::try_default().await.expect("kubeconfig");
    install_crds(&client).await;
    forget_earlier_runs(&client).await;
    let platform = namespace(&client, "platform").await;
    let scim = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &scim.token).unwrap();
    let mut operator = start_operator(&scim.base, &token_file, &[&platform], &platform);
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &platform);
    let pp = PostParams::default();

    users.create(&pp, &scim_user("ada", json!({"userName": "ada@roles.test", "roles": ["Admin"]}))).await.unwrap();
    let ada = wait_for(&users, "ada", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    let id = ada.status.as_ref().and_then(|s| s.scim_id.clone()).expect("scimId");
    roles_become(&scim, &id, "Admin granted from Git", &["Admin"]).await;

    // An administrator grants Read Only beside it (the operator did not grant it: it stays).
    let (s, body) = scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "roles", "value": [{"value": "Read Only"}]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(server_roles(&scim, &id).await, ["Admin", "Read Only"]);
    // The operator sees no drift in a role it did not grant, and does not take it away.
    users.patch("ada", &PatchParams::default(), &Patch::Merge(json!({"spec": {"title": "SRE"}}))).await.unwrap();
    wait_until("the title change applied", || async { scim.get(&format!("/Users/{id}")).await.1["title"] == "SRE" })
        .await;
    assert_eq!(server_roles(&scim, &id).await, ["Admin", "Read Only"], "an administrator's role was taken away");

    // 1. `roles: []`: Admin is withdrawn, Read Only stays.
    users.patch("ada", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": []}}))).await.unwrap();
    roles_become(&scim, &id, "Admin withdrawn after roles: []", &["Read Only"]).await;
    assert_eq!(server_roles(&scim, &id).await, ["Read Only"]);
    wait_for(&users, "ada", "no role recorded as granted", |u| granted(u).is_empty()).await;

    // The administrator's role goes; from here on the default role is the fallback.
    let (s, body) = scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "roles"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    roles_become(&scim, &id, "the default role applies", &["Standard"]).await;

    // 2. The `roles` field deleted from the spec.
    users.patch("ada", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": ["Admin"]}}))).await.unwrap();
    roles_become(&scim, &id, "Admin granted again", &["Admin"]).await;
    wait_for(&users, "ada", "Admin recorded as granted", |u| granted(u) == ["Admin"]).await;
    users.patch("ada", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": null}}))).await.unwrap();
    roles_become(&scim, &id, "Admin withdrawn after the field was deleted", &["Standard"]).await;

    // 3. The namespace taken off the trusted list.
    users.patch("ada", &PatchParams::default(), &Patch::Merge(json!({"spec": {"roles": ["Admin"]}}))).await.unwrap();
    roles_become(&scim, &id, "Admin granted a third time", &["Admin"]).await;
    wait_for(&users, "ada", "Admin recorded as granted", |u| granted(u) == ["Admin"]).await;
    operator.stop().await;
    operator = start_operator(&scim.base, &token_file, &[], &platform);
    roles_become(&scim, &id, "Admin withdrawn once the namespace is no longer trusted", &["Standard"]).await;
    let ada = wait_for(&users, "ada", "RolesAllowed=False", |u| {
        u.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "RolesAllowed" && c.status == "False"))
            && granted(u).is_empty()
    })
    .await;
    let said = &ada.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "RolesAllowed").unwrap().message;
    assert!(said.contains("withdrawn"), "{said}");

    // Every withdrawal is in the audit trail as a change of the user's roles.
    let events = role_events(&scim, &id).await;
    assert!(events.len() >= 6, "three grants and three withdrawals audited: {events:?}");

    operator.stop().await;
    let _ = users.delete("ada", &Default::default()).await;
    scim.stop().await;
    drop(ada.name_any());
}
