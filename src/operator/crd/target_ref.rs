//! How a `ScimUser` or `ManagedTeam` names the targets it provisions into (`spec.targets`),
//! and how its status reports each of them (`status.targets`, `status.targetsReady`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the `ClusterScimTarget` that stands for the operator's own server (`--scim-url`).
pub const DEFAULT_TARGET: &str = "default";

/// Targets a resource may name at most.
pub const MAX_TARGETS: usize = 16;

/// The kind of a target reference.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum TargetRefKind {
    /// A cluster-scoped target, usable from the namespaces its `spec.namespaces` allows.
    #[default]
    ClusterScimTarget,
    /// A target of the resource's own namespace (one of another namespace is refused).
    ScimTarget,
}

/// A target a resource provisions into.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// `ClusterScimTarget` (default) or `ScimTarget` (of this resource's namespace).
    #[serde(default)]
    pub kind: TargetRefKind,
    /// Name of the target. `ClusterScimTarget` `default` is the operator's own server.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of a `ScimTarget`; may be left out (this resource's namespace). A
    /// `ScimTarget` serves only resources of its own namespace: naming one of another
    /// namespace is refused with `TargetNotAllowed` and nothing is written anywhere. Not set
    /// for a `ClusterScimTarget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl TargetRef {
    /// `ClusterScimTarget/default`: the operator's own server.
    pub fn default_target() -> Self {
        Self { kind: TargetRefKind::ClusterScimTarget, name: DEFAULT_TARGET.to_string(), namespace: None }
    }

    /// Whether this is `ClusterScimTarget/default`.
    pub fn is_default(&self) -> bool {
        self.kind == TargetRefKind::ClusterScimTarget && self.name == DEFAULT_TARGET
    }

    /// The target's id as a resource in `namespace` names it: `ClusterScimTarget/<name>` or
    /// `ScimTarget/<namespace>/<name>` (the ids ownership records use).
    pub fn id(&self, namespace: &str) -> String {
        match self.kind {
            TargetRefKind::ClusterScimTarget => format!("ClusterScimTarget/{}", self.name),
            TargetRefKind::ScimTarget => format!("ScimTarget/{}/{}", self.namespace_in(namespace), self.name),
        }
    }

    /// The namespace of a `ScimTarget` named from `namespace`: the one it names, else that one.
    pub fn namespace_in<'a>(&'a self, namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(namespace)
    }
}

/// The targets a spec names: `[ClusterScimTarget/default]` when it names none.
pub fn effective_targets(declared: &[TargetRef]) -> Vec<TargetRef> {
    if declared.is_empty() { vec![TargetRef::default_target()] } else { declared.to_vec() }
}

/// Checks a `spec.targets` list: at most [`MAX_TARGETS`] entries, none twice.
pub fn validate_targets(declared: &[TargetRef]) -> Result<(), String> {
    if declared.len() > MAX_TARGETS {
        return Err(format!("spec.targets names {} targets; at most {MAX_TARGETS} are allowed", declared.len()));
    }
    for (i, t) in declared.iter().enumerate() {
        if t.name.trim().is_empty() {
            return Err("spec.targets: a target name must not be empty".into());
        }
        if t.kind == TargetRefKind::ClusterScimTarget && t.namespace.is_some() {
            return Err(format!("spec.targets: ClusterScimTarget {} is cluster-scoped and takes no namespace", t.name));
        }
        if declared[..i].contains(t) {
            return Err(format!("spec.targets names {:?} {} twice", t.kind, t.name));
        }
    }
    Ok(())
}

/// The CEL rule of `spec.targets`: no target twice (the API server refuses the object).
pub const UNIQUE_TARGETS_RULE: &str = "self.all(t, self.exists_one(u, u.name == t.name && \
     (has(u.kind) ? u.kind : 'ClusterScimTarget') == (has(t.kind) ? t.kind : 'ClusterScimTarget') && \
     (has(u.__namespace__) ? u.__namespace__ : '') == (has(t.__namespace__) ? t.__namespace__ : '')))";

/// How a resource stands on one target.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetSync {
    /// The target: `ClusterScimTarget/<name>` or `ScimTarget/<namespace>/<name>`.
    pub target: String,
    /// Id of the object on the target, once known.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// Whether the target holds what the spec asks for.
    #[serde(default)]
    pub ready: bool,
    /// Why (a Ready reason: `Provisioned`, `Conflict`, `ScimUnavailable`, `RolesUnsupported`,
    /// `TargetNotAllowed`...).
    #[serde(default)]
    pub reason: String,
    /// What happened, for people; never contains a token.
    #[serde(default)]
    pub message: String,
    /// The generation this entry describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// When the target was last brought in sync with the spec.
    #[serde(default)]
    pub last_sync: Option<Time>,
}

/// `n/m`: entries ready out of all (the `Targets` printer column; printer columns cannot count).
pub fn targets_ready(entries: &[TargetSync]) -> String {
    format!("{}/{}", entries.iter().filter(|e| e.ready).count(), entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cst(name: &str) -> TargetRef {
        TargetRef { kind: TargetRefKind::ClusterScimTarget, name: name.into(), namespace: None }
    }

    fn st(name: &str) -> TargetRef {
        TargetRef { kind: TargetRefKind::ScimTarget, name: name.into(), namespace: None }
    }

    #[test]
    fn references_name_their_targets_as_the_records_do() {
        assert_eq!(cst("keycloak").id("team-a"), "ClusterScimTarget/keycloak");
        assert_eq!(st("grafana").id("team-a"), "ScimTarget/team-a/grafana");
        let elsewhere = TargetRef { namespace: Some("team-b".into()), ..st("grafana") };
        assert_eq!(elsewhere.id("team-a"), "ScimTarget/team-b/grafana");
        assert!(cst("default").is_default());
        assert!(!st("default").is_default(), "a namespace's own target named default is not the operator's");
        assert_eq!(effective_targets(&[]), vec![TargetRef::default_target()]);
        assert_eq!(effective_targets(&[st("a")]), vec![st("a")]);
        let parsed: TargetRef = serde_json::from_value(serde_json::json!({"name": "kc"})).unwrap();
        assert_eq!(parsed, cst("kc"), "the kind defaults to ClusterScimTarget");
    }

    #[test]
    fn target_lists_are_checked() {
        let many: Vec<TargetRef> = (0..17).map(|i| cst(&format!("t{i}"))).collect();
        let cases: Vec<(Vec<TargetRef>, bool)> = vec![
            (vec![], true),
            (vec![cst("default"), st("default")], true),
            (vec![cst("a"), cst("a")], false),
            (vec![st(" ")], false),
            (vec![TargetRef { namespace: Some("x".into()), ..cst("a") }], false),
            (vec![TargetRef { namespace: Some("x".into()), ..st("a") }, st("a")], true),
            (
                vec![
                    TargetRef { namespace: Some("x".into()), ..st("a") },
                    TargetRef { namespace: Some("x".into()), ..st("a") },
                ],
                false,
            ),
            (many[..16].to_vec(), true),
            (many, false),
        ];
        for (refs, ok) in cases {
            assert_eq!(validate_targets(&refs).is_ok(), ok, "{refs:?}");
        }
    }

    #[test]
    fn readiness_counts_entries() {
        let entry = |ready| TargetSync { ready, ..Default::default() };
        assert_eq!(targets_ready(&[]), "0/0");
        assert_eq!(targets_ready(&[entry(true), entry(false), entry(true)]), "2/3");
    }
}
