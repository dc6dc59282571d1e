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
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::conditions::{self, Desired, reason};
use super::crd::{ManagedTeam, ManagedTeamStatus, MemberPolicy, ScimUser, TeamDeletionPolicy};
use super::ownership::{Ask, Claim, Decision, Held, Owner, Refusal, decide};
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::{ClientError, ScimObject};

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

/// Whether `team` may reference `user`: by ScimUser name or label selector within its own
/// namespace, by userName wherever the ScimUser lives.
pub fn may_reference(team: &ManagedTeam, user: &ScimUser) -> bool {
    let same_namespace = team.namespace() == user.namespace();
    let name = user.name_any();
    team.spec.members.iter().any(|m| {
        (same_namespace && m.scim_user_ref.as_deref() == Some(name.as_str()))
            || m.user_name.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&user.spec.user_name))
    }) || (same_namespace && team.spec.member_selector.as_ref().is_some_and(|s| selects(s, user.labels())))
}

/// What teams read of a ScimUser: its SCIM id while Ready, its labels (selectors), its
/// userName and whether it is being deleted. Other changes trigger no team reconcile.
pub fn member_trigger(user: &ScimUser) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ready_id(user).hash(&mut h);
    user.labels().hash(&mut h);
    user.spec.user_name.hash(&mut h);
    Some(h.finish())
}

/// The SCIM id of a ScimUser that is provisioned, Ready and not being deleted.
fn ready_id(user: &ScimUser) -> Option<String> {
    if user.meta().deletion_timestamp.is_some() {
        return None;
    }
    let status = user.status.as_ref()?;
    let ready = status.conditions.iter().any(|c| c.type_ == conditions::READY && c.status == "True");
    if ready { status.scim_id.clone() } else { None }
}

/// The members a team resolves to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Members {
    /// SCIM ids of the members that can be sent.
    ids: BTreeSet<String>,
    /// Members not provisioned yet.
    pending: Vec<String>,
    /// userNames an untrusted namespace may not add (no ScimUser of its own has them).
    not_allowed: Vec<String>,
}

/// Members the team wants. In an untrusted namespace a userName member must be a ScimUser of
/// the same namespace; in a trusted one, any user of the server.
async fn resolve(team: &ManagedTeam, ctx: &Context, trusted: bool) -> Result<Members, ClientError> {
    let ns = team.namespace().unwrap_or_default();
    let mut out = Members::default();
    let users = ctx.users.state();
    let own = || users.iter().filter(|u| u.meta().namespace.as_deref() == Some(ns.as_str()));
    for m in &team.spec.members {
        if let Some(r) = &m.scim_user_ref {
            match ctx.users.get(&ObjectRef::new(r).within(&ns)).and_then(|u| ready_id(&u)) {
                Some(id) => {
                    out.ids.insert(id);
                }
                None => out.pending.push(r.clone()),
            }
        } else if let Some(user_name) = &m.user_name {
            if trusted {
                match ctx.scim.find_user_by_name(user_name).await? {
                    Some(u) => {
                        out.ids.insert(u.id);
                    }
                    None => out.pending.push(user_name.clone()),
                }
            } else {
                let mine: Vec<_> = own().filter(|u| u.spec.user_name.eq_ignore_ascii_case(user_name)).collect();
                match mine.iter().find_map(|u| ready_id(u)) {
                    Some(id) => {
                        out.ids.insert(id);
                    }
                    None if mine.is_empty() => out.not_allowed.push(user_name.clone()),
                    None => out.pending.push(user_name.clone()),
                }
            }
        }
    }
    if let Some(sel) = &team.spec.member_selector {
        for u in own().filter(|u| selects(sel, u.labels())) {
            match ready_id(u) {
                Some(id) => {
                    out.ids.insert(id);
                }
                None => out.pending.push(u.name_any()),
            }
        }
    }
    out.pending.sort();
    out.pending.dedup();
    Ok(out)
}

