//! Status conditions, Kubernetes style: stable types and reasons, `lastTransitionTime` kept
//! while the status does not change, and comparison without timestamps before writing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The resource is in the state its spec asks for.
pub const READY: &str = "Ready";
/// Explicit roles of a ScimUser may be sent (its namespace is trusted).
pub const ROLES_ALLOWED: &str = "RolesAllowed";

/// Reasons (stable; tools match on them).
pub mod reason {
    pub const PROVISIONED: &str = "Provisioned";
    pub const CONFLICT: &str = "Conflict";
    pub const SCIM_UNAVAILABLE: &str = "ScimUnavailable";
    pub const UNAUTHORIZED: &str = "Unauthorized";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const REJECTED: &str = "RejectedByServer";
    pub const MEMBERS_PENDING: &str = "MembersPending";
    pub const ROLES_NOT_ALLOWED: &str = "RolesNotAllowed";
    pub const ROLES_ALLOWED: &str = "TrustedNamespace";
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

/// Merges `desired` into `current`: a condition whose status is unchanged keeps its
/// `lastTransitionTime`; conditions of other types are dropped unless listed.
pub fn merge(current: &[Condition], desired: &[Desired], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    desired
        .iter()
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
    fn comparison_ignores_timestamps_only() {
        let a = merge(&[], &[Desired::ready("ok")], Some(1), &t(1));
        let b = merge(&[], &[Desired::ready("ok")], Some(1), &t(5));
        assert!(same(&a, &b));
        let c = merge(&[], &[Desired::ready("other")], Some(1), &t(1));
        assert!(!same(&a, &c));
    }
}
