//! A ScimUser on a target other than the operator's own server: fetch (the ownership record,
//! then what the target holds) → decide (the pure plan of [`crate::client::plan`]) → execute →
//! the target's status entry.
//!
//! Ownership lives in the operator's records ([`crate::operator::ownership::OwnershipRecords`]),
//! not in the target (Keycloak and Datadog keep no marker, Grafana's `externalId` is the SAML
//! id):
//! - a record of this resource with the user's id: that user (gone: created again);
//! - a record of this resource without an id (the operator stopped between claiming and
//!   recording the id): the user of that userName, if any, is the one it created;
//! - no record, and the target has no user of that name: claimed (the API server creates a
//!   record name once, so of two claimants one wins; the other reports `Conflict`), created,
//!   and its id recorded;
//! - no record, and the target has one: it existed before (an identity provider, an
//!   administrator) or another resource holds it. Only `adopt` from a namespace the target trusts
//!   takes the first; nothing is written otherwise.

use serde_json::Value;

use super::super::conditions::reason;
use super::super::crd::{ScimUser, Standing, UserDeletionPolicy};
use super::super::ownership::{Holder, ObjectKey, Origin, Record, RecordOwner};
use super::super::target_roles::{roles_for, target_role_plan};
pub use super::super::targets::record_owner;
use super::super::targets::{Endpoint, Outcome, Remote, Resolved};
use super::super::user_doc::{desired, roles_of, with_roles};
use super::super::{Context, ReconcileError};
use crate::client::plan::{self, DesiredUser, Notice, PlanError, UserRemoval};
use crate::client::{ClientError, ScimClient};

/// The user as declared for a target: its `roles` the whole list the target is to hold
/// (absent when that is empty and the target holds none, so that nothing is sent for them), the
/// ownership marker and the declared `externalId` for the dialect to choose from.
fn desired_user(obj: &ScimUser, marker: &str, roles: &[String], held_roles: &[String]) -> DesiredUser {
    let mut document = desired(&obj.spec, marker, &[]);
    if !roles.is_empty() || !held_roles.is_empty() {
        document = with_roles(document, Some(roles));
    }
    DesiredUser { document, marker: Some(marker.to_string()), external_id: obj.spec.external_id.clone() }
}

/// Why the user is not written on this target: (reason, message).
type Refusal = (&'static str, String);

/// What the target holds for the resource after the ownership step: the user's body (`None`:
/// to be created) and whether its id still has to be recorded.
struct Held {
    user: Option<Value>,
    record_id: bool,
}

/// The ownership step: what the target holds for this resource, or why it may not write there.
async fn held(
    ctx: &Context,
    obj: &ScimUser,
    target: &Resolved,
    client: &ScimClient,
    mine: Option<&Record>,
) -> Result<Result<Held, Refusal>, Failed> {
    let user_name = &obj.spec.user_name;
    let records = &ctx.targets.records;
    let key = ObjectKey::user(&target.id, user_name);
    let owner = record_owner(obj);
    if let Some(record) = mine {
        return Ok(Ok(match &record.remote_id {
            Some(id) => match client.get_user(id).await {
                Ok(u) => Held { user: Some(u.body), record_id: false },
                // Deleted on the target: provisioned again (the record stays ours).
                Err(ClientError::NotFound) => Held { user: None, record_id: true },
                Err(e) => return Err(Failed::Client(e)),
            },
            // Claimed, and perhaps created before the id was recorded: the user of that name
            // is the one this resource made.
            None => Held { user: client.fetch_user(user_name).await?, record_id: true },
        }));
    }
    let existing = client.fetch_user(user_name).await?;
    let other = |owner: RecordOwner| {
        Err((
            reason::CONFLICT,
            format!(
                "the user {user_name} on target {} belongs to another Kubernetes resource ({}/{}); nothing was written",
                target.id, owner.namespace, owner.name
            ),
        ))
    };
    let Some(existing) = existing else {
        return Ok(match records.claim(&key, &owner, Origin::Created).await? {
            Holder::Claimant(_) => Ok(Held { user: None, record_id: true }),
            Holder::Other(o) => other(o),
        });
    };
    // The target holds a user of that name that this resource has no record of.
    match records.get(&key).await? {
        Some(r) if r.owner.uid != owner.uid => return Ok(other(r.owner)),
        // Recorded a moment ago (the list this reconcile read was older): ours.
        Some(_) => return Ok(Ok(Held { user: Some(existing), record_id: true })),
        None => {}
    }
    if !obj.spec.adopt {
        return Ok(Err((
            reason::CONFLICT,
            format!(
                "a user named {user_name} already exists on target {} and no resource owns it; set spec.adopt: true \
                 (honoured in namespaces the target trusts) to take it over; nothing was written",
                target.id
            ),
        )));
    }
    if target.standing != Standing::Trusted {
        return Ok(Err((
            reason::ADOPTION_NOT_ALLOWED,
            format!(
                "spec.adopt is honoured only in namespaces target {} trusts and {} is not one; the existing user \
                 {user_name} was left as it is",
                target.id, owner.namespace
            ),
        )));
    }
    Ok(match records.claim(&key, &owner, Origin::Adopted).await? {
        Holder::Claimant(_) => Ok(Held { user: Some(existing), record_id: true }),
        Holder::Other(o) => other(o),
    })
}

/// A failure of a step: the target's request, or the records' API.
#[derive(Debug)]
enum Failed {
    Client(ClientError),
    Records(ReconcileError),
}

impl From<ClientError> for Failed {
    fn from(e: ClientError) -> Self {
        Failed::Client(e)
    }
}

impl From<super::super::ownership::RecordError> for Failed {
    fn from(e: super::super::ownership::RecordError) -> Self {
        Failed::Records(ReconcileError::Invalid(e.to_string()))
    }
}

fn user_id(user: &Value) -> Option<String> {
    user.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()).map(str::to_string)
}

