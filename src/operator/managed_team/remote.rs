//! A ManagedTeam on a target other than the operator's own server: fetch (the ownership record
//! of the group, then what the target holds; the members' records) → decide (the pure plan of
//! [`crate::client::plan`]) → execute → the target's status entry.
//!
//! Ownership lives in the operator's records ([`crate::operator::ownership::OwnershipRecords`]),
//! not in the target (Keycloak and Datadog keep no marker):
//! - a record of this resource with the group's id: that group (gone: created again);
//! - a record of this resource without an id (the operator stopped between claiming and
//!   recording the id): the group of that displayName, if any, is the one it created;
//! - no record, and the target has no group of that name: claimed (of two claimants one wins,
//!   the other reports `Conflict` and keeps reporting it), created, its id recorded;
//! - no record, and the target has one: it existed before (an identity provider, an
//!   administrator) or another resource holds it. Only `linkExisting` from a namespace the target
//!   trusts takes the first; nothing is written otherwise.
//!
//! Members are the target ids of the member ScimUsers on that target, as the ownership records
//! say (owner uid and id), never as a ScimUser's status says: a status is no proof of ownership.

use kube::{Resource, ResourceExt};
use std::collections::BTreeSet;

use super::super::conditions::reason;
use super::super::crd::{ManagedTeam, MemberPolicy, Standing, TeamDeletionPolicy};
use super::super::ownership::{self, Holder, ObjectKey, Origin, Record, Refusal, UserOwner};
use super::super::targets::{Endpoint, Outcome, Remote, Resolved, record_owner};
use super::super::{Context, ReconcileError, namespace_of};
use super::{member_refusal, named_users};
use crate::client::plan::{self, DesiredGroup, GroupRemoval, HeldGroup, PlanError};
use crate::client::{ClientError, ScimClient};

/// Who the records say holds the group of the team's name on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Nobody,
    ThisResource,
    Another,
}

/// What the ownership step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The group (if the target holds one) is this resource's.
    Ours,
    /// Claim the name, then create (`Created`) or link (`Adopted`) the group.
    Claim(Origin),
    /// Write nothing.
    Refuse(Refusal),
}

/// The ownership decision on a target: from the record, whether the target holds a group of
/// that name, `spec.linkExisting` and whether the target trusts the namespace.
pub fn ownership_step(recorded: Recorded, on_target: bool, link_existing: bool, trusted: bool) -> Step {
    match (recorded, on_target) {
        (Recorded::ThisResource, _) => Step::Ours,
        (Recorded::Another, _) => Step::Refuse(Refusal::OwnedByAnotherResource),
        (Recorded::Nobody, false) => Step::Claim(Origin::Created),
        (Recorded::Nobody, true) => match (link_existing, trusted) {
            (false, _) => Step::Refuse(Refusal::NotTakenOver),
            (true, false) => Step::Refuse(Refusal::TakeOverNotAllowed),
            (true, true) => Step::Claim(Origin::Adopted),
        },
    }
}

/// The condition of a refusal on `target`; it never names another owner's marker.
fn refusal(r: Refusal, name: &str, namespace: &str, target: &str) -> (&'static str, String) {
    match r {
        Refusal::OwnedByAnotherResource => (
            reason::CONFLICT,
            format!("the group {name} on target {target} belongs to another Kubernetes resource; nothing was written"),
        ),
        Refusal::NotTakenOver | Refusal::ManagedByIdentityProvider => (
            reason::CONFLICT,
            format!(
                "a group named {name} already exists on target {target} and no resource owns it; set \
                 spec.linkExisting: true (honoured in namespaces the target trusts) to link it; nothing was written"
            ),
        ),
        Refusal::TakeOverNotAllowed => (
            reason::LINK_NOT_ALLOWED,
            format!(
                "spec.linkExisting is honoured only in namespaces target {target} trusts and {namespace} is not one; \
                 the existing group {name} was left as it is"
            ),
        ),
    }
}

/// A member ScimUser as the records of one target see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// The ScimUser's name (for the pending list).
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// The record of its userName on the target, if any.
    pub record: Option<(String, Option<String>)>,
}

/// The target id of a member ScimUser: the id its record holds when the record is that
/// ScimUser's (owner uid); otherwise it is not provisioned there (yet): pending.
pub fn member_id(m: &MemberRecord) -> Option<&str> {
    match &m.record {
        Some((owner_uid, Some(id))) if *owner_uid == m.uid => Some(id.as_str()),
        _ => None,
    }
}

