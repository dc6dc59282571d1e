//! Load client for the operator benchmark (`bench/operator.sh`), talking to the Kubernetes API
//! server of the current kubeconfig.
//!
//! usage: bench-kube-load MODE NAMESPACE USERS TEAMS MEMBERS CONCURRENCY [TIMEOUT_S]
//!
//! - `apply`: creates USERS ScimUsers and TEAMS ManagedTeams of MEMBERS members each (team t
//!   names the ScimUsers t*MEMBERS .. t*MEMBERS+MEMBERS-1 through `scimUserRef`), CONCURRENCY
//!   creates in flight, and waits until a watch sees every object with `Ready=True`. The
//!   operator does the rest.
//! - `ceiling`: the same creates, each followed by one write of the status subresource setting
//!   `Ready=True` (what the operator ends with), CONCURRENCY objects in flight, and the same
//!   watch until every object is seen `Ready=True`. Run it where no operator is watching.
//!
//! With `BENCH_KUBE_TARGETS` set to comma-separated ClusterScimTarget names, every object names
//! those targets in `spec.targets`, and the watch also times, per target, until every ScimUser's
//! entry for that target is ready (`user_target_ready_s`).
//!
//! Prints one JSON object: seconds from the first create until all creates were answered,
//! until every ScimUser was seen Ready and until every object was seen Ready.

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use scim_operator::operator::conditions::{READY, reason};
use scim_operator::operator::crd::{ManagedTeam, ManagedTeamSpec, ScimUser, ScimUserSpec, TeamMember};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Ceiling,
}

fn user_name(i: usize) -> String {
    format!("u{i:05}")
}

