//! End to end at scale: restarts and failovers change nothing. On the real control plane and
//! the real SCIM server, 5,000 ScimUsers sit in ten Authoritative ManagedTeams that a
//! RoleMapping maps to Admin. The operator is restarted (a new leader with an empty cache, as
//! after a failover) while a proxy in front of the server answers 412 to every write of 100 of
//! those users, whose specs changed meanwhile. The audit trail must then show no `role.revoke`
//! and no `team.member.remove`: no member left a team and no role was withdrawn and re-granted.
//!
//! `SCIM_RESTART_USERS` changes the number of users (a multiple of ten; default 5,000).
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::TestServer;
use common::k8s::*;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use scim_operator::operator::crd::{ManagedTeam, RoleMapping, ScimUser};
use scim_operator::store::AuditQuery;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TEAMS: usize = 10;
/// Users whose writes the proxy refuses with 412 after the restart.
const REFUSED: usize = 100;

/// A reverse proxy that forwards every request to the SCIM server, except writes to the users
/// in `refused`, which it answers `412 Precondition Failed` as a server does when the user
/// changed since it was read.
#[derive(Clone)]
struct FaultProxy {
    upstream: String,
    http: reqwest::Client,
    refused: Arc<Mutex<HashSet<String>>>,
    served_412: Arc<AtomicU64>,
}

