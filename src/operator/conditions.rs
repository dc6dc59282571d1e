//! Status conditions, Kubernetes style: stable types and reasons, `lastTransitionTime` kept
//! while the status does not change, and comparison without timestamps before writing.
//!
//! Beside `Ready` and the specific conditions, every status carries the two conditions that
//! kstatus (Flux, Argo CD, `kubectl wait`, cli-utils) reads: `Reconciling` while work is in
//! flight or retried, `Stalled` while a refusal stands that only a change of the spec or of the
//! trust configuration can end. Both are derived here from the reasons of the other conditions,
//! so no controller decides them on its own.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The resource is in the state its spec asks for.
pub const READY: &str = "Ready";
/// Explicit roles of a ScimUser may be sent (its namespace is trusted).
pub const ROLES_ALLOWED: &str = "RolesAllowed";
/// kstatus: the operator is still working towards the spec (a retry is scheduled).
pub const RECONCILING: &str = "Reconciling";
/// kstatus: the operator cannot make progress until the spec or the trust configuration changes.
pub const STALLED: &str = "Stalled";
/// A target's base URL answers as a SCIM server.
pub const REACHABLE: &str = "Reachable";
/// A target accepts the operator's credentials (an authenticated query succeeded).
pub const CREDENTIALS_VALID: &str = "CredentialsValid";

/// Reasons (stable; tools match on them).
pub mod reason {
    /// The server holds what the spec asks for.
    pub const PROVISIONED: &str = "Provisioned";
    /// The server object belongs to someone else (another resource, an identity provider, an
    /// administrator) and this resource did not (or may not) take it over: nothing was written.
    pub const CONFLICT: &str = "Conflict";
    /// `adopt: true` outside a trusted namespace: nothing was written.
    pub const ADOPTION_NOT_ALLOWED: &str = "AdoptionNotAllowed";
    /// `linkExisting: true` outside a trusted namespace: nothing was written.
    pub const LINK_NOT_ALLOWED: &str = "LinkNotAllowed";
    /// A team of an untrusted namespace whose name a RoleMapping names: nothing was written.
    pub const ROLE_MAPPED_TEAM: &str = "RoleMappedTeamNotAllowed";
    /// A member an untrusted namespace does not own: nothing was written.
    pub const MEMBER_NOT_ALLOWED: &str = "MemberNotAllowed";
    /// The server is down, overloaded or answered something unexpected; retried with backoff.
    pub const SCIM_UNAVAILABLE: &str = "ScimUnavailable";
    /// The object changed on the server between reading and writing it; retried.
    pub const SERVER_CHANGED: &str = "ServerChanged";
    /// The operator's key was refused.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// The spec is invalid (see the message); nothing was sent.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The server refused the request as invalid (400/413: e.g. an unknown role).
    pub const REJECTED: &str = "RejectedByServer";
    /// Some members are not provisioned yet.
    pub const MEMBERS_PENDING: &str = "MembersPending";
    /// Explicit roles outside a trusted namespace: none sent.
    pub const ROLES_NOT_ALLOWED: &str = "RolesNotAllowed";
    /// Explicit roles in a trusted namespace: sent.
    pub const ROLES_ALLOWED: &str = "TrustedNamespace";
    /// `Reconciling=False`: no retry is pending.
    pub const NOT_RECONCILING: &str = "Settled";
    /// `Stalled=False`: no refusal stands.
    pub const NOT_STALLED: &str = "Progressing";

    // ---- resources naming their targets (spec.targets)
    /// A named target does not exist (yet): nothing was written anywhere; checked again.
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    /// The namespace may not use a named target (a ClusterScimTarget that does not allow it, a
    /// ScimTarget of another namespace): nothing was written anywhere.
    pub const TARGET_NOT_ALLOWED: &str = "TargetNotAllowed";
    /// The target may be used but cannot be spoken to now (its Secret is missing, its spec is
    /// refused): only its entry fails; checked again.
    pub const TARGET_NOT_READY: &str = "TargetNotReady";
    /// Roles are declared and the target keeps none: none were sent there.
    pub const ROLES_UNSUPPORTED: &str = "RolesUnsupported";
    /// The sync on a target has started and not ended yet (each target is synced apart, so a
    /// slow one does not hold back the others).
    pub const SYNCING: &str = "Syncing";
    /// The operator could not read or write its ownership record of the object on a target
    /// (the Kubernetes API failed): nothing more was done there; retried.
    pub const RECORD_FAILED: &str = "OwnershipRecordFailed";

