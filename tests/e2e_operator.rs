//! End to end: the operator against a real kube-apiserver (tests/env/control-plane.sh) and the
//! real SCIM server on loopback. Scenarios run in sequence against one operator, because
//! controllers watch the whole cluster.
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::k8s::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use reqwest::StatusCode;
use scim_operator::clock::SystemClock;
use scim_operator::operator::crd::{ManagedTeam, RoleMapping, ScimUser};
use scim_operator::operator::ownership::Owner;
use scim_operator::provisioning::Directory;
use scim_operator::server::{AppState, ServerConfig, metrics::Metrics};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A SCIM server that can be stopped and started again on the same address and database.
struct Scim {
    addr: SocketAddr,
    db: String,
    token: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Scim {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("scim.db").to_string_lossy().into_owned();
        let store = scim_operator::store::open(&db).await.unwrap();
        let token = common::create_key(&store, "operator", None).await;
        store.close().await;
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut s = Self { addr, db, token, http: reqwest::Client::new(), stop: None, task: None, _dir: dir };
        s.start().await;
        s
    }

    async fn start(&mut self) {
        let store = scim_operator::store::open(&self.db).await.unwrap();
        let state = AppState::new(
            Directory::new(store, Arc::new(SystemClock)),
            Arc::new(Metrics::default()),
            ServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = scim_operator::server::serve(listener, state, async {
                let _ = rx.await;
            })
            .await;
        }));
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn url(&self) -> String {
        format!("http://{}/scim/v2", self.addr)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url())).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn user_by_name(&self, user_name: &str) -> Option<Value> {
        let q = serde_urlencoded::to_string([("filter", format!("userName eq \"{user_name}\""))]).unwrap();
        let (_, body) = self.call(reqwest::Method::GET, &format!("/Users?{q}"), None).await;
        body["Resources"].get(0).cloned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_end_to_end() {
    if control_plane().is_none() {
        return;
    }
    let client = Client::try_default().await.expect("kubeconfig");
    install_crds(&client).await;
    let trusted = namespace(&client, "trusted").await;
    let untrusted = namespace(&client, "untrusted").await;
    // The ownership marker: the cluster identity (by default the uid of kube-system), the
    // namespace and the resource's uid.
    let cluster = Api::<Namespace>::all(client.clone()).get("kube-system").await.unwrap().uid().unwrap();
    let marker = |u: &ScimUser| Owner::new(&cluster, &trusted, &u.uid().unwrap()).marker().to_string();
    let mut scim = Scim::new().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &scim.token).unwrap();
    let mut operator = start_operator(&scim.url(), &token_file, &[&trusted], &trusted);

    let users: Api<ScimUser> = Api::namespaced(client.clone(), &trusted);
    let outsiders: Api<ScimUser> = Api::namespaced(client.clone(), &untrusted);
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &trusted);
    let mappings: Api<RoleMapping> = Api::all(client.clone());
    let pp = PostParams::default();

    // --- create, with explicit roles in a trusted namespace
    users
        .create(
            &pp,
            &scim_user(
                "alice",
                json!({"userName": "alice@e2e.test", "displayName": "Alice", "roles": ["Admin"],
        "emails": [{"value": "alice@e2e.test", "type": "work", "primary": true}]}),
            ),
        )
        .await
        .unwrap();
    let alice = wait_for(&users, "alice", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    let alice_id = alice.status.as_ref().unwrap().scim_id.clone().unwrap();
    let server_alice = scim.user_by_name("alice@e2e.test").await.expect("alice on the server");
    assert_eq!(server_alice["id"], alice_id.as_str());
    assert_eq!(server_alice["externalId"], marker(&alice));
    assert_eq!(server_alice["roles"][0]["value"], "Admin");
    assert!(alice.finalizers().iter().any(|f| f == "scim.dev/cleanup"));

    // --- an untrusted namespace asking for roles: provisioned, but no role sent
    outsiders
        .create(&pp, &scim_user("mallory", json!({"userName": "mallory@e2e.test", "roles": ["Admin"]})))
        .await
        .unwrap();
    let mallory = wait_for(&outsiders, "mallory", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    let roles_cond =
        mallory.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "RolesAllowed").cloned().unwrap();
    assert_eq!((roles_cond.status.as_str(), roles_cond.reason.as_str()), ("False", "RolesNotAllowed"));
    assert!(scim.user_by_name("mallory@e2e.test").await.unwrap().get("roles").is_none());

    // --- two resources claiming one userName: one Conflict, no flip-flop
    users.create(&pp, &scim_user("alice-again", json!({"userName": "ALICE@e2e.test"}))).await.unwrap();
    wait_for(&users, "alice-again", "Conflict", |u| user_ready(u, "False", "Conflict")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = users.get("alice-again").await.unwrap();
    assert!(user_ready(&again, "False", "Conflict"));
    assert_eq!(scim.user_by_name("alice@e2e.test").await.unwrap()["externalId"], marker(&alice));
    users.delete("alice-again", &DeleteParams::default()).await.unwrap();
    wait_gone(&users, "alice-again").await;
    assert!(
        scim.user_by_name("alice@e2e.test").await.unwrap()["active"] == true,
        "a conflicting resource's deletion must not touch the owner's user"
    );

    // --- adoption of a user the operator did not create
    let (s, _) = scim
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "legacy@e2e.test"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    users
        .create(&pp, &scim_user("legacy", json!({"userName": "legacy@e2e.test", "displayName": "Legacy"})))
        .await
        .unwrap();
    wait_for(&users, "legacy", "Conflict", |u| user_ready(u, "False", "Conflict")).await;
    users.patch("legacy", &PatchParams::default(), &Patch::Merge(json!({"spec": {"adopt": true}}))).await.unwrap();
    let legacy = wait_for(&users, "legacy", "adopted", |u| user_ready(u, "True", "Provisioned")).await;
    assert_eq!(scim.user_by_name("legacy@e2e.test").await.unwrap()["externalId"], marker(&legacy));

    // --- drift on the server is corrected
    let (s, _) = scim
        .call(
            reqwest::Method::PATCH,
            &format!("/Users/{alice_id}"),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Changed behind our back"}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    wait_until("drift corrected", || async {
        scim.user_by_name("alice@e2e.test").await.unwrap()["displayName"] == "Alice"
    })
    .await;

    // --- a spec update reaches the server
    users.patch("alice", &PatchParams::default(), &Patch::Merge(json!({"spec": {"title": "Engineer"}}))).await.unwrap();
    wait_until("title updated", || async { scim.user_by_name("alice@e2e.test").await.unwrap()["title"] == "Engineer" })
        .await;

    // --- a team whose member is not provisioned yet, then is
    let team: ManagedTeam = serde_json::from_value(
        json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam", "metadata": {"name": "eng"},
        "spec": {"displayName": "Engineering", "members": [{"scimUserRef": "alice"}, {"scimUserRef": "bob"}]}}),
    )
    .unwrap();
    teams.create(&pp, &team).await.unwrap();
    let pending = wait_for(&teams, "eng", "MembersPending", |t| {
        t.status.as_ref().and_then(|s| ready(&s.conditions)) == Some(("False".into(), "MembersPending".into()))
    })
    .await;
    assert_eq!(pending.status.as_ref().unwrap().pending_members, ["bob"]);
    users.create(&pp, &scim_user("bob", json!({"userName": "bob@e2e.test"}))).await.unwrap();
    let eng = wait_for(&teams, "eng", "Ready", |t| {
        t.status.as_ref().and_then(|s| ready(&s.conditions)) == Some(("True".into(), "Provisioned".into()))
    })
    .await;
    let gid = eng.status.as_ref().unwrap().scim_id.clone().unwrap();
    assert_eq!(eng.status.as_ref().unwrap().member_count, 2);
    // The server learnt which ManagedTeam declares the group (its marker names only the uid),
    // for the console's "declared in Kubernetes: <namespace>/<name>".
    let store = scim_operator::store::open(&scim.db).await.unwrap();
    let declared = store.begin_read().await.unwrap().group(&gid).await.unwrap().expect("the group").declared_by;
    store.close().await;
    assert_eq!(declared, Some(format!("{trusted}/eng")));
    assert!(eng.status.as_ref().unwrap().pending_members.is_empty(), "the status clears pendingMembers");
    let (_, group) = scim.call(reqwest::Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(group["members"].as_array().map(Vec::len), Some(2));

    // --- a role mapping grants roles through the team, and its removal takes them back
    let mapping: RoleMapping = serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping",
        "metadata": {"name": format!("eng-readonly-{trusted}")}, "spec": {"roles": ["Read Only"], "teams": ["Engineering"]}})).unwrap();
    let mapping_name = mapping.name_any();
    mappings.create(&pp, &mapping).await.unwrap();
    wait_for(&mappings, &mapping_name, "Ready", |m| {
        m.status.as_ref().and_then(|s| ready(&s.conditions)).is_some_and(|r| r.0 == "True")
    })
    .await;
    wait_for(&users, "bob", "granted Read Only", |u| {
        u.status.as_ref().is_some_and(|s| s.effective_roles == ["Read Only"])
    })
    .await;
    let alice_now = users.get("alice").await.unwrap();
    assert_eq!(alice_now.status.unwrap().effective_roles, ["Admin"], "explicit roles win over mappings");
    mappings.delete(&mapping_name, &DeleteParams::default()).await.unwrap();
    wait_gone(&mappings, &mapping_name).await;
    wait_for(&users, "bob", "back to the default role", |u| {
        u.status.as_ref().is_some_and(|s| s.effective_roles == ["Standard"])
    })
    .await;

    // --- the SCIM server goes away and comes back
    scim.stop().await;
    users
        .patch("alice", &PatchParams::default(), &Patch::Merge(json!({"spec": {"title": "Staff engineer"}})))
        .await
        .unwrap();
    wait_for(&users, "alice", "ScimUnavailable", |u| user_ready(u, "False", "ScimUnavailable")).await;
    scim.start().await;
    wait_for(&users, "alice", "recovered", |u| user_ready(u, "True", "Provisioned")).await;
    assert_eq!(scim.user_by_name("alice@e2e.test").await.unwrap()["title"], "Staff engineer");

    // --- the operator restarts: what changed meanwhile is applied once
    operator.stop().await;
    users.create(&pp, &scim_user("carol", json!({"userName": "carol@e2e.test"}))).await.unwrap();
    operator = start_operator(&scim.url(), &token_file, &[&trusted], &trusted);
    wait_for(&users, "carol", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    let q = serde_urlencoded::to_string([("filter", "userName eq \"carol@e2e.test\"")]).unwrap();
    let (_, list) = scim.call(reqwest::Method::GET, &format!("/Users?{q}"), None).await;
    assert_eq!(list["totalResults"], 1, "nothing duplicated");

    // --- deletion policies
    users
        .create(&pp, &scim_user("dave", json!({"userName": "dave@e2e.test", "deletionPolicy": "Delete"})))
        .await
        .unwrap();
    users
        .create(&pp, &scim_user("erin", json!({"userName": "erin@e2e.test", "deletionPolicy": "Orphan"})))
        .await
        .unwrap();
    wait_for(&users, "dave", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    wait_for(&users, "erin", "Ready", |u| user_ready(u, "True", "Provisioned")).await;
    for name in ["legacy", "dave", "erin"] {
        users.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(&users, name).await;
    }
    assert_eq!(scim.user_by_name("legacy@e2e.test").await.unwrap()["active"], false, "Deactivate");
    assert!(scim.user_by_name("dave@e2e.test").await.is_none(), "Delete");
    assert_eq!(scim.user_by_name("erin@e2e.test").await.unwrap()["active"], true, "Orphan");
    teams.delete("eng", &DeleteParams::default()).await.unwrap();
    wait_gone(&teams, "eng").await;
    assert_eq!(
        scim.call(reqwest::Method::GET, &format!("/Groups/{gid}"), None).await.0,
        StatusCode::NOT_FOUND,
        "team unlinked"
    );

    // --- a resource whose server is gone for good can be released
    scim.stop().await;
    users
        .patch(
            "carol",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"scim.dev/release": "true"}}})),
        )
        .await
        .unwrap();
    users.delete("carol", &DeleteParams::default()).await.unwrap();
    wait_gone(&users, "carol").await;
    scim.start().await;
    assert_eq!(
        scim.user_by_name("carol@e2e.test").await.unwrap()["active"],
        true,
        "released without touching the server"
    );

    // Clean up what is left, with the operator still running to remove finalizers.
    for (api, name) in [(&users, "alice"), (&users, "bob"), (&outsiders, "mallory")] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
        wait_gone(api, name).await;
    }
    operator.stop().await;
    scim.stop().await;
}
