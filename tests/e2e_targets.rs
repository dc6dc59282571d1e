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
//! - ManagedTeams naming their targets (scim2-server, and Keycloak when it runs): membership
//!   right on each target (each member's id there, from the ownership records), a member
//!   removal, userName members only where nobody or a trusted namespace owns them, an existing
//!   group untouched without a trusted `linkExisting`, a dropped target unlinked there only,
//!   deletion unlinking and releasing the records.
//! - ScimUsers naming their targets (`spec.targets`): Ready on the default target and on
//!   scim2-server at once, fields read back through each server's own API; an update reaches
//!   both; an operator restart (status entries wiped) creates no duplicate; a namespace the
//!   ClusterScimTarget does not allow, and a ScimTarget of another namespace, are refused
//!   (`TargetNotAllowed`) with nothing written on either server; two namespaces claiming one
//!   userName: one winner, the other `Conflict`, unchanged over two resyncs; a user made on the
//!   peer directly is untouched without a trusted `adopt` and taken with one; taking the peer
//!   out of `spec.targets` deactivates the user there only and releases its ownership record;
//!   deleting a ScimUser applies its deletion policy on its target; stopping scim2-server fails
//!   only its entry (`ScimUnavailable`) while the default target is still synced, and the user
//!   recovers by itself when it is back.
//! - The same against Keycloak (OAuth client credentials, ownership in the records only) when
//!   its `KEYCLOAK_*` variables are set: Ready with the default target, update, a restart
//!   without duplicate, `RolesUnsupported`, one winner of a contested userName, a user made on
//!   Keycloak untouched without a trusted adopt, deactivated when Keycloak is taken out.
//! - The reconcile a target's task wakes to report its result sends the default target nothing
//!   when the default entry is ready for the generation (read from the default target's own
//!   request log).
//! - A ClusterScimTarget allowing and trusting namespaces by label selector: labelling a
//!   namespace allowed provisions its refused ScimUser, labelling it trusted sends its roles,
//!   taking the label off withdraws them, each within moments (the operator resyncs hourly).
//!
//! Without a control plane (no KUBECONFIG) the test skips, unless `SCIM_E2E_REQUIRED` is set;
//! without `SCIM_CONFORMANCE_BIN` (scim2-server, from `tests/env/python-tools.sh`) likewise.

mod common;

use common::k8s::*;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use scim_operator::operator::crd::{
    ClusterScimTarget, ManagedTeam, RoleMapping, ScimTarget, ScimUser, TargetStatus, TargetSync,
};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every test here runs an operator, and an operator reconciles the ScimUsers and ManagedTeams
/// of every namespace: two at once would each act on the other's objects with their own
/// targets and servers. The tests of this file take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// Creates the ClusterScimTarget `name` with `spec` and waits until it is Ready (`Connected`);
/// returns its id as resources' statuses and records name it.
async fn ready_cluster_target(client: &Client, name: &str, spec: Value) -> String {
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let obj = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ClusterScimTarget", "metadata": {"name": name},
        "spec": spec});
    clusters.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.expect("create the target");
    wait_for(&clusters, name, "Ready", |t| is(t.status.as_ref(), t.metadata.generation, "True", "Connected")).await;
    format!("ClusterScimTarget/{name}")
}

/// scim2-server behind a ClusterScimTarget `scim2-<random>` that is Ready: a bearer token of
/// its own in Secret `scim2` of the operator's namespace, `namespaces` as the target's
/// `spec.namespaces`. The server can be stopped and started again on its port.
struct Scim2Target {
    /// `None` while stopped (a Mutex so that the peer can be borrowed meanwhile).
    server: std::sync::Mutex<Option<Scim2>>,
    bin: String,
    port: u16,
    token: String,
    /// The server's API, to read back what the operator wrote.
    peer: Peer,
    /// The ClusterScimTarget's name, and its id as resources' statuses and records name it.
    name: String,
    id: String,
}

impl Scim2Target {
    async fn start(client: &Client, bin: &str, ops: &str, namespaces: Value) -> Self {
        let port = free_port();
        let token = format!("peer-{}", uuid::Uuid::new_v4().simple());
        let server = std::sync::Mutex::new(Some(scim2_server(bin, port, &token)));
        let peer = Peer {
            base: format!("http://127.0.0.1:{port}"),
            auth: Auth::Bearer(token.clone()),
            http: reqwest::Client::new(),
        };
        secret(client, ops, "scim2", json!({"token": token})).await;
        let name = format!("scim2-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let spec = json!({"baseUrl": peer.base, "profile": "Generic",
            "credentials": {"bearerToken": {"name": "scim2", "key": "token"}}, "namespaces": namespaces});
        let id = ready_cluster_target(client, &name, spec).await;
        Self { server, bin: bin.to_string(), port, token, peer, name, id }
    }

    fn stop(&self) {
        *self.server.lock().unwrap() = None;
    }

    /// Started again, empty (scim2-server keeps its users in memory).
    fn restart(&self) {
        *self.server.lock().unwrap() = Some(scim2_server(&self.bin, self.port, &self.token));
    }
}