    // ---- SCIM targets (ScimTarget, ClusterScimTarget)
    /// The target answers and accepts the credentials.
    pub const CONNECTED: &str = "Connected";
    /// `Reachable=True`: the base URL answered as a SCIM server.
    pub const ANSWERED: &str = "Answered";
    /// `CredentialsValid=True`: an authenticated query succeeded.
    pub const ACCEPTED: &str = "Accepted";
    /// The target (or its token endpoint) refused the credentials (401/403): fix the Secret;
    /// the operator sees the change and checks again.
    pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
    /// A credentials reference names a Secret outside the namespace the target may read:
    /// nothing was read and no request was sent.
    pub const SECRET_NOT_ALLOWED: &str = "SecretNotAllowed";
    /// A referenced Secret or key does not exist (yet): checked again when it appears.
    pub const SECRET_MISSING: &str = "SecretMissing";
}

/// What a reason says about progress, for the kstatus conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing left to do.
    Done,
    /// Retried by the operator; ends by itself (server back, key rotated, member provisioned).
    Retrying,
    /// A refusal that only a change of the spec or of the trust configuration ends.
    Stalled,
}

/// The constant of a reason a target's status entry carries (written by an earlier reconcile,
/// or an earlier release: `None` for one this release does not know).
pub fn entry_reason(written: &str) -> Option<&'static str> {
    use reason::*;
    [
        PROVISIONED,
        CONFLICT,
        ADOPTION_NOT_ALLOWED,
        LINK_NOT_ALLOWED,
        ROLE_MAPPED_TEAM,
        MEMBER_NOT_ALLOWED,
        SCIM_UNAVAILABLE,
        SERVER_CHANGED,
        UNAUTHORIZED,
        INVALID_SPEC,
        REJECTED,
        MEMBERS_PENDING,
        TARGET_NOT_FOUND,
        TARGET_NOT_ALLOWED,
        TARGET_NOT_READY,
        ROLES_UNSUPPORTED,
        SYNCING,
        RECORD_FAILED,
    ]
    .into_iter()
    .find(|r| *r == written)
}

/// The one place that classifies reasons. A reason not listed counts as [`Progress::Retrying`],
/// so a new transient reason cannot make GitOps tools give up.
pub fn progress(reason: &str) -> Progress {
    match reason {
        reason::PROVISIONED | reason::ROLES_ALLOWED | reason::CONNECTED | reason::ANSWERED | reason::ACCEPTED => {
            Progress::Done
        }
        reason::CONFLICT
        | reason::ADOPTION_NOT_ALLOWED
        | reason::LINK_NOT_ALLOWED
        | reason::ROLE_MAPPED_TEAM
        | reason::MEMBER_NOT_ALLOWED
        | reason::INVALID_SPEC
        | reason::REJECTED
        | reason::ROLES_NOT_ALLOWED
        | reason::TARGET_NOT_ALLOWED
        | reason::ROLES_UNSUPPORTED
        | reason::SECRET_NOT_ALLOWED => Progress::Stalled,
        _ => Progress::Retrying,
    }
}

/// The `Reconciling` and `Stalled` conditions that `desired` implies: `Stalled` when any
/// condition that is not True carries a stalled reason, `Reconciling` when any carries a
/// retried one and nothing is stalled (kstatus reads a stalled resource as failed, whatever
/// else is in flight).
pub fn kstatus(desired: &[Desired]) -> [Desired; 2] {
    let not_true = || desired.iter().filter(|d| !d.status);
    let stalled: Vec<&Desired> = not_true().filter(|d| progress(d.reason) == Progress::Stalled).collect();
    let retrying: Vec<&Desired> = not_true().filter(|d| progress(d.reason) == Progress::Retrying).collect();
    let summary =
        |ds: &[&Desired]| ds.iter().map(|d| format!("{}: {}", d.type_, d.message)).collect::<Vec<_>>().join("; ");
    let stalled_condition = match stalled.first() {
        Some(first) => Desired { type_: STALLED, status: true, reason: first.reason, message: summary(&stalled) },
        None => Desired { type_: STALLED, status: false, reason: reason::NOT_STALLED, message: String::new() },
    };
    let reconciling_condition = match retrying.first() {
        Some(first) if stalled.is_empty() => {
            Desired { type_: RECONCILING, status: true, reason: first.reason, message: summary(&retrying) }
        }
        _ => Desired { type_: RECONCILING, status: false, reason: reason::NOT_RECONCILING, message: String::new() },
    };
    [reconciling_condition, stalled_condition]
}

