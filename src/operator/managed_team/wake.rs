//! Which ManagedTeams a ScimUser change wakes, on whichever target they name: read from the
//! reflector stores only (the mapper of a watch runs for every ScimUser event, and makes no API
//! call).

use kube::Resource;

use super::super::crd::{ManagedTeam, effective_targets};
use super::super::user_cache::CachedUser;
use super::may_reference;

/// Whether a change of `user` may concern `team`: [`may_reference`], with the trust that lets a
/// team add users of other namespaces by userName taken from the targets the team names.
///
/// - On the default target that trust is `--trusted-namespaces` (`default_trusted`), and counts
///   only when the team names the default target.
/// - A target other than the default says in its own spec which namespaces it trusts, which
///   the mapper cannot read without an API call. When the user is on a target the team names
///   (its status lists it), trust is assumed: at worst a team that may not add that user by
///   userName reconciles once more and changes nothing, where without it a team the target
///   trusts would wait for its resync to catch up.
///
/// Members by reference and by selector are of the team's own namespace and need no trust.
pub fn wakes(team: &ManagedTeam, default_trusted: bool, user: &CachedUser) -> bool {
    // ManagedTeams are namespaced: one without a namespace names nobody (and never reconciles).
    let Some(ns) = team.meta().namespace.as_deref() else { return false };
    let targets = effective_targets(&team.spec.targets);
    let trusted = targets.iter().any(|t| {
        if t.is_default() {
            default_trusted
        } else {
            let id = t.id(ns);
            user.targets.iter().any(|on| on.target == id)
        }
    });
    may_reference(team, trusted, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::ScimUser;
    use crate::operator::user_cache;
    use serde_json::json;

    fn team(targets: serde_json::Value) -> ManagedTeam {
        serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
            "metadata": {"name": "sre", "namespace": "platform"},
            "spec": {"displayName": "SRE", "members": [{"userName": "zed@x.test"}, {"scimUserRef": "ada"}],
                "targets": targets}}))
        .expect("a ManagedTeam")
    }

    /// A ScimUser of `ns` whose status lists `on` as its targets.
    fn user(ns: &str, name: &str, user_name: &str, on: &[&str]) -> CachedUser {
        let targets: Vec<_> = on.iter().map(|t| json!({"target": t, "remoteId": "r-1", "ready": true})).collect();
        let u: ScimUser = serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser",
            "metadata": {"name": name, "namespace": ns}, "spec": {"userName": user_name},
            "status": {"targets": targets}}))
        .expect("a ScimUser");
        user_cache::of(&u)
    }

    #[test]
    fn a_user_change_wakes_the_teams_of_every_target_it_is_on() {
        let default_only = team(json!([]));
        let named_default = team(json!([{"name": "default"}]));
        let scim2 = team(json!([{"name": "scim2"}]));
        let both = team(json!([{"name": "default"}, {"name": "scim2"}]));
        let own = team(json!([{"kind": "ScimTarget", "name": "grafana"}]));
        let zed_on = |on: &[&str]| user("dev", "zed", "ZED@x.test", on);
        let cases = [
            // (team, default trusted, user) -> woken
            // The default target: its trust list decides, as before.
            (&default_only, true, zed_on(&[]), true),
            (&default_only, false, zed_on(&[]), false),
            (&named_default, true, zed_on(&[]), true),
            // The gap this closes: a team on another target the user is on.
            (&scim2, false, zed_on(&["ClusterScimTarget/scim2"]), true),
            (&both, false, zed_on(&["ClusterScimTarget/scim2"]), true),
            (&own, false, zed_on(&["ScimTarget/platform/grafana"]), true),
            // Not on a target the team names: nothing to catch up on there.
            (&scim2, false, zed_on(&[]), false),
            (&scim2, false, zed_on(&["ClusterScimTarget/keycloak"]), false),
            (&own, false, zed_on(&["ScimTarget/dev/grafana"]), false),
            // The default's trust does not carry over to a team that does not name it.
            (&scim2, true, zed_on(&[]), false),
            // Another userName: never.
            (&scim2, true, user("dev", "amy", "amy@x.test", &["ClusterScimTarget/scim2"]), false),
            // A reference names a ScimUser of the team's namespace, trusted or not.
            (&scim2, false, user("platform", "ada", "ada@x.test", &[]), true),
            (&scim2, false, user("dev", "ada", "ada@x.test", &["ClusterScimTarget/scim2"]), false),
        ];
        for (i, (team, default_trusted, user, want)) in cases.into_iter().enumerate() {
            assert_eq!(wakes(team, default_trusted, &user), want, "case {i}: {:?} {user:?}", team.spec.targets);
        }
        let mut nowhere = scim2.clone();
        nowhere.metadata.namespace = None;
        assert!(!wakes(&nowhere, true, &zed_on(&["ClusterScimTarget/scim2"])), "a team without a namespace");
    }
}