/// A scim2-server test's start: its turn ([`ONE_AT_A_TIME`], kept while the guard lives),
/// scim2-server's bin directory and a fresh cluster; `None` (the test skips) without a control
/// plane, or without `SCIM_CONFORMANCE_BIN` unless `SCIM_E2E_REQUIRED` is set.
async fn scim2_turn() -> Option<(tokio::sync::MutexGuard<'static, ()>, String, Client)> {
    control_plane()?;
    let serial = ONE_AT_A_TIME.lock().await;
    let bin = env_or_skip("SCIM_CONFORMANCE_BIN", std::env::var_os("SCIM_E2E_REQUIRED").is_some())?;
    Some((serial, bin, fresh_cluster().await))
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
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "targets-ops").await;
    let team = namespace(&client, "targets-team").await;
    let other = namespace(&client, "targets-other").await;
    let (_dir, operator) = target_operator(&ops);

    // ---- a ClusterScimTarget to scim2-server, bearer token from the operator's namespace
    let scim2 = Scim2Target::start(&client, &bin, &ops, json!({"allowed": {"names": [team.clone()]}})).await;
    let (port, peer_token, cluster_name) = (scim2.port, scim2.token.clone(), scim2.name.clone());
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let ready = clusters.get(&cluster_name).await.unwrap();
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
    scim2.stop();
    let down = wait_for(&clusters, &cluster_name, "ScimUnavailable", |t| {
        is(t.status.as_ref(), t.metadata.generation, "False", "ScimUnavailable")
    })
    .await;
    let (_, _, message) = ready_of(down.status.as_ref(), down.metadata.generation).unwrap();
    assert!(message.contains("does not answer"), "{message}");
    assert_eq!(condition(down.status.as_ref().unwrap(), "Reconciling"), ("True", "ScimUnavailable"));
    assert!(down.status.as_ref().unwrap().capabilities.is_some(), "what discovery found is kept");
    scim2.restart();
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
    let _serial = ONE_AT_A_TIME.lock().await;
    let required = std::env::var_os("SCIM_TARGETS_REQUIRED").is_some();
    let Some(scim_url) = env_or_skip("KEYCLOAK_SCIM_URL", required) else { return };
    let client = fresh_cluster().await;
    let ops = namespace(&client, "targets-kc-ops").await;
    let team = namespace(&client, "targets-kc").await;
    let (_dir, operator) = target_operator(&ops);
    let targets: Api<ScimTarget> = Api::namespaced(client.clone(), &team);
    let (client_id, client_secret) =
        (keycloak_env("KEYCLOAK_SCIM_CLIENT_ID"), keycloak_env("KEYCLOAK_SCIM_CLIENT_SECRET"));
    secret(&client, &team, "keycloak", json!({"client-id": client_id, "client-secret": client_secret})).await;
    let kc = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimTarget", "metadata": {"name": "keycloak"},
        "spec": {"baseUrl": scim_url, "profile": "Keycloak",
            "credentials": {"oauth2": {"tokenUrl": keycloak_env("KEYCLOAK_TOKEN_URL"),
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
    assert!(!text.contains(&client_secret), "{text}");

    // A wrong client secret: the token endpoint refuses the client.
    secret(&client, &team, "keycloak", json!({"client-id": client_id, "client-secret": "wrong"})).await;
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

// ---- ScimUsers naming their targets

/// How the test authenticates to a peer: a bearer token, or client credentials (Keycloak).
enum Auth {
    Bearer(String),
    ClientCredentials { token_url: String, id: String, secret: String },
}

/// A SCIM peer the test reads and writes directly.
struct Peer {
    base: String,
    auth: Auth,
    http: reqwest::Client,
}

impl Peer {
    async fn token(&self) -> String {
        match &self.auth {
            Auth::Bearer(t) => t.clone(),
            Auth::ClientCredentials { token_url, id, secret } => {
                let form = [("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret)];
                let answer: Value = self
                    .http
                    .post(token_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(form).unwrap())
                    .send()
                    .await
                    .expect("a token")
                    .json()
                    .await
                    .unwrap();
                answer["access_token"].as_str().expect("an access token").to_string()
            }
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.token().await;
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        let resp = req.send().await.expect("the peer answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The users named `user_name` on the peer.
    async fn users_named(&self, user_name: &str) -> Vec<Value> {
        let filter = format!("userName eq \"{user_name}\"");
        let q = serde_urlencoded::to_string([("filter", filter.as_str())]).unwrap();
        let (status, body) = self.call(reqwest::Method::GET, &format!("/Users?{q}"), None).await;
        assert_eq!(status, 200, "{body}");
        body["Resources"].as_array().cloned().unwrap_or_default()
    }

    async fn user(&self, id: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// A `KEYCLOAK_*` variable of `tests/env/keycloak.sh start`, which a test reads once it knows
/// Keycloak runs (`KEYCLOAK_SCIM_URL` is set).
fn keycloak_env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is set with KEYCLOAK_SCIM_URL"))
}

/// Keycloak's realm at `scim_url` behind a ClusterScimTarget `keycloak-<suffix>` that is Ready:
/// OAuth client credentials in Secret `keycloak` of the operator's namespace, `namespaces` as
/// the target's `spec.namespaces`.
struct KeycloakTarget {
    /// Keycloak's SCIM API, with a token of the same client, to read back what the operator wrote.
    peer: Peer,
    /// The ClusterScimTarget's name, and its id as resources' statuses and records name it.
    name: String,
    id: String,
    /// Random, for names no earlier run used: Keycloak keeps its users and groups between tests.
    suffix: String,
    /// The client secret, which no status may show.
    client_secret: String,
}

impl KeycloakTarget {
    async fn start(client: &Client, scim_url: &str, ops: &str, namespaces: Value) -> Self {
        let (client_id, client_secret) =
            (keycloak_env("KEYCLOAK_SCIM_CLIENT_ID"), keycloak_env("KEYCLOAK_SCIM_CLIENT_SECRET"));
        secret(client, ops, "keycloak", json!({"client-id": client_id, "client-secret": client_secret})).await;
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let name = format!("keycloak-{suffix}");
        let token_url = keycloak_env("KEYCLOAK_TOKEN_URL");
        let spec = json!({"baseUrl": scim_url, "profile": "Keycloak",
            "credentials": {"oauth2": {"tokenUrl": token_url,
                "clientId": {"name": "keycloak", "key": "client-id"},
                "clientSecret": {"name": "keycloak", "key": "client-secret"}}},
            "namespaces": namespaces});
        let id = ready_cluster_target(client, &name, spec).await;
        let peer = Peer {
            base: scim_url.to_string(),
            auth: Auth::ClientCredentials { token_url, id: client_id, secret: client_secret.clone() },
            http: reqwest::Client::new(),
        };
        Self { peer, name, id, suffix, client_secret }
    }
}

/// The status entry of `target`, if any.
fn entry<'a>(u: &'a ScimUser, target: &str) -> Option<&'a TargetSync> {
    u.status.as_ref()?.targets.iter().find(|e| e.target == target)
}

/// Ready with `targets` ready entries (n/n), for the current generation.
fn ready_on(u: &ScimUser, n: usize) -> bool {
    user_ready(u, "True", "Provisioned")
        && u.status.as_ref().and_then(|s| s.targets_ready.as_deref()) == Some(format!("{n}/{n}").as_str())
}

/// Ready=False for `reason`, for the current generation.
fn refused_for(u: &ScimUser, reason: &str) -> bool {
    user_ready(u, "False", reason)
}

/// On the target `targets` names (`id`), which `trusted` (a namespace's ScimUsers) is trusted on
/// and `allowed` may only use: two namespaces claiming one userName get one winner and a
/// `Conflict`, unchanged over two resyncs (2 s each); a user made directly on the target is
/// untouched without a trusted `adopt` (refused: `AdoptionNotAllowed` from `allowed`, `Conflict`
/// without adopt) and taken with one. Users are told apart by `name.givenName`, which every
/// profile keeps.
async fn contest_and_adopt(
    peer: &Peer,
    targets: &Value,
    id: &str,
    trusted: &Api<ScimUser>,
    allowed: &Api<ScimUser>,
    domain: &str,
) {
    let (shared, native_name) = (format!("shared@{domain}"), format!("native@{domain}"));
    let claim = |name: &str| {
        scim_user(
            name,
            json!({"userName": shared, "name": {"givenName": name, "familyName": "Claimant"},
                "targets": targets}),
        )
    };
    let (pp, team_claim, rival_claim) = (PostParams::default(), claim("claim-team"), claim("claim-rival"));
    let (a, b) = tokio::join!(trusted.create(&pp, &team_claim), allowed.create(&pp, &rival_claim));
    a.unwrap();
    b.unwrap();
    let settled = |api: Api<ScimUser>, name: &'static str| async move {
        wait_for(&api, name, "settled", |u| ready_on(u, 1) || refused_for(u, "Conflict")).await
    };
    let (t, r) = tokio::join!(settled(trusted.clone(), "claim-team"), settled(allowed.clone(), "claim-rival"));
    let winner = |u: &ScimUser| ready_on(u, 1);
    assert!(winner(&t) != winner(&r), "exactly one winner: {:?} {:?}", t.status, r.status);
    let held = peer.users_named(&shared).await;
    assert_eq!(held.len(), 1);
    let winner_name = if winner(&t) { "claim-team" } else { "claim-rival" };
    assert_eq!(held[0]["name"]["givenName"], winner_name);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (t2, r2) = (trusted.get("claim-team").await.unwrap(), allowed.get("claim-rival").await.unwrap());
    assert_eq!((winner(&t2), winner(&r2)), (winner(&t), winner(&r)), "no flip-flop");
    assert!(refused_for(if winner(&t2) { &r2 } else { &t2 }, "Conflict"));
    let held_after = peer.users_named(&shared).await;
    assert_eq!(held_after[0]["name"], held[0]["name"], "the target's user is unchanged after two resyncs");
    assert_eq!(held_after[0]["id"], held[0]["id"]);

    // A user made directly on the target.
    let (status, made) = peer
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": native_name,
                "name": {"givenName": "Made", "familyName": "By Hand"}, "active": true})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let native = |name: &str, adopt: bool| {
        scim_user(
            name,
            json!({"userName": native_name, "name": {"givenName": "Declared", "familyName": "By Hand"},
                "adopt": adopt, "targets": targets}),
        )
    };
    allowed.create(&PostParams::default(), &native("native-rival", true)).await.unwrap();
    trusted.create(&PostParams::default(), &native("native-team", false)).await.unwrap();
    wait_for(allowed, "native-rival", "AdoptionNotAllowed", |u| refused_for(u, "AdoptionNotAllowed")).await;
    wait_for(trusted, "native-team", "Conflict", |u| refused_for(u, "Conflict")).await;
    let made_id = made["id"].as_str().unwrap();
    assert_eq!(peer.user(made_id).await["name"]["givenName"], "Made", "changed without a trusted adopt");
    // A trusted adopt takes it.
    trusted
        .patch("native-team", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"adopt": true}})))
        .await
        .unwrap();
    let adopted = wait_for(trusted, "native-team", "adopted", |u| ready_on(u, 1)).await;
    assert_eq!(entry(&adopted, id).and_then(|e| e.remote_id.as_deref()), Some(made_id));
    assert_eq!(peer.user(made_id).await["name"]["givenName"], "Declared");
    assert_eq!(peer.users_named(&native_name).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scim_users_provision_into_their_targets() {
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "utargets-ops").await;
    let team = namespace(&client, "utargets-team").await;
    let rival = namespace(&client, "utargets-rival").await;
    let outside = namespace(&client, "utargets-outside").await;
    let own = namespace(&client, "utargets-own").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let args = operator_args(&scim.base, &token_path, &[], &ops, 2);
    let mut operator = start_operator_from(args.clone());

    // scim2-server as a ClusterScimTarget that allows team and rival and trusts team.
    let namespaces = json!({"allowed": {"names": [team.clone(), rival.clone()]}, "trusted": {"names": [team.clone()]}});
    let scim2 = Scim2Target::start(&client, &bin, &ops, namespaces).await;
    let (peer, peer_token) = (&scim2.peer, scim2.token.clone());
    let (cst, cst_id) = (scim2.name.clone(), scim2.id.clone());
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let both = json!([{"name": "default"}, {"name": cst}]);
    let only_peer = json!([{"name": cst}]);

    // ---- Ready on both targets, fields read back through each server's own API
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team);
    let ada = scim_user(
        "ada",
        json!({"userName": "ada@example.com", "displayName": "Ada", "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "primary": true}], "targets": both}),
    );
    users.create(&PostParams::default(), &ada).await.expect("create ada");
    let ready = wait_for(&users, "ada", "Ready on both targets", |u| ready_on(u, 2)).await;
    let default_id = ready.status.as_ref().and_then(|s| s.scim_id.clone()).expect("the default target's id");
    let on_peer = entry(&ready, &cst_id).expect("an entry for the peer");
    assert!(on_peer.ready && on_peer.last_sync.is_some(), "{on_peer:?}");
    assert_eq!(entry(&ready, "ClusterScimTarget/default").and_then(|e| e.remote_id.clone()), Some(default_id.clone()));
    let peer_id = on_peer.remote_id.clone().expect("the peer's id");
    let held = peer.user(&peer_id).await;
    assert_eq!(held["userName"], "ada@example.com");
    assert_eq!(held["name"]["familyName"], "Lovelace");
    assert_eq!(held["emails"][0]["value"], "ada@example.com");
    assert_eq!(held["active"], true);
    let marker = held["externalId"].as_str().expect("the ownership marker on a Generic target");
    assert!(marker.starts_with("k8s:") && marker.ends_with(&ready.uid().unwrap()), "{marker}");
    let (status, ours) = scim.get(&format!("/Users/{default_id}")).await;
    assert_eq!((status.as_u16(), ours["name"]["familyName"].as_str()), (200, Some("Lovelace")));
    let records: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ops);
    let record_of = |uid: String| {
        let records = records.clone();
        async move {
            let lp = kube::api::ListParams::default().labels(&format!("scim.dev/owner-uid={uid}"));
            records.list(&lp).await.unwrap().items
        }
    };
    let recorded = record_of(ready.uid().unwrap()).await;
    assert_eq!(recorded.len(), 1, "one ownership record, for the peer only");
    assert_eq!(recorded[0].data.as_ref().unwrap()["remoteId"], peer_id);

    // ---- an update reaches both
    let patch = json!({"spec": {"displayName": "Countess Ada", "title": "Analyst"}});
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for(&users, "ada", "the update on both targets", |u| {
        ready_on(u, 2) && entry(u, &cst_id).and_then(|e| e.observed_generation) == u.metadata.generation
    })
    .await;
    let held = peer.user(&peer_id).await;
    assert_eq!((held["displayName"].as_str(), held["title"].as_str()), (Some("Countess Ada"), Some("Analyst")));
    let (_, ours) = scim.get(&format!("/Users/{default_id}")).await;
    assert_eq!(ours["displayName"], "Countess Ada");

    // ---- an operator restart creates no duplicate (the record names the user)
    operator.stop().await;
    let user = users.get("ada").await.unwrap();
    let wipe = json!({"status": {"targets": [], "targetsReady": null}});
    users.patch_status("ada", &PatchParams::default(), &Patch::Merge(&wipe)).await.unwrap();
    operator = start_operator_from(args.clone());
    wait_for(&users, "ada", "Ready again after the restart", |u| ready_on(u, 2)).await;
    assert_eq!(peer.users_named("ada@example.com").await.len(), 1, "no duplicate on the peer");
    assert_eq!(
        entry(&users.get("ada").await.unwrap(), &cst_id).and_then(|e| e.remote_id.clone()),
        Some(peer_id.clone())
    );
    assert_eq!(user.uid(), users.get("ada").await.unwrap().uid());

    // ---- a namespace the target does not allow: TargetNotAllowed, nothing written anywhere
    let outsiders: Api<ScimUser> = Api::namespaced(client.clone(), &outside);
    let eve = scim_user("eve", json!({"userName": "eve@example.com", "targets": both}));
    outsiders.create(&PostParams::default(), &eve).await.unwrap();
    let refused = wait_for(&outsiders, "eve", "TargetNotAllowed", |u| refused_for(u, "TargetNotAllowed")).await;
    let status = refused.status.as_ref().unwrap();
    assert_eq!(status.targets_ready.as_deref(), Some("0/1"), "{status:?}");
    assert!(status.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True"), "{status:?}");
    // ---- a ScimTarget of another namespace: refused, nothing written
    secret(&client, &own, "peer", json!({"token": peer_token})).await;
    let own_targets: Api<ScimTarget> = Api::namespaced(client.clone(), &own);
    let st = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimTarget", "metadata": {"name": "mine"},
        "spec": {"baseUrl": peer.base, "profile": "Generic", "credentials": {"bearerToken": {"name": "peer", "key": "token"}}}});
    own_targets.create(&PostParams::default(), &serde_json::from_value(st).unwrap()).await.unwrap();
    let borrower = scim_user(
        "mallory",
        json!({"userName": "mallory@example.com", "targets": [{"kind": "ScimTarget", "name": "mine", "namespace": own}]}),
    );
    users.create(&PostParams::default(), &borrower).await.unwrap();
    let refused = wait_for(&users, "mallory", "TargetNotAllowed", |u| refused_for(u, "TargetNotAllowed")).await;
    let message = &refused.status.as_ref().unwrap().targets[0].message;
    assert!(message.contains(&format!("serves only resources of namespace {own}")), "{message}");
    // Its own namespace may use it (and is trusted there).
    let owners: Api<ScimUser> = Api::namespaced(client.clone(), &own);
    let grace = scim_user(
        "grace",
        json!({"userName": "grace@example.com", "targets": [{"kind": "ScimTarget", "name": "mine"}]}),
    );
    owners.create(&PostParams::default(), &grace).await.unwrap();
    wait_for(&owners, "grace", "Ready on its namespace's own target", |u| ready_on(u, 1)).await;
    // Two resyncs later, still nothing of the refused ones anywhere.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in ["eve@example.com", "mallory@example.com"] {
        assert!(peer.users_named(name).await.is_empty(), "{name} was written to the peer");
        let filter = serde_urlencoded::to_string([("filter", format!("userName eq \"{name}\""))]).unwrap();
        let (_, found) = scim.get(&format!("/Users?{filter}")).await;
        assert_eq!(found["totalResults"], 0, "{name} was written to the default target: {found}");
    }

    let rivals: Api<ScimUser> = Api::namespaced(client.clone(), &rival);
    contest_and_adopt(peer, &only_peer, &cst_id, &users, &rivals, "example.com").await;

    // ---- the peer taken out of spec.targets: the deletion policy there only
    let patch = json!({"spec": {"targets": [{"name": "default"}]}});
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let dropped = wait_for(&users, "ada", "the peer dropped", |u| ready_on(u, 1) && entry(u, &cst_id).is_none()).await;
    assert_eq!(peer.user(&peer_id).await["active"], false, "deactivated on the dropped target");
    let (_, ours) = scim.get(&format!("/Users/{default_id}")).await;
    assert_eq!(ours["active"], true, "the default target is untouched");
    assert!(record_of(dropped.uid().unwrap()).await.is_empty(), "the record is released");

    // ---- deleting a resource applies its policy on its targets and releases its records
    let grace_uid = owners.get("grace").await.unwrap().uid().unwrap();
    let grace_id = entry(&owners.get("grace").await.unwrap(), &format!("ScimTarget/{own}/mine"))
        .and_then(|e| e.remote_id.clone())
        .unwrap();
    owners
        .patch("grace", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"deletionPolicy": "Delete"}})))
        .await
        .unwrap();
    wait_for(&owners, "grace", "the new policy seen", |u| ready_on(u, 1)).await;
    owners.delete("grace", &DeleteParams::default()).await.unwrap();
    wait_gone(&owners, "grace").await;
    let (status, _) = peer.call(reqwest::Method::GET, &format!("/Users/{grace_id}"), None).await;
    assert_eq!(status, 404, "deleted on its target");
    assert!(record_of(grace_uid).await.is_empty());

    // ---- the peer stops: only its entry fails, the default target is still synced; it recovers
    let lin = scim_user("lin", json!({"userName": "lin@example.com", "title": "Engineer", "targets": both}));
    users.create(&PostParams::default(), &lin).await.unwrap();
    wait_for(&users, "lin", "Ready on both", |u| ready_on(u, 2)).await;
    scim2.stop();
    let patch = json!({"spec": {"title": "Staff engineer"}});
    users.patch("lin", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let down = wait_for(&users, "lin", "the peer's entry ScimUnavailable", |u| {
        user_ready(u, "False", "ScimUnavailable")
            && entry(u, &cst_id).is_some_and(|e| !e.ready && e.reason == "ScimUnavailable")
            && entry(u, "ClusterScimTarget/default").is_some_and(|e| e.ready && e.observed_generation == Some(2))
    })
    .await;
    let status = down.status.as_ref().unwrap();
    assert_eq!(status.targets_ready.as_deref(), Some("1/2"));
    assert!(status.conditions.iter().any(|c| c.type_ == "Reconciling" && c.status == "True"), "{status:?}");
    let lin_id = status.scim_id.clone().unwrap();
    let (_, ours) = scim.get(&format!("/Users/{lin_id}")).await;
    assert_eq!(ours["title"], "Staff engineer", "the default target was synced while the peer was down");
    // scim2-server keeps its users in memory: started again, it is empty, and the user is
    // provisioned anew (its record's id answers 404).
    scim2.restart();
    wait_for(&users, "lin", "Ready on both again, by itself", |u| ready_on(u, 2)).await;
    let held = peer.users_named("lin@example.com").await;
    assert_eq!((held.len(), held[0]["title"].as_str()), (1, Some("Staff engineer")));

    // ---- clean up
    operator.stop().await;
    let _ = clusters.delete(&cst, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team, &rival, &outside, &own]).await;
    scim.stop().await;
}

