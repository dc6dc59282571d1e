//! Adversarial end to end: roles granted from Git follow Git, refusals cost no writes, and a
//! RoleMapping never rewrites a mapping it did not create. On the real control plane and the
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
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use reqwest::StatusCode;
use scim_operator::operator::crd::ScimUser;
use serde_json::json;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The names of the user's effective roles, from the access view the seeds' audit relies on.
async fn effective_roles(scim: &TestServer, id: &str) -> Vec<String> {
    let view = scim.access(id).await;
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

/// The tests of this file run one at a time: each one's operator watches every namespace.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_granted_from_git_are_withdrawn_when_git_stops_asking() {
    if control_plane().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let client = fresh_cluster().await;
    let platform = namespace(&client, "platform").await;
    let scim = TestServer::start().await;
    let (_dir, token_file) = token_file(&scim.token);
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

/// The server's count of `method` requests on `route` answered `status` (its /metrics).
async fn served(scim: &TestServer, method: &str, route: &str, status: &str) -> u64 {
    let text = scim.http.get(format!("{}/metrics", scim.root())).send().await.unwrap().text().await.unwrap();
    let labels = [format!("method=\"{method}\""), format!("route=\"{route}\""), format!("status=\"{status}\"")];
    text.lines()
        .filter(|l| l.starts_with("scim_http_requests_total{") && labels.iter().all(|x| l.contains(x.as_str())))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// A resource refused on ownership grounds is looked at again with backoff, and each look is a
/// read: a standing refusal never POSTs again (before, every retry sent the create anew).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standing_refusal_is_retried_with_reads_only() {
    if control_plane().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let client = fresh_cluster().await;
    let platform = namespace(&client, "platform").await;
    let scim = TestServer::start().await;
    // An administrator's user of that name, which no resource owns.
    scim.create_user("grace@roles.test").await;
    let (_dir, token_file) = token_file(&scim.token);
    // A resync of 1 s: without backoff, a refused resource would be retried every second.
    let operator = start_operator_with(&scim.base, &token_file, &[&platform], &platform, 1);
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &platform);
    users.create(&PostParams::default(), &scim_user("grace", json!({"userName": "grace@roles.test"}))).await.unwrap();
    wait_for(&users, "grace", "Conflict", |u| user_ready(u, "False", "Conflict")).await;
    let posts = served(&scim, "POST", "/scim/v2/Users", "409").await;
    let looks = served(&scim, "GET", "/scim/v2/Users", "200").await;
    assert_eq!(posts, 1, "the first attempt creates (and learns the name is taken)");
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let looks_after = served(&scim, "GET", "/scim/v2/Users", "200").await;
    assert!(looks_after > looks, "the refusal was looked at again ({looks} -> {looks_after} lookups)");
    assert_eq!(served(&scim, "POST", "/scim/v2/Users", "409").await, posts, "a retry sent the create again");
    assert!(looks_after - looks <= 5, "retries back off: {} lookups in 10 s", looks_after - looks);
    operator.stop().await;
    let _ = users.delete("grace", &Default::default()).await;
    forget_earlier_runs(&client).await;
    scim.stop().await;
}

/// A RoleMapping replaces or deletes only the server mapping it created: one of the same name
/// that an administrator made is a `Conflict`, left exactly as it was, also when the resource
/// is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_role_mapping_never_rewrites_an_administrators_mapping_of_its_name() {
    if control_plane().is_none() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let client = fresh_cluster().await;
    // A unique name for this run (RoleMappings are cluster-scoped).
    let name = namespace(&client, "rm").await;
    let scim = TestServer::start().await;
    let (s, made) = scim
        .post(
            "/RoleMappings",
            json!({"schemas": ["urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping"], "displayName": name,
                   "roles": [{"value": "Read Only"}], "teams": [{"value": "Ops"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().expect("mapping id").to_string();
    let (_, before) = scim.get(&format!("/RoleMappings/{id}")).await;
    let (_dir, token_file) = token_file(&scim.token);
    let operator = start_operator(&scim.base, &token_file, &[], &name);
    let mappings: Api<scim_operator::operator::crd::RoleMapping> = Api::all(client.clone());
    let mapping = serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping",
        "metadata": {"name": name}, "spec": {"roles": ["Admin"], "teams": ["Ops"]}}))
    .expect("a RoleMapping");
    mappings.create(&PostParams::default(), &mapping).await.unwrap();
    let refused = wait_for(&mappings, &name, "Conflict", |m| {
        m.status.as_ref().and_then(|s| ready(&s.conditions)) == Some(("False".into(), "Conflict".into()))
    })
    .await;
    let said = &refused.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message;
    assert!(said.contains("did not create") && said.contains("nothing was written"), "{said}");
    assert_eq!(scim.get(&format!("/RoleMappings/{id}")).await.1, before, "the administrator's mapping changed");
    mappings.delete(&name, &Default::default()).await.unwrap();
    wait_gone(&mappings, &name).await;
    let (s, after) = scim.get(&format!("/RoleMappings/{id}")).await;
    assert_eq!((s, &after), (StatusCode::OK, &before), "deleting the resource touched the administrator's mapping");
    operator.stop().await;
    scim.stop().await;
}