/// The members a team resolves to on one target.
#[derive(Debug, Default, PartialEq, Eq)]
struct Members {
    ids: BTreeSet<String>,
    pending: Vec<String>,
    not_allowed: Vec<String>,
    refused: Vec<String>,
}

/// A failure of a step: the target's request, or the Kubernetes API (records, targets).
#[derive(Debug)]
enum Failed {
    Client(ClientError),
    Kube(ReconcileError),
}

impl From<ClientError> for Failed {
    fn from(e: ClientError) -> Self {
        Failed::Client(e)
    }
}

impl From<ownership::RecordError> for Failed {
    fn from(e: ownership::RecordError) -> Self {
        Failed::Kube(ReconcileError::Invalid(e.to_string()))
    }
}

impl From<ReconcileError> for Failed {
    fn from(e: ReconcileError) -> Self {
        Failed::Kube(e)
    }
}

/// The members on `target`. ScimUser members count by their records there; userName members
/// of a team the target trusts are looked up on the target and added only when nobody owns
/// them or a ScimUser of a namespace the target trusts does.
async fn resolve(ctx: &Context, obj: &ManagedTeam, target: &Resolved, client: &ScimClient) -> Result<Members, Failed> {
    let ns = namespace_of(obj)?;
    let trusted = target.standing == Standing::Trusted;
    let named = named_users(obj, ctx, &ns, trusted);
    let mut out = Members { pending: named.missing_refs, not_allowed: named.missing_user_names, ..Members::default() };
    let records = &ctx.targets.records;
    let mut wanted = Vec::with_capacity(named.users.len());
    for u in &named.users {
        // The API server gives every object a uid; a cached ScimUser without one is a bug, and
        // counting it as nobody's would make the member silently pending.
        let uid = u
            .meta()
            .uid
            .as_deref()
            .ok_or_else(|| ReconcileError::Invalid(format!("member ScimUser {ns}/{} has no uid", u.name_any())))?;
        wanted.push((ObjectKey::user(&target.id, &u.user_name), uid));
    }
    // One labelled LIST (per hundred members) of the members' records, not a GET per member.
    let held = records.held_by(&wanted).await?;
    let members = named.users.iter().zip(&wanted).zip(held).map(|((u, (_, uid)), record)| MemberRecord {
        name: u.name_any(),
        uid: uid.to_string(),
        record: record.map(|r| (r.owner.uid, r.remote_id)),
    });
    for m in members {
        match member_id(&m) {
            Some(id) => {
                out.ids.insert(id.to_string());
            }
            None => out.pending.push(m.name),
        }
    }
    if trusted {
        let user_names: Vec<String> = obj.spec.members.iter().filter_map(|m| m.user_name.clone()).collect();
        for user_name in user_names {
            let Some(found) = client.find_user_by_name(&user_name).await? else {
                out.pending.push(user_name);
                continue;
            };
            let record = records.get(&ObjectKey::user(&target.id, &user_name)).await?;
            let owner_trusted = match &record {
                Some(r) if r.owner.namespace == ns => true,
                Some(r) => ctx.targets.stores.standing_of(&target.target, &ns, &r.owner.namespace) == Standing::Trusted,
                None => false,
            };
            let owner = match &record {
                Some(r) => UserOwner::Namespace(r.owner.namespace.as_str()),
                None => UserOwner::Unowned,
            };
            match ownership::member_allowed(owner, |_| owner_trusted) {
                Ok(()) => {
                    out.ids.insert(found.id);
                }
                Err(why) => out.refused.push(member_refusal(&user_name, &why)),
            }
        }
    }
    out.pending.sort();
    out.pending.dedup();
    Ok(out)
}