/// The reconcile a target's task wakes to report its result leaves the default target alone
/// when the default entry is ready for the generation: from the ScimUser's creation until a
/// while after it is Ready on both targets, the default target (this project's server, whose
/// request log names each request's path) receives the creating sync's requests only. Any sync
/// of a user whose id is known reads `/scim/v2/Users/{id}` first, so a second sync would show
/// there; scim2-server meanwhile holds what the task wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconcile_a_task_wakes_sends_nothing_to_the_default_target() {
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "woken-ops").await;
    let team = namespace(&client, "woken-team").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    // No periodic resync within the test: every reconcile is the creation's or the task's wake.
    let operator = start_operator_from(operator_args(&scim.base, &token_path, &[], &ops, 600));
    let scim2 = Scim2Target::start(&client, &bin, &ops, json!({"allowed": {"names": [team.clone()]}})).await;

    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team);
    let spec = json!({"userName": "woken@example.com", "title": "Engineer",
        "targets": [{"name": "default"}, {"name": scim2.name}]});
    users.create(&PostParams::default(), &scim_user("woken", spec)).await.expect("create the user");
    // Ready on both is what the woken reconcile writes: the task's result is only reported there.
    let ready = wait_for(&users, "woken", "Ready on both targets", |u| ready_on(u, 2)).await;
    let id = ready.status.as_ref().and_then(|s| s.scim_id.clone()).expect("the default target's id");
    let held = scim2.peer.users_named("woken@example.com").await;
    assert_eq!((held.len(), held[0]["title"].as_str()), (1, Some("Engineer")), "the task's writes on scim2-server");
    // A few seconds for any later reconcile, and for the request log (written in batches).
    tokio::time::sleep(Duration::from_secs(4)).await;

    let query = scim_operator::store::RequestQuery { limit: 1000, ..Default::default() };
    let (log, _) = scim.directory.recent_requests(&query).await.expect("the request log");
    let seen: Vec<String> = log.iter().rev().map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect();
    let created = log.iter().filter(|r| r.method == "POST" && r.path == "/scim/v2/Users").count();
    assert_eq!(created, 1, "the creating sync's POST is logged: {seen:#?}");
    let resynced: Vec<&String> = seen.iter().filter(|l| l.contains(&format!("/scim/v2/Users/{id} "))).collect();
    assert!(resynced.is_empty(), "the default target was synced again for {id}: {seen:#?}");
    let roles_read = seen.iter().filter(|l| l.contains(&format!("/users/{id}/access "))).count();
    assert_eq!(roles_read, 1, "the user's roles read once, by the creating sync: {seen:#?}");

    operator.stop().await;
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let _ = clusters.delete(&scim2.name, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team]).await;
    scim.stop().await;
}

