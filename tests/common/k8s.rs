//! Support for the end-to-end tests on a real control plane (tests/env/control-plane.sh):
//! CRDs, namespaces, waiting on conditions, and the operator in-process.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, CustomResourceExt, ResourceExt};
use scim_operator::operator::crd::{ClusterScimTarget, ManagedTeam, RoleMapping, ScimTarget, ScimUser};
use scim_operator::operator::{ControllerArgs, run};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// How long a test waits for a state.
pub const WAIT: Duration = Duration::from_secs(40);

/// Whether a control plane is there (KUBECONFIG); without one the test skips, unless
/// `SCIM_E2E_REQUIRED` is set.
pub fn control_plane() -> Option<()> {
    if std::env::var_os("KUBECONFIG").is_some() {
        return Some(());
    }
    if std::env::var_os("SCIM_E2E_REQUIRED").is_some() {
        panic!("SCIM_E2E_REQUIRED is set but KUBECONFIG is not: start tests/env/control-plane.sh");
    }
    eprintln!(
        "SKIPPED: no KUBECONFIG; start a control plane with tests/env/control-plane.sh to run the end-to-end tests"
    );
    None
}

/// A client of the control plane, with the CRDs installed and earlier runs' objects released
/// (see [`forget_earlier_runs`]). The release happens once per test process: the tests of one
/// binary run at once, each in namespaces of its own, and one test's release must not delete
/// the objects another is working with.
pub async fn fresh_cluster() -> Client {
    static PREPARED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let client = Client::try_default().await.expect("kubeconfig");
    PREPARED
        .get_or_init(|| async {
            install_crds(&client).await;
            forget_earlier_runs(&client).await;
        })
        .await;
    client
}

/// A file holding `token`, as the operator reads its key (the directory lives as long as the
/// value returned).
pub fn token_file(token: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("token");
    std::fs::write(&path, token).expect("write the token file");
    (dir, path)
}

pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [ScimUser::crd(), ManagedTeam::crd(), RoleMapping::crd(), ScimTarget::crd(), ClusterScimTarget::crd()] {
        let name = crd.name_any();
        api.patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(&crd)).await.unwrap();
        tokio::time::timeout(WAIT, await_condition(api.clone(), &name, conditions::is_crd_established()))
            .await
            .expect("CRD established")
            .unwrap();
    }
}

pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
        .await
        .unwrap();
    name
}

/// Polls until `check` holds for the object, or fails with its last state.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, check: impl Fn(&K) -> bool) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            if check(&obj) {
                return obj;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {name} to be {what}: {obj:?}");
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {name} to be {what}: not found");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt(name).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "{name} was not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn wait_until<F, Fut>(what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_long(what, WAIT, f).await
}

/// [`wait_until`] with a longer limit, for work at scale.
pub async fn wait_until_long<F, Fut>(what: &str, limit: Duration, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn ready(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Option<(String, String)> {
    conds.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone()))
}

pub fn user_ready(u: &ScimUser, status: &str, reason: &str) -> bool {
    u.status.as_ref().and_then(|s| ready(&s.conditions)) == Some((status.into(), reason.into()))
        && u.status.as_ref().and_then(|s| s.observed_generation) == u.metadata.generation
}

