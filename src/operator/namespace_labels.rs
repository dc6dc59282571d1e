//! Namespace labels as ClusterScimTargets' selectors read them (`spec.namespaces.allowed` and
//! `.trusted`): a change of a namespace's labels reconciles at once the ScimUsers and
//! ManagedTeams of that namespace that name a target on which the change moves the namespace's
//! standing (who may use the target, who is trusted there), instead of at their next resync.
//!
//! `ClusterScimTarget/default` is never among them: its trust is `--trusted-namespaces`, not
//! labels, and no object of that name is read for it. The namespaces' labels come from the
//! operator's metadata-only watch of Namespaces (see [`super::targets::TargetStores`]).

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use super::LastSeen;
use super::crd::{ClusterScimTarget, ManagedTeam, Standing, TargetRef, TargetRefKind, effective_targets};
use super::user_cache::CachedUser;

type Labels = BTreeMap<String, String>;

/// The ids (`ClusterScimTarget/<name>`) of the targets among `targets` on which `namespace`
/// stands otherwise with labels `after` than with `before` (a selector that cannot be read
/// stands nobody, as [`super::targets::standing`] judges it). The default target is left out.
pub fn targets_changed(
    namespace: &str,
    before: &Labels,
    after: &Labels,
    targets: &[impl Borrow<ClusterScimTarget>],
) -> BTreeSet<String> {
    let default = TargetRef::default_target();
    let standing =
        |t: &ClusterScimTarget, l: &Labels| t.spec.namespaces.standing(namespace, l).unwrap_or(Standing::NotAllowed);
    targets
        .iter()
        .map(Borrow::borrow)
        .filter(|t: &&ClusterScimTarget| t.name_any() != default.name)
        .filter(|t| standing(t, before) != standing(t, after))
        .map(|t| TargetRef { kind: TargetRefKind::ClusterScimTarget, name: t.name_any(), namespace: None }.id(""))
        .collect()
}

/// The ScimUsers of `namespace` whose status names one of the `changed` targets (a user refused
/// there has an entry saying so, and one not reconciled yet will be anyway).
pub fn users_concerned<'a>(
    namespace: &str,
    changed: &BTreeSet<String>,
    users: &'a [impl Borrow<CachedUser>],
) -> Vec<&'a CachedUser> {
    users
        .iter()
        .map(Borrow::borrow)
        .filter(|u: &&CachedUser| u.namespace().as_deref() == Some(namespace))
        .filter(|u| u.targets.iter().any(|f| changed.contains(&f.target)))
        .collect()
}

/// The ManagedTeams of `namespace` whose spec names one of the `changed` targets.
pub fn teams_concerned<'a>(
    namespace: &str,
    changed: &BTreeSet<String>,
    teams: &'a [impl Borrow<ManagedTeam>],
) -> Vec<&'a ManagedTeam> {
    teams
        .iter()
        .map(Borrow::borrow)
        .filter(|t: &&ManagedTeam| t.namespace().as_deref() == Some(namespace))
        .filter(|t| effective_targets(&t.spec.targets).iter().any(|r| changed.contains(&r.id(namespace))))
        .collect()
}

/// The labels of each namespace when last seen, to tell a change of labels from the namespace's
/// other updates (and from the watch's relists). One per subscriber of the namespace watch.
pub struct LabelChanges {
    clusters: Store<ClusterScimTarget>,
    seen: LastSeen<PartialObjectMeta<Namespace>, Labels>,
}

impl LabelChanges {
    pub fn new(clusters: Store<ClusterScimTarget>, namespaces: Store<PartialObjectMeta<Namespace>>) -> Self {
        Self { clusters, seen: LastSeen::new(namespaces) }
    }