/// A ClusterScimTarget deleted reaches at once the users naming it (the shared store of targets
/// tells its subscribers of no deletion; the watch's delete hook does): their entry there turns
/// `TargetNotFound`, with the operator's resync an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_target_reaches_its_users_at_once() {
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "gone-ops").await;
    let team = namespace(&client, "gone-team").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let operator = start_operator_from(operator_args(&scim.base, &token_path, &[], &ops, 3600));
    let scim2 = Scim2Target::start(&client, &bin, &ops, json!({"allowed": {"names": [team.clone()]}})).await;

    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team);
    let spec = json!({"userName": "gone@example.com", "targets": [{"name": "default"}, {"name": scim2.name}]});
    users.create(&PostParams::default(), &scim_user("gone", spec)).await.expect("create the user");
    wait_for(&users, "gone", "Ready on both targets", |u| ready_on(u, 2)).await;

    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    clusters.delete(&scim2.name, &DeleteParams::default()).await.expect("delete the target");
    let deleted = Instant::now();
    let id = format!("ClusterScimTarget/{}", scim2.name);
    wait_for(&users, "gone", "refused for the deleted target", |u| {
        refused_for(u, "TargetNotFound") && entry(u, &id).is_some_and(|e| e.reason == "TargetNotFound")
    })
    .await;
    assert!(deleted.elapsed() < Duration::from_secs(60), "seen after {:?}, not at once", deleted.elapsed());

    operator.stop().await;
    delete_namespaces(&client, &[&ops, &team]).await;
    scim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scim_users_provision_into_keycloak() {
    if control_plane().is_none() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let required = std::env::var_os("SCIM_TARGETS_REQUIRED").is_some();
    let Some(scim_url) = env_or_skip("KEYCLOAK_SCIM_URL", required) else { return };
    let client = fresh_cluster().await;
    let ops = namespace(&client, "ukc-ops").await;
    let team = namespace(&client, "ukc-team").await;
    let rival = namespace(&client, "ukc-rival").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let args = operator_args(&scim.base, &token_path, &[], &ops, 2);
    let mut operator = start_operator_from(args.clone());
    let namespaces = json!({"allowed": {"names": [team.clone(), rival.clone()]}, "trusted": {"names": [team.clone()]}});
    let KeycloakTarget { peer, name: cst, id: cst_id, suffix, client_secret: secret_value } =
        KeycloakTarget::start(&client, &scim_url, &ops, namespaces).await;
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let domain = format!("{suffix}.example.com");
    let only_kc = json!([{"name": cst}]);

    // ---- Ready on the default target and Keycloak, read back through Keycloak's SCIM API
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team);
    let ada_name = format!("ada@{domain}");
    let ada = scim_user(
        "ada",
        json!({"userName": ada_name, "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": ada_name, "primary": true}], "targets": [{"name": "default"}, {"name": cst}]}),
    );
    users.create(&PostParams::default(), &ada).await.unwrap();
    let ready = wait_for(&users, "ada", "Ready on both targets", |u| ready_on(u, 2)).await;
    let kc_id = entry(&ready, &cst_id).and_then(|e| e.remote_id.clone()).expect("Keycloak's id");
    let held = peer.user(&kc_id).await;
    assert_eq!(held["userName"].as_str().map(str::to_lowercase), Some(ada_name.clone()));
    assert_eq!((held["name"]["familyName"].as_str(), held["active"].as_bool()), (Some("Lovelace"), Some(true)));
    assert_eq!(held["emails"][0]["value"].as_str().map(str::to_lowercase), Some(ada_name.clone()));
    let text = serde_json::to_string(&ready.status).unwrap();
    assert!(!text.contains(&secret_value), "the client secret is in the status: {text}");

    // ---- an update, then a restart with the status entries wiped: no duplicate
    let patch = json!({"spec": {"name": {"givenName": "Augusta Ada", "familyName": "King"}}});
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_until("the new name on Keycloak", || async { peer.user(&kc_id).await["name"]["familyName"] == "King" }).await;
    operator.stop().await;
    let wipe = json!({"status": {"targets": [], "targetsReady": null}});
    users.patch_status("ada", &PatchParams::default(), &Patch::Merge(&wipe)).await.unwrap();
    operator = start_operator_from(args.clone());
    let again = wait_for(&users, "ada", "Ready again after the restart", |u| ready_on(u, 2)).await;
    assert_eq!(entry(&again, &cst_id).and_then(|e| e.remote_id.clone()), Some(kc_id.clone()));
    assert_eq!(peer.users_named(&ada_name).await.len(), 1, "no duplicate on Keycloak");

    // ---- roles on a target that keeps none: RolesUnsupported, never silently dropped
    let grace_name = format!("grace@{domain}");
    let grace = scim_user("grace", json!({"userName": grace_name, "roles": ["Admin"], "targets": only_kc}));
    users.create(&PostParams::default(), &grace).await.unwrap();
    let unsupported = wait_for(&users, "grace", "RolesUnsupported", |u| refused_for(u, "RolesUnsupported")).await;
    let e = entry(&unsupported, &cst_id).expect("an entry");
    assert!(!e.ready && e.remote_id.is_some() && e.message.contains("keeps no roles"), "{e:?}");
    assert_eq!(peer.users_named(&grace_name).await.len(), 1, "the user is provisioned all the same");

    // ---- one userName claimed from two namespaces; a user made on Keycloak directly
    let rivals: Api<ScimUser> = Api::namespaced(client.clone(), &rival);
    contest_and_adopt(&peer, &only_kc, &cst_id, &users, &rivals, &domain).await;

    // ---- Keycloak taken out of ada's targets: deactivated there only
    let patch = json!({"spec": {"targets": [{"name": "default"}]}});
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let dropped = wait_for(&users, "ada", "Keycloak dropped", |u| ready_on(u, 1) && entry(u, &cst_id).is_none()).await;
    assert_eq!(peer.user(&kc_id).await["active"], false, "deactivated on Keycloak");
    let default_id = dropped.status.as_ref().and_then(|s| s.scim_id.clone()).unwrap();
    let (_, ours) = scim.get(&format!("/Users/{default_id}")).await;
    assert_eq!(ours["active"], true, "the default target is untouched");

    operator.stop().await;
    let _ = clusters.delete(&cst, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team, &rival]).await;
    scim.stop().await;
}

