//! End to end: two operator processes with leader election against a real kube-apiserver
//! (tests/env/control-plane.sh) and the real SCIM server on loopback. Both are Ready; the leader
//! is frozen with SIGSTOP; the standby takes over within one lease duration plus one retry
//! period and provisions; once thawed, the old leader sends nothing to the SCIM server (each
//! replica has its own key, so the audit trail tells them apart) and exits.
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::k8s::install_crds;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use scim_operator::clock::{Clock, SystemClock, format_time};
use scim_operator::operator::crd::ScimUser;
use scim_operator::store::AuditQuery;
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The tests of this file run one at a time: their replicas watch every namespace, so a leader
/// of one test would also provision (and set Ready on) the other test's ScimUsers, into its own
/// server, and each test's attribution of writes to its leader would race with the other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const LEASE: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_secs(1);
/// Allowance for the Lease API round trips of a loaded test machine on top of the bound.
const LATENCY: Duration = Duration::from_millis(1500);

fn control_plane() -> bool {
    if std::env::var_os("KUBECONFIG").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("SCIM_E2E_REQUIRED").is_none(),
        "SCIM_E2E_REQUIRED is set but KUBECONFIG is not: start tests/env/control-plane.sh"
    );
    eprintln!("SKIPPED: no KUBECONFIG; start a control plane with tests/env/control-plane.sh");
    false
}

