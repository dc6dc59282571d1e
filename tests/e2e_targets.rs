//! End to end on the real control plane (tests/env/control-plane.sh): the operator's target
//! controller against real, independent SCIM service providers, the Python `scim2-server`
//! (bearer token) and Keycloak 26.7 (OAuth client credentials).
//!
//! - A ClusterScimTarget to scim2-server becomes Ready with the capabilities it announces.
//! - A ScimTarget to Keycloak with OAuth client credentials becomes Ready (when Keycloak runs:
//!   the `KEYCLOAK_*` variables of `tests/env/keycloak.sh start`; required with
//!   `SCIM_TARGETS_REQUIRED`).
//! - A ScimTarget whose Secret reference names another namespace is refused, and its base URL
//!   (a listener of this test) never sees a connection.
//! - A wrong token is `CredentialsRejected` (the token in no status or Event); fixing the Secret
//!   makes the target Ready sooner than the next periodic probe, without a restart.
//! - Stopping scim2-server turns the target `ScimUnavailable`; it recovers by itself.
//!
//! Without a control plane (no KUBECONFIG) the test skips, unless `SCIM_E2E_REQUIRED` is set;
//! without `SCIM_CONFORMANCE_BIN` (scim2-server, from `tests/env/python-tools.sh`) likewise.

mod common;

use common::k8s::*;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use scim_operator::operator::crd::{ClusterScimTarget, ScimTarget, TargetStatus};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds between probes in this test: long enough that a recovery sooner than this after a
/// Secret change was triggered by the Secret's watch, short enough for the outage scenario.
const PROBE_SECONDS: u64 = 10;

/// scim2-server on a port, killed when dropped.
struct Scim2(Child);

impl Drop for Scim2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scim2_server(bin: &str, port: u16, token: &str) -> Scim2 {
    Scim2(
        Command::new(std::path::Path::new(bin).join("scim2-server"))
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server"),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The variable's value; `None` (the part is skipped) when unset, unless `required`.
fn env_or_skip(var: &str, required: bool) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(!required, "{var} is required");
            eprintln!("SKIPPED (part): {var} is not set");
            None
        }
    }
}

async fn secret(client: &Client, ns: &str, name: &str, data: Value) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data});
    api.patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&s)).await.expect("apply the Secret");
}

/// Ready's (status, reason, message) and the generation check.
fn ready_of(status: Option<&TargetStatus>, generation: Option<i64>) -> Option<(String, String, String)> {
    let s = status?;
    if s.observed_generation != generation {
        return None;
    }
    s.conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is(status: Option<&TargetStatus>, generation: Option<i64>, want: &str, reason: &str) -> bool {
    ready_of(status, generation).is_some_and(|(s, r, _)| s == want && r == reason)
}

fn condition<'a>(status: &'a TargetStatus, type_: &str) -> (&'a str, &'a str) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_} in {status:?}"));
    (c.status.as_str(), c.reason.as_str())
}