/// The ClusterScimTargets every object names (`BENCH_KUBE_TARGETS`); empty: none named.
fn target_names() -> Vec<String> {
    std::env::var("BENCH_KUBE_TARGETS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `spec.targets` of every object, when targets are named.
fn with_targets(mut spec: serde_json::Value) -> serde_json::Value {
    let names = target_names();
    if !names.is_empty() {
        spec["targets"] = names.iter().map(|n| json!({"kind": "ClusterScimTarget", "name": n})).collect();
    }
    spec
}

fn user(i: usize) -> Result<ScimUser> {
    let spec: ScimUserSpec = serde_json::from_value(with_targets(json!({
        "userName": format!("bench-{i:05}@example.com"),
        "displayName": format!("Bench User {i}"),
        "title": "Engineer",
    })))?;
    Ok(ScimUser { metadata: ObjectMeta { name: Some(user_name(i)), ..Default::default() }, spec, status: None })
}

fn team(t: usize, members: usize) -> Result<ManagedTeam> {
    let spec: ManagedTeamSpec = serde_json::from_value(with_targets(json!({
        "displayName": format!("bench-team-{t:03}"),
    })))?;
    let members = (t * members..(t + 1) * members)
        .map(|i| TeamMember { scim_user_ref: Some(user_name(i)), user_name: None })
        .collect();
    Ok(ManagedTeam {
        metadata: ObjectMeta { name: Some(format!("team-{t:03}")), ..Default::default() },
        spec: ManagedTeamSpec { members, ..spec },
        status: None,
    })
}

fn ready_condition(message: &str) -> Condition {
    Condition {
        type_: READY.into(),
        status: "True".into(),
        reason: reason::PROVISIONED.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

fn is_ready(conditions: Option<&Vec<Condition>>) -> bool {
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == READY && c.status == "True"))
}

/// Watches `api` until `want` distinct objects were seen Ready; returns the seconds since `t0`.
async fn wait_ready<K>(api: Api<K>, want: usize, t0: Arc<Mutex<Option<Instant>>>, ready: fn(&K) -> bool) -> Result<f64>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut seen = HashSet::new();
    let mut stream =
        watcher(api, watcher::Config::default().any_semantic()).default_backoff().applied_objects().boxed();
    while seen.len() < want {
        let obj = stream.try_next().await?.context("watch ended")?;
        if ready(&obj) {
            seen.insert(obj.name_any());
        }
    }
    let start = t0.lock().await.context("no create was sent")?;
    Ok(start.elapsed().as_secs_f64())
}

/// Watches the ScimUsers until, for each of `targets` (ids such as `ClusterScimTarget/a`), `want`
/// distinct users were seen with a ready entry for it; returns the seconds since `t0` per target.
async fn wait_targets(
    api: Api<ScimUser>,
    want: usize,
    targets: Vec<String>,
    t0: Arc<Mutex<Option<Instant>>>,
) -> Result<BTreeMap<String, f64>> {
    let mut seen: BTreeMap<String, HashSet<String>> = targets.iter().map(|t| (t.clone(), HashSet::new())).collect();
    let mut done = BTreeMap::new();
    let mut stream =
        watcher(api, watcher::Config::default().any_semantic()).default_backoff().applied_objects().boxed();
    while done.len() < targets.len() {
        let user = stream.try_next().await?.context("watch ended")?;
        for entry in user.status.iter().flat_map(|s| &s.targets).filter(|e| e.ready) {
            let Some(names) = seen.get_mut(&entry.target) else { continue };
            names.insert(user.name_any());
            if names.len() >= want && !done.contains_key(&entry.target) {
                let start = t0.lock().await.context("no create was sent")?;
                done.insert(entry.target.clone(), start.elapsed().as_secs_f64());
            }
        }
    }
    Ok(done)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 7 {
        bail!("usage: bench-kube-load apply|ceiling NAMESPACE USERS TEAMS MEMBERS CONCURRENCY [TIMEOUT_S]");
    }
    let mode = match args[1].as_str() {
        "apply" => Mode::Apply,
        "ceiling" => Mode::Ceiling,
        m => bail!("unknown mode {m}"),
    };
    let ns = args[2].clone();
    let n_users: usize = args[3].parse()?;
    let n_teams: usize = args[4].parse()?;
    let n_members: usize = args[5].parse()?;
    let concurrency: usize = args[6].parse()?;
    let timeout = Duration::from_secs(args.get(7).map(|s| s.parse()).transpose()?.unwrap_or(3600));
    if n_teams * n_members > n_users {
        bail!("TEAMS*MEMBERS must not exceed USERS (each member is one ScimUser)");
    }

    let client = Client::try_default().await.context("kubeconfig")?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns_obj =
        Namespace { metadata: ObjectMeta { name: Some(ns.clone()), ..Default::default() }, ..Default::default() };
    namespaces.create(&PostParams::default(), &ns_obj).await.context("creating the namespace")?;
    let users: Api<ScimUser> = Api::namespaced(client.clone(), &ns);
    let teams: Api<ManagedTeam> = Api::namespaced(client.clone(), &ns);

    // The watches start before the first create, so no transition is missed.
    let t0: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let users_ready = tokio::spawn(wait_ready(users.clone(), n_users, t0.clone(), |u: &ScimUser| {
        is_ready(u.status.as_ref().map(|s| &s.conditions))
    }));
    let teams_ready = tokio::spawn(wait_ready(teams.clone(), n_teams, t0.clone(), |t: &ManagedTeam| {
        is_ready(t.status.as_ref().map(|s| &s.conditions))
    }));
    let target_ids: Vec<String> = target_names().iter().map(|n| format!("ClusterScimTarget/{n}")).collect();
    let per_target = tokio::spawn(wait_targets(users.clone(), n_users, target_ids, t0.clone()));
    // Let the watches establish (their initial lists are empty).
    tokio::time::sleep(Duration::from_secs(1)).await;

    enum Item {
        User(usize),
        Team(usize),
    }
    let items = (0..n_users).map(Item::User).chain((0..n_teams).map(Item::Team));
    *t0.lock().await = Some(Instant::now());
    let start = Instant::now();
    let pp = PostParams::default();
    let ps = PatchParams::default();
    futures::stream::iter(items)
        .map(|item| {
            let (users, teams, pp, ps) = (users.clone(), teams.clone(), pp.clone(), ps.clone());
            async move {
                match item {
                    Item::User(i) => {
                        let u = users.create(&pp, &user(i)?).await.with_context(|| format!("creating user {i}"))?;
                        if mode == Mode::Ceiling {
                            let status = json!({"status": {
                                "observedGeneration": 1,
                                "scimId": format!("ceiling-{i}"),
                                "conditions": [ready_condition("provisioned as SCIM user (ceiling)")],
                            }});
                            users.patch_status(&u.name_any(), &ps, &Patch::Merge(&status)).await?;
                        }
                    }
                    Item::Team(t) => {
                        let created = teams
                            .create(&pp, &team(t, n_members)?)
                            .await
                            .with_context(|| format!("creating team {t}"))?;
                        if mode == Mode::Ceiling {
                            let status = json!({"status": {
                                "observedGeneration": 1,
                                "scimId": format!("ceiling-team-{t}"),
                                "memberCount": n_members,
                                "conditions": [ready_condition("team provisioned (ceiling)")],
                            }});
                            teams.patch_status(&created.name_any(), &ps, &Patch::Merge(&status)).await?;
                        }
                    }
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let created_s = start.elapsed().as_secs_f64();
    let waited = tokio::time::timeout(timeout, async {
        let u = users_ready.await??;
        let t = teams_ready.await??;
        let p = per_target.await??;
        Ok::<_, anyhow::Error>((u, t, p))
    })
    .await;
    let (users_s, teams_s, target_s) = match waited {
        Ok(r) => r?,
        Err(_) => bail!("not all objects were Ready within {} s", timeout.as_secs()),
    };
    println!(
        "{}",
        json!({
            "mode": args[1],
            "users": n_users,
            "teams": n_teams,
            "members": n_members,
            "concurrency": concurrency,
            "created_s": created_s,
            "users_ready_s": users_s,
            "all_ready_s": users_s.max(teams_s),
            "user_target_ready_s": target_s,
        })
    );
    Ok(())
}