/// The roles this resource granted on the target before, as `mine` records them. A record of
/// an earlier release has none: that release sent `spec.roles` (where the namespace was
/// trusted), so those count as granted.
fn granted_before(obj: &ScimUser, mine: Option<&Record>) -> Vec<String> {
    match mine {
        Some(Record { granted_roles: Some(g), .. }) => g.clone(),
        Some(_) => obj.spec.roles.clone(),
        None => Vec::new(),
    }
}

/// Records the roles granted on the target in this resource's record; a record that is gone
/// or another's fails the reconcile (a grant is never sent unrecorded).
async fn record_grants(ctx: &Context, obj: &ScimUser, id: &str, roles: &[String]) -> Result<(), ReconcileError> {
    let key = ObjectKey::user(id, &obj.spec.user_name);
    let what = |e: String| {
        ReconcileError::Invalid(format!("recording the roles granted to user {} on {id}: {e}", obj.spec.user_name))
    };
    match ctx.targets.records.set_granted_roles(&key, &record_owner(obj), roles).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(what("the ownership record is not this resource's".into())),
        Err(e) => Err(what(e.to_string())),
    }
}

/// Brings the user on one remote target to the spec; `mine` is this resource's record there.
/// Its roles there are computed ([`roles_for`]) and only those this resource granted (recorded
/// in its record before they are sent) are withdrawn. Record API failures end the reconcile;
/// everything the target answers is its entry.
pub async fn sync(
    ctx: &Context,
    obj: &ScimUser,
    target: &Resolved,
    remote: &Remote,
    mine: Option<&Record>,
) -> Result<Outcome, ReconcileError> {
    let id = &target.id;
    let known = mine.and_then(|r| r.remote_id.clone());
    let client = &remote.client;
    let marker = ctx.owner(obj);
    let asked = roles_for(ctx, obj, target).await?;
    // Checked before anything is read or claimed: a user this target cannot take.
    if let Err(e) = plan::user_document(client.dialect(), &desired_user(obj, marker.marker(), &asked, &[])) {
        return Ok(Outcome::failed(id, known, reason::INVALID_SPEC, format!("target {id}: {e}")));
    }
    let held = match held(ctx, obj, target, client, mine).await {
        Ok(Ok(h)) => h,
        Ok(Err((reason, message))) => return Ok(Outcome::failed(id, None, reason, message)),
        Err(Failed::Client(e)) => return Ok(Outcome::error(id, known, &e, &remote.secrets)),
        Err(Failed::Records(e)) => return Err(e),
    };
    let held_roles = held.user.as_ref().map(roles_of).unwrap_or_default();
    let granted = granted_before(obj, mine);
    let roles = target_role_plan(client.dialect().keeps_roles(), &held_roles, &granted, &asked);
    // The intent first: a grant whose record were lost could never be withdrawn.
    if let Some(intent) = &roles.intent {
        record_grants(ctx, obj, id, intent).await?;
    }
    let recorded = roles.intent.as_deref().unwrap_or(&granted);
    let want = desired_user(obj, marker.marker(), &roles.document, &held_roles);
    let caps = client.capabilities();
    let plan_target = plan::Target::new(client.dialect(), &caps, remote.max_member_operations);
    let plan = match plan::user(plan_target, &want, held.user.as_ref()) {
        Ok(p) => p,
        Err(e @ PlanError::ExternalIdRequired) => {
            return Ok(Outcome::failed(id, known, reason::INVALID_SPEC, e.to_string()));
        }
        Err(e @ PlanError::Unsupported(_)) => return Ok(Outcome::failed(id, known, reason::REJECTED, e.to_string())),
    };
    let executed = match client.execute(&plan).await {
        Ok(x) => x,
        Err(e) => return Ok(Outcome::error(id, known, &e, &remote.secrets)),
    };
    let remote_id = executed.user.as_ref().map(|u| u.id.clone()).or_else(|| held.user.as_ref().and_then(user_id));
    let Some(remote_id) = remote_id else {
        let e = ClientError::Other("the target answered the created user without an id".into());
        return Ok(Outcome::error(id, known, &e, &remote.secrets));
    };
    if held.record_id || known.as_deref() != Some(remote_id.as_str()) {
        let key = ObjectKey::user(id, &obj.spec.user_name);
        ctx.targets.records.set_remote_id(&key, &record_owner(obj), &remote_id).await.map_err(|e| {
            ReconcileError::Invalid(format!("recording the id of user {} on {id}: {e}", obj.spec.user_name))
        })?;
    }
    if roles.granted.as_slice() != recorded || mine.is_some_and(|r| r.granted_roles.is_none()) {
        record_grants(ctx, obj, id, &roles.granted).await?;
    }
    let wrote = !plan.operations.is_empty();
    if plan.notices.contains(&Notice::RolesUnsupported) {
        return Ok(Outcome {
            wrote,
            ..Outcome::failed(
                id,
                Some(remote_id),
                reason::ROLES_UNSUPPORTED,
                format!("provisioned, but target {id} keeps no roles: {} were not sent there", asked.join(", ")),
            )
        });
    }
    let mut message = format!("provisioned as user {remote_id}");
    if !asked.is_empty() {
        message.push_str(&format!("; roles sent: {}", asked.join(", ")));
    }
    for n in &plan.notices {
        if let Notice::AttributesNotKept(attributes) = n {
            message.push_str(&format!(" (the target keeps no {}: not sent)", attributes.join(", ")));
        }
    }
    Ok(Outcome::synced(id, Some(remote_id), message, wrote))
}

