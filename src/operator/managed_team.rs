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
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::ClientError;

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

/// Whether `team` may reference `user` (by name, by userName or by selector).
pub fn may_reference(team: &ManagedTeam, user: &ScimUser) -> bool {
    let name = user.name_any();
    team.spec.members.iter().any(|m| {
        m.scim_user_ref.as_deref() == Some(name.as_str())
            || m.user_name.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(&user.spec.user_name))
    }) || team.spec.member_selector.as_ref().is_some_and(|s| selects(s, user.labels()))
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

/// Members the team wants, and what cannot be resolved yet.
async fn resolve(team: &ManagedTeam, ctx: &Context) -> Result<(BTreeSet<String>, Vec<String>), ClientError> {
    let ns = team.namespace().unwrap_or_default();
    let mut ids = BTreeSet::new();
    let mut pending = Vec::new();
    for m in &team.spec.members {
        if let Some(r) = &m.scim_user_ref {
            match ctx.users.get(&ObjectRef::new(r).within(&ns)).and_then(|u| ready_id(&u)) {
                Some(id) => {
                    ids.insert(id);
                }
                None => pending.push(r.clone()),
            }
        } else if let Some(user_name) = &m.user_name {
            match ctx.scim.find_user_by_name(user_name).await? {
                Some(u) => {
                    ids.insert(u["id"].as_str().unwrap_or_default().to_string());
                }
                None => pending.push(user_name.clone()),
            }
        }
    }
    if let Some(sel) = &team.spec.member_selector {
        let users = ctx.users.state();
        let in_namespace = users.iter().filter(|u| u.meta().namespace.as_deref() == Some(ns.as_str()));
        for u in in_namespace.filter(|u| selects(sel, u.labels())) {
            match ready_id(u) {
                Some(id) => {
                    ids.insert(id);
                }
                None => pending.push(u.name_any()),
            }
        }
    }
    pending.sort();
    pending.dedup();
    Ok((ids, pending))
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

/// The group id: the one in status, else found by name (ours), else created (which links an
/// unmanaged team of exactly that name).
async fn ensure_group(team: &ManagedTeam, ctx: &Context, owner: &str) -> Result<(String, bool), ReconcileOutcome> {
    let name = &team.spec.display_name;
    if let Some(id) = team.status.as_ref().and_then(|s| s.scim_id.clone()) {
        match ctx.scim.get_group(&id).await {
            Ok(g) => {
                if g["displayName"].as_str() != Some(name.as_str()) {
                    ctx.scim.rename_group(&id, name).await.map_err(ReconcileOutcome::Client)?;
                }
                return Ok((id, false));
            }
            Err(ClientError::NotFound) => {}
            Err(e) => return Err(ReconcileOutcome::Client(e)),
        }
    }
    match ctx.scim.create_group(name, owner, &[]).await {
        Ok(g) => Ok((g["id"].as_str().unwrap_or_default().to_string(), true)),
        Err(ClientError::Conflict(detail)) => {
            match ctx.scim.find_group_by_name(name).await.map_err(ReconcileOutcome::Client)? {
                Some(g) if g.get("externalId").and_then(Value::as_str) == Some(owner) => {
                    Ok((g["id"].as_str().unwrap_or_default().to_string(), false))
                }
                _ => Err(ReconcileOutcome::Conflict(format!("team {name} is managed by someone else: {detail}"))),
            }
        }
        Err(e) => Err(ReconcileOutcome::Client(e)),
    }
}

enum ReconcileOutcome {
    Conflict(String),
    Client(ClientError),
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

async fn apply(obj: Arc<ManagedTeam>, api: &Api<ManagedTeam>, ctx: &Context) -> Result<Action, ReconcileError> {
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = ManagedTeamStatus { observed_generation: generation, ..previous.clone() };
    let owner = format!("k8s:{}", obj.uid().unwrap_or_default());
    let mut action = ctx.resync();
    let wanted: Desired = match resolve(&obj, ctx).await {
        Err(e) => {
            action = Action::requeue(ctx.backoff(&key(obj.as_ref()), None));
            Desired::not_ready(reason::SCIM_UNAVAILABLE, e.to_string())
        }
        Ok((ids, pending)) => match ensure_group(&obj, ctx, &owner).await {
            Err(ReconcileOutcome::Conflict(msg)) => Desired::not_ready(reason::CONFLICT, msg),
            Err(ReconcileOutcome::Client(e)) => {
                let retry_after = match &e {
                    ClientError::Unavailable { retry_after, .. } => *retry_after,
                    _ => None,
                };
                action = Action::requeue(ctx.backoff(&key(obj.as_ref()), retry_after));
                Desired::not_ready(
                    if matches!(e, ClientError::Unauthorized(_)) {
                        reason::UNAUTHORIZED
                    } else {
                        reason::SCIM_UNAVAILABLE
                    },
                    e.to_string(),
                )
            }
            Ok((id, created)) => {
                if created {
                    ctx.event(obj.as_ref(), false, "Created", format!("created or linked SCIM group {id}")).await;
                }
                status.scim_id = Some(id.clone());
                let result = async {
                    let current: BTreeSet<String> = ctx.scim.group_members(&id).await?.into_iter().collect();
                    let (add, remove) = member_changes(&current, &ids, obj.spec.member_policy);
                    ctx.scim.change_members(&id, &add, &remove).await?;
                    let count = current.len() + add.len() - remove.len();
                    Ok::<_, ClientError>((add, remove, count))
                }
                .await;
                match result {
                    Ok((add, remove, count)) => {
                        ctx.succeeded(&key(obj.as_ref()));
                        if !add.is_empty() || !remove.is_empty() {
                            ctx.event(
                                obj.as_ref(),
                                false,
                                "MembersChanged",
                                format!("added {}, removed {} members", add.len(), remove.len()),
                            )
                            .await;
                        }
                        status.member_count = count as i64;
                        status.pending_members = pending.clone();
                        if pending.is_empty() {
                            Desired::ready(format!("team provisioned as SCIM group {id} with {count} members"))
                        } else {
                            Desired::not_ready(
                                reason::MEMBERS_PENDING,
                                format!("waiting for members to be provisioned: {}", pending.join(", ")),
                            )
                        }
                    }
                    Err(e) => {
                        action = Action::requeue(ctx.backoff(&key(obj.as_ref()), None));
                        let r = match e {
                            ClientError::BadRequest { .. } => reason::REJECTED,
                            ClientError::Unauthorized(_) => reason::UNAUTHORIZED,
                            _ => reason::SCIM_UNAVAILABLE,
                        };
                        Desired::not_ready(r, e.to_string())
                    }
                }
            }
        },
    };
    status.conditions = conditions::merge(&previous.conditions, &[wanted], generation, &now());
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && previous.member_count == status.member_count
        && previous.pending_members == status.pending_members
        && conditions::same(&previous.conditions, &status.conditions);
    if !same {
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    }
    Ok(action)
}

async fn cleanup(obj: Arc<ManagedTeam>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    if let (Some(id), false, TeamDeletionPolicy::Unlink) =
        (obj.status.as_ref().and_then(|s| s.scim_id.clone()), released, obj.spec.deletion_policy)
    {
        match ctx.scim.delete_group(&id).await {
            Ok(()) | Err(ClientError::NotFound) => {}
            Err(e) => return Err(e.into()),
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