/// One operator process; killed (and thawed first) when dropped.
struct Replica {
    identity: String,
    key_id: String,
    child: Child,
    health: String,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(identity: &str, key_id: &str, token_file: &Path, scim_url: &str, lease_ns: &str, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("{identity}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_scim-operator"))
            .args(["controller", "--leader-election", "--scim-url", scim_url, "--lease-namespace", lease_ns])
            .args(["--identity", identity, "--metrics-listen", &format!("127.0.0.1:{port}")])
            .arg("--token-file")
            .arg(token_file)
            .args(["--lease-duration-seconds", &LEASE.as_secs().to_string()])
            .args(["--lease-renew-deadline-seconds", &RENEW_DEADLINE.as_secs().to_string()])
            .args(["--lease-retry-period-seconds", &RETRY.as_secs().to_string()])
            .args(["--resync-seconds", "2", "--concurrency", "4"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the operator");
        Self {
            identity: identity.into(),
            key_id: key_id.into(),
            child,
            health: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} {}", self.identity);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eventually<F, Fut, T>(what: &str, within: Duration, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases.get_opt("scim-operator").await.ok().flatten()?.spec?.holder_identity.filter(|h| !h.is_empty())
}

fn user_ready(u: &ScimUser) -> bool {
    u.status.as_ref().is_some_and(|s| {
        s.observed_generation == u.metadata.generation
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Waits until the ScimUser is Ready for its current generation; on timeout, fails with the
/// object and the replicas' logs.
async fn provisioned(users: &Api<ScimUser>, name: &str, replicas: &[Replica]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let user = users.get_opt(name).await.ok().flatten();
        if user.as_ref().is_some_and(user_ready) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = replicas.iter().map(|r| format!("--- {}\n{}", r.identity, r.log())).collect();
            panic!("ScimUser {name} not Ready: {:?}\n{}", user.map(|u| u.status), logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A ScimUser whose userName is unique to this run (the controllers watch every namespace).
fn scim_user(name: &str, ns: &str) -> ScimUser {
    serde_json::from_value(json!({
        "apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser", "metadata": {"name": name},
        "spec": {"userName": format!("{name}@{ns}.example.com"), "displayName": name}
    }))
    .unwrap()
}

/// A fresh namespace (for the Lease and the ScimUsers) named after `prefix`, with the CRDs installed.
async fn namespace(prefix: &str) -> (Client, String, Api<Lease>, Api<ScimUser>) {
    let client = Client::try_default().await.expect("kubeconfig");
    install_crds(&client).await;
    let ns = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    (client.clone(), ns.clone(), Api::namespaced(client.clone(), &ns), Api::namespaced(client, &ns))
}

/// A replica with a key of its own (so the audit trail tells the replicas apart) talking to `url`.
async fn replica(server: &common::TestServer, identity: &str, url: &str, ns: &str, dir: &Path) -> Replica {
    let token = common::create_key(&server.store, identity, None).await;
    let keys = server.store.begin_read().await.unwrap().list_keys().await.unwrap();
    let key_id = keys.iter().find(|k| k.name == identity).expect("the replica's key").id.clone();
    let token_file = dir.join(format!("{identity}.token"));
    std::fs::write(&token_file, token).unwrap();
    Replica::start(identity, &key_id, &token_file, url, ns, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_leader_is_replaced_and_writes_nothing_after_it_thaws() {
    if !control_plane() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    let (client, ns, leases, users) = namespace("leader").await;

    let server = common::TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for identity in ["replica-a", "replica-b"] {
        replicas.push(replica(&server, identity, &server.base, &ns, dir.path()).await);
    }

    // Both Ready, the standby included: readiness is not leadership.
    let http = reqwest::Client::new();
    for r in &replicas {
        eventually(&format!("{} ready", r.identity), WAIT, || async {
            let resp = http.get(format!("{}/readyz", r.health)).send().await.ok()?;
            resp.status().is_success().then_some(())
        })
        .await;
    }
    let first = eventually("a leader", WAIT, || holder(&leases)).await;
    let (leader, standby) = match replicas.iter().position(|r| r.identity == first) {
        Some(0) => (&replicas[0], &replicas[1]),
        Some(_) => (&replicas[1], &replicas[0]),
        None => panic!("the lease names {first}, not a replica of this test"),
    };
    for r in &replicas {
        let resp = http.get(format!("{}/readyz", r.health)).send().await.unwrap();
        assert!(resp.status().is_success(), "{} still Ready once a leader is chosen", r.identity);
    }

    users.create(&PostParams::default(), &scim_user("before", &ns)).await.unwrap();
    provisioned(&users, "before", &replicas).await;
    let by = |key: &str, since: &str| {
        let store = server.store.clone();
        let (key, since) = (key.to_string(), since.to_string());
        async move {
            let q = AuditQuery { since: Some(since), ..Default::default() };
            let events = store.begin_read().await.unwrap().list_audit(&q).await.unwrap();
            events.into_iter().filter(|e| e.actor == key).collect::<Vec<_>>()
        }
    };
    let start = format_time(SystemClock.now() - chrono::Duration::hours(1));
    assert!(!by(&leader.key_id, &start).await.is_empty(), "the leader's writes are attributable to its key");
    assert!(by(&standby.key_id, &start).await.is_empty(), "the standby wrote nothing while standing by");

    // Freeze the leader: the standby leads within the lease duration plus one retry period.
    leader.signal("-STOP");
    let frozen = Instant::now();
    // The frozen leader's last renewal as the Lease shows it (both replicas stamp the Lease from
    // this machine's clock, so the test may compare the stamps).
    let stamp = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| t.as_ref().map(|t| t.0);
    let mut last_renewal = None;
    let deadline = Instant::now() + WAIT;
    let (took_over, acquired) = loop {
        let spec = leases.get("scim-operator").await.unwrap().spec.unwrap_or_default();
        match spec.holder_identity.as_deref() {
            Some(h) if h == standby.identity => break (Instant::now(), stamp(&spec.acquire_time)),
            Some(h) if h == leader.identity => last_renewal = stamp(&spec.renew_time),
            other => panic!("unexpected holder {other:?}"),
        }
        assert!(Instant::now() < deadline, "the standby did not take over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let takeover = took_over - frozen;
    eprintln!("takeover {:.2}s after SIGSTOP (lease {LEASE:?}, retry {RETRY:?})", takeover.as_secs_f64());
    assert!(takeover <= LEASE + RETRY + LATENCY, "taken over after {takeover:?}");
    // Never earlier than one lease duration after the holder's last renewal that the standby
    // could have seen: the old leader's own deadline (3 s after it) had passed by then.
    let (Some(renewed), Some(acquired)) = (last_renewal, acquired) else { panic!("the Lease lacks its times") };
    let gap = acquired.duration_since(renewed);
    eprintln!("acquired {gap:#} after the frozen leader's last renewal");
    assert!(
        gap >= k8s_openapi::jiff::SignedDuration::try_from(LEASE).unwrap(),
        "taken over {gap:#} after the last renewal, less than the lease duration"
    );
    users.create(&PostParams::default(), &scim_user("during", &ns)).await.unwrap();
    provisioned(&users, "during", &replicas).await;

    // Work the thawed leader would pick up from its watch if it still believed it led.
    users
        .patch(
            "before",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "changed while the leader was frozen"}})),
        )
        .await
        .unwrap();
    users.create(&PostParams::default(), &scim_user("thaw", &ns)).await.unwrap();
    provisioned(&users, "before", &replicas).await;
    provisioned(&users, "thaw", &replicas).await;

    let thawed_at = format_time(SystemClock.now());
    leader.signal("-CONT");
    let (leader_key, standby_key) = (leader.key_id.clone(), standby.key_id.clone());
    let (leader_at, standby_identity) =
        (replicas.iter().position(|r| r.identity == first).unwrap_or(0), standby.identity.clone());
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = replicas[leader_at].child.try_wait().expect("wait for the old leader") {
            break status;
        }
        assert!(Instant::now() < deadline, "the old leader did not step down:\n{}", replicas[leader_at].log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = replicas[leader_at].log();
    assert!(!status.success(), "the old leader exits with an error status: {status}");
    assert!(log.contains("stopped leading") && log.contains("renew deadline"), "it says why:\n{log}");
    // Give it every chance to write: resyncs come every 2 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = by(&leader_key, &thawed_at).await;
    assert!(after.is_empty(), "the old leader wrote after it thawed: {after:?}");
    assert_eq!(holder(&leases).await.as_deref(), Some(standby_identity.as_str()), "the standby still leads");
    let by_standby = by(&standby_key, &start).await;
    assert!(by_standby.iter().any(|e| e.action == "user.create"), "the new leader provisioned users: {by_standby:?}");
    let readyz = http.get(format!("{}/readyz", replicas[1 - leader_at].health)).send().await.unwrap();
    assert!(readyz.status().is_success());

    // Deleted while the new leader runs, so that their finalizers are honoured.
    for name in ["before", "during", "thaw"] {
        users.delete(name, &Default::default()).await.unwrap();
    }
    eventually("the ScimUsers to be deleted", WAIT, || async {
        users.list(&Default::default()).await.ok().filter(|l| l.items.is_empty()).map(|_| ())
    })
    .await;
    drop(replicas);
    let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &Default::default()).await;
    server.stop().await;
}

/// A TCP proxy on 127.0.0.1 that, while holding, holds back for `hold` every chunk from client
/// to server that starts a write (`POST`, `PUT`, `PATCH`, `DELETE`), and what follows it on the
/// same connection (to keep the order). Like a network, it delivers what it has taken even when
/// the sender is gone. It notes the status of every response it relays.
struct DelayingProxy {
    addr: std::net::SocketAddr,
    hold: std::sync::Arc<std::sync::Mutex<Option<Duration>>>,
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// When the first held chunk was delivered.
    delivered: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
    statuses: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DelayingProxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = std::sync::Arc::new(std::sync::Mutex::new(None::<Duration>));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let delivered = std::sync::Arc::new(std::sync::Mutex::new(None));
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, he, d, s) = (hold.clone(), held.clone(), delivered.clone(), statuses.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else { continue };
                let ((mut cr, mut cw), (mut sr, mut sw)) = (client.into_split(), server.into_split());
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, bool, Vec<u8>)>();
                let (hold, held) = (h.clone(), he.clone());
                tokio::spawn(async move {
                    let (mut buf, mut last) = (vec![0u8; 64 * 1024], tokio::time::Instant::now());
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let chunk = buf[..n].to_vec();
                        let write =
                            [&b"POST "[..], b"PUT ", b"PATCH ", b"DELETE "].iter().any(|m| chunk.starts_with(m));
                        let delay = (*hold.lock().unwrap()).filter(|_| write);
                        let release = tokio::time::Instant::now() + delay.unwrap_or_default();
                        last = last.max(release);
                        if delay.is_some() {
                            held.fetch_add(1, SeqCst);
                        }
                        if tx.send((last, delay.is_some(), chunk)).is_err() {
                            break;
                        }
                    }
                });
                let delivered = d.clone();
                tokio::spawn(async move {
                    while let Some((at, was_held, chunk)) = rx.recv().await {
                        tokio::time::sleep_until(at).await;
                        if sw.write_all(&chunk).await.is_err() {
                            break;
                        }
                        if was_held {
                            delivered.lock().unwrap().get_or_insert_with(Instant::now);
                        }
                    }
                });
                let statuses = s.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if let Some(code) =
                            buf[..n].strip_prefix(b"HTTP/1.1 ").and_then(|r| std::str::from_utf8(r.get(..3)?).ok())
                        {
                            statuses.lock().unwrap().push((Instant::now(), code.parse().unwrap_or(0)));
                        }
                        // The client may be gone (frozen or timed out): the server's answer is
                        // still read, so its status is noted.
                        let _ = cw.write_all(&buf[..n]).await;
                    }
                });
            }
        });
        Self { addr, hold, held, delivered, statuses, task }
    }

    fn hold(&self, hold: Option<Duration>) {
        *self.hold.lock().unwrap() = hold;
    }
}

