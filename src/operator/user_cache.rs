//! What the operator keeps in memory of each ScimUser: the facts the teams' member resolution
//! and the controllers' triggers read, not the whole object.
//!
//! A ScimUser as the watch delivers it is several KiB in memory (metadata, spec, and status
//! conditions with their messages), and the operator watches every ScimUser of the cluster:
//! at 50,000 that alone outgrew the chart's memory limit. The watch is therefore decoded straight
//! into a [`CachedUser`] (same API resource, fewer fields), and the ScimUser controller reads the
//! whole object when it reconciles one ([`fetch`]), from the API server's watch cache and at
//! least as new as the cached facts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, GetParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

use super::RELEASE_ANNOTATION;
use super::conditions;
use super::crd::ScimUser;

/// A ScimUser as the operator caches it. Its metadata keeps what identifies it (name,
/// namespace, uid, resourceVersion), what triggers read (generation, deletion, labels, the
/// release annotation) and whether it carries [`FINALIZER`](super::FINALIZER) (so that a worker
/// adds it without reading the object first); the rest of the object is read when needed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "Wire")]
pub struct CachedUser {
    metadata: ObjectMeta,
    /// `spec.userName`.
    pub user_name: String,
    /// `status.scimId`, whether Ready or not.
    pub scim_id: Option<String>,
    /// Whether the `Ready` condition is `True`.
    pub ready: bool,
    /// Whether the metadata lists [`FINALIZER`](super::FINALIZER). Only while it does not are
    /// the finalizers kept (the patch that adds it keeps the others): once it is there, as on
    /// almost every cached user, the list is not held.
    pub has_finalizer: bool,
    /// Where `status.targets` says it stands on each target: the target, the id there and
    /// whether it is in sync (a team's trigger reads them).
    pub targets: Vec<TargetFact>,
}

/// One entry of `status.targets`, without its reason, message and times.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFact {
    /// `ClusterScimTarget/<name>` or `ScimTarget/<namespace>/<name>`.
    pub target: String,
    /// Id of the user on the target, once known.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// Whether the target holds what the spec asks for.
    #[serde(default)]
    pub ready: bool,
}

impl CachedUser {
    /// The SCIM id the status names while Ready and not being deleted: a trigger's input only,
    /// never proof of who owns that id.
    pub fn ready_id(&self) -> Option<&str> {
        if self.metadata.deletion_timestamp.is_some() || !self.ready {
            return None;
        }
        self.scim_id.as_deref()
    }
}

impl Resource for CachedUser {
    type DynamicType = ();
    type Scope = <ScimUser as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ScimUser::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        ScimUser::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        ScimUser::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        ScimUser::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        ScimUser::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The fields read off the wire; everything else in the document is skipped while parsing
/// (managedFields, the last-applied annotation and the status messages are never allocated).
#[derive(Deserialize)]
struct Wire {
    metadata: WireMeta,
    spec: WireSpec,
    #[serde(default)]
    status: Option<WireStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    /// Only the release annotation is kept (see [`Release`]).
    #[serde(default)]
    annotations: Option<Release>,
}

/// The value of [`RELEASE_ANNOTATION`] out of an annotations map, the other values skipped.
#[derive(Default)]
struct Release(Option<String>);

impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Release;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Release, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == RELEASE_ANNOTATION {
                        found = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Release(found))
            }
        }
        d.deserialize_map(Visit)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpec {
    user_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    #[serde(default)]
    scim_id: Option<String>,
    #[serde(default)]
    conditions: Vec<WireCondition>,
    #[serde(default)]
    targets: Vec<TargetFact>,
}

#[derive(Deserialize)]
struct WireCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