/// A group as the target holds it, by id (`None`: gone).
async fn group_by_id(client: &ScimClient, id: &str) -> Result<Option<HeldGroup>, ClientError> {
    let g = match client.get_group(id).await {
        Ok(g) => g,
        Err(ClientError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let members: BTreeSet<String> = client.group_members(id).await?.into_iter().collect();
    // A group without a displayName (the target's doing) differs from the spec's: the plan then
    // writes the name, which is the repair wanted, so an empty name stands for the missing one.
    let display_name = g.body.get("displayName").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    Ok(Some(HeldGroup { id: g.id, display_name, external_id: g.external_id, members }))
}

/// What the target holds for the resource after the ownership step: the group (`None`: to be
/// created), whether its id has to be recorded, and a record of an earlier name to release.
struct Held {
    group: Option<HeldGroup>,
    record_id: bool,
    linked: bool,
    renamed_from: Option<ObjectKey>,
}

/// The ownership step: what the target holds for this resource, or why it may not write there.
async fn held(
    ctx: &Context,
    obj: &ManagedTeam,
    target: &Resolved,
    client: &ScimClient,
    mine: Option<&Record>,
) -> Result<Result<Held, (&'static str, String)>, Failed> {
    let name = &obj.spec.display_name;
    let ns = namespace_of(obj)?;
    let records = &ctx.targets.records;
    let key = ObjectKey::group(&target.id, name);
    let owner = record_owner(obj);
    let refuse = |r: Refusal| Err(refusal(r, name, &ns, &target.id));
    if let Some(record) = mine.filter(|r| r.object.key == key.key) {
        return Ok(Ok(match &record.remote_id {
            Some(id) => match group_by_id(client, id).await? {
                Some(g) => Held { group: Some(g), record_id: false, linked: false, renamed_from: None },
                // Deleted on the target: created again (the record stays this resource's).
                None => Held { group: None, record_id: true, linked: false, renamed_from: None },
            },
            // Claimed, and perhaps created before the id was recorded.
            None => Held { group: client.fetch_group(name).await?, record_id: true, linked: false, renamed_from: None },
        }));
    }
    if let Some(old) = mine.filter(|r| r.remote_id.is_none()) {
        // Renamed before the group of the earlier name had an id recorded: that name is let go
        // (nothing shows which group it would be), and this one is claimed as any other.
        records.release(&old.object, &owner).await?;
    }
    let existing = client.fetch_group(name).await?;
    // Renamed in the spec: the group recorded under the earlier name is this resource's; the new
    // name is claimed for it, unless the target holds another group of that name.
    if let Some(old) = mine.and_then(|r| r.remote_id.as_ref().map(|id| (r, id))) {
        let (record, id) = old;
        if existing.as_ref().is_none_or(|g| g.id == *id) {
            return Ok(match records.claim(&key, &owner, record.origin).await? {
                Holder::Claimant(_) => Ok(Held {
                    group: group_by_id(client, id).await?,
                    record_id: true,
                    linked: false,
                    renamed_from: Some(record.object.clone()),
                }),
                Holder::Other(_) => refuse(Refusal::OwnedByAnotherResource),
            });
        }
    }
    let recorded = match records.get(&key).await? {
        None => Recorded::Nobody,
        Some(r) if r.owner.uid == owner.uid => Recorded::ThisResource,
        Some(_) => Recorded::Another,
    };
    let trusted = target.standing == Standing::Trusted;
    match ownership_step(recorded, existing.is_some(), obj.spec.link_existing, trusted) {
        // Recorded a moment ago (what this reconcile read was older): ours.
        Step::Ours => Ok(Ok(Held { group: existing, record_id: true, linked: false, renamed_from: None })),
        Step::Refuse(r) => Ok(refuse(r)),
        Step::Claim(origin) => Ok(match records.claim(&key, &owner, origin).await? {
            Holder::Claimant(_) => {
                Ok(Held { linked: existing.is_some(), group: existing, record_id: true, renamed_from: None })
            }
            Holder::Other(_) => refuse(Refusal::OwnedByAnotherResource),
        }),
    }
}

/// What one target ended with, for the resource's status and events.
#[derive(Debug, Clone)]
pub struct Synced {
    pub outcome: Outcome,
    /// Members on the target after the sync.
    pub count: Option<usize>,
    /// Members not provisioned there yet.
    pub pending: Vec<String>,
    /// What to tell in an Event, if something was created, linked or changed.
    pub note: Option<(&'static str, String)>,
}

impl super::super::target_work::Finished for Synced {
    fn outcome(&self) -> &Outcome {
        &self.outcome
    }
}

impl Synced {
    /// A sync that ended with `outcome` and nothing else to tell.
    pub fn only(outcome: Outcome) -> Self {
        Self { outcome, count: None, pending: Vec::new(), note: None }
    }
}

/// Brings the team's group on one remote target to the spec; `mine` is this resource's record
/// there. Kubernetes API failures end the reconcile; everything the target answers is its entry.
pub async fn sync(
    ctx: &Context,
    obj: &ManagedTeam,
    target: &Resolved,
    remote: &Remote,
    mine: Option<&Record>,
) -> Result<Synced, ReconcileError> {
    let id = &target.id;
    let ns = namespace_of(obj)?;
    let known = mine.and_then(|r| r.remote_id.clone());
    let client = &remote.client;
    let failed = |e: Failed| match e {
        Failed::Client(e) => Ok(Synced::only(Outcome::error(id, known.clone(), &e, &remote.secrets))),
        Failed::Kube(e) => Err(e),
    };
    let members = match resolve(ctx, obj, target, client).await {
        Ok(m) => m,
        Err(e) => return failed(e),
    };
    if !members.not_allowed.is_empty() {
        return Ok(Synced::only(Outcome::failed(
            id,
            known,
            reason::MEMBER_NOT_ALLOWED,
            format!(
                "namespace {ns} is not trusted on target {id} to add users it does not own: {} (name them by a \
                 ScimUser of this namespace); nothing was written there",
                members.not_allowed.join(", ")
            ),
        )));
    }
    let held = match held(ctx, obj, target, client, mine).await {
        Ok(Ok(h)) => h,
        Ok(Err((r, message))) => return Ok(Synced::only(Outcome::failed(id, None, r, message))),
        Err(e) => return failed(e),
    };
    let authoritative = obj.spec.member_policy == MemberPolicy::Authoritative;
    let desired = DesiredGroup {
        display_name: obj.spec.display_name.clone(),
        marker: Some(ctx.owner(obj).marker().to_string()),
        members: members.ids.clone(),
        authoritative,
    };
    let caps = client.capabilities();
    let plan_target = plan::Target::new(client.dialect(), &caps, remote.max_member_operations);
    let plan = match plan::group(plan_target, &desired, held.group.as_ref()) {
        Ok(p) => p,
        Err(e @ (PlanError::Unsupported(_) | PlanError::ExternalIdRequired)) => {
            return Ok(Synced::only(Outcome::failed(id, known, reason::REJECTED, format!("target {id}: {e}"))));
        }
    };
    let executed = match client.execute(&plan).await {
        Ok(x) => x,
        Err(e) => return failed(Failed::Client(e)),
    };
    let Some(group_id) = executed.created_group.clone().or_else(|| held.group.as_ref().map(|g| g.id.clone())) else {
        let e = ClientError::Other("the target answered the created group without an id".into());
        return failed(Failed::Client(e));
    };
    let records = &ctx.targets.records;
    let owner = record_owner(obj);
    if held.record_id || known.as_deref() != Some(group_id.as_str()) {
        let key = ObjectKey::group(id, &obj.spec.display_name);
        records.set_remote_id(&key, &owner, &group_id).await.map_err(|e| {
            ReconcileError::Invalid(format!("recording the id of group {} on {id}: {e}", obj.spec.display_name))
        })?;
    }
    if let Some(old) = &held.renamed_from {
        records.release(old, &owner).await.map_err(|e| ReconcileError::Invalid(e.to_string()))?;
    }
    let count = match &held.group {
        Some(g) if !authoritative => g.members.union(&members.ids).count(),
        _ => members.ids.len(),
    };
    let note = match (&held.group, held.linked) {
        (None, _) => Some(("Created", format!("created group {group_id} on target {id}"))),
        (Some(_), true) => Some(("Linked", format!("linked the existing group {group_id} on target {id}"))),
        (Some(_), false) if !plan.operations.is_empty() => {
            Some(("MembersChanged", format!("changed group {group_id} on target {id}")))
        }
        _ => None,
    };
    let wrote = !plan.operations.is_empty();
    let outcome = if !members.refused.is_empty() {
        Outcome {
            wrote,
            ..Outcome::failed(
                id,
                Some(group_id),
                reason::MEMBER_NOT_ALLOWED,
                format!(
                    "only users nobody owns or owned by a namespace target {id} trusts are added by userName; left \
                     out: {}",
                    members.refused.join(", ")
                ),
            )
        }
    } else if !members.pending.is_empty() {
        Outcome {
            wrote,
            ..Outcome::failed(
                id,
                Some(group_id),
                reason::MEMBERS_PENDING,
                format!("waiting for members to be provisioned on target {id}: {}", members.pending.join(", ")),
            )
        }
    } else {
        Outcome::synced(
            id,
            Some(group_id.clone()),
            format!("provisioned as group {group_id} with {count} members"),
            wrote,
        )
    };
    Ok(Synced { outcome, count: Some(count), pending: members.pending, note })
}

/// Applies the deletion policy to the group `record` says this resource owns (the resource is
/// going, or no longer names that target), then releases the record. With `touch: false` (the
/// release annotation) the target is left as it is. A target that is gone has nothing left to
/// change. `Err` carries what to report and retry.
pub async fn remove(
    ctx: &Context,
    obj: &ManagedTeam,
    record: &Record,
    touch: bool,
) -> Result<Option<String>, RemoveError> {
    let target = &record.object.target;
    let mut note = None;
    if touch && obj.spec.deletion_policy == TeamDeletionPolicy::Unlink {
        match ctx.targets.reach(target).await.map_err(RemoveError::Kube)? {
            None | Some(Endpoint::Default) => {}
            Some(Endpoint::NotReady(m)) => return Err(RemoveError::Target(format!("target {target}: {m}"))),
            Some(Endpoint::Remote(remote)) => {
                let hide =
                    |e: &ClientError| RemoveError::Target(format!("target {target}: {}", remote.hide(&e.to_string())));
                let client = &remote.client;
                let group = match &record.remote_id {
                    Some(id) => group_by_id(client, id).await.map_err(|e| hide(&e))?,
                    None => client.fetch_group(&record.object.key).await.map_err(|e| hide(&e))?,
                };
                if let Some(group) = group {
                    let caps = client.capabilities();
                    let t = plan::Target::new(client.dialect(), &caps, remote.max_member_operations);
                    let plan = plan::group_removal(t, GroupRemoval::Unlink, &group);
                    match client.execute(&plan).await {
                        Ok(_) | Err(ClientError::NotFound) => {}
                        Err(e) => return Err(hide(&e)),
                    }
                    note = Some(format!("unlinked group {} on target {target}", group.id));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_write_the_group_on_a_target() {
        use Recorded::*;
        use Refusal::*;
        // (recorded, on target, linkExisting, trusted) -> step
        let cases = [
            (Nobody, false, false, false, Step::Claim(Origin::Created)),
            (Nobody, false, true, true, Step::Claim(Origin::Created)),
            // A group made on the target by someone else: never touched without a trusted link.
            (Nobody, true, false, false, Step::Refuse(NotTakenOver)),
            (Nobody, true, false, true, Step::Refuse(NotTakenOver)),
            (Nobody, true, true, false, Step::Refuse(TakeOverNotAllowed)),
            (Nobody, true, true, true, Step::Claim(Origin::Adopted)),
            (ThisResource, true, false, false, Step::Ours),
            (ThisResource, false, false, false, Step::Ours),
            // Another resource won the name: Conflict, whatever this one asks.
            (Another, true, true, true, Step::Refuse(OwnedByAnotherResource)),
            (Another, false, false, false, Step::Refuse(OwnedByAnotherResource)),
        ];
        for (recorded, on_target, link, trusted, want) in cases {
            assert_eq!(
                ownership_step(recorded, on_target, link, trusted),
                want,
                "{recorded:?} on_target={on_target} link={link} trusted={trusted}"
            );
        }
        let (r, m) = refusal(TakeOverNotAllowed, "SRE", "dev", "ClusterScimTarget/kc");
        assert_eq!(r, reason::LINK_NOT_ALLOWED);
        assert!(m.contains("ClusterScimTarget/kc") && m.contains("dev"), "{m}");
        assert_eq!(refusal(NotTakenOver, "SRE", "dev", "t").0, reason::CONFLICT);
    }

    #[test]
    fn a_member_counts_by_its_own_record_on_the_target() {
        let m = |record: Option<(&str, Option<&str>)>| MemberRecord {
            name: "ada".into(),
            uid: "u-1".into(),
            record: record.map(|(o, id)| (o.to_string(), id.map(str::to_string))),
        };
        // (record: owner uid, remote id) -> member id
        let cases = [
            (Some(("u-1", Some("kc-9"))), Some("kc-9")),
            // claimed, not created yet: pending
            (Some(("u-1", None)), None),
            // the userName is another resource's there (e.g. another namespace won it)
            (Some(("u-2", Some("kc-7"))), None),
            // not provisioned there (yet)
            (None, None),
        ];
        for (record, want) in cases {
            let member = m(record);
            assert_eq!(member_id(&member), want, "{record:?}");
        }
    }
}
