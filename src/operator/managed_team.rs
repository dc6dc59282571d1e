//! The ManagedTeam controller: resolve members, link or create the group, send only the
//! membership changes, write status. A ScimUser becoming ready reconciles the teams that may
//! name it (a watch, not a poll).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conditions::{self, Desired, reason};
use super::crd::{ManagedTeam, ManagedTeamStatus, MemberPolicy, TargetRef, TeamDeletionPolicy, targets_ready};
use super::ownership::{self, Ask, Claim, Decision, Held, Owner, Record, Refusal, decide};
use super::target_work::{Step, next_due};
use super::targets::{
    self, Endpoint, Outcome, Remote, Resolved, entries, meanwhile, next_action, ready_condition, record_owner,
};
use super::user_cache::CachedUser;
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::{ClientError, ScimObject};

mod remote;
mod wake;
pub use remote::Synced as TargetSynced;
pub use wake::wakes;

/// Whether a label selector (matchLabels and matchExpressions) selects `labels`.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector.match_labels.as_ref().is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let exprs_ok = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.clone().unwrap_or_default();
            match e.operator.as_str() {
                "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => labels.contains_key(&e.key),
                "DoesNotExist" => !labels.contains_key(&e.key),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}

/// Whether a change of `user` may concern `team` (a trigger only: membership is decided against
/// the server): by ScimUser name or label selector within the team's namespace; by userName
/// within it too, and, for a team of a trusted namespace (`team_trusted`), in any namespace, so
/// that it reports at once a userName an untrusted namespace took.
pub fn may_reference(team: &ManagedTeam, team_trusted: bool, user: &CachedUser) -> bool {
    super::target_roles::is_member(team, &super::target_roles::UserFacts::of_cached(user), team_trusted)
}

/// What teams read of a ScimUser: its SCIM id while Ready, its labels (selectors), its
/// userName, whether it is being deleted, and the id and readiness of each of its target
/// entries (a member provisioned on another target). Other changes trigger no team reconcile.
pub fn member_trigger(user: &CachedUser) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.ready_id().hash(&mut h);
    for t in &user.targets {
        (&t.target, &t.remote_id, t.ready).hash(&mut h);
    }
    user.labels().hash(&mut h);
    user.user_name.hash(&mut h);
    user.meta().deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// The members a team resolves to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Members {
    /// SCIM ids of the members that can be sent.
    ids: BTreeSet<String>,
    /// SCIM ids that stay members while their ScimUser is not provisioned again (not Ready, a
    /// transient error): never added, never removed.
    kept: BTreeSet<String>,
    /// Members not provisioned yet.
    pending: Vec<String>,
    /// userNames an untrusted namespace may not add (no ScimUser of its own has them).
    not_allowed: Vec<String>,
    /// userNames a trusted team may not add, and why: left out (and removed if present).
    refused: Vec<String>,
}

/// The ScimUsers of `ns` a team names (by reference, by userName in an untrusted namespace, or
/// by selector), not being deleted (a ScimUser that is gone or going is no member); and the
/// references and userNames that name none.
struct Named {
    users: Vec<Arc<CachedUser>>,
    missing_refs: Vec<String>,
    missing_user_names: Vec<String>,
}

/// A reference is one lookup in the store's index; only userName members (in an untrusted
/// namespace) and selectors read the namespace's ScimUsers, once.
fn named_users(team: &ManagedTeam, ctx: &Context, ns: &str, trusted: bool) -> Named {
    let mut out = Named { users: Vec::new(), missing_refs: Vec::new(), missing_user_names: Vec::new() };
    let scan =
        team.spec.member_selector.is_some() || (!trusted && team.spec.members.iter().any(|m| m.user_name.is_some()));
    let own: Vec<Arc<CachedUser>> = if scan {
        ctx.users.state().into_iter().filter(|u| u.meta().namespace.as_deref() == Some(ns)).collect()
    } else {
        Vec::new()
    };
    let mut by_user_name: HashMap<String, Vec<&Arc<CachedUser>>> = HashMap::new();
    if !trusted {
        for u in &own {
            by_user_name.entry(u.user_name.to_lowercase()).or_default().push(u);
        }
    }
    for m in &team.spec.members {
        if let Some(r) = &m.scim_user_ref {
            match ctx.users.get(&ObjectRef::new(r).within(ns)) {
                Some(u) => out.users.push(u),
                None => out.missing_refs.push(r.clone()),
            }
        } else if let (Some(user_name), false) = (&m.user_name, trusted) {
            match by_user_name.get(&user_name.to_lowercase()) {
                Some(found) => out.users.extend(found.iter().map(|u| Arc::clone(u))),
                None => out.missing_user_names.push(user_name.clone()),
            }
        }
    }
    if let Some(sel) = &team.spec.member_selector {
        out.users.extend(own.iter().filter(|u| selects(sel, u.labels())).cloned());
    }
    out.users.retain(|u| u.meta().deletion_timestamp.is_none());
    out.users.sort_by_key(|u| u.name_any());
    out.users.dedup_by_key(|u| u.name_any());
    out
}