/// How a failed SCIM request is reported and retried: one place for every controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The Ready reason.
    pub reason: &'static str,
    /// What the server asked for (Retry-After), if anything.
    pub retry_after: Option<std::time::Duration>,
}

/// The condition reason and retry hint of a client error.
pub fn failure(e: &crate::client::ClientError) -> Failure {
    use crate::client::ClientError as E;
    let (reason, retry_after) = match e {
        E::Unavailable { retry_after, .. } => (reason::SCIM_UNAVAILABLE, *retry_after),
        E::Unauthorized(_) => (reason::UNAUTHORIZED, None),
        E::BadRequest { .. } => (reason::REJECTED, None),
        E::Conflict(_) => (reason::CONFLICT, None),
        E::Changed(_) => (reason::SERVER_CHANGED, None),
        E::NotFound | E::Other(_) => (reason::SCIM_UNAVAILABLE, None),
    };
    Failure { reason, retry_after }
}

/// A condition to set: type, status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Desired {
    /// Ready=True.
    pub fn ready(message: impl Into<String>) -> Self {
        Self { type_: READY, status: true, reason: reason::PROVISIONED, message: message.into() }
    }
    /// Ready=False for `reason`.
    pub fn not_ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_: READY, status: false, reason, message: message.into() }
    }
}