// ---- ManagedTeams naming their targets

/// The member ids of a group, as a server's own API answers it.
fn member_ids(group: &Value) -> std::collections::BTreeSet<String> {
    group["members"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["value"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The team's status entry of `target`, if any.
fn team_entry<'a>(t: &'a ManagedTeam, target: &str) -> Option<&'a TargetSync> {
    t.status.as_ref()?.targets.iter().find(|e| e.target == target)
}

/// Ready=`status` for `reason` with `targets_ready`, for the current generation.
fn team_is(t: &ManagedTeam, status: &str, reason: &str, targets_ready: &str) -> bool {
    let s = t.status.as_ref();
    s.and_then(|s| ready(&s.conditions)) == Some((status.into(), reason.into()))
        && s.and_then(|s| s.observed_generation) == t.metadata.generation
        && s.and_then(|s| s.targets_ready.as_deref()) == Some(targets_ready)
}

fn managed_team(name: &str, spec: Value) -> ManagedTeam {
    serde_json::from_value(
        json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managed_teams_provision_into_their_targets() {
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "ttargets-ops").await;
    let team_ns = namespace(&client, "ttargets-team").await;
    let rival = namespace(&client, "ttargets-rival").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let operator = start_operator_from(operator_args(&scim.base, &token_path, &[], &ops, 2));

    // scim2-server as a ClusterScimTarget that allows both namespaces and trusts team_ns only.
    let namespaces =
        json!({"allowed": {"names": [team_ns.clone(), rival.clone()]}, "trusted": {"names": [team_ns.clone()]}});
    let scim2 = Scim2Target::start(&client, &bin, &ops, namespaces).await;
    let (peer, cst, cst_id) = (&scim2.peer, scim2.name.clone(), scim2.id.clone());
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let both = json!([{"name": "default"}, {"name": cst}]);
    let only_peer = json!([{"name": cst}]);

    // ---- two members on both targets
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team_ns);
    let pp = PostParams::default();
    for (name, user_name) in [("ada", "ada@example.com"), ("bob", "bob@example.com")] {
        users.create(&pp, &scim_user(name, json!({"userName": user_name, "targets": both}))).await.unwrap();
    }
    let ids = |u: &ScimUser| {
        (
            u.status.as_ref().and_then(|s| s.scim_id.clone()).unwrap(),
            entry(u, &cst_id).unwrap().remote_id.clone().unwrap(),
        )
    };
    let (ada_default, ada_peer) = ids(&wait_for(&users, "ada", "ada Ready on both", |u| ready_on(u, 2)).await);
    let (bob_default, bob_peer) = ids(&wait_for(&users, "bob", "bob Ready on both", |u| ready_on(u, 2)).await);

    // ---- a team on both targets: its membership is right on each, read through each server
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &team_ns);
    let sre = managed_team(
        "sre",
        json!({"displayName": "SRE", "members": [{"scimUserRef": "ada"}, {"scimUserRef": "bob"}], "targets": both}),
    );
    teams.create(&pp, &sre).await.unwrap();
    let ready_team = wait_for(&teams, "sre", "Ready on both", |t| team_is(t, "True", "Provisioned", "2/2")).await;
    let default_group = ready_team.status.as_ref().and_then(|s| s.scim_id.clone()).expect("the default group");
    let peer_group = team_entry(&ready_team, &cst_id).and_then(|e| e.remote_id.clone()).expect("the peer group");
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>();
    let (status, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{peer_group}"), None).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["displayName"], "SRE");
    assert_eq!(member_ids(&held), set(&[&ada_peer, &bob_peer]), "the peer's ids of the members: {held}");
    let (_, ours) = scim.get(&format!("/Groups/{default_group}")).await;
    assert_eq!(member_ids(&ours), set(&[&ada_default, &bob_default]), "{ours}");
    let records: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ops);
    let record_of = |uid: String| {
        let records = records.clone();
        async move {
            let lp = kube::api::ListParams::default().labels(&format!("scim.dev/owner-uid={uid}"));
            records.list(&lp).await.unwrap().items
        }
    };
    let team_uid = ready_team.uid().unwrap();
    let recorded = record_of(team_uid.clone()).await;
    assert_eq!(recorded.len(), 1, "one ownership record, for the peer only");
    assert_eq!(recorded[0].data.as_ref().unwrap()["remoteId"], peer_group);

    // ---- a member removed: gone on both
    let patch = json!({"spec": {"members": [{"scimUserRef": "ada"}]}});
    teams.patch("sre", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for(&teams, "sre", "one member", |t| {
        team_is(t, "True", "Provisioned", "2/2") && t.status.as_ref().is_some_and(|s| s.member_count == 1)
    })
    .await;
    let (_, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{peer_group}"), None).await;
    assert_eq!(member_ids(&held), set(&[&ada_peer]), "{held}");
    let (_, ours) = scim.get(&format!("/Groups/{default_group}")).await;
    assert_eq!(member_ids(&ours), set(&[&ada_default]), "{ours}");

    // ---- userName members where the target trusts the team's namespace: a user nobody owns
    // there is added; one that a namespace the target does not trust owns is left out
    let rival_users: Api<ScimUser> = Api::namespaced(client.clone(), &rival);
    let carol = scim_user("carol", json!({"userName": "carol@example.com", "targets": only_peer}));
    rival_users.create(&pp, &carol).await.unwrap();
    let carol = wait_for(&rival_users, "carol", "carol Ready on the peer", |u| ready_on(u, 1)).await;
    let carol_peer = entry(&carol, &cst_id).and_then(|e| e.remote_id.clone()).expect("carol's id");
    let (status, dave) = peer
        .call(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "dave@example.com",
                "active": true})),
        )
        .await;
    assert_eq!(status, 201, "{dave}");
    let dave_peer = dave["id"].as_str().unwrap().to_string();
    let by_name = managed_team(
        "by-name",
        json!({"displayName": "By name", "members": [{"userName": "carol@example.com"}, {"userName": "dave@example.com"}],
            "targets": only_peer}),
    );
    teams.create(&pp, &by_name).await.unwrap();
    let by_name =
        wait_for(&teams, "by-name", "MemberNotAllowed", |t| team_is(t, "False", "MemberNotAllowed", "0/1")).await;
    let e = team_entry(&by_name, &cst_id).expect("an entry");
    assert!(e.message.contains("carol@example.com") && !e.message.contains("dave"), "{e:?}");
    let group = e.remote_id.clone().expect("the group is made, without the refused member");
    let (_, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{group}"), None).await;
    assert_eq!(member_ids(&held), set(&[&dave_peer]), "carol ({carol_peer}) left out: {held}");

    // ---- a group made on the peer directly: untouched without a trusted linkExisting
    let (status, made) = peer
        .call(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Native",
                "members": [{"value": bob_peer}]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let native_id = made["id"].as_str().unwrap().to_string();
    let native = |link: bool| {
        managed_team(
            "native",
            json!({"displayName": "Native", "members": [], "linkExisting": link, "targets": only_peer}),
        )
    };
    let rival_teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &rival);
    rival_teams.create(&pp, &native(true)).await.unwrap();
    teams.create(&pp, &native(false)).await.unwrap();
    wait_for(&rival_teams, "native", "LinkNotAllowed", |t| team_is(t, "False", "LinkNotAllowed", "0/1")).await;
    wait_for(&teams, "native", "Conflict", |t| team_is(t, "False", "Conflict", "0/1")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{native_id}"), None).await;
    assert_eq!(member_ids(&held), set(&[&bob_peer]), "changed without a trusted linkExisting: {held}");
    assert!(held.get("externalId").is_none_or(Value::is_null), "{held}");
    // A trusted linkExisting takes it (Authoritative: its members become the declared ones).
    teams
        .patch("native", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"linkExisting": true}})))
        .await
        .unwrap();
    let linked = wait_for(&teams, "native", "linked", |t| team_is(t, "True", "Provisioned", "1/1")).await;
    assert_eq!(team_entry(&linked, &cst_id).and_then(|e| e.remote_id.as_deref()), Some(native_id.as_str()));
    let (_, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{native_id}"), None).await;
    assert!(member_ids(&held).is_empty(), "{held}");
    // The rival still may not: the record names the winner.
    let rival_native = rival_teams.get("native").await.unwrap();
    assert!(
        team_is(&rival_native, "False", "LinkNotAllowed", "0/1") || team_is(&rival_native, "False", "Conflict", "0/1")
    );

    // ---- the peer taken out of spec.targets: unlinked there only, its record released
    let patch = json!({"spec": {"targets": [{"name": "default"}]}});
    teams.patch("sre", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for(&teams, "sre", "the peer dropped", |t| {
        team_is(t, "True", "Provisioned", "1/1") && team_entry(t, &cst_id).is_none()
    })
    .await;
    let (_, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{peer_group}"), None).await;
    assert!(member_ids(&held).is_empty(), "Unlink removes the members on the dropped target: {held}");
    let (_, ours) = scim.get(&format!("/Groups/{default_group}")).await;
    assert_eq!(member_ids(&ours), set(&[&ada_default]), "the default target is untouched: {ours}");
    assert!(record_of(team_uid).await.is_empty(), "the record is released");

    // ---- deleting a team applies its policy on its targets and releases its records
    let native_uid = linked.uid().unwrap();
    teams
        .patch(
            "native",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"members": [{"scimUserRef": "bob"}]}})),
        )
        .await
        .unwrap();
    wait_for(&teams, "native", "bob in Native", |t| {
        team_is(t, "True", "Provisioned", "1/1") && t.status.as_ref().is_some_and(|s| s.member_count == 1)
    })
    .await;
    teams.delete("native", &DeleteParams::default()).await.unwrap();
    wait_gone(&teams, "native").await;
    let (_, held) = peer.call(reqwest::Method::GET, &format!("/Groups/{native_id}"), None).await;
    assert!(member_ids(&held).is_empty(), "unlinked on deletion: {held}");
    assert!(record_of(native_uid).await.is_empty());

    // ---- clean up
    operator.stop().await;
    let _ = clusters.delete(&cst, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team_ns, &rival]).await;
    scim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn managed_team_on_keycloak() {
    if control_plane().is_none() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let required = std::env::var_os("SCIM_TARGETS_REQUIRED").is_some();
    let Some(scim_url) = env_or_skip("KEYCLOAK_SCIM_URL", required) else { return };
    let client = fresh_cluster().await;
    let ops = namespace(&client, "tkc-ops").await;
    let team_ns = namespace(&client, "tkc-team").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let operator = start_operator_from(operator_args(&scim.base, &token_path, &[], &ops, 2));
    let namespaces = json!({"allowed": {"names": [team_ns.clone()]}, "trusted": {"names": [team_ns.clone()]}});
    let KeycloakTarget { peer, name: cst, id: cst_id, suffix, .. } =
        KeycloakTarget::start(&client, &scim_url, &ops, namespaces).await;
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let group_members = |id: String| {
        let peer = &peer;
        async move {
            // Keycloak returns members only when asked for them.
            let (status, body) =
                peer.call(reqwest::Method::GET, &format!("/Groups/{id}?attributes=members"), None).await;
            assert_eq!(status, 200, "{body}");
            member_ids(&body)
        }
    };
    let both = json!([{"name": "default"}, {"name": cst}]);

    // ---- two members on both targets, a team on both: the membership is right on Keycloak
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team_ns);
    let pp = PostParams::default();
    for name in ["ada", "bob"] {
        let user = scim_user(name, json!({"userName": format!("{name}@{suffix}.example.com"), "targets": both}));
        users.create(&pp, &user).await.unwrap();
    }
    let kc_id = |u: &ScimUser| entry(u, &cst_id).and_then(|e| e.remote_id.clone()).expect("Keycloak's id");
    let ada = kc_id(&wait_for(&users, "ada", "ada Ready on both", |u| ready_on(u, 2)).await);
    let bob = kc_id(&wait_for(&users, "bob", "bob Ready on both", |u| ready_on(u, 2)).await);
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &team_ns);
    let display_name = format!("SRE {suffix}");
    let sre = managed_team(
        "sre",
        json!({"displayName": display_name, "members": [{"scimUserRef": "ada"}, {"scimUserRef": "bob"}], "targets": both}),
    );
    teams.create(&pp, &sre).await.unwrap();
    let ready_team = wait_for(&teams, "sre", "Ready on both", |t| team_is(t, "True", "Provisioned", "2/2")).await;
    let group = team_entry(&ready_team, &cst_id).and_then(|e| e.remote_id.clone()).expect("Keycloak's group");
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(group_members(group.clone()).await, set(&[&ada, &bob]), "created, then members added by PATCH");

    // ---- a member removal on Keycloak (only as members[value eq "id"])
    let patch = json!({"spec": {"members": [{"scimUserRef": "ada"}]}});
    teams.patch("sre", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for(&teams, "sre", "one member", |t| {
        team_is(t, "True", "Provisioned", "2/2") && t.status.as_ref().is_some_and(|s| s.member_count == 1)
    })
    .await;
    assert_eq!(group_members(group.clone()).await, set(&[&ada]), "bob removed on Keycloak");

    // ---- Keycloak taken out of the team's targets: unlinked there only
    let patch = json!({"spec": {"targets": [{"name": "default"}]}});
    teams.patch("sre", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let dropped = wait_for(&teams, "sre", "Keycloak dropped", |t| {
        team_is(t, "True", "Provisioned", "1/1") && team_entry(t, &cst_id).is_none()
    })
    .await;
    assert!(group_members(group.clone()).await.is_empty(), "members removed on Keycloak");
    let default_group = dropped.status.as_ref().and_then(|s| s.scim_id.clone()).unwrap();
    let (_, ours) = scim.get(&format!("/Groups/{default_group}")).await;
    assert_eq!(member_ids(&ours).len(), 1, "the default target is untouched: {ours}");

    // ---- clean up
    teams.delete("sre", &DeleteParams::default()).await.unwrap();
    wait_gone(&teams, "sre").await;
    operator.stop().await;
    let _ = clusters.delete(&cst, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team_ns]).await;
    scim.stop().await;
}