/// The operator, in namespace `ops`, probing targets every [`PROBE_SECONDS`]. Its own SCIM
/// server is not part of these tests (nothing provisions users); the directory holding its
/// token file lives as long as the value returned.
fn target_operator(ops: &str) -> (tempfile::TempDir, Operator) {
    let (dir, token_file) = token_file("unused");
    let mut args = operator_args("http://127.0.0.1:9/scim/v2", &token_file, &[], ops, 60);
    args.target_probe_seconds = PROBE_SECONDS;
    (dir, start_operator_from(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn targets_report_reachability_credentials_and_capabilities() {
    if control_plane().is_none() {
        return;
    }
    let Some(bin) = env_or_skip("SCIM_CONFORMANCE_BIN", std::env::var_os("SCIM_E2E_REQUIRED").is_some()) else {
        return;
    };
    let client = fresh_cluster().await;
    let ops = namespace(&client, "targets-ops").await;
    let team = namespace(&client, "targets-team").await;
    let other = namespace(&client, "targets-other").await;
    let (_dir, operator) = target_operator(&ops);

    // ---- a ClusterScimTarget to scim2-server, bearer token from the operator's namespace
    let port = free_port();
    let peer_token = format!("peer-{}", uuid::Uuid::new_v4().simple());
    let mut peer = Some(scim2_server(&bin, port, &peer_token));
    secret(&client, &ops, "scim2", json!({"token": peer_token})).await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let cluster_name = format!("scim2-{suffix}");
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let spec = json!({"baseUrl": format!("http://127.0.0.1:{port}"), "profile": "Generic",
        "credentials": {"bearerToken": {"name": "scim2", "key": "token"}},
        "namespaces": {"allowed": {"names": [team.clone()]}}});
    let obj = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ClusterScimTarget",
        "metadata": {"name": cluster_name}, "spec": spec});
    clusters.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.expect("create");
    let ready = wait_for(&clusters, &cluster_name, "Ready", |t| {
        is(t.status.as_ref(), t.metadata.generation, "True", "Connected")
    })
    .await;
    let status = ready.status.as_ref().unwrap();
    let caps = status.capabilities.as_ref().expect("capabilities discovered");
    assert!(caps.patch && caps.filter, "scim2-server announces PATCH and filtering: {caps:?}");
    assert_eq!(condition(status, "Reachable"), ("True", "Answered"));
    assert_eq!(condition(status, "CredentialsValid"), ("True", "Accepted"));
    assert_eq!(condition(status, "Reconciling"), ("False", "Settled"), "kstatus: done");
    assert_eq!(condition(status, "Stalled"), ("False", "Progressing"));

    // ---- a ScimTarget naming a Secret of another namespace: refused, no request sent
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let trap = listener.local_addr().unwrap().port();
    secret(&client, &other, "borrowed", json!({"token": "not-yours"})).await;
    let targets: Api<ScimTarget> = Api::namespaced(client.clone(), &team);
    let borrow = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimTarget", "metadata": {"name": "borrow"},
        "spec": {"baseUrl": format!("http://127.0.0.1:{trap}"), "profile": "Generic",
            "credentials": {"bearerToken": {"name": "borrowed", "key": "token", "namespace": other.clone()}}}});
    targets.create(&PostParams::default(), &serde_json::from_value(borrow).unwrap()).await.expect("create");
    let refused = wait_for(&targets, "borrow", "refused", |t| {
        is(t.status.as_ref(), t.metadata.generation, "False", "SecretNotAllowed")
    })
    .await;
    let (_, _, message) = ready_of(refused.status.as_ref(), refused.metadata.generation).unwrap();
    assert!(message.contains(&format!("may read Secrets of namespace {team} only")), "{message}");
    assert_eq!(condition(refused.status.as_ref().unwrap(), "Stalled"), ("True", "SecretNotAllowed"));

    // ---- a wrong token: CredentialsRejected; fixing the Secret makes it Ready, no restart
    let wrong = format!("wrong-{}", uuid::Uuid::new_v4().simple());
    secret(&client, &team, "peer", json!({"token": wrong})).await;
    let rotate = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimTarget", "metadata": {"name": "rotate"},
        "spec": {"baseUrl": format!("http://127.0.0.1:{port}"), "profile": "Generic",
            "credentials": {"bearerToken": {"name": "peer", "key": "token"}}}});
    targets.create(&PostParams::default(), &serde_json::from_value(rotate).unwrap()).await.expect("create");
    let rejected = wait_for(&targets, "rotate", "CredentialsRejected", |t| {
        is(t.status.as_ref(), t.metadata.generation, "False", "CredentialsRejected")
    })
    .await;
    // Just probed: the next periodic probe is PROBE_SECONDS away.
    let fixed_at = Instant::now();
    secret(&client, &team, "peer", json!({"token": peer_token})).await;
    let rejected_status = serde_json::to_string(&rejected.status).unwrap();
    assert!(rejected_status.contains("CredentialsValid"), "{rejected_status}");
    assert!(!rejected_status.contains(&wrong), "the token is in the status: {rejected_status}");
    wait_for(&targets, "rotate", "Ready after the Secret changed", |t| {
        is(t.status.as_ref(), t.metadata.generation, "True", "Connected")
    })
    .await;
    let took = fixed_at.elapsed();
    assert!(
        took < Duration::from_secs(PROBE_SECONDS * 6 / 10),
        "Ready {took:?} after the Secret changed: the Secret's watch should have triggered a probe"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &team);
    wait_until("a CredentialsRejected Event", || async {
        events.list(&Default::default()).await.unwrap().items.iter().any(|e| {
            e.reason.as_deref() == Some("CredentialsRejected")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("rotate")
        })
    })
    .await;
    for e in events.list(&Default::default()).await.unwrap() {
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains(&wrong) && !text.contains(&peer_token), "a token in an Event: {text}");
    }

    // ---- the server stops: ScimUnavailable; started again: Ready, by itself
    drop(peer.take());
    let down = wait_for(&clusters, &cluster_name, "ScimUnavailable", |t| {
        is(t.status.as_ref(), t.metadata.generation, "False", "ScimUnavailable")
    })
    .await;
    let (_, _, message) = ready_of(down.status.as_ref(), down.metadata.generation).unwrap();
    assert!(message.contains("does not answer"), "{message}");
    assert_eq!(condition(down.status.as_ref().unwrap(), "Reconciling"), ("True", "ScimUnavailable"));
    assert!(down.status.as_ref().unwrap().capabilities.is_some(), "what discovery found is kept");
    let _peer = scim2_server(&bin, port, &peer_token);
    wait_for(&clusters, &cluster_name, "Ready again", |t| {
        is(t.status.as_ref(), t.metadata.generation, "True", "Connected")
    })
    .await;

    // The refused target's base URL never saw a connection.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the refused target sent a request: {other:?}"),
    }

    // ---- clean up
    let _ = clusters.delete(&cluster_name, &DeleteParams::default()).await;
    operator.stop().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&ops, &team, &other] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keycloak_target_with_oauth_client_credentials_is_ready() {
    if control_plane().is_none() {
        return;
    }
    let required = std::env::var_os("SCIM_TARGETS_REQUIRED").is_some();
    let Some(scim_url) = env_or_skip("KEYCLOAK_SCIM_URL", required) else { return };
    let client = fresh_cluster().await;
    let ops = namespace(&client, "targets-kc-ops").await;
    let team = namespace(&client, "targets-kc").await;
    let (_dir, operator) = target_operator(&ops);
    let targets: Api<ScimTarget> = Api::namespaced(client.clone(), &team);
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set with KEYCLOAK_SCIM_URL"));
    secret(
        &client,
        &team,
        "keycloak",
        json!({"client-id": env("KEYCLOAK_SCIM_CLIENT_ID"), "client-secret": env("KEYCLOAK_SCIM_CLIENT_SECRET")}),
    )
    .await;
    let kc = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimTarget", "metadata": {"name": "keycloak"},
        "spec": {"baseUrl": scim_url, "profile": "Keycloak",
            "credentials": {"oauth2": {"tokenUrl": env("KEYCLOAK_TOKEN_URL"),
                "clientId": {"name": "keycloak", "key": "client-id"},
                "clientSecret": {"name": "keycloak", "key": "client-secret"}}}}});
    targets.create(&PostParams::default(), &serde_json::from_value(kc).unwrap()).await.expect("create");
    let kc =
        wait_for(&targets, "keycloak", "Ready", |t| is(t.status.as_ref(), t.metadata.generation, "True", "Connected"))
            .await;
    let caps = kc.status.as_ref().and_then(|s| s.capabilities.clone()).expect("capabilities");
    assert!(caps.patch && !caps.etag, "{caps:?}");
    assert_eq!(caps.max_results, Some(100), "Keycloak announces pages of 100");
    let text = serde_json::to_string(&kc.status).unwrap();
    assert!(!text.contains(&env("KEYCLOAK_SCIM_CLIENT_SECRET")), "{text}");

    // A wrong client secret: the token endpoint refuses the client.
    secret(&client, &team, "keycloak", json!({"client-id": env("KEYCLOAK_SCIM_CLIENT_ID"), "client-secret": "wrong"}))
        .await;
    wait_for(&targets, "keycloak", "CredentialsRejected", |t| {
        is(t.status.as_ref(), t.metadata.generation, "False", "CredentialsRejected")
    })
    .await;

    operator.stop().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in [&ops, &team] {
        let _ = namespaces.delete(ns, &DeleteParams::default()).await;
    }
}
