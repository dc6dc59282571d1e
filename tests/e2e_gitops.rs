//! End to end: GitOps tools read the operator's status as the operator means it. On the real
//! control plane (tests/env/control-plane.sh) and the real SCIM server on loopback:
//! - `kubectl wait --for=condition=Ready` returns for a provisioned resource, and
//!   `--for=condition=Stalled` for a refusal;
//! - kstatus, the library Flux and Argo CD follow (run as tests/env/kstatus), reads a resource
//!   that waits for a member as `InProgress`, a provisioned one as `Current` and a refused one as
//!   `Failed`, so a Flux Kustomization fails fast instead of waiting for its timeout;
//! - `kubectl get scim -A` lists every kind of the operator.
//!
//! Without a control plane (no KUBECONFIG) the test says so and skips, unless
//! `SCIM_E2E_REQUIRED` is set, as the project's test command does.

mod common;

use common::k8s::*;
use common::{TestServer, create_key};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use scim_operator::operator::crd::{ManagedTeam, RoleMapping, ScimUser};
use serde_json::json;
use std::process::Command;

/// The kubectl of the control plane (`KUBECTL` from its env file), else the one on PATH, with a
/// discovery cache of its own: a cache from before this run's CRDs would not know their category.
fn kubectl(args: &[&str]) -> (bool, String) {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().expect("kubectl cache dir"));
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(bin).env("KUBECACHEDIR", cache.path()).args(args).output().expect("run kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// How kstatus reads one object: `Current`, `InProgress`, `Failed`, ...
fn kstatus(kind: &str, namespace: &str, name: &str) -> String {
    let built = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/env/kstatus.sh"))
        .output()
        .expect("run tests/env/kstatus.sh");
    assert!(built.status.success(), "kstatus build: {}", String::from_utf8_lossy(&built.stderr));
    let bin = String::from_utf8_lossy(&built.stdout).lines().last().expect("kstatus path").to_string();
    let (ok, object) = kubectl(&["get", kind, name, "-n", namespace, "-o", "json"]);
    assert!(ok, "kubectl get {kind} {name}: {object}");
    let mut child = Command::new(bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run kstatus");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), object.as_bytes()).expect("write object");
    let out = child.wait_with_output().expect("kstatus output");
    assert!(out.status.success(), "kstatus failed");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split_whitespace().nth(1).unwrap_or_default().to_string()
}

/// Polls kstatus until it reads `want` (statuses settle a reconcile after the change).
async fn kstatus_becomes(kind: &str, namespace: &str, name: &str, want: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = kstatus(kind, namespace, name);
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "kstatus of {kind} {namespace}/{name}: {got}, wanted {want}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn condition(
    conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conds.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gitops_tools_read_the_status() {
    if control_plane().is_none() {
        return;
    }
    let client = Client::try_default().await.expect("kubeconfig");
    install_crds(&client).await;
    forget_earlier_runs(&client).await;
    let platform = namespace(&client, "platform").await;
    let dev = namespace(&client, "dev").await;
    let scim = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, create_key(&scim.store, "operator", None).await).unwrap();
    let operator = start_operator(&format!("{}/scim/v2", scim.root()), &token_file, &[&platform], &platform);

    // Provisioned: Ready, kubectl wait returns, kstatus Current.
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &platform);
    users.create(&PostParams::default(), &scim_user("alice", json!({"userName": "alice@example.com"}))).await.unwrap();
    let (ok, out) = kubectl(&["wait", "--for=condition=Ready", "scimuser/alice", "-n", &platform, "--timeout=60s"]);
    assert!(ok, "kubectl wait Ready: {out}");
    let alice = users.get("alice").await.unwrap();
    let conds = &alice.status.as_ref().expect("status").conditions;
    assert_eq!(condition(conds, "Reconciling").map(|c| c.0), Some("False".into()), "{conds:?}");
    assert_eq!(condition(conds, "Stalled").map(|c| c.0), Some("False".into()), "{conds:?}");
    kstatus_becomes("scimuser", &platform, "alice", "Current").await;

    // Waiting for a member: Reconciling, kstatus InProgress; once the member exists, Current.
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &platform);
    let team: ManagedTeam = serde_json::from_value(json!({
        "apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam", "metadata": {"name": "sre"},
        "spec": {"displayName": "SRE", "members": [{"scimUserRef": "alice"}, {"scimUserRef": "bob"}]}
    }))
    .unwrap();
    teams.create(&PostParams::default(), &team).await.unwrap();
    let pending = wait_for(&teams, "sre", "waiting for bob", |t| {
        t.status.as_ref().and_then(|s| condition(&s.conditions, "Reconciling"))
            == Some(("True".into(), "MembersPending".into()))
    })
    .await;
    assert_eq!(condition(&pending.status.unwrap().conditions, "Stalled").map(|c| c.0), Some("False".into()));
    kstatus_becomes("managedteam", &platform, "sre", "InProgress").await;
    users.create(&PostParams::default(), &scim_user("bob", json!({"userName": "bob@example.com"}))).await.unwrap();
    let (ok, out) = kubectl(&["wait", "--for=condition=Ready", "managedteam/sre", "-n", &platform, "--timeout=60s"]);
    assert!(ok, "kubectl wait Ready for the team: {out}");
    kstatus_becomes("managedteam", &platform, "sre", "Current").await;

    // Refused: another namespace claims alice's userName. Stalled, kubectl wait for Stalled
    // returns, kstatus Failed (no retry ends it; only a change of the spec does).
    let outsiders: Api<ScimUser> = Api::namespaced(client.clone(), &dev);
    outsiders
        .create(&PostParams::default(), &scim_user("carol", json!({"userName": "alice@example.com"})))
        .await
        .unwrap();
    let (ok, out) = kubectl(&["wait", "--for=condition=Stalled", "scimuser/carol", "-n", &dev, "--timeout=60s"]);
    assert!(ok, "kubectl wait Stalled: {out}");
    let carol = outsiders.get("carol").await.unwrap();
    let conds = &carol.status.as_ref().expect("status").conditions;
    assert_eq!(condition(conds, "Stalled"), Some(("True".into(), "Conflict".into())), "{conds:?}");
    assert_eq!(condition(conds, "Ready"), Some(("False".into(), "Conflict".into())), "{conds:?}");
    assert_eq!(condition(conds, "Reconciling").map(|c| c.0), Some("False".into()), "{conds:?}");
    kstatus_becomes("scimuser", &dev, "carol", "Failed").await;

    // One category for every kind.
    let mapping: RoleMapping = serde_json::from_value(json!({
        "apiVersion": "scim.dev/v1alpha1", "kind": "RoleMapping",
        "metadata": {"name": format!("gitops-{platform}")},
        "spec": {"teams": ["SRE"], "roles": ["Standard"]}
    }))
    .unwrap();
    let mappings: Api<RoleMapping> = Api::all(client.clone());
    mappings.create(&PostParams::default(), &mapping).await.unwrap();
    let (ok, listed) = kubectl(&["get", "scim", "-A", "-o", "name"]);
    assert!(ok, "kubectl get scim: {listed}");
    for want in [
        "scimuser.scim.dev/alice".to_string(),
        "scimuser.scim.dev/carol".to_string(),
        "managedteam.scim.dev/sre".to_string(),
        format!("rolemapping.scim.dev/{}", mapping.name_any()),
    ] {
        assert!(listed.lines().any(|l| l == want), "{want} missing from `kubectl get scim -A`: {listed}");
    }

    mappings.delete(&mapping.name_any(), &DeleteParams::default()).await.unwrap();
    forget_earlier_runs(&client).await;
    operator.stop().await;
    scim.stop().await;
}
