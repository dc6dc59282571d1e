//! The ScimUser controller: fetch, validate, build the desired user, apply, write status.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conditions::{self, Desired, reason};
use super::crd::{ScimUser, ScimUserStatus, Standing, TargetRef, UserDeletionPolicy, targets_ready};
use super::ownership::Record;
use super::ownership::{Ask, Claim, Decision, Held, Owner, Refusal, decide};
use super::target_work::{Step, next_due};
use super::targets::{self, Endpoint, Outcome, Remote, Resolved, entries, meanwhile, next_action, ready_condition};
use super::user_cache::{self, CachedUser};
use super::user_doc::{RolePlan, desired, drift, operations, plan_roles, roles_of, validate, with_roles};
use super::{Context, RELEASE_ANNOTATION, ReconcileError, key, now, reconcile_with_finalizer};
use crate::client::{ClientError, ScimObject};

mod remote;
use remote::record_owner;

/// What applying the desired user did.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    Created(String),
    Updated(String, Vec<&'static str>),
    Adopted(String),
    Unchanged(String),
}

impl Applied {
    fn id(&self) -> &str {
        match self {
            Applied::Created(i) | Applied::Updated(i, _) | Applied::Adopted(i) | Applied::Unchanged(i) => i,
        }
    }
}

/// Why the user could not be applied.
#[derive(Debug)]
enum ApplyError {
    /// The ownership decision refused: nothing was written.
    Refused(Refusal),
    Client(ClientError),
}

impl From<ClientError> for ApplyError {
    fn from(e: ClientError) -> Self {
        ApplyError::Client(e)
    }
}

/// The condition of a refusal. The message never shows the owner's marker.
fn refused(refusal: Refusal, user_name: &str, namespace: &str) -> Desired {
    match refusal {
        Refusal::OwnedByAnotherResource => Desired::not_ready(
            reason::CONFLICT,
            format!("the SCIM user {user_name} belongs to another Kubernetes resource; nothing was written"),
        ),
        Refusal::ManagedByIdentityProvider => Desired::not_ready(
            reason::CONFLICT,
            format!("the SCIM user {user_name} is managed by an identity provider; nothing was written"),
        ),
        Refusal::NotTakenOver => Desired::not_ready(
            reason::CONFLICT,
            format!(
                "a user named {user_name} already exists on the SCIM server and no resource owns it; set spec.adopt: \
                 true (honoured in trusted namespaces) to take it over; nothing was written"
            ),
        ),
        Refusal::TakeOverNotAllowed => Desired::not_ready(
            reason::ADOPTION_NOT_ALLOWED,
            format!(
                "spec.adopt is honoured only in trusted namespaces and {namespace} is not one; the existing user \
                 {user_name} was left as it is"
            ),
        ),
    }
}