pub fn scim_user(name: &str, spec: Value) -> ScimUser {
    serde_json::from_value(
        json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

pub struct Operator {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the operator against `scim_url`, trusting `trusted`, with its Lease in `lease_ns`,
/// resyncing every 2 s.
pub fn start_operator(scim_url: &str, token_file: &Path, trusted: &[&str], lease_ns: &str) -> Operator {
    start_operator_with(scim_url, token_file, trusted, lease_ns, 2)
}

/// Same, resyncing every `resync_seconds`.
pub fn start_operator_with(
    scim_url: &str,
    token_file: &Path,
    trusted: &[&str],
    lease_ns: &str,
    resync_seconds: u64,
) -> Operator {
    start_operator_from(operator_args(scim_url, token_file, trusted, lease_ns, resync_seconds))
}

/// The settings [`start_operator_with`] runs the operator with.
pub fn operator_args(
    scim_url: &str,
    token_file: &Path,
    trusted: &[&str],
    lease_ns: &str,
    resync_seconds: u64,
) -> ControllerArgs {
    ControllerArgs {
        scim_url: scim_url.to_string(),
        token_file: token_file.to_path_buf(),
        trusted_namespaces: trusted.iter().map(|t| t.to_string()).collect(),
        concurrency: 4,
        rate_limit: 500,
        max_in_flight: 16,
        resync_seconds,
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        leader_election: true,
        lease_namespace: lease_ns.to_string(),
        identity: Some(format!("e2e-{}", uuid::Uuid::new_v4().simple())),
        cluster_id: None,
        bootstrap_key_secret: None,
        bootstrap_key_rotation: String::new(),
        operator_namespace: Some(lease_ns.to_string()),
        target_probe_seconds: 2,
        lease: Default::default(),
    }
}

/// Starts the operator with `args`.
pub fn start_operator_from(args: ControllerArgs) -> Operator {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(args, async {
        let _ = rx.await;
    }));
    Operator { stop: Some(tx), task }
}

impl Operator {
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = tokio::time::timeout(WAIT, self.task).await.expect("operator stops").expect("join");
        r.expect("operator ran cleanly");
    }
}

/// Releases every scim.dev object earlier test runs left on this control plane (a failed run
/// stops its operator before cleaning up): their finalizers are removed, so no SCIM server is
/// touched, and they are deleted. Otherwise this run's operator, which watches the whole
/// cluster, would provision them into this run's server and change the state compared.
/// Releases (finalizers cleared) and deletes the ScimUsers and ManagedTeams of `namespaces`, then
/// deletes the namespaces: a test's own clean-up, which leaves the objects of tests running
/// beside it alone.
pub async fn delete_namespaces(client: &Client, namespaces: &[&String]) {
    let release = json!({"metadata": {"finalizers": null}});
    for ns in namespaces {
        let users: Api<ScimUser> = Api::namespaced(client.clone(), ns);
        for u in users.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let _ = users.patch(&u.name_any(), &PatchParams::default(), &Patch::Merge(&release)).await;
            let _ = users.delete(&u.name_any(), &DeleteParams::default()).await;
        }
        let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), ns);
        for t in teams.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let _ = teams.patch(&t.name_any(), &PatchParams::default(), &Patch::Merge(&release)).await;
            let _ = teams.delete(&t.name_any(), &DeleteParams::default()).await;
        }
        let _ = Api::<Namespace>::all(client.clone()).delete(ns, &DeleteParams::default()).await;
    }
}

pub async fn forget_earlier_runs(client: &Client) {
    let release = json!({"metadata": {"finalizers": null}});
    let users: Api<ScimUser> = Api::all(client.clone());
    for u in users.list(&Default::default()).await.unwrap() {
        let api: Api<ScimUser> = Api::namespaced(client.clone(), &u.namespace().unwrap());
        let _ = api.patch(&u.name_any(), &PatchParams::default(), &Patch::Merge(&release)).await;
        let _ = api.delete(&u.name_any(), &DeleteParams::default()).await;
    }
    let teams: Api<ManagedTeam> = Api::all(client.clone());
    for t in teams.list(&Default::default()).await.unwrap() {
        let api: Api<ManagedTeam> = Api::namespaced(client.clone(), &t.namespace().unwrap());
        let _ = api.patch(&t.name_any(), &PatchParams::default(), &Patch::Merge(&release)).await;
        let _ = api.delete(&t.name_any(), &DeleteParams::default()).await;
    }
    let mappings: Api<RoleMapping> = Api::all(client.clone());
    for m in mappings.list(&Default::default()).await.unwrap() {
        let _ = mappings.patch(&m.name_any(), &PatchParams::default(), &Patch::Merge(&release)).await;
        let _ = mappings.delete(&m.name_any(), &DeleteParams::default()).await;
    }
}