    /// The namespace `ns` as the watch delivers it: its name and the targets on which its
    /// standing changed since it was last seen (none the first time: the resources of a
    /// namespace just listed or made are reconciled on their own).
    pub fn of(&self, ns: &PartialObjectMeta<Namespace>) -> (String, BTreeSet<String>) {
        let name = ns.name_any();
        let after = ns.metadata.labels.clone().unwrap_or_default();
        let changed = match self.seen.swap(ns, after.clone()) {
            Some(before) if before != after => targets_changed(&name, &before, &after, &self.clusters.state()),
            _ => BTreeSet::new(),
        };
        (name, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cst(name: &str, namespaces: serde_json::Value) -> ClusterScimTarget {
        serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ClusterScimTarget",
            "metadata": {"name": name},
            "spec": {"baseUrl": "https://scim.example/scim/v2", "credentials": {"bearerToken": {"name": "s", "key": "k"}},
                "namespaces": namespaces}}))
        .expect("a ClusterScimTarget")
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_label_change_concerns_the_targets_whose_selectors_it_moves() {
        let by_label = |key: &str| json!({"matchLabels": {key: "yes"}});
        let targets = vec![
            // allows by label, trusts by another
            cst("kc", json!({"allowed": {"selector": by_label("allow")}, "trusted": {"selector": by_label("trust")}})),
            // names only: labels never matter
            cst("names", json!({"allowed": {"names": ["team-a"]}, "trusted": {"names": ["team-a"]}})),
            // the operator's own server: its trust is not label based
            cst("default", json!({"allowed": {"selector": by_label("allow")}})),
            // a selector that cannot be read stands nobody, before and after
            cst(
                "bad",
                json!({"allowed": {"selector": {"matchExpressions": [{"key": "allow", "operator": "Nonsense"}]}}}),
            ),
        ];
        let rows: &[(&str, Labels, Labels, &[&str])] = &[
            ("no change", labels(&[("allow", "yes")]), labels(&[("allow", "yes")]), &[]),
            ("allowed by label", labels(&[]), labels(&[("allow", "yes")]), &["ClusterScimTarget/kc"]),
            ("no longer allowed", labels(&[("allow", "yes")]), labels(&[]), &["ClusterScimTarget/kc"]),
            (
                "trusted by label",
                labels(&[("allow", "yes")]),
                labels(&[("allow", "yes"), ("trust", "yes")]),
                &["ClusterScimTarget/kc"],
            ),
            // Trusted but not allowed stands NotAllowed either way.
            ("trust label without allow", labels(&[]), labels(&[("trust", "yes")]), &[]),
            ("a label no selector reads", labels(&[]), labels(&[("team", "sre")]), &[]),
        ];
        for (what, before, after, want) in rows {
            assert_eq!(targets_changed("team-b", before, after, &targets), ids(want), "{what}");
        }
    }

    #[test]
    fn the_resources_of_the_namespace_naming_a_changed_target_are_concerned() {
        let user = |ns: &str, name: &str, targets: &[&str]| -> CachedUser {
            let entries: Vec<_> = targets.iter().map(|t| json!({"target": t, "ready": false})).collect();
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
                "spec": {"userName": format!("{name}@x.test")}, "status": {"targets": entries}}))
            .expect("a cached user")
        };
        let team = |ns: &str, name: &str, targets: serde_json::Value| -> ManagedTeam {
            serde_json::from_value(json!({"apiVersion": "scim.dev/v1alpha1", "kind": "ManagedTeam",
                "metadata": {"name": name, "namespace": ns}, "spec": {"displayName": name, "targets": targets}}))
            .expect("a ManagedTeam")
        };
        let changed = ids(&["ClusterScimTarget/kc"]);
        let users = vec![
            user("team-b", "on-kc", &["ClusterScimTarget/default", "ClusterScimTarget/kc"]),
            user("team-b", "default-only", &["ClusterScimTarget/default"]),
            user("team-b", "elsewhere", &["ClusterScimTarget/other", "ScimTarget/team-b/kc"]),
            user("team-c", "other-namespace", &["ClusterScimTarget/kc"]),
            user("team-b", "not-reconciled-yet", &[]),
        ];
        let got: Vec<String> = users_concerned("team-b", &changed, &users).iter().map(|u| u.name_any()).collect();
        assert_eq!(got, ["on-kc"]);
        let teams = vec![
            team("team-b", "on-kc", json!([{"name": "default"}, {"name": "kc"}])),
            team("team-b", "default-only", json!([])),
            team("team-b", "own-scim-target", json!([{"kind": "ScimTarget", "name": "kc"}])),
            team("team-c", "other-namespace", json!([{"name": "kc"}])),
        ];
        let got: Vec<String> = teams_concerned("team-b", &changed, &teams).iter().map(|t| t.name_any()).collect();
        assert_eq!(got, ["on-kc"]);
        assert!(users_concerned("team-b", &BTreeSet::new(), &users).is_empty(), "nothing changed: nobody");
    }

    #[test]
    fn only_a_change_of_labels_since_last_seen_counts() {
        use kube::runtime::{reflector, watcher};
        let (clusters, mut cw) = reflector::store::<ClusterScimTarget>();
        cw.apply_watcher_event(&watcher::Event::Apply(cst(
            "kc",
            json!({"allowed": {"selector": {"matchLabels": {"allow": "yes"}}}}),
        )));
        let (namespaces, _nw) = reflector::store::<PartialObjectMeta<Namespace>>();
        let changes = LabelChanges::new(clusters, namespaces);
        let ns = |l: &[(&str, &str)]| {
            let mut n = PartialObjectMeta::<Namespace>::default();
            n.metadata.name = Some("team-b".into());
            n.metadata.labels = Some(labels(l));
            n
        };
        assert_eq!(changes.of(&ns(&[])), ("team-b".into(), ids(&[])), "first seen: nothing");
        assert_eq!(changes.of(&ns(&[])), ("team-b".into(), ids(&[])), "seen again unchanged (a relist)");
        assert_eq!(changes.of(&ns(&[("allow", "yes")])).1, ids(&["ClusterScimTarget/kc"]), "labelled");
        assert_eq!(changes.of(&ns(&[("allow", "yes"), ("x", "y")])).1, ids(&[]), "a label no selector reads");
        assert_eq!(changes.of(&ns(&[])).1, ids(&["ClusterScimTarget/kc"]), "unlabelled");
    }
}