/// The three service providers at once, on one operator: this project's server (`default`),
/// scim2-server (a bearer token) and Keycloak (OAuth client credentials, tokens that live 60 s,
/// so that they expire during the test). A ScimUser and a ManagedTeam naming all three are
/// right on each, read back through each server's own API; an update made after the first
/// token expired reaches all three; a member removal, a deactivation and the `Delete` policy
/// apply on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keycloak_scim2_and_the_default_target_at_once() {
    if control_plane().is_none() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let required = std::env::var_os("SCIM_TARGETS_REQUIRED").is_some();
    let Some(kc_url) = env_or_skip("KEYCLOAK_SCIM_URL", required) else { return };
    let Some(bin) = env_or_skip("SCIM_CONFORMANCE_BIN", required) else { return };
    let client = fresh_cluster().await;
    let ops = namespace(&client, "three-ops").await;
    let team = namespace(&client, "three-team").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let operator = start_operator_from(operator_args(&scim.base, &token_path, &[], &ops, 2));
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let allowed = json!({"allowed": {"names": [team.clone()]}, "trusted": {"names": [team.clone()]}});

    // scim2-server, bearer token
    let scim2_target = Scim2Target::start(&client, &bin, &ops, allowed.clone()).await;
    let (scim2, scim2_cst) = (&scim2_target.peer, scim2_target.name.clone());

    // Keycloak, OAuth client credentials
    let KeycloakTarget { peer: keycloak, name: kc_cst, id: kc_id, suffix, .. } =
        KeycloakTarget::start(&client, &kc_url, &ops, allowed).await;
    // The operator's first Keycloak token was fetched by the probe just now.
    let first_token_at = Instant::now();
    let scim2_id = scim2_target.id.clone();
    let all = json!([{"name": "default"}, {"name": scim2_cst}, {"name": kc_cst}]);

    // ---- two users and a team on all three
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team);
    let pp = PostParams::default();
    let mut ids = std::collections::BTreeMap::new();
    for (name, given) in [("ada", "Ada"), ("bob", "Bob")] {
        let user_name = format!("{name}@{suffix}.example.com");
        let spec = json!({"userName": user_name, "name": {"givenName": given, "familyName": "Three"},
            "emails": [{"value": user_name, "primary": true}], "deletionPolicy": "Delete", "targets": all});
        users.create(&pp, &scim_user(name, spec)).await.unwrap();
        let ready = wait_for(&users, name, "Ready on all three", |u| ready_on(u, 3)).await;
        assert_eq!(ready.status.as_ref().and_then(|s| s.targets_ready.as_deref()), Some("3/3"));
        let on = |target: &str| entry(&ready, target).and_then(|e| e.remote_id.clone()).expect("an id on each");
        let (own, peer, kc) = (on("ClusterScimTarget/default"), on(&scim2_id), on(&kc_id));
        let (_, ours) = scim.get(&format!("/Users/{own}")).await;
        for held in [ours, scim2.user(&peer).await, keycloak.user(&kc).await] {
            assert_eq!(held["userName"].as_str().map(str::to_lowercase), Some(user_name.clone()), "{held}");
            assert_eq!((held["name"]["familyName"].as_str(), held["active"].as_bool()), (Some("Three"), Some(true)));
        }
        ids.insert(name, (own, peer, kc));
    }
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &team);
    let sre = managed_team(
        "sre",
        json!({"displayName": format!("SRE {suffix}"), "members": [{"scimUserRef": "ada"}, {"scimUserRef": "bob"}],
            "targets": all}),
    );
    teams.create(&pp, &sre).await.unwrap();
    let ready_team = wait_for(&teams, "sre", "Ready on all three", |t| team_is(t, "True", "Provisioned", "3/3")).await;
    let group_on = |target: &str| team_entry(&ready_team, target).and_then(|e| e.remote_id.clone()).expect("a group");
    let groups = (group_on("ClusterScimTarget/default"), group_on(&scim2_id), group_on(&kc_id));
    let members = |pick: fn(&(String, String, String)) -> &String, only_ada: bool| {
        ids.iter()
            .filter(|(name, _)| !only_ada || **name == "ada")
            .map(|(_, t)| pick(t).clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let check_members = |only_ada: bool| {
        let (scim, scim2, keycloak, groups) = (&scim, &scim2, &keycloak, &groups);
        let want = (members(|t| &t.0, only_ada), members(|t| &t.1, only_ada), members(|t| &t.2, only_ada));
        async move {
            let (_, ours) = scim.get(&format!("/Groups/{}", groups.0)).await;
            assert_eq!(member_ids(&ours), want.0, "{ours}");
            let (_, held) = scim2.call(reqwest::Method::GET, &format!("/Groups/{}", groups.1), None).await;
            assert_eq!(member_ids(&held), want.1, "{held}");
            // Keycloak returns members only when asked for them.
            let path = format!("/Groups/{}?attributes=members", groups.2);
            let (_, held) = keycloak.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(member_ids(&held), want.2, "{held}");
        }
    };
    check_members(false).await;

    // ---- past the first token's 60 s life: an update and a member removal reach all three
    let lifespan = Duration::from_secs(65);
    if let Some(left) = lifespan.checked_sub(first_token_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let patch = json!({"spec": {"name": {"givenName": "Ada", "familyName": "Renamed"}}});
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let (own, peer, kc) = ids["ada"].clone();
    wait_until("the new name on all three", || async {
        let (_, ours) = scim.get(&format!("/Users/{own}")).await;
        [ours, scim2.user(&peer).await, keycloak.user(&kc).await].iter().all(|u| u["name"]["familyName"] == "Renamed")
    })
    .await;
    let patch = json!({"spec": {"members": [{"scimUserRef": "ada"}]}});
    teams.patch("sre", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for(&teams, "sre", "one member on all three", |t| {
        team_is(t, "True", "Provisioned", "3/3") && t.status.as_ref().is_some_and(|s| s.member_count == 1)
    })
    .await;
    check_members(true).await;

    // ---- deactivation, then the Delete policy, on all three
    users.patch("bob", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"active": false}}))).await.unwrap();
    let (own, peer, kc) = ids["bob"].clone();
    wait_until("bob inactive on all three", || async {
        let (_, ours) = scim.get(&format!("/Users/{own}")).await;
        [ours, scim2.user(&peer).await, keycloak.user(&kc).await].iter().all(|u| u["active"] == false)
    })
    .await;
    users.delete("bob", &DeleteParams::default()).await.unwrap();
    wait_gone(&users, "bob").await;
    let (status, _) = scim.get(&format!("/Users/{own}")).await;
    assert_eq!(status.as_u16(), 404, "deleted on this project's server");
    assert_eq!(scim2.call(reqwest::Method::GET, &format!("/Users/{peer}"), None).await.0, 404, "deleted on scim2");
    assert_eq!(keycloak.call(reqwest::Method::GET, &format!("/Users/{kc}"), None).await.0, 404, "deleted on Keycloak");

    operator.stop().await;
    for name in [&scim2_cst, &kc_cst] {
        let _ = clusters.delete(name, &DeleteParams::default()).await;
    }
    delete_namespaces(&client, &[&ops, &team]).await;
    scim.stop().await;
}