/// Reconciles one ScimUser (the cache holds its facts; the whole object is read once a worker
/// is free, so that a deferred reconcile costs no request).
pub async fn reconcile(cached: Arc<CachedUser>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = cached.namespace().unwrap_or_default();
    let _worker = match ctx.user_shares.enter(&ns, std::time::Instant::now()) {
        Ok(worker) => worker,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    let api: Api<ScimUser> = Api::namespaced(ctx.kube.clone(), &ns);
    let Some(obj) = user_cache::fetch(&api, &cached).await? else { return Ok(Action::await_change()) };
    let obj = Arc::new(obj);
    reconcile_with_finalizer("ScimUser", &ctx, &api, obj, |event| async {
        match event {
            Finalizer::Apply(u) => apply(u, &api, &ctx).await,
            Finalizer::Cleanup(u) => cleanup(u, &ctx).await,
        }
    })
    .await
}

/// What the server holds for the resource: the user of `status.scimId` if it still exists;
/// else `None` (the caller then tries to create, and looks the name up if that is taken).
async fn fetch_by_status(ctx: &Context, obj: &ScimUser) -> Result<Option<ScimObject>, ClientError> {
    let Some(id) = obj.status.as_ref().and_then(|s| s.scim_id.as_deref()) else { return Ok(None) };
    match ctx.scim.get_user(id).await {
        Ok(u) => Ok(Some(u)),
        // Gone from the server (deleted there): provisioned again.
        Err(ClientError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the user, or decides from what the server holds whether to update it, take it over
/// or refuse; every write to an existing user carries the version its ownership was read at.
/// `asked` are the roles the resource may ask for and `granted` those it granted before;
/// returns what was applied and the roles granted afterwards.
async fn sync(
    ctx: &Context,
    obj: &ScimUser,
    want: &Value,
    owner: &Owner,
    trusted: bool,
    asked: &[String],
    granted: &[String],
) -> Result<(Applied, Vec<String>), ApplyError> {
    let scim = &ctx.scim;
    let ask = Ask { take_over: obj.spec.adopt, trusted };
    // A resource refused before is most likely refused again: look first, so that a standing
    // refusal costs a read per retry, never a write.
    let refused_before = obj.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == conditions::READY
                && c.status == "False"
                && conditions::progress(&c.reason) == conditions::Progress::Stalled
        })
    });
    let known = match fetch_by_status(ctx, obj).await? {
        Some(u) => Some(u),
        None if refused_before => scim.find_user_by_name(&obj.spec.user_name).await?,
        None => None,
    };
    let existing = match known {
        Some(u) => u,
        None => {
            debug_assert_eq!(decide(Held::Nothing, ask), Decision::Create);
            // Most users are new, so this saves a lookup; a taken userName answers 409 (this
            // server never merges a POST into an existing user) and the lookup below decides.
            // An untrusted namespace may create users but not make the service e-mail whatever
            // address it declares: the invitation is withheld (an administrator can send it).
            match scim.create_user(want, trusted).await {
                // A new user holds exactly the roles asked for, all granted by this resource.
                Ok(created) => return Ok((Applied::Created(created.id), plan_roles(&[], &[], asked).granted)),
                Err(ClientError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let user_name = want["userName"].as_str().unwrap_or_default();
            scim.find_user_by_name(user_name).await?.ok_or_else(|| {
                // Taken a moment ago, gone now (a racing writer): look again next time.
                ClientError::Unavailable {
                    message: format!("userName {user_name} was taken, then not found; retrying"),
                    retry_after: None,
                }
            })?
        }
    };
    let decision = decide(Held::Object(owner.claim(existing.external_id.as_deref())), ask);
    let RolePlan { write: roles, granted } = plan_roles(&roles_of(&existing.body), granted, asked);
    let want = &with_roles(want.clone(), roles.as_deref());
    let fields = drift(&existing.body, want);
    let write = |fields: Vec<&'static str>| async {
        if !fields.is_empty() {
            scim.patch_user(&existing.id, &operations(want, &fields), existing.version.as_deref()).await?;
        }
        Ok::<_, ClientError>(fields)
    };
    let applied = match decision {
        Decision::Refuse(r) => return Err(ApplyError::Refused(r)),
        Decision::Update if fields.is_empty() => Applied::Unchanged(existing.id.clone()),
        Decision::Update | Decision::Create => {
            let fields = write(fields).await?;
            Applied::Updated(existing.id.clone(), fields)
        }
        Decision::TakeOver => {
            write(fields).await?;
            Applied::Adopted(existing.id.clone())
        }
    };
    Ok((applied, granted))
}

/// The roles the resource granted before this sync. A status written by an earlier release
/// has no record; when it says the roles were sent (`RolesAllowed=True`), that release sent
/// the spec's roles, so those count as granted.
fn granted_before(obj: &ScimUser, previous: &ScimUserStatus) -> Vec<String> {
    let sent = previous.conditions.iter().any(|c| c.type_ == conditions::ROLES_ALLOWED && c.status == "True");
    match &previous.granted_roles {
        Some(granted) => granted.clone(),
        None if sent && previous.scim_id.is_some() => obj.spec.roles.clone(),
        None => Vec::new(),
    }
}

/// Records in the status, before a grant is sent, the roles the resource may be about to
/// grant (what it granted plus what it asks for): a grant whose record were lost (a crash or a
/// lost response between the two writes) could never be withdrawn. Returns that record.
async fn record_grants(
    api: &Api<ScimUser>,
    obj: &ScimUser,
    granted: &[String],
    asked: &[String],
) -> Result<Vec<String>, ReconcileError> {
    let mut intent = granted.to_vec();
    for r in asked {
        if !intent.iter().any(|g| g.eq_ignore_ascii_case(r)) {
            intent.push(r.clone());
        }
    }
    if intent.len() > granted.len() {
        let patch = json!({"status": {"grantedRoles": intent}});
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(intent)
}

/// Syncs the user on the default target (the operator's own server, `--scim-url`) on the path
/// that predates targets: ownership markers, granted roles, effective roles, events.
async fn sync_default(
    api: &Api<ScimUser>,
    obj: &ScimUser,
    ctx: &Context,
    previous: &ScimUserStatus,
    status: &mut ScimUserStatus,
) -> Result<Outcome, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let target = TargetRef::default_target().id(&ns);
    let generation = obj.meta().generation;
    let trusted = ctx.trusted(&ns);
    // What the resource may ask for: roles follow the spec, and only a trusted namespace's.
    let asked: &[String] = if trusted { &obj.spec.roles } else { &[] };
    let owner = ctx.owner(obj);
    let want = desired(&obj.spec, owner.marker(), asked);
    let granted = granted_before(obj, previous);
    let intent = record_grants(api, obj, &granted, asked).await?;
    // Until a sync succeeds the record stays what it was: nothing written on a refusal, and
    // possibly the grants on an error (the request may have landed).
    status.granted_roles = Some(granted.clone());
    Ok(match sync(ctx, obj, &want, &owner, trusted, asked, &granted).await {
        Ok((applied, granted)) => {
            status.granted_roles = Some(granted);
            let id = applied.id().to_string();
            let wrote = !matches!(applied, Applied::Unchanged(_));
            // The event (if any) and the effective roles are independent: ask for both at once.
            let announce = async {
                match &applied {
                    // A creation is recorded by the Ready condition (its message names the SCIM
                    // id, its lastTransitionTime says when): an Event per created user would
                    // double the API writes of a bulk provisioning for no new information.
                    Applied::Created(_) => {}
                    Applied::Adopted(_) => ctx.event(obj, false, "Adopted", format!("took over SCIM user {id}")).await,
                    Applied::Updated(_, fields) => {
                        // The spec did not change since the last sync: someone changed the server.
                        let reason =
                            if previous.observed_generation == generation { "DriftCorrected" } else { "Updated" };
                        ctx.event(obj, false, reason, format!("updated {} on SCIM user {id}", fields.join(", "))).await
                    }
                    Applied::Unchanged(_) => {}
                }
            };
            let ((), roles) = tokio::join!(announce, ctx.scim.effective_roles(&id));
            status.scim_id = Some(id.clone());
            match roles {
                Ok(roles) => status.effective_roles = roles.unwrap_or_default(),
                // A transient failure does not blank what was last read.
                Err(e) => tracing::debug!(error = %e, user = %id, "effective roles not refreshed"),
            }
            Outcome::synced(&target, Some(id.clone()), format!("provisioned as SCIM user {id}"), wrote)
        }
        Err(ApplyError::Refused(r)) => {
            let d = refused(r, &obj.spec.user_name, &ns);
            Outcome::failed(&target, None, d.reason, d.message)
        }
        Err(ApplyError::Client(e)) => {
            status.granted_roles = Some(intent);
            Outcome::error(&target, status.scim_id.clone(), &e, &[])
        }
    })
}

/// Applies the deletion policy on the targets the spec no longer names, to what this resource
/// owns there; failures are returned as the outcomes of those targets (retried).
async fn drop_targets(
    ctx: &Context,
    obj: &ScimUser,
    resolved: &[Resolved],
    records: &[Record],
    status: &mut ScimUserStatus,
) -> Result<Vec<Outcome>, ReconcileError> {
    let mut failed = Vec::new();
    let default_id = TargetRef::default_target().id("");
    if !resolved.iter().any(|r| r.target.is_default())
        && let Some(id) = status.scim_id.clone()
    {
        match remove_from_default(obj, ctx, &id).await {
            Ok(()) => {
                status.scim_id = None;
                status.effective_roles = Vec::new();
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

/// Syncs the user on every resolved target after applying the deletion policy on targets the
/// spec no longer names: the default target within this reconcile, each other target in its own
/// task ([`target_work`]), whose result a later reconcile reports. One outcome per target, in the
/// spec's order, then those of dropped targets that failed; and when the next task is due.
async fn sync_targets(
    api: &Api<ScimUser>,
    obj: &Arc<ScimUser>,
    ctx: &Arc<Context>,
    resolved: &[Resolved],
    previous: &ScimUserStatus,
    status: &mut ScimUserStatus,
) -> Result<(Vec<Outcome>, Option<Duration>), ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let default_id = TargetRef::default_target().id(&ns);
    let generation = obj.meta().generation;
    let uid = record_owner(obj.as_ref()).uid;
    let now = Instant::now();
    let (polled, records) =
        targets::poll_tasks(ctx, &ctx.user_work, &uid, generation, resolved, &previous.targets, now).await?;
    let mut dropped = drop_targets(ctx, obj.as_ref(), resolved, &records, status).await?;
    let mut remotes = Vec::new();
    for (r, remote, p) in &polled {
        remotes.push(match p.step {
            Step::Report { .. } => match p.result.clone() {
                Some(fresh) => Outcome { by_task: true, ..fresh },
                None => meanwhile(&previous.targets, &r.id, generation, None),
            },
            Step::Wait { .. } => meanwhile(&previous.targets, &r.id, generation, p.result.clone()),
            Step::Start => {
                let mine = records.iter().find(|rec| rec.object.target == r.id).cloned();
                start_task(ctx, obj, r, remote, mine);
                meanwhile(&previous.targets, &r.id, generation, p.result.clone())
            }
        });
    }
    let woken = polled.iter().any(|(_, _, p)| matches!(p.step, Step::Report { .. }));
    let polled: Vec<_> = polled.into_iter().map(|(_, _, p)| p).collect();
    let tasks_due = next_due(&polled, now);
    let mut default = match resolved.iter().any(|r| matches!(r.endpoint, Endpoint::Default)) {
        false => None,
        true => match previous.targets.iter().find(|e| e.target == default_id) {
            Some(e) if default_stands(woken, e, generation, status.scim_id.is_some()) => {
                Some(Outcome::synced(&default_id, e.remote_id.clone(), e.message.clone(), false))
            }
            _ => Some(sync_default(api, obj, ctx, previous, status).await?),
        },
    };
    let mut remotes = remotes.into_iter();
    let mut outcomes: Vec<Outcome> = resolved
        .iter()
        .filter_map(|r| match &r.endpoint {
            Endpoint::Default => default.take(),
            Endpoint::Remote(_) => remotes.next(),
            Endpoint::NotReady(m) => {
                Some(Outcome::failed(&r.id, None, reason::TARGET_NOT_READY, format!("target {}: {m}", r.id)))
            }
        })
        .collect();
    outcomes.append(&mut dropped);
    Ok((outcomes, tasks_due))
}

/// Whether a reconcile leaves the default target alone, its `entry` standing: when it reports
/// a target's task (`woken`) it is, but for a coincidence, that task's wake, and the default
/// target was synced for this spec moments ago; so when the entry is ready for the object's
/// `generation` and the SCIM id is known, syncing it again would only repeat requests (a resync
/// that coincides is not lost: that reconcile requeues for the resync too). Any other reconcile
/// syncs it.
fn default_stands(woken: bool, entry: &super::crd::TargetSync, generation: Option<i64>, has_scim_id: bool) -> bool {
    woken && entry.ready && entry.observed_generation == generation && has_scim_id
}

/// Starts the user's sync on a target other than the default; the reconcile that follows its
/// end reports it.
fn start_task(ctx: &Arc<Context>, obj: &Arc<ScimUser>, r: &Resolved, remote: &Remote, mine: Option<Record>) {
    let (c, o, t, target) = (ctx.clone(), obj.clone(), r.clone(), remote.clone());
    let run = async move {
        match remote::sync(&c, &o, &t, &target, mine.as_ref()).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::error_of_records(&t.id, mine.and_then(|m| m.remote_id), &e),
        }
    };
    let wake = ctx.wake_user.clone();
    let me = ObjectRef::new(&obj.name_any()).within(&obj.namespace().unwrap_or_default());
    // A controller that stopped reads no more wakes: nothing to do then.
    let wake = move || drop(wake.unbounded_send(me));
    targets::start_task(ctx, &ctx.user_work, obj, r, remote, run, wake);
}

async fn apply(obj: Arc<ScimUser>, api: &Api<ScimUser>, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = obj.namespace().unwrap_or_default();
    let generation = obj.meta().generation;
    let previous = obj.status.clone().unwrap_or_default();
    let mut status = ScimUserStatus { observed_generation: generation, ..previous.clone() };
    let mut wanted: Vec<Desired> = Vec::new();
    let trusted = ctx.trusted(&ns);
    let mut action = ctx.resync();
    // Targets where the spec's roles are not sent, the namespace not being trusted there.
    let mut roles_withheld: Vec<String> = if trusted { vec![] } else { vec![TargetRef::default_target().id(&ns)] };

    if let Err(msg) = validate(&obj.spec) {
        // Nothing may be written for a spec that is refused, by a task of an earlier one either.
        ctx.user_work.abort(&record_owner(obj.as_ref()).uid, None);
        wanted.push(Desired::not_ready(reason::INVALID_SPEC, msg));
    } else {
        // Every target is resolved before anything is written to any of them.
        let (outcomes, tasks_due) = match ctx.targets.resolve(&ns, &obj.spec.targets, trusted).await? {
            Err(refusals) => {
                ctx.user_work.abort(&record_owner(obj.as_ref()).uid, None);
                (refusals.iter().map(Outcome::refused).collect(), None)
            }
            Ok(resolved) => {
                roles_withheld =
                    resolved.iter().filter(|r| r.standing != Standing::Trusted).map(|r| r.id.clone()).collect();
                sync_targets(api, &obj, ctx, &resolved, &previous, &mut status).await?
            }
        };
        wanted.push(ready_condition(&outcomes));
        action = next_action(ctx, obj.as_ref(), &outcomes, tasks_due);
        status.targets = entries(&previous.targets, &outcomes, generation, &now());
        status.targets_ready = Some(targets_ready(&status.targets));
    }
    let roles_sent = roles_withheld.is_empty();
    if !obj.spec.roles.is_empty() {
        wanted.push(if roles_sent {
            Desired {
                type_: conditions::ROLES_ALLOWED,
                status: true,
                reason: reason::ROLES_ALLOWED,
                message: "roles are sent".into(),
            }
        } else {
            let message = if roles_withheld == [TargetRef::default_target().id(&ns)] {
                format!(
                    "namespace {ns} is not trusted to assign roles: none is sent, and roles this resource granted are \
                     withdrawn"
                )
            } else {
                format!(
                    "namespace {ns} is not trusted to assign roles on {}: none is sent there, and roles this resource \
                     granted there are withdrawn",
                    roles_withheld.join(", ")
                )
            };
            Desired { type_: conditions::ROLES_ALLOWED, status: false, reason: reason::ROLES_NOT_ALLOWED, message }
        });
    }
    status.conditions = conditions::merge(&previous.conditions, &wanted, generation, &now());
    ctx.warn_on_new_reason(obj.as_ref(), &previous.conditions, &status.conditions).await;
    if !obj.spec.roles.is_empty()
        && !roles_sent
        && !previous.conditions.iter().any(|c| c.reason == reason::ROLES_NOT_ALLOWED)
    {
        ctx.event(obj.as_ref(), true, reason::ROLES_NOT_ALLOWED, format!("namespace {ns} may not assign roles")).await;
    }
    write_status(api, &obj, &previous, &status).await?;
    Ok(action)
}

/// Writes the status only when it says something new.
async fn write_status(
    api: &Api<ScimUser>,
    obj: &ScimUser,
    previous: &ScimUserStatus,
    status: &ScimUserStatus,
) -> Result<(), ReconcileError> {
    let same = previous.observed_generation == status.observed_generation
        && previous.scim_id == status.scim_id
        && previous.effective_roles == status.effective_roles
        && previous.granted_roles == status.granted_roles
        && previous.targets == status.targets
        && previous.targets_ready == status.targets_ready
        && conditions::same(&previous.conditions, &status.conditions);
    if same {
        return Ok(());
    }
    // Every field is serialized (empty lists, nulls), so the merge patch clears what is gone.
    let patch = json!({"status": status});
    api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Applies the deletion policy of the default target to the user of `status.scimId`, only if
/// this resource still owns it (read first, written at that version); a 404 counts as done.
async fn remove_from_default(obj: &ScimUser, ctx: &Context, id: &str) -> Result<(), ClientError> {
    let policy = obj.spec.deletion_policy;
    if policy == UserDeletionPolicy::Orphan {
        return Ok(());
    }
    let user = match ctx.scim.get_user(id).await {
        Ok(u) => u,
        Err(ClientError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let claim = ctx.owner(obj).claim(user.external_id.as_deref());
    if !matches!(claim, Claim::Ours | Claim::OursLegacy) {
        let note = format!("SCIM user {id} is not owned by this resource: deletion policy {policy:?} not applied");
        ctx.event(obj, true, reason::CONFLICT, note).await;
        return Ok(());
    }
    let version = user.version.as_deref();
    let result = match policy {
        UserDeletionPolicy::Delete => ctx.scim.delete_user(id, version).await,
        _ => ctx.scim.set_active(id, false, version).await.map(|_| ()),
    };
    match result {
        Ok(()) | Err(ClientError::NotFound) => {
            let note = format!("applied deletion policy {policy:?} to SCIM user {id}");
            ctx.event(obj, false, "Deleted", note).await;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Applies the deletion policy before the resource goes, on every target, only to what this
/// resource owns there (the default target: the user of `status.scimId` if its marker is this
/// resource's; the others: the users its ownership records name), releasing those records.
async fn cleanup(obj: Arc<ScimUser>, ctx: &Context) -> Result<Action, ReconcileError> {
    let released = obj.annotations().get(RELEASE_ANNOTATION).is_some_and(|v| v == "true");
    // No task may write after the deletion policy applied; the records are read after this.
    ctx.user_work.abort(&record_owner(obj.as_ref()).uid, None);
    if let (Some(id), false) = (obj.status.as_ref().and_then(|s| s.scim_id.clone()), released) {
        remove_from_default(&obj, ctx, &id).await?;
    }
    let owner = record_owner(obj.as_ref());
    let records = ctx.targets.records.owned_by(&owner.uid).await.map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    for record in &records {
        match remote::remove(ctx, &obj, record, !released).await {
            Ok(Some(note)) => ctx.event(obj.as_ref(), false, "Deleted", note).await,
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

    /// Every input of the decision: only a woken reconcile whose default entry is ready for
    /// this generation, with the SCIM id known, leaves the default target alone.
    #[test]
    fn only_a_woken_reconcile_with_a_current_ready_default_entry_skips_the_default_target() {
        let entry = |ready: bool, observed: Option<i64>| super::super::crd::TargetSync {
            target: "ClusterScimTarget/default".into(),
            remote_id: Some("u-1".into()),
            ready,
            observed_generation: observed,
            ..Default::default()
        };
        // (woken, entry ready, entry's generation, object's generation, scimId known) -> skips
        let table = [
            ((true, true, Some(3), Some(3), true), true),
            ((false, true, Some(3), Some(3), true), false),
            ((true, false, Some(3), Some(3), true), false),
            ((true, true, Some(2), Some(3), true), false),
            ((true, true, None, Some(3), true), false),
            ((true, true, Some(3), Some(3), false), false),
            ((false, false, Some(2), Some(3), false), false),
        ];
        for ((woken, ready, observed, generation, has_id), skips) in table {
            assert_eq!(
                default_stands(woken, &entry(ready, observed), generation, has_id),
                skips,
                "woken {woken}, ready {ready}, entry of generation {observed:?}, object of {generation:?}, scimId \
                 {has_id}"
            );
        }
    }
}