async fn forward(State(p): State<FaultProxy>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let is_write = matches!(method, Method::PATCH | Method::PUT | Method::DELETE);
    let target = path.strip_prefix("/scim/v2/Users/").unwrap_or("");
    if is_write && p.refused.lock().expect("fault set").contains(target) {
        p.served_412.fetch_add(1, Ordering::Relaxed);
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "412",
                          "detail": "the resource changed since it was read (injected by the test)"});
        return (StatusCode::PRECONDITION_FAILED, [("content-type", "application/scim+json")], body.to_string())
            .into_response();
    }
    let url = format!("{}{}", p.upstream, uri.path_and_query().map(|q| q.as_str()).unwrap_or("/"));
    let mut req = p.http.request(method, url).body(body);
    for (name, value) in headers.iter().filter(|(n, _)| *n != "host" && *n != "content-length") {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = HeaderMap::new();
            for (name, value) in
                resp.headers().iter().filter(|(n, _)| *n != "content-length" && *n != "transfer-encoding")
            {
                out.insert(name.clone(), value.clone());
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn start_proxy(upstream: &str) -> (FaultProxy, String) {
    let proxy = FaultProxy {
        upstream: upstream.to_string(),
        http: reqwest::Client::new(),
        refused: Arc::default(),
        served_412: Arc::default(),
    };
    let app = axum::Router::new().fallback(forward).with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (proxy, format!("http://{addr}/scim/v2"))
}

fn user_name(i: usize) -> String {
    format!("u{i:05}")
}

/// The number of audit events with `action`.
async fn events(scim: &TestServer, action: &str) -> usize {
    let mut tx = scim.store.begin_read().await.expect("read handle");
    let query = AuditQuery { action: Some(action.to_string()), ..Default::default() };
    tx.list_audit(&query).await.expect("audit trail").len()
}

/// The member count of every team on the server, by team name.
async fn team_sizes(scim: &TestServer) -> Vec<(String, usize)> {
    let mut read = scim.store.begin_read().await.expect("read handle");
    let mut out = Vec::new();
    for (t, _) in scim.directory.teams().await.expect("teams") {
        out.push((t.name.clone(), read.team_members(&t.id).await.expect("members").len()));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_under_412s_removes_no_member_and_revokes_no_role() {
    if control_plane().is_none() {
        return;
    }
    let users_total: usize = std::env::var("SCIM_RESTART_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000);
    assert!(
        users_total.is_multiple_of(TEAMS) && users_total >= TEAMS * 10,
        "SCIM_RESTART_USERS must be a multiple of ten"
    );
    let per_team = users_total / TEAMS;
    let client = fresh_cluster().await;
    let ns = namespace(&client, "platform").await;
    let scim = TestServer::start().await;
    let (proxy, proxy_url) = start_proxy(&scim.root()).await;
    let (_dir, token_file) = token_file(&scim.token);
    let mut operator = start_operator_with(&proxy_url, &token_file, &[&ns], &ns, 3600);

    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &ns);
    let mappings: Api<RoleMapping> = Api::all(client.clone());
    let team_names: Vec<String> = (0..TEAMS).map(|t| format!("restart-team-{t:02}")).collect();
    let mapping_name = format!("restart-admins-{}", ns.trim_start_matches("platform-"));
    let mapping: RoleMapping = serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping",
        "metadata": {"name": mapping_name}, "spec": {"roles": ["Admin"], "teams": team_names}}))
    .unwrap();
    mappings.create(&PostParams::default(), &mapping).await.unwrap();
    for (t, name) in team_names.iter().enumerate() {
        let members: Vec<_> =
            (t * per_team..(t + 1) * per_team).map(|i| json!({"scimUserRef": user_name(i)})).collect();
        let team: ManagedTeam =
            serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
            "metadata": {"name": name}, "spec": {"displayName": name, "members": members}}))
            .unwrap();
        teams.create(&PostParams::default(), &team).await.unwrap();
    }
    futures::stream::iter(0..users_total)
        .map(|i| {
            let users = users.clone();
            async move {
                let u = scim_user(&user_name(i), json!({"userName": format!("{}@restart.test", user_name(i))}));
                users.create(&PostParams::default(), &u).await.expect("create a ScimUser");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let full: Vec<(String, usize)> = team_names.iter().map(|n| (n.clone(), per_team)).collect();
    wait_until_long("every team holds all its members", Duration::from_secs(600), || async {
        team_sizes(&scim).await == full
    })
    .await;
    // The mapping grants Admin to every member.
    let (_, sample) = scim.get(&format!("/Users?filter=userName eq \"{}@restart.test\"", user_name(0))).await;
    let sample_id = sample["Resources"][0]["id"].as_str().expect("a provisioned user").to_string();
    let access_url = format!("{}/api/v1/users/{sample_id}/access", scim.root());
    let access = scim.http.get(access_url).bearer_auth(&scim.token).send().await.unwrap().text().await.unwrap();
    assert!(access.contains("\"Admin\""), "the mapping grants Admin: {access}");
    assert_eq!(events(&scim, "team.member.remove").await, 0);
    assert_eq!(events(&scim, "role.revoke").await, 0);

    // The operator goes away; meanwhile 100 users' specs change and their writes will get 412.
    operator.stop().await;
    let refused: Vec<usize> = (0..REFUSED).map(|k| k * (users_total / REFUSED)).collect();
    for &i in &refused {
        let u = users.get(&user_name(i)).await.unwrap();
        let id = u.status.as_ref().and_then(|s| s.scim_id.clone()).expect("provisioned");
        proxy.refused.lock().unwrap().insert(id);
        users
            .patch(&user_name(i), &PatchParams::default(), &Patch::Merge(json!({"spec": {"title": "Changed"}})))
            .await
            .unwrap();
    }

    // A new leader with an empty cache.
    operator = start_operator_with(&proxy_url, &token_file, &[&ns], &ns, 3600);
    wait_until_long("the refused users report ServerChanged", Duration::from_secs(300), || async {
        let mut all = true;
        for &i in &refused {
            let u = users.get(&user_name(i)).await.unwrap();
            all &= user_ready(&u, "False", "ServerChanged");
        }
        all
    })
    .await;
    assert!(proxy.served_412.load(Ordering::Relaxed) >= REFUSED as u64, "every refused user got a 412");
    // Teams reconcile when a member stops being Ready (debounced) and at start: give them time.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let removed = events(&scim, "team.member.remove").await;
    let revoked = events(&scim, "role.revoke").await;
    assert_eq!((removed, revoked), (0, 0), "a restart removed members or revoked roles");
    assert_eq!(team_sizes(&scim).await, full, "every member is still in its team");
    for t in teams.list(&Default::default()).await.unwrap() {
        let ready = t.status.as_ref().and_then(|s| ready(&s.conditions));
        assert!(ready.as_ref().is_some_and(|(s, _)| s == "True"), "{}: {ready:?}", t.name_any());
    }

    // Healed: the refused users apply their change.
    proxy.refused.lock().unwrap().clear();
    for &i in &refused[..3] {
        users
            .patch(&user_name(i), &PatchParams::default(), &Patch::Merge(json!({"spec": {"title": "Healed"}})))
            .await
            .unwrap();
        wait_for(&users, &user_name(i), "Ready after healing", |u| user_ready(u, "True", "Provisioned")).await;
    }
    operator.stop().await;
    forget_earlier_runs(&client).await;
    scim.stop().await;
}