// ---- roles on a target other than the default

/// The role values the peer holds for the user `id`, lowercased and sorted.
async fn roles_on(peer: &Peer, id: &str) -> Vec<String> {
    let user = peer.user(id).await;
    let mut roles: Vec<String> = user["roles"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["value"].as_str().map(str::to_lowercase)).collect())
        .unwrap_or_default();
    roles.sort();
    roles
}

/// Waits until the peer holds exactly `want` as the roles of the user `id`.
async fn wait_roles(peer: &Peer, id: &str, want: &[&str], what: &str) {
    let want: Vec<String> = want.iter().map(|r| r.to_string()).collect();
    wait_until(what, || async { roles_on(peer, id).await == want }).await;
}

/// Roles on a scim2-server ClusterScimTarget, computed by the operator: `spec.roles` of a
/// namespace the target trusts are sent and withdrawn when the list is emptied or the trust
/// ends; a RoleMapping's roles reach the members of a trusted ManagedTeam of a mapped name that
/// names the target, and leave with the membership; an untrusted namespace's team of that name
/// gives its members nothing; a role an administrator set on the target directly stays. The
/// operator resyncs once an hour here, so every change is carried by a watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_are_computed_sent_and_withdrawn_on_a_target() {
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "rtargets-ops").await;
    let team_ns = namespace(&client, "rtargets-team").await;
    let rival = namespace(&client, "rtargets-rival").await;
    let scim = common::TestServer::start().await;
    let (_dir, token_path) = token_file(&scim.token);
    let operator = start_operator_from(operator_args(&scim.base, &token_path, &[], &ops, 3600));

    let access = |trusted: &[&String]| json!({"allowed": {"names": [team_ns.clone(), rival.clone()]}, "trusted": {"names": trusted}});
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let scim2 = Scim2Target::start(&client, &bin, &ops, access(&[&team_ns])).await;
    let (peer, cst, cst_id) = (&scim2.peer, scim2.name.clone(), scim2.id.clone());
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let only_peer = json!([{"name": cst}]);
    let pp = PostParams::default();

    // ---- (a) spec.roles of a trusted namespace are sent; an administrator's role stays
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team_ns);
    let ada = scim_user("ada", json!({"userName": "ada@example.com", "roles": ["Auditor"], "targets": only_peer}));
    users.create(&pp, &ada).await.unwrap();
    let ready = wait_for(&users, "ada", "Ready on the peer", |u| ready_on(u, 1)).await;
    let ada_id = entry(&ready, &cst_id).and_then(|e| e.remote_id.clone()).expect("ada's id on the peer");
    wait_roles(peer, &ada_id, &["auditor"], "spec.roles on the peer").await;
    let message = &entry(&ready, &cst_id).unwrap().message;
    assert!(message.contains("roles sent: Auditor"), "the entry says which roles were sent: {message}");
    // An administrator gives ada a role on the peer directly.
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "roles", "value": [{"value": "billing"}]}]});
    let (status, body) = peer.call(reqwest::Method::PATCH, &format!("/Users/{ada_id}"), Some(add)).await;
    assert!(status == 200 || status == 204, "{status} {body}");
    wait_roles(peer, &ada_id, &["auditor", "billing"], "the administrator's role added").await;
    // spec.roles emptied: the role this resource granted is withdrawn, the administrator's stays.
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"roles": null}}))).await.unwrap();
    wait_roles(peer, &ada_id, &["billing"], "Auditor withdrawn, billing kept (spec.roles emptied)").await;

    // ---- (b) the namespace stops being trusted on the target: its roles are withdrawn
    let roles = json!({"spec": {"roles": ["Auditor"]}});
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&roles)).await.unwrap();
    wait_roles(peer, &ada_id, &["auditor", "billing"], "Auditor granted again").await;
    let untrust = json!({"spec": {"namespaces": access(&[])}});
    clusters.patch(&cst, &PatchParams::default(), &Patch::Merge(&untrust)).await.unwrap();
    wait_roles(peer, &ada_id, &["billing"], "Auditor withdrawn (trust ended)").await;
    let retrust = json!({"spec": {"namespaces": access(&[&team_ns])}});
    clusters.patch(&cst, &PatchParams::default(), &Patch::Merge(&retrust)).await.unwrap();
    wait_roles(peer, &ada_id, &["auditor", "billing"], "Auditor granted again (trusted again)").await;
    users.patch("ada", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"roles": null}}))).await.unwrap();
    wait_roles(peer, &ada_id, &["billing"], "Auditor withdrawn").await;

    // ---- (c) a RoleMapping: a trusted team of a mapped name on the target gives its members
    // the mapped role; removing the member withdraws it.
    let ops_team = format!("ops-{suffix}");
    let mappings: Api<RoleMapping> = Api::all(client.clone());
    let mapping = format!("ops-admin-{suffix}");
    let rm = json!({"apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping", "metadata": {"name": mapping},
        "spec": {"roles": ["admin"], "teams": [ops_team]}});
    mappings.create(&pp, &serde_json::from_value(rm).unwrap()).await.unwrap();
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &team_ns);
    let team = managed_team(
        "ops",
        json!({"displayName": ops_team, "members": [{"scimUserRef": "ada"}], "targets": only_peer}),
    );
    teams.create(&pp, &team).await.unwrap();
    wait_roles(peer, &ada_id, &["admin", "billing"], "admin from the RoleMapping").await;
    let ada_now = wait_for(&users, "ada", "the entry names the mapped role", |u| {
        entry(u, &cst_id).is_some_and(|e| e.message.contains("roles sent: admin"))
    })
    .await;
    assert!(ready_on(&ada_now, 1), "{:?}", ada_now.status);
    teams.patch("ops", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"members": null}}))).await.unwrap();
    wait_roles(peer, &ada_id, &["billing"], "admin withdrawn with the membership").await;
    teams
        .patch("ops", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"members": [{"scimUserRef": "ada"}]}})))
        .await
        .unwrap();
    wait_roles(peer, &ada_id, &["admin", "billing"], "admin back with the membership").await;

    // ---- (d) an untrusted namespace's team of the mapped name gives its members nothing,
    // whatever its spec says; nor do its own spec.roles.
    let rivals: Api<ScimUser> = Api::namespaced(client.clone(), &rival);
    let eve = scim_user("eve", json!({"userName": "eve@example.com", "roles": ["admin"], "targets": only_peer}));
    rivals.create(&pp, &eve).await.unwrap();
    let rival_teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &rival);
    let fake = managed_team(
        "ops",
        json!({"displayName": ops_team, "members": [{"scimUserRef": "eve"}], "targets": only_peer}),
    );
    rival_teams.create(&pp, &fake).await.unwrap();
    let eve_ready =
        wait_for(&rivals, "eve", "eve on the peer", |u| entry(u, &cst_id).is_some_and(|e| e.remote_id.is_some())).await;
    let eve_id = entry(&eve_ready, &cst_id).and_then(|e| e.remote_id.clone()).unwrap();
    wait_for(&rival_teams, "ops", "the rival team reconciled", |t| team_entry(t, &cst_id).is_some()).await;
    // A team change and the mapping's change reach eve too; give them time to act.
    let touch = json!({"spec": {"roles": ["admin"], "teams": [ops_team, format!("other-{suffix}")]}});
    mappings.patch(&mapping, &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(roles_on(peer, &eve_id).await.is_empty(), "eve has no role on the peer");
    assert_eq!(roles_on(peer, &ada_id).await, ["admin", "billing"], "ada keeps hers");

    // ---- the mapping deleted: the mapped role is withdrawn, the administrator's stays
    mappings.delete(&mapping, &DeleteParams::default()).await.unwrap();
    wait_roles(peer, &ada_id, &["billing"], "admin withdrawn with the mapping").await;

    operator.stop().await;
    let _ = clusters.delete(&cst, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team_ns, &rival]).await;
    scim.stop().await;
}