/// The removal a deletion policy means on a target.
fn removal(policy: UserDeletionPolicy) -> UserRemoval {
    match policy {
        UserDeletionPolicy::Deactivate => UserRemoval::Deactivate,
        UserDeletionPolicy::Delete => UserRemoval::Delete,
        UserDeletionPolicy::Orphan => UserRemoval::Orphan,
    }
}

/// Applies the deletion policy to the user `record` says this resource owns (the resource is
/// going, or no longer names that target), then releases the record. With `touch: false` (the
/// release annotation) the target is left as it is. A target that is gone has nothing left to
/// change. `Err` carries what to report and retry.
pub async fn remove(
    ctx: &Context,
    obj: &ScimUser,
    record: &Record,
    touch: bool,
) -> Result<Option<String>, RemoveError> {
    let policy = obj.spec.deletion_policy;
    let target = &record.object.target;
    let mut note = None;
    if touch && policy != UserDeletionPolicy::Orphan {
        match ctx.targets.reach(target).await.map_err(RemoveError::Kube)? {
            None | Some(Endpoint::Default) => {}
            Some(Endpoint::NotReady(m)) => return Err(RemoveError::Target(format!("target {target}: {m}"))),
            Some(Endpoint::Remote(remote)) => {
                let hide =
                    |e: &ClientError| RemoveError::Target(format!("target {target}: {}", remote.hide(&e.to_string())));
                let client = &remote.client;
                let user = match &record.remote_id {
                    Some(id) => match client.get_user(id).await {
                        Ok(u) => Some(u.body),
                        Err(ClientError::NotFound) => None,
                        Err(e) => return Err(hide(&e)),
                    },
                    None => client.fetch_user(&obj.spec.user_name).await.map_err(|e| hide(&e))?,
                };
                if let Some(user) = user {
                    // Every request below addresses the user by its id: a document without one
                    // cannot be acted on (the plan would refuse it too), so say so here.
                    let id = user_id(&user).ok_or_else(|| {
                        RemoveError::Target(format!(
                            "target {target} answered user {} without an id; nothing was changed there",
                            record.object.key
                        ))
                    })?;
                    let caps = client.capabilities();
                    let t = plan::Target::new(client.dialect(), &caps, remote.max_member_operations);
                    let plan = plan::user_removal(t, removal(policy), &user)
                        .map_err(|e| RemoveError::Target(format!("target {target}: {e}")))?;
                    match client.execute(&plan).await {
                        Ok(_) | Err(ClientError::NotFound) => {}
                        Err(e) => return Err(hide(&e)),
                    }
                    let instead = plan.notices.contains(&Notice::DeactivatedInsteadOfDeleted);
                    note = Some(format!(
                        "applied deletion policy {policy:?} to user {id} on target {target}{}",
                        if instead { " (it cannot delete users: deactivated instead)" } else { "" }
                    ));
                }
            }
        }
    }
    ctx.targets
        .records
        .release(&record.object, &record_owner(obj))
        .await
        .map_err(|e| RemoveError::Kube(ReconcileError::Invalid(e.to_string())))?;
    Ok(note)
}

/// Why a removal did not finish.
#[derive(Debug)]
pub enum RemoveError {
    /// The target failed or cannot be reached now (retried).
    Target(String),
    /// The Kubernetes API failed.
    Kube(ReconcileError),
}