impl Drop for DelayingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fence itself: a write the leader sent while leading, held back on the network past the
/// moment a standby took over, must not land. The leader is frozen right after sending it (so
/// its own timeout cannot help), the ScimUser it was creating is deleted under the new leader,
/// and when the proxy finally delivers the request the server refuses it: no user, no audit
/// event by the old leader's key after the takeover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_held_back_past_the_lease_does_not_land() {
    if !control_plane() {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().await;
    const HOLD: Duration = Duration::from_secs(10);
    let (client, ns, leases, users) = namespace("fence").await;
    let server = common::TestServer::start().await;
    let upstream: std::net::SocketAddr =
        server.base.trim_start_matches("http://").trim_end_matches("/scim/v2").parse().expect("the server's address");
    let proxy = DelayingProxy::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    // The first replica talks through the proxy and is started alone, so that it leads.
    for (identity, url) in [("fenced-a", format!("http://{}/scim/v2", proxy.addr)), ("fenced-b", server.base.clone())] {
        replicas.push(replica(&server, identity, &url, &ns, dir.path()).await);
        if replicas.len() == 1 {
            let first = eventually("a leader", WAIT, || holder(&leases)).await;
            assert_eq!(first, identity, "the only replica leads");
        }
    }
    users.create(&PostParams::default(), &scim_user("warm", &ns)).await.unwrap();
    provisioned(&users, "warm", &replicas).await;

    proxy.hold(Some(HOLD));
    users.create(&PostParams::default(), &scim_user("held", &ns)).await.unwrap();
    eventually("the leader's write to reach the proxy", WAIT, || async {
        (proxy.held.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    replicas[0].signal("-STOP");
    users.delete("held", &Default::default()).await.unwrap();
    eventually("the standby to lead", WAIT, || async { (holder(&leases).await? == "fenced-b").then_some(()) }).await;
    let took_over = format_time(SystemClock.now());
    eventually("the new leader to release the deleted ScimUser", WAIT, || async {
        users.get_opt("held").await.ok().flatten().is_none().then_some(())
    })
    .await;
    let delivered_by = Instant::now() + HOLD + Duration::from_secs(5);
    let delivered = eventually("the proxy to deliver the held write", HOLD + Duration::from_secs(10), || async {
        *proxy.delivered.lock().unwrap()
    })
    .await;
    assert!(delivered < delivered_by);
    // The server's answer to it (it arrives at the proxy even though the leader is frozen).
    let answer = eventually("the server's answer to the held write", Duration::from_secs(10), || async {
        proxy.statuses.lock().unwrap().iter().find(|(at, _)| *at >= delivered).map(|(_, s)| *s)
    })
    .await;

    let q = AuditQuery { since: Some(took_over.clone()), ..Default::default() };
    let events = server.store.begin_read().await.unwrap().list_audit(&q).await.unwrap();
    let late: Vec<_> = events.iter().filter(|e| e.actor == replicas[0].key_id).collect();
    assert!(late.is_empty(), "the old leader's write landed after the takeover: {late:?}");
    let found = server
        .http
        .get(format!(
            "{}/Users?{}",
            server.base,
            serde_urlencoded::to_string([("filter", format!("userName eq \"held@{ns}.example.com\""))]).unwrap()
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(found["totalResults"], 0, "the deleted ScimUser's user exists on the server: {found}");
    assert_eq!(answer, 408, "the server refused the late write");

    replicas[0].signal("-CONT");
    users.delete("warm", &Default::default()).await.unwrap();
    eventually("the ScimUsers to be deleted", WAIT, || async {
        users.list(&Default::default()).await.ok().filter(|l| l.items.is_empty()).map(|_| ())
    })
    .await;
    drop(replicas);
    drop(proxy);
    let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &Default::default()).await;
    server.stop().await;
}