/// Member changes to send: only the difference, and no removal under `Additive`.
pub fn member_changes(
    current: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    policy: MemberPolicy,
) -> (Vec<String>, Vec<String>) {
    let add = wanted.difference(current).cloned().collect();
    let remove = match policy {
        MemberPolicy::Authoritative => current.difference(wanted).cloned().collect(),
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
                    ctx.scim.patch_group(&g.id, &ops, g.version.as_deref()).await?.and_then(|a| a.version)
                };
                Ok(Group { id: g.id, version, came: Came::Existing })
            }
        };
    }
    debug_assert_eq!(decide(Held::Nothing, ask), Decision::Create);
    match ctx.scim.create_group(name, owner.marker(), &[], false).await {
        Ok(g) => return Ok(Group { id: g.id, version: g.version, came: Came::Created }),
        // A team of that name exists that no SCIM client manages (or appeared since the lookup).
        Err(ClientError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match decide(Held::Object(Claim::Unowned), ask) {
        Decision::TakeOver => match ctx.scim.create_group(name, owner.marker(), &[], true).await {
            Ok(g) => Ok(Group { id: g.id, version: g.version, came: Came::Linked }),
            // Linked by an identity provider in between: never taken from it.
            Err(ClientError::Conflict(_)) => Err(refusal(Refusal::ManagedByIdentityProvider, name, &ns)),
            Err(e) => Err(e.into()),
        },
        Decision::Refuse(r) => Err(refusal(r, name, &ns)),
        Decision::Create | Decision::Update => Err(refusal(Refusal::NotTakenOver, name, &ns)),
    }
}

/// Reconciles one ManagedTeam.
pub async fn reconcile(obj: Arc<ManagedTeam>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let api: Api<ManagedTeam> = Api::namespaced(ctx.kube.clone(), &obj.namespace().unwrap_or_default());
    reconcile_with_finalizer("ManagedTeam", &ctx, &api, obj, |event| async {
        match event {
            Finalizer::Apply(t) => apply(t, &api, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(t, &ctx).await,
        }
    })
    .await
}

/// What a reconcile ended with.
struct Outcome {
    ready: Desired,
    scim_id: Option<String>,
    counts: Option<(i64, Vec<String>)>,
}

/// The pipeline: resolve members, check what an untrusted namespace may not do, decide and
/// ensure the group, send the member changes.
async fn sync(obj: &ManagedTeam, ctx: &Context) -> Result<Outcome, TeamError> {
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
    let (add, remove) = member_changes(&current, &members.ids, obj.spec.member_policy);
    ctx.scim.change_members(&id, &add, &remove, group.version.as_deref()).await?;
    if !add.is_empty() || !remove.is_empty() {
        let note = format!("added {}, removed {} members", add.len(), remove.len());
        ctx.event(obj, false, "MembersChanged", note).await;
    }
    let count = current.len() + add.len() - remove.len();
    let ready = if members.pending.is_empty() {
        Desired::ready(format!("team provisioned as SCIM group {id} with {count} members"))
    } else {
        Desired::not_ready(
            reason::MEMBERS_PENDING,
            format!("waiting for members to be provisioned: {}", members.pending.join(", ")),
        )
    };
    Ok(Outcome { ready, scim_id: Some(id), counts: Some((count as i64, members.pending)) })
}

async fn apply(obj: Arc<ManagedTeam>, api: &Api<ManagedTeam>, ctx: &Context) -> Result<Action, ReconcileError> {
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = ManagedTeamStatus { observed_generation: generation, ..previous.clone() };
    let mut action = ctx.resync();
    let outcome = match sync(&obj, ctx).await {
        Ok(o) => {
            ctx.succeeded(&key(obj.as_ref()));
            o
        }
        Err(TeamError::Refused(r, message)) => {
            action = ctx.refused_retry(std::time::Duration::from_secs(300));
            Outcome { ready: Desired::not_ready(r, message), scim_id: None, counts: None }
        }
        Err(TeamError::Client(e)) => {
            let failure = conditions::failure(&e);
            action = Action::requeue(ctx.backoff(&key(obj.as_ref()), failure.retry_after));
            Outcome { ready: Desired::not_ready(failure.reason, e.to_string()), scim_id: None, counts: None }
        }
    };
    if let Some(id) = outcome.scim_id {
        status.scim_id = Some(id);
    }
    if let Some((count, pending)) = outcome.counts {
        status.member_count = count;
        status.pending_members = pending;
    }
    status.conditions = conditions::merge(&previous.conditions, &[outcome.ready], generation, &now());
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && previous.member_count == status.member_count
        && previous.pending_members == status.pending_members
        && conditions::same(&previous.conditions, &status.conditions);
    if !same {
        // Every field is serialized (empty lists, nulls), so the merge patch clears what is gone.
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    Ok(action)
}

/// Unlinks the group on deletion (policy `Unlink`), only if this resource still owns it.
async fn cleanup(obj: Arc<ManagedTeam>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    if let (Some(id), false, TeamDeletionPolicy::Unlink) =
        (obj.status.as_ref().and_then(|s| s.scim_id.clone()), released, obj.spec.deletion_policy)
    {
        let group = match ctx.scim.get_group(&id).await {
            Ok(g) => Some(g),
            Err(ClientError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(g) = group {
            if matches!(group_claim(&ctx.owner(obj.as_ref()), &g), Claim::Ours | Claim::OursLegacy) {
                match ctx.scim.delete_group(&id, g.version.as_deref()).await {
                    Ok(()) | Err(ClientError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            } else {
                let note = format!("SCIM group {id} is not owned by this resource: left as it is");
                ctx.event(obj.as_ref(), true, reason::CONFLICT, note).await;
            }
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
    fn only_changes_are_sent_and_additive_never_removes() {
        let (add, remove) = member_changes(&set(&["a", "b"]), &set(&["b", "c"]), MemberPolicy::Authoritative);
        assert_eq!((add, remove), (vec!["c".to_string()], vec!["a".to_string()]));
        let (add, remove) = member_changes(&set(&["a", "b"]), &set(&["b", "c"]), MemberPolicy::Additive);
        assert_eq!((add, remove), (vec!["c".to_string()], vec![]));
        let (add, remove) = member_changes(&set(&["a"]), &set(&["a"]), MemberPolicy::Authoritative);
        assert!(add.is_empty() && remove.is_empty());
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