/// How a refused userName member is reported.
fn member_refusal(user_name: &str, why: &ownership::MemberRefusal) -> String {
    match why {
        ownership::MemberRefusal::UntrustedNamespace(ns) => {
            format!("{user_name} (owned by a ScimUser of namespace {ns}, which is not trusted)")
        }
        ownership::MemberRefusal::OtherCluster => format!("{user_name} (owned by a resource of another cluster)"),
        ownership::MemberRefusal::UnknownOwner => {
            format!("{user_name} (owned by a resource of an earlier release whose ScimUser is not seen)")
        }
    }
}

/// Members the team wants. A ScimUser member counts by the server user that carries its
/// ownership marker (its status is not proof of that). In an untrusted namespace a userName
/// member must be a ScimUser of the same namespace; in a trusted one, a user nobody owns or one
/// a ScimUser of a trusted namespace owns.
async fn resolve(team: &ManagedTeam, ctx: &Context, trusted: bool) -> Result<Members, ClientError> {
    let ns = team.namespace().unwrap_or_default();
    let named = named_users(team, ctx, &ns, trusted);
    let mut out = Members { pending: named.missing_refs, not_allowed: named.missing_user_names, ..Members::default() };
    if !named.users.is_empty() {
        // Only the named users' markers are asked for: the namespace may hold tens of thousands
        // of users, and several teams resolve at once.
        let wanted: BTreeSet<String> = named.users.iter().map(|u| ctx.owner(u.as_ref()).marker().to_string()).collect();
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let marked: BTreeMap<String, String> =
            ctx.scim.users_with_external_ids(&wanted).await?.into_iter().map(|(id, marker)| (marker, id)).collect();
        for u in &named.users {
            match marked.get(ctx.owner(u.as_ref()).marker()) {
                Some(id) => {
                    out.ids.insert(id.clone());
                }
                None => {
                    out.pending.push(u.name_any());
                    // Not provisioned under its marker (yet, or again): the id it had stays.
                    out.kept.extend(u.scim_id.clone());
                }
            }
        }
    }
    if trusted {
        let state = ctx.users.state();
        // Collected first: an iterator with a closure held across an await is not `Send`.
        let user_names: Vec<&String> = team.spec.members.iter().filter_map(|m| m.user_name.as_ref()).collect();
        for user_name in user_names {
            let Some(found) = ctx.scim.find_user_by_name(user_name).await? else {
                out.pending.push(user_name.clone());
                continue;
            };
            let owner = match ownership::user_owner(&ctx.cluster, found.external_id.as_deref()) {
                // An earlier release's marker names no namespace: the ScimUser of that uid does.
                ownership::UserOwner::Legacy(uid) => state
                    .iter()
                    .find(|u| u.uid().as_deref() == Some(uid))
                    .and_then(|u| u.meta().namespace.as_deref())
                    .map_or(ownership::UserOwner::Legacy(uid), ownership::UserOwner::Namespace),
                o => o,
            };
            match ownership::member_allowed(owner, |n| ctx.trusted(n)) {
                Ok(()) => {
                    out.ids.insert(found.id);
                }
                Err(why) => out.refused.push(member_refusal(user_name, &why)),
            }
        }
    }
    out.pending.sort();
    out.pending.dedup();
    Ok(out)
}