// ---- namespace labels that a target's selectors read

/// Seconds between resyncs of the operator in [`namespace_labels_reach_their_users_at_once`]:
/// every change it shows within [`WAIT`] (40 s) was carried by a watch, not a resync (nor the
/// retry of a refused resource, at most 300 s).
const LABELS_RESYNC_SECONDS: u64 = 3600;

/// `RolesAllowed`'s (status, reason), for the current generation.
fn roles_allowed(u: &ScimUser) -> Option<(String, String)> {
    let s = u.status.as_ref().filter(|s| s.observed_generation == u.metadata.generation)?;
    s.conditions.iter().find(|c| c.type_ == "RolesAllowed").map(|c| (c.status.clone(), c.reason.clone()))
}

/// A ClusterScimTarget that allows and trusts namespaces by label selector: a ScimUser with
/// `spec.roles` in a namespace without the labels is refused (`TargetNotAllowed`); labelled
/// allowed, it is provisioned without its roles (`RolesNotAllowed`); labelled trusted, its roles
/// are sent; the trust label removed, they are withdrawn. Each step shows within moments of the
/// label change, where the operator resyncs once an hour: the Namespace's watch carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namespace_labels_reach_their_users_at_once() {
    let Some((_serial, bin, client)) = scim2_turn().await else { return };
    let ops = namespace(&client, "ltargets-ops").await;
    let team_ns = namespace(&client, "ltargets-team").await;
    let (_dir, token_path) = token_file("unused");
    let operator =
        start_operator_from(operator_args("http://127.0.0.1:9/scim/v2", &token_path, &[], &ops, LABELS_RESYNC_SECONDS));
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (allow, trust) = (format!("scim-e2e/allow-{suffix}"), format!("scim-e2e/trust-{suffix}"));
    let access = json!({"allowed": {"selector": {"matchLabels": {allow.clone(): "yes"}}},
        "trusted": {"selector": {"matchLabels": {trust.clone(): "yes"}}}});
    let scim2 = Scim2Target::start(&client, &bin, &ops, access).await;
    let (peer, cst_id) = (&scim2.peer, scim2.id.clone());
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &team_ns);
    let ada = scim_user(
        "ada",
        json!({"userName": "ada@example.com", "roles": ["Auditor"], "targets": [{"name": scim2.name}]}),
    );
    users.create(&PostParams::default(), &ada).await.unwrap();
    wait_for(&users, "ada", "refused without the labels", |u| refused_for(u, "TargetNotAllowed")).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = |key: &str, value: Option<&str>| {
        let patch = json!({"metadata": {"labels": {key: value}}});
        let (namespaces, team_ns) = (namespaces.clone(), team_ns.clone());
        async move { namespaces.patch(&team_ns, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap() }
    };
    let well_before_a_resync = |step: &str, since: Instant| {
        let took = since.elapsed();
        eprintln!("{step}: {took:?} after the label change (resync: {LABELS_RESYNC_SECONDS} s)");
        assert!(took < Duration::from_secs(LABELS_RESYNC_SECONDS / 60), "{step} took {took:?}");
    };

    // ---- allowed by label: provisioned, its roles withheld (not trusted)
    let since = Instant::now();
    label(&allow, Some("yes")).await;
    let provisioned = wait_for(&users, "ada", "provisioned once allowed, roles withheld", |u| {
        ready_on(u, 1) && roles_allowed(u) == Some(("False".into(), "RolesNotAllowed".into()))
    })
    .await;
    well_before_a_resync("allowed", since);
    let ada_id = entry(&provisioned, &cst_id).and_then(|e| e.remote_id.clone()).expect("ada's id on the peer");
    assert!(roles_on(peer, &ada_id).await.is_empty(), "no role sent from a namespace not trusted");

    // ---- trusted by label: its roles are sent
    let since = Instant::now();
    label(&trust, Some("yes")).await;
    let trusted = wait_for(&users, "ada", "roles sent once trusted", |u| {
        roles_allowed(u) == Some(("True".into(), "TrustedNamespace".into()))
            && entry(u, &cst_id).is_some_and(|e| e.ready && e.message.contains("roles sent: Auditor"))
    })
    .await;
    well_before_a_resync("trusted", since);
    assert!(ready_on(&trusted, 1), "{:?}", trusted.status);
    wait_roles(peer, &ada_id, &["auditor"], "Auditor on the peer").await;

    // ---- the trust label removed: the role is withdrawn
    let since = Instant::now();
    label(&trust, None).await;
    wait_roles(peer, &ada_id, &[], "Auditor withdrawn once the trust label is gone").await;
    well_before_a_resync("untrusted", since);

    operator.stop().await;
    let clusters: Api<ClusterScimTarget> = Api::all(client.clone());
    let _ = clusters.delete(&scim2.name, &DeleteParams::default()).await;
    delete_namespaces(&client, &[&ops, &team_ns]).await;
}