impl From<Wire> for CachedUser {
    fn from(w: Wire) -> Self {
        let m = w.metadata;
        let has_finalizer = m.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == super::FINALIZER));
        let release = m.annotations.and_then(|r| r.0).map(|v| BTreeMap::from([(RELEASE_ANNOTATION.to_string(), v)]));
        let status = w.status;
        let ready = status
            .as_ref()
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == conditions::READY && c.status == "True"));
        let (scim_id, targets) = status.map(|s| (s.scim_id, s.targets)).unwrap_or_default();
        CachedUser {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                generation: m.generation,
                deletion_timestamp: m.deletion_timestamp,
                finalizers: if has_finalizer { None } else { m.finalizers },
                labels: m.labels,
                annotations: release,
                ..ObjectMeta::default()
            },
            user_name: w.spec.user_name,
            scim_id,
            ready,
            has_finalizer,
            targets,
        }
    }
}

/// The whole ScimUser of `cached`, at least as new as the cached facts, without what the
/// operator never reads; `None` when it is gone.
///
/// A ScimUser that still lacks [`FINALIZER`](super::FINALIZER) gets it here: the patch answers with the whole
/// object, so a new ScimUser costs the API server one request before its status, not a read
/// and a patch. When it changed since the watch saw it (409), it is read instead.
pub async fn fetch(api: &Api<ScimUser>, cached: &CachedUser) -> Result<Option<ScimUser>, kube::Error> {
    if !cached.has_finalizer
        && let Some(patch) = super::finalizer_patch(cached.meta())
    {
        match api.patch(&cached.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(mut user) => {
                super::slim(&mut user);
                return Ok(Some(user));
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    read(api, cached).await
}

/// The whole ScimUser of `cached` from the API server's watch cache (like the watch itself),
/// at least as new as the cached facts; `None` when it is gone.
async fn read(api: &Api<ScimUser>, cached: &CachedUser) -> Result<Option<ScimUser>, kube::Error> {
    // Not older than the version the watch delivered: a stale read would retry a finalizer patch
    // for nothing or merge conditions that were replaced already.
    let params = match cached.resource_version() {
        Some(rv) => GetParams::at(&rv),
        None => GetParams::default(),
    };
    match api.get_with(&cached.name_any(), &params).await {
        Ok(mut user) => {
            super::slim(&mut user);
            Ok(Some(user))
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the cache keeps of `u`, decoded from its JSON as the watch decodes it (for tests).
#[cfg(test)]
pub(crate) fn of(u: &ScimUser) -> CachedUser {
    serde_json::from_value(serde_json::to_value(u).expect("a ScimUser as JSON")).expect("a cached ScimUser")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Ready ScimUser as the API server sends it after the operator's writes.
    fn wire() -> serde_json::Value {
        json!({
            "apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser",
            "metadata": {
                "name": "alice", "namespace": "platform", "uid": "6f1c2a4e-0000-4000-8000-000000000001",
                "resourceVersion": "4711", "generation": 3, "creationTimestamp": "2026-12-06T10:00:00Z",
                "finalizers": ["scim.dev/cleanup"],
                "labels": {"team": "sre"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a\": \"long copy\"}",
                    "scim.dev/release": "true",
                    "note": "kept out"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]
            },
            "spec": {"userName": "Alice@Example.com", "displayName": "Alice", "emails": [{"value": "alice@example.com", "primary": true}]},
            "status": {
                "observedGeneration": 3, "scimId": "0193-abc", "effectiveRoles": ["Standard"], "grantedRoles": [],
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Provisioned", "message": "provisioned as SCIM user 0193-abc", "observedGeneration": 3, "lastTransitionTime": "2026-12-06T10:00:01Z"},
                    {"type": "Reconciling", "status": "False", "reason": "NotReconciling", "message": "", "lastTransitionTime": "2026-12-06T10:00:01Z"}
                ],
                "targets": [{"target": "ClusterScimTarget/okta", "remoteId": "00u1", "ready": true, "reason": "Provisioned",
                             "message": "provisioned as 00u1", "observedGeneration": 3, "lastSync": "2026-12-06T10:00:02Z"}]
            }
        })
    }

    #[test]
    fn keeps_exactly_the_facts_teams_and_triggers_read() {
        let full: ScimUser = serde_json::from_value(wire()).expect("a ScimUser");
        let cached: CachedUser = serde_json::from_value(wire()).expect("a cached ScimUser");
        assert_eq!(cached.user_name, full.spec.user_name);
        assert_eq!(cached.scim_id.as_deref(), Some("0193-abc"));
        assert!(cached.ready);
        assert_eq!(cached.ready_id(), Some("0193-abc"));
        let entries = &full.status.as_ref().expect("a status").targets;
        let facts: Vec<(&str, Option<&str>, bool)> =
            cached.targets.iter().map(|t| (t.target.as_str(), t.remote_id.as_deref(), t.ready)).collect();
        let want: Vec<(&str, Option<&str>, bool)> =
            entries.iter().map(|t| (t.target.as_str(), t.remote_id.as_deref(), t.ready)).collect();
        assert_eq!(facts, want);
        assert_eq!(facts, [("ClusterScimTarget/okta", Some("00u1"), true)]);
        let (m, f) = (cached.meta(), full.meta());
        assert_eq!((&m.name, &m.namespace, &m.uid), (&f.name, &f.namespace, &f.uid));
        assert_eq!((&m.resource_version, m.generation, &m.labels), (&f.resource_version, f.generation, &f.labels));
        assert_eq!(cached.annotations().keys().collect::<Vec<_>>(), [RELEASE_ANNOTATION]);
        assert!(cached.has_finalizer && m.finalizers.is_none(), "ours is there: the list is not held");
        assert!(m.managed_fields.is_none() && m.creation_timestamp.is_none());
        // The object reference (the stores' key) is the same as the full object's.
        use kube::runtime::reflector::ObjectRef;
        assert_eq!(ObjectRef::from_obj(&cached).erase(), ObjectRef::from_obj(&full).erase());
        assert_eq!(CachedUser::kind(&()), "ScimUser");
        assert_eq!(CachedUser::plural(&()), "scimusers");
        assert_eq!(CachedUser::api_version(&()), "scim.dev/v1alpha1");
    }

    #[test]
    fn without_our_finalizer_the_others_are_kept_for_the_patch_that_adds_it() {
        let mut new = wire();
        new["metadata"]["finalizers"] = json!(["example.com/keep"]);
        let cached: CachedUser = serde_json::from_value(new).expect("a cached ScimUser");
        assert!(!cached.has_finalizer);
        let patch = super::super::finalizer_patch(cached.meta()).expect("ours is missing");
        assert_eq!(patch["metadata"]["finalizers"], json!(["example.com/keep", super::super::FINALIZER]));
        assert_eq!(patch["metadata"]["resourceVersion"], json!("4711"));

        let mut none = wire();
        none["metadata"].as_object_mut().expect("metadata").remove("finalizers");
        let cached: CachedUser = serde_json::from_value(none).expect("a cached ScimUser");
        assert!(!cached.has_finalizer && super::super::finalizer_patch(cached.meta()).is_some());
    }

    #[test]
    fn ready_id_only_while_ready_and_not_deleted() {
        let mut not_ready = wire();
        not_ready["status"]["conditions"][0]["status"] = json!("False");
        let cached: CachedUser = serde_json::from_value(not_ready).expect("a cached ScimUser");
        assert!(!cached.ready);
        assert_eq!(cached.ready_id(), None);
        assert_eq!(cached.scim_id.as_deref(), Some("0193-abc"), "the id is kept for members that stay");

        let mut deleting = wire();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-12-06T11:00:00Z");
        let cached: CachedUser = serde_json::from_value(deleting).expect("a cached ScimUser");
        assert!(cached.meta().deletion_timestamp.is_some());
        assert_eq!(cached.ready_id(), None);

        let mut new = wire();
        new.as_object_mut().expect("an object").remove("status");
        new["metadata"].as_object_mut().expect("an object").remove("annotations");
        let cached: CachedUser = serde_json::from_value(new).expect("a cached ScimUser");
        assert_eq!((cached.scim_id.as_deref(), cached.ready), (None, false));
        assert!(cached.meta().annotations.is_none());
    }

    #[test]
    fn a_document_without_a_user_name_is_an_error() {
        let mut bad = wire();
        bad["spec"].as_object_mut().expect("an object").remove("userName");
        assert!(serde_json::from_value::<CachedUser>(bad).is_err());
    }
}