/// Member changes to send: only the difference; no removal under `Additive`, and never one of
/// `kept` (members whose ScimUser is there but not provisioned right now).
pub fn member_changes(
    current: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    kept: &BTreeSet<String>,
    policy: MemberPolicy,
) -> (Vec<String>, Vec<String>) {
    let add = wanted.difference(current).cloned().collect();
    let remove = match policy {
        MemberPolicy::Authoritative => current.difference(wanted).filter(|m| !kept.contains(*m)).cloned().collect(),
        MemberPolicy::Additive => Vec::new(),
    };
    (add, remove)
}

/// The claim on a SCIM group: a visible group no resource owns is an identity provider's.
fn group_claim(owner: &Owner, group: &ScimObject) -> Claim {
    match owner.claim(group.external_id.as_deref()) {
        Claim::Unowned => Claim::IdentityProvider,
        c => c,
    }
}

/// The group this resource owns, as read (or written) last: its id, version, and how it came.
struct Group {
    id: String,
    version: Option<String>,
    came: Came,
}

#[derive(Debug, PartialEq, Eq)]
enum Came {
    Created,
    Linked,
    Existing,
}

/// Why the team was not applied.
enum TeamError {
    /// Nothing was written, for this reason and message.
    Refused(&'static str, String),
    Client(ClientError),
}

impl From<ClientError> for TeamError {
    fn from(e: ClientError) -> Self {
        TeamError::Client(e)
    }
}

/// The condition of a refusal; it never shows another owner's marker.
fn refusal(r: Refusal, name: &str, namespace: &str) -> TeamError {
    let (reason, message) = match r {
        Refusal::OwnedByAnotherResource => {
            (reason::CONFLICT, format!("team {name} belongs to another Kubernetes resource; nothing was written"))
        }
        Refusal::ManagedByIdentityProvider => (
            reason::CONFLICT,
            format!(
                "team {name} is managed by an identity provider and is never changed from Kubernetes; nothing was written"
            ),
        ),
        Refusal::NotTakenOver => (
            reason::CONFLICT,
            format!(
                "a team named {name} already exists on the server; set spec.linkExisting: true (honoured in trusted \
                 namespaces) to link it; nothing was written"
            ),
        ),
        Refusal::TakeOverNotAllowed => (
            reason::LINK_NOT_ALLOWED,
            format!(
                "spec.linkExisting is honoured only in trusted namespaces and {namespace} is not one; the existing \
                 team {name} was left as it is"
            ),
        ),
    };
    TeamError::Refused(reason, message)
}

/// Finds, creates or links the group, deciding from what the server holds; a create never
/// links by accident (it asks the server to create only, unless linking was decided).
async fn ensure_group(team: &ManagedTeam, ctx: &Context, owner: &Owner, ask: Ask) -> Result<Group, TeamError> {
    let name = &team.spec.display_name;
    let ns = team.namespace().unwrap_or_default();
    // Tells this server which ManagedTeam declares the group (the marker names only its uid).
    let declared = format!("{ns}/{}", team.name_any());
    let declared = Some(declared.as_str());
    let mut held = None;
    if let Some(id) = team.status.as_ref().and_then(|s| s.scim_id.as_deref()) {
        match ctx.scim.get_group(id).await {
            Ok(g) => held = Some(g),
            Err(ClientError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if held.is_none() {
        held = ctx.scim.find_group_by_name(name).await?;
    }
    if let Some(g) = held {
        return match decide(Held::Object(group_claim(owner, &g)), ask) {
            Decision::Refuse(r) => Err(refusal(r, name, &ns)),
            _ => {
                // Ours: bring its name and marker to what they should be, at the version read.
                let mut ops = Vec::new();
                if g.body.get("displayName").and_then(Value::as_str) != Some(name.as_str()) {
                    ops.push(json!({"op": "replace", "path": "displayName", "value": name}));
                }
                if g.external_id.as_deref() != Some(owner.marker()) {
                    ops.push(json!({"op": "replace", "path": "externalId", "value": owner.marker()}));
                }
                let version = if ops.is_empty() {
                    g.version
                } else {
                    ctx.scim.patch_group(&g.id, &ops, g.version.as_deref(), declared).await?.and_then(|a| a.version)
                };
                Ok(Group { id: g.id, version, came: Came::Existing })
            }
        };
    }
    debug_assert_eq!(decide(Held::Nothing, ask), Decision::Create);
    match ctx.scim.create_group(name, owner.marker(), &[], false, declared).await {
        Ok(g) => return Ok(Group { id: g.id, version: g.version, came: Came::Created }),
        // A team of that name exists that no SCIM client manages (or appeared since the lookup).
        Err(ClientError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match decide(Held::Object(Claim::Unowned), ask) {
        Decision::TakeOver => match ctx.scim.create_group(name, owner.marker(), &[], true, declared).await {
            Ok(g) => Ok(Group { id: g.id, version: g.version, came: Came::Linked }),
            // Linked by an identity provider in between: never taken from it.
            Err(ClientError::Conflict(_)) => Err(refusal(Refusal::ManagedByIdentityProvider, name, &ns)),
            Err(e) => Err(e.into()),
        },
        Decision::Refuse(r) => Err(refusal(r, name, &ns)),
        Decision::Create | Decision::Update => Err(refusal(Refusal::NotTakenOver, name, &ns)),
    }
}

/// How long a team reconcile waits for the ScimUser cache before it tries again later.
const USERS_CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reconciles one ManagedTeam.
pub async fn reconcile(obj: Arc<ManagedTeam>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let _worker = match ctx.team_shares.enter(&ns, std::time::Instant::now()) {
        Ok(worker) => worker,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    // Members are resolved from the ScimUser cache. Until it holds every ScimUser (after a start
    // or a failover), a member not listed yet would look deleted and an Authoritative team would
    // remove it, revoking its mapped roles, only to add it back moments later.
    match tokio::time::timeout(USERS_CACHE_WAIT, ctx.users.wait_until_ready()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ReconcileError::Invalid("the ScimUser watch has stopped".into())),
        Err(_) => {
            tracing::info!(team = %obj.name_any(), "ScimUsers not listed yet; the team waits");
            return Ok(Action::requeue(std::time::Duration::from_secs(5)));
        }
    }
    let api: Api<ManagedTeam> = Api::namespaced(ctx.kube.clone(), &ns);
    reconcile_with_finalizer("ManagedTeam", &ctx, &api, obj, |event| async {
        match event {
            Finalizer::Apply(t) => apply(t, &api, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(t, &ctx).await,
        }
    })
    .await
}

/// What a sync on the default target ended with.
struct DefaultOutcome {
    ready: Desired,
    scim_id: String,
    count: usize,
    pending: Vec<String>,
    wrote: bool,
}

/// The pipeline on the default target (the operator's own server, on the path that predates
/// targets: ownership markers, RoleMappings on the server): resolve members, check what an
/// untrusted namespace may not do, decide and ensure the group, send the member changes.
async fn sync_default(obj: &ManagedTeam, ctx: &Context) -> Result<DefaultOutcome, TeamError> {
    let ns = obj.namespace().unwrap_or_default();
    let trusted = ctx.trusted(&ns);
    let name = &obj.spec.display_name;
    let members = resolve(obj, ctx, trusted).await?;
    if !members.not_allowed.is_empty() {
        return Err(TeamError::Refused(
            reason::MEMBER_NOT_ALLOWED,
            format!(
                "namespace {ns} is not trusted to add users it does not own: {} (name them by a ScimUser of this \
                 namespace); nothing was written",
                members.not_allowed.join(", ")
            ),
        ));
    }
    if !trusted && ctx.scim.mapped_team_names().await?.contains(&name.to_lowercase()) {
        return Err(TeamError::Refused(
            reason::ROLE_MAPPED_TEAM,
            format!(
                "a RoleMapping grants roles to teams named {name}, and namespace {ns} is not trusted to grant roles; \
                 nothing was written"
            ),
        ));
    }
    let owner = ctx.owner(obj);
    let group = ensure_group(obj, ctx, &owner, Ask { take_over: obj.spec.link_existing, trusted }).await?;
    let id = group.id.clone();
    match group.came {
        Came::Created => ctx.event(obj, false, "Created", format!("created SCIM group {id}")).await,
        Came::Linked => {
            ctx.event(obj, false, "Linked", format!("linked the existing team {name} as SCIM group {id}")).await
        }
        Came::Existing => {}
    }
    let current: BTreeSet<String> = ctx.scim.group_members(&id).await?.into_iter().collect();
    let (add, remove) = member_changes(&current, &members.ids, &members.kept, obj.spec.member_policy);
    ctx.scim.change_members(&id, &add, &remove, group.version.as_deref()).await?;
    if !add.is_empty() || !remove.is_empty() {
        let note = format!("added {}, removed {} members", add.len(), remove.len());
        ctx.event(obj, false, "MembersChanged", note).await;
    }
    let count = current.len() + add.len() - remove.len();
    let ready = if !members.refused.is_empty() {
        // The others were applied; these stay out (and were removed) until their owner changes.
        Desired::not_ready(
            reason::MEMBER_NOT_ALLOWED,
            format!(
                "only users nobody owns or owned by a trusted namespace are added by userName; left out: {}",
                members.refused.join(", ")
            ),
        )
    } else if members.pending.is_empty() {
        Desired::ready(format!("team provisioned as SCIM group {id} with {count} members"))
    } else {
        Desired::not_ready(
            reason::MEMBERS_PENDING,
            format!("waiting for members to be provisioned: {}", members.pending.join(", ")),
        )
    };
    let wrote = group.came != Came::Existing || !add.is_empty() || !remove.is_empty();
    Ok(DefaultOutcome { ready, scim_id: id, count, pending: members.pending, wrote })
}

/// The default target's outcome: its status fields set from what the sync did.
fn default_outcome(result: Result<DefaultOutcome, TeamError>, target: &str, status: &mut ManagedTeamStatus) -> Outcome {
    match result {
        Ok(o) => {
            status.scim_id = Some(o.scim_id.clone());
            status.member_count = o.count as i64;
            status.pending_members = o.pending;
            let d = o.ready;
            Outcome {
                target: target.to_string(),
                remote_id: Some(o.scim_id),
                ready: d.status,
                reason: d.reason,
                message: d.message,
                wrote: o.wrote,
                retry_after: None,
                by_task: false,
            }
        }
        Err(TeamError::Refused(r, message)) => Outcome::failed(target, None, r, message),
        Err(TeamError::Client(e)) => Outcome::error(target, status.scim_id.clone(), &e, &[]),
    }
}

/// Applies the deletion policy on the targets the spec no longer names, to what this resource
/// owns there; failures are returned as the outcomes of those targets (retried).
async fn drop_targets(
    ctx: &Context,
    obj: &ManagedTeam,
    resolved: &[Resolved],
    records: &[Record],
    status: &mut ManagedTeamStatus,
) -> Result<Vec<Outcome>, ReconcileError> {
    let mut failed = Vec::new();
    let default_id = TargetRef::default_target().id("");
    if !resolved.iter().any(|r| r.target.is_default())
        && let Some(id) = status.scim_id.clone()
    {
        match unlink_default(obj, ctx, &id).await {
            Ok(()) => {
                status.scim_id = None;
                status.member_count = 0;
                status.pending_members = Vec::new();
            }
            Err(e) => {
                let mut o = Outcome::error(&default_id, Some(id), &e, &[]);
                o.message = format!("taken out of spec.targets; applying the deletion policy failed: {}", o.message);
                failed.push(o);
            }
        }
    }
    for record in records.iter().filter(|r| !resolved.iter().any(|t| t.id == r.object.target)) {
        match remote::remove(ctx, obj, record, true).await {
            Ok(Some(note)) => ctx.event(obj, false, "TargetRemoved", note).await,
            Ok(None) => {}
            Err(remote::RemoveError::Target(m)) => failed.push(Outcome::failed(
                &record.object.target,
                record.remote_id.clone(),
                reason::SCIM_UNAVAILABLE,
                format!("taken out of spec.targets; applying the deletion policy failed: {m}"),
            )),
            Err(remote::RemoveError::Kube(e)) => return Err(e),
        }
    }
    Ok(failed)
}

/// Syncs every target the spec names (resolved all or nothing first), and drops those it no
/// longer names: the default target within this reconcile, each other in its own task
/// ([`super::target_work`]), whose result a later reconcile reports. Returns the outcomes and
/// when the next task is due.
async fn sync_targets(
    obj: &Arc<ManagedTeam>,
    ctx: &Arc<Context>,
    previous: &ManagedTeamStatus,
    status: &mut ManagedTeamStatus,
) -> Result<(Vec<Outcome>, Option<Duration>), ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let uid = record_owner(obj.as_ref()).uid;
    let resolved = match ctx.targets.resolve(&ns, &obj.spec.targets, ctx.trusted(&ns)).await? {
        Err(refusals) => {
            // Nothing may be written anywhere, by a task of an earlier reconcile either.
            ctx.team_work.abort(&uid, None);
            return Ok((refusals.iter().map(Outcome::refused).collect(), None));
        }
        Ok(r) => r,
    };
    let generation = obj.meta().generation;
    let now = Instant::now();
    let (polled, records) =
        targets::poll_tasks(ctx, &ctx.team_work, &uid, generation, &resolved, &previous.targets, now).await?;
    let dropped = drop_targets(ctx, obj.as_ref(), &resolved, &records, status).await?;
    let mut remotes = Vec::new();
    // Whether a target has no result for this spec yet (its pending members are not known).
    let mut unknown = false;
    for (r, remote, p) in &polled {
        let shown = match (p.step, p.result.clone()) {
            (Step::Report { .. }, Some(fresh)) => {
                if let Some((reason, note)) = &fresh.note {
                    ctx.event(obj.as_ref(), false, reason, note.clone()).await;
                }
                TargetSynced { outcome: Outcome { by_task: true, ..fresh.outcome }, ..fresh }
            }
            (step, last) => {
                if step == Step::Start {
                    // The record of the current name, else one of an earlier name (a rename).
                    let on_target = || records.iter().filter(|rec| rec.object.target == r.id);
                    let mine =
                        on_target().find(|rec| rec.object.key == obj.spec.display_name).or_else(|| on_target().next());
                    start_task(ctx, obj, r, remote, mine.cloned());
                }
                unknown |= last.is_none();
                let (count, pending) = last.as_ref().map(|l| (l.count, l.pending.clone())).unwrap_or_default();
                let outcome = meanwhile(&previous.targets, &r.id, generation, last.map(|l| l.outcome));
                TargetSynced { outcome, count, pending, note: None }
            }
        };
        remotes.push(shown);
    }
    let tasks_due = next_due(&polled.into_iter().map(|(_, _, p)| p).collect::<Vec<_>>(), now);
    let mut default = match resolved.iter().any(|r| matches!(r.endpoint, Endpoint::Default)) {
        true => Some(sync_default(obj, ctx).await),
        false => None,
    };
    let mut remotes = remotes.into_iter();
    let mut outcomes = Vec::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    if unknown {
        // Until every target has reported, what was pending stays listed.
        pending.extend(previous.pending_members.iter().cloned());
    }
    let mut first_count = None;
    for r in &resolved {
        match &r.endpoint {
            Endpoint::Default => {
                if let Some(result) = default.take() {
                    if let Ok(o) = &result {
                        pending.extend(o.pending.iter().cloned());
                    }
                    outcomes.push(default_outcome(result, &r.id, status));
                }
            }
            Endpoint::Remote(_) => {
                let Some(synced) = remotes.next() else { continue };
                first_count = first_count.or(synced.count);
                pending.extend(synced.pending);
                outcomes.push(synced.outcome);
            }
            Endpoint::NotReady(m) => {
                outcomes.push(Outcome::failed(&r.id, None, reason::TARGET_NOT_READY, format!("target {}: {m}", r.id)))
            }
        }
    }
    status.pending_members = pending.into_iter().collect();
    // Without the default target, the member count is that of the first target that has one.
    if !resolved.iter().any(|r| r.target.is_default())
        && let Some(count) = first_count
    {
        status.member_count = count as i64;
    }
    outcomes.extend(dropped);
    Ok((outcomes, tasks_due))
}

/// Starts the team's sync on a target other than the default; the reconcile that follows its
/// end reports it.
fn start_task(ctx: &Arc<Context>, obj: &Arc<ManagedTeam>, r: &Resolved, remote: &Remote, mine: Option<Record>) {
    let (c, o, t, target) = (ctx.clone(), obj.clone(), r.clone(), remote.clone());
    let run = async move {
        match remote::sync(&c, &o, &t, &target, mine.as_ref()).await {
            Ok(synced) => synced,
            Err(e) => TargetSynced::only(Outcome::error_of_records(&t.id, mine.and_then(|m| m.remote_id), &e)),
        }
    };
    let wake = ctx.wake_team.clone();
    let me = ObjectRef::from_obj(obj.as_ref());
    // A controller that stopped reads no more wakes: nothing to do then.
    let wake = move || drop(wake.unbounded_send(me));
    targets::start_task(ctx, &ctx.team_work, obj, r, remote, run, wake);
}

async fn apply(obj: Arc<ManagedTeam>, api: &Api<ManagedTeam>, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = ManagedTeamStatus { observed_generation: generation, ..previous.clone() };
    let (outcomes, tasks_due) = sync_targets(&obj, ctx, &previous, &mut status).await?;
    let action = next_action(ctx, obj.as_ref(), &outcomes, tasks_due);
    let now = now();
    status.targets = entries(&previous.targets, &outcomes, generation, &now);
    status.targets_ready = Some(targets_ready(&status.targets));
    status.conditions = conditions::merge(&previous.conditions, &[ready_condition(&outcomes)], generation, &now);
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && previous.member_count == status.member_count
        && previous.pending_members == status.pending_members
        && previous.targets == status.targets
        && previous.targets_ready == status.targets_ready
        && conditions::same(&previous.conditions, &status.conditions);
    if !same {
        // Every field is serialized (empty lists, nulls), so the merge patch clears what is gone.
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    Ok(action)
}

/// Unlinks the group on the default target (policy `Unlink`), only if this resource still owns
/// it.
async fn unlink_default(obj: &ManagedTeam, ctx: &Context, id: &str) -> Result<(), ClientError> {
    if obj.spec.deletion_policy != TeamDeletionPolicy::Unlink {
        return Ok(());
    }
    let group = match ctx.scim.get_group(id).await {
        Ok(g) => g,
        Err(ClientError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    if matches!(group_claim(&ctx.owner(obj), &group), Claim::Ours | Claim::OursLegacy) {
        match ctx.scim.delete_group(id, group.version.as_deref()).await {
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e),
        }
    } else {
        let note = format!("SCIM group {id} is not owned by this resource: left as it is");
        ctx.event(obj, true, reason::CONFLICT, note).await;
    }
    Ok(())
}

/// On deletion: the deletion policy on the default target and on every target where this
/// resource owns a group (its records), then the records released. With the release
/// annotation nothing is changed on any target.
async fn cleanup(obj: Arc<ManagedTeam>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    // No task may write after the deletion policy applied; the records are read after this.
    ctx.team_work.abort(&record_owner(obj.as_ref()).uid, None);
    if let (Some(id), false) = (obj.status.as_ref().and_then(|s| s.scim_id.clone()), released) {
        unlink_default(&obj, ctx, &id).await?;
    }
    let records = ctx
        .targets
        .records
        .owned_by(&record_owner(obj.as_ref()).uid)
        .await
        .map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    for record in &records {
        match remote::remove(ctx, &obj, record, !released).await {
            Ok(Some(note)) => ctx.event(obj.as_ref(), false, "Unlinked", note).await,
            Ok(None) => {}
            Err(remote::RemoveError::Target(m)) => return Err(ReconcileError::Invalid(m)),
            Err(remote::RemoveError::Kube(e)) => return Err(e),
        }
    }
    ctx.succeeded(&key(obj.as_ref()));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_changes_are_sent_and_kept_or_additive_members_never_leave() {
        use MemberPolicy::*;
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (current, wanted, kept, policy) -> (add, remove)
        let cases = [
            (&["a", "b"][..], &["b", "c"][..], &[][..], Authoritative, (v(&["c"]), v(&["a"]))),
            (&["a", "b"], &["b", "c"], &[], Additive, (v(&["c"]), v(&[]))),
            (&["a"], &["a"], &[], Authoritative, (v(&[]), v(&[]))),
            // a member whose ScimUser is not provisioned right now (412, 429, not Ready) stays
            (&["a", "b"], &["b"], &["a"], Authoritative, (v(&[]), v(&[]))),
            // ...but is never added for it
            (&["b"], &["b"], &["a"], Authoritative, (v(&[]), v(&[]))),
            (&["a", "b", "z"], &["b"], &["a"], Authoritative, (v(&[]), v(&["z"]))),
        ];
        for (current, wanted, kept, policy, want) in cases {
            let got = member_changes(&set(current), &set(wanted), &set(kept), policy);
            assert_eq!(got, want, "{current:?} {wanted:?} kept {kept:?} {policy:?}");
        }
    }

    fn team_of(ns: &str, spec: serde_json::Value) -> ManagedTeam {
        serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
            "metadata": {"name": "t", "namespace": ns}, "spec": spec}))
        .expect("a ManagedTeam")
    }

    fn user_of(ns: &str, name: &str, user_name: &str) -> crate::operator::crd::ScimUser {
        serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser",
            "metadata": {"name": name, "namespace": ns, "labels": {"team": "sre"}}, "spec": {"userName": user_name}}))
        .expect("a ScimUser")
    }

    #[test]
    fn which_user_changes_reach_which_teams() {
        let by_name = json!({"displayName": "SRE", "members": [{"userName": "zed@x.test"}]});
        let by_ref = json!({"displayName": "SRE", "members": [{"scimUserRef": "zed"}]});
        let by_label = json!({"displayName": "SRE", "memberSelector": {"matchLabels": {"team": "sre"}}});
        // (team namespace, team trusted, spec, user namespace) -> triggers
        let cases = [
            ("platform", true, &by_name, "platform", true),
            ("platform", true, &by_name, "dev", true),
            ("dev", false, &by_name, "dev", true),
            ("dev", false, &by_name, "other", false),
            ("platform", true, &by_ref, "dev", false),
            ("platform", true, &by_ref, "platform", true),
            ("platform", true, &by_label, "dev", false),
            ("dev", false, &by_label, "dev", true),
        ];
        for (team_ns, trusted, spec, user_ns, want) in cases {
            let got = may_reference(
                &team_of(team_ns, spec.clone()),
                trusted,
                &crate::operator::user_cache::of(&user_of(user_ns, "zed", "ZED@x.test")),
            );
            assert_eq!(got, want, "team in {team_ns} (trusted {trusted}) {spec} / user in {user_ns}");
        }
    }

    #[test]
    fn a_member_provisioned_on_another_target_reaches_its_teams() {
        let mut user = user_of("dev", "zed", "zed@x.test");
        let before = member_trigger(&crate::operator::user_cache::of(&user));
        let entry = |remote_id: Option<&str>, ready: bool| crate::operator::crd::TargetSync {
            target: "ClusterScimTarget/kc".into(),
            remote_id: remote_id.map(str::to_string),
            ready,
            ..Default::default()
        };
        user.status =
            Some(crate::operator::crd::ScimUserStatus { targets: vec![entry(None, false)], ..Default::default() });
        let pending = member_trigger(&crate::operator::user_cache::of(&user));
        assert_ne!(before, pending);
        user.status.as_mut().unwrap().targets = vec![entry(Some("kc-1"), true)];
        let provisioned = member_trigger(&crate::operator::user_cache::of(&user));
        assert_ne!(pending, provisioned, "provisioned on the target: its teams look again");
        user.status.as_mut().unwrap().targets[0].message = "another message".into();
        assert_eq!(
            member_trigger(&crate::operator::user_cache::of(&user)),
            provisioned,
            "a message alone triggers nothing"
        );
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [("team".to_string(), "sre".to_string())].into();
        let by_label = LabelSelector { match_labels: Some(labels.clone()), match_expressions: None };
        assert!(selects(&by_label, &labels));
        assert!(!selects(&by_label, &BTreeMap::new()));
        let expr = |op: &str, values: Option<Vec<String>>| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement { key: "team".into(), operator: op.into(), values }]),
        };
        assert!(selects(&expr("In", Some(vec!["sre".into(), "dev".into()])), &labels));
        assert!(!selects(&expr("NotIn", Some(vec!["sre".into()])), &labels));
        assert!(selects(&expr("Exists", None), &labels));
        assert!(!selects(&expr("DoesNotExist", None), &labels));
    }
}