/// Merges `desired`, with the kstatus conditions it implies, into `current`: a condition whose
/// status is unchanged keeps its `lastTransitionTime`; conditions of other types are dropped.
pub fn merge(current: &[Condition], desired: &[Desired], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    desired
        .iter()
        .chain(kstatus(desired).iter())
        .map(|d| {
            let status = if d.status { "True" } else { "False" }.to_string();
            let previous = current.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == status => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_string(),
                status,
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether two condition lists say the same, ignoring `lastTransitionTime`.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

/// The reason of the Ready condition, if any.
pub fn ready_reason(conditions: &[Condition]) -> Option<&str> {
    conditions.iter().find(|c| c.type_ == READY).map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn t(h: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_767_225_600 + h * 3600).unwrap())
    }

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let first = merge(&[], &[Desired::ready("ok")], Some(1), &t(1));
        assert_eq!(first[0].last_transition_time, t(1));
        let again = merge(&first, &[Desired::ready("ok, still")], Some(2), &t(2));
        assert_eq!(again[0].last_transition_time, t(1), "same status keeps its transition time");
        assert_eq!(again[0].observed_generation, Some(2));
        let down = merge(&again, &[Desired::not_ready(reason::SCIM_UNAVAILABLE, "down")], Some(2), &t(3));
        assert_eq!(down[0].last_transition_time, t(3));
        assert_eq!(down[0].status, "False");
        assert_eq!(ready_reason(&down), Some("ScimUnavailable"));
    }

    #[test]
    fn every_error_class_has_one_reason() {
        use crate::client::ClientError as E;
        let wait = Some(std::time::Duration::from_secs(9));
        let bad = E::BadRequest { scim_type: None, detail: "unknown role".into() };
        assert_eq!(failure(&bad), Failure { reason: reason::REJECTED, retry_after: None });
        let busy = E::Unavailable { message: "429".into(), retry_after: wait };
        assert_eq!(failure(&busy), Failure { reason: reason::SCIM_UNAVAILABLE, retry_after: wait });
        assert_eq!(failure(&E::Unauthorized("401".into())).reason, reason::UNAUTHORIZED);
        assert_eq!(failure(&E::Changed("412".into())).reason, reason::SERVER_CHANGED);
        assert_eq!(failure(&E::Conflict("409".into())).reason, reason::CONFLICT);
    }

    #[test]
    fn every_reason_has_its_progress() {
        use Progress::*;
        let table = [
            (reason::PROVISIONED, Done),
            (reason::ROLES_ALLOWED, Done),
            (reason::CONFLICT, Stalled),
            (reason::ADOPTION_NOT_ALLOWED, Stalled),
            (reason::LINK_NOT_ALLOWED, Stalled),
            (reason::ROLE_MAPPED_TEAM, Stalled),
            (reason::MEMBER_NOT_ALLOWED, Stalled),
            (reason::INVALID_SPEC, Stalled),
            (reason::REJECTED, Stalled),
            (reason::ROLES_NOT_ALLOWED, Stalled),
            (reason::SCIM_UNAVAILABLE, Retrying),
            (reason::SERVER_CHANGED, Retrying),
            (reason::UNAUTHORIZED, Retrying),
            (reason::MEMBERS_PENDING, Retrying),
            (reason::CONNECTED, Done),
            (reason::ANSWERED, Done),
            (reason::ACCEPTED, Done),
            (reason::SECRET_NOT_ALLOWED, Stalled),
            (reason::SECRET_MISSING, Retrying),
            (reason::CREDENTIALS_REJECTED, Retrying),
            (reason::TARGET_NOT_FOUND, Retrying),
            (reason::TARGET_NOT_ALLOWED, Stalled),
            (reason::TARGET_NOT_READY, Retrying),
            (reason::ROLES_UNSUPPORTED, Stalled),
            ("SomeReasonAddedLater", Retrying),
        ];
        for (r, want) in table {
            assert_eq!(progress(r), want, "{r}");
        }
    }

    /// A condition as type, status and reason.
    type Brief = (&'static str, bool, &'static str);

    fn kstatus_of(desired: &[Desired]) -> Vec<Brief> {
        kstatus(desired).iter().map(|d| (d.type_, d.status, d.reason)).collect()
    }

    #[test]
    fn kstatus_conditions_follow_the_reasons() {
        let roles_refused = Desired {
            type_: ROLES_ALLOWED,
            status: false,
            reason: reason::ROLES_NOT_ALLOWED,
            message: "namespace dev is not trusted".into(),
        };
        let roles_sent =
            Desired { type_: ROLES_ALLOWED, status: true, reason: reason::ROLES_ALLOWED, message: String::new() };
        let settled = (RECONCILING, false, reason::NOT_RECONCILING);
        let progressing = (STALLED, false, reason::NOT_STALLED);
        let cases: Vec<(Vec<Desired>, Vec<Brief>)> = vec![
            (vec![Desired::ready("ok")], vec![settled, progressing]),
            (vec![Desired::ready("ok"), roles_sent.clone()], vec![settled, progressing]),
            (
                vec![Desired::not_ready(reason::SCIM_UNAVAILABLE, "503")],
                vec![(RECONCILING, true, reason::SCIM_UNAVAILABLE), progressing],
            ),
            (
                vec![Desired::not_ready(reason::CONFLICT, "owned by dev/alice")],
                vec![settled, (STALLED, true, reason::CONFLICT)],
            ),
            // Ready, but the roles asked for are refused: only a trust change ends that.
            (
                vec![Desired::ready("ok"), roles_refused.clone()],
                vec![settled, (STALLED, true, reason::ROLES_NOT_ALLOWED)],
            ),
            // A retry in flight does not hide a standing refusal.
            (
                vec![Desired::not_ready(reason::SCIM_UNAVAILABLE, "503"), roles_refused],
                vec![settled, (STALLED, true, reason::ROLES_NOT_ALLOWED)],
            ),
        ];
        for (desired, want) in cases {
            assert_eq!(kstatus_of(&desired), want, "{desired:?}");
        }
    }

    #[test]
    fn merge_writes_the_kstatus_conditions() {
        let merged = merge(&[], &[Desired::not_ready(reason::INVALID_SPEC, "bad e-mail")], Some(3), &t(1));
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING, STALLED]);
        let stalled = &merged[2];
        assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", reason::INVALID_SPEC));
        assert_eq!(stalled.message, "Ready: bad e-mail");
        assert_eq!(stalled.observed_generation, Some(3));
    }

    #[test]
    fn comparison_ignores_timestamps_only() {
        let a = merge(&[], &[Desired::ready("ok")], Some(1), &t(1));
        let b = merge(&[], &[Desired::ready("ok")], Some(1), &t(5));
        assert!(same(&a, &b));
        let c = merge(&[], &[Desired::ready("other")], Some(1), &t(1));
        assert!(!same(&a, &c));
    }
}
