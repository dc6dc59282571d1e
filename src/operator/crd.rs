//! The custom resources: `ScimUser`, `ManagedTeam` (namespaced) and `RoleMapping`
//! (cluster-scoped), and the SCIM targets they provision into (`ScimTarget`, `ClusterScimTarget`).
//! Field documentation becomes the schema descriptions `kubectl explain` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod target_ref;
mod targets;
pub use target_ref::*;
pub use targets::*;

/// API group of the resources.
pub const GROUP: &str = "scim.dev";

/// What happens on the SCIM server when a `ScimUser` is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UserDeletionPolicy {
    /// Deactivate the user (`active: false`): its access ends, its record stays.
    #[default]
    Deactivate,
    /// Delete the user from the SCIM server.
    Delete,
    /// Leave the user as it is.
    Orphan,
}

/// A person's name.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersonName {
    /// Given (first) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family (last) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Full name as displayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
}

/// An e-mail address.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    /// The address.
    #[schemars(length(min = 3), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub value: String,
    /// Kind of address: `work`, `home` or `other`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["work", "home", "other"]))]
    pub kind: Option<String>,
    /// Whether this is the preferred address (at most one).
    #[serde(default)]
    pub primary: bool,
}

/// Enterprise User attributes (RFC 7643 §4.3).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Employee number.
    pub employee_number: Option<String>,
    /// Cost center.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    /// Organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Division.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// A person to provision into the SCIM server.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scim.dev",
    version = "v1alpha1",
    kind = "ScimUser",
    plural = "scimusers",
    shortname = "su",
    category = "scim",
    namespaced,
    status = "ScimUserStatus",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".spec.userName"}"#,
    printcolumn = r#"{"name":"Active","type":"boolean","jsonPath":".spec.active"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Targets","type":"string","jsonPath":".status.targetsReady"}"#,
    printcolumn = r#"{"name":"SCIM ID","type":"string","jsonPath":".status.scimId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.emails) || self.emails.filter(e, e.primary).size() <= 1", "message": "at most one e-mail may be primary"},
    {"rule": "self.userName == oldSelf.userName || !has(oldSelf.userName)", "message": "userName cannot be changed; create a new ScimUser"},
    {"rule": "!has(self.externalId) || !self.externalId.startsWith('k8s:')", "message": "spec.externalId may not start with k8s: (the prefix of the operator's ownership markers)"}
]))]
pub struct ScimUserSpec {
    /// Unique sign-in name of the user (often the e-mail address); compared without regard to case.
    #[schemars(length(min = 1, max = 256))]
    pub user_name: String,
    /// Name shown in the product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The person's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<PersonName>,
    /// E-mail addresses; the primary one receives the invitation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Whether the user may sign in. Setting it to false offboards the user: its keys are
    /// revoked and pending invitations cancelled.
    #[serde(default = "default_true")]
    pub active: bool,
    /// The user's id in an identity provider, for targets that require it as `externalId`
    /// (profile `Grafana`: the SAML user id, the `userUID` assertion). Sent only to targets
    /// whose profile requires it; elsewhere the SCIM `externalId` holds the ownership marker
    /// the operator derives from the cluster identity, this resource's namespace and its uid
    /// (`k8s:<cluster>/<namespace>/<uid>`), or nothing. It may not start with `k8s:`, so that no
    /// spec can imitate a marker. A target that requires it refuses a user without it
    /// (`InvalidSpec` on that target's entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub external_id: Option<String>,
    /// Enterprise User attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<EnterpriseFields>,
    /// Roles to assign explicitly (names of the server's role catalog). Honoured only in
    /// trusted namespaces; elsewhere none is sent and the resource reports
    /// `RolesAllowed=False` (`RolesNotAllowed`). Roles follow this list: a role the operator
    /// granted for this resource (recorded in `status.grantedRoles` on the default target, in
    /// the operator's ownership record on any other) is withdrawn when the list stops naming
    /// it, when the list is emptied or deleted, and when the namespace is no longer trusted
    /// there; the user then falls back to its mapped or default role. Roles an identity
    /// provider or an administrator granted are never touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// What deleting this resource does on the SCIM server: `Deactivate` (default), `Delete` or
    /// `Orphan`. Applied only to a user this resource owns (checked on the server first); a
    /// resource that never owned its user deletes without touching it.
    #[serde(default)]
    pub deletion_policy: UserDeletionPolicy,
    /// Take over an existing SCIM user with the same userName that no resource owns (one an
    /// identity provider or an administrator created), instead of reporting `Conflict`. Honoured
    /// only in trusted namespaces; elsewhere Ready=False with reason `AdoptionNotAllowed` and
    /// nothing is written. A user another resource owns is never taken over. Adopting writes the
    /// ownership marker into the user's `externalId` and changes only the attributes this spec
    /// declares; everything else (phone numbers, addresses, roles the operator did not grant) stays.
    #[serde(default)]
    pub adopt: bool,
    /// The SCIM targets to provision into (at most 16, none twice). Absent or empty: the
    /// operator's own server alone (`ClusterScimTarget` `default`). Every target is resolved
    /// before anything is written: a target that does not exist (`TargetNotFound`) or that this
    /// namespace may not use (`TargetNotAllowed`: a `ClusterScimTarget` whose
    /// `spec.namespaces.allowed` leaves it out, or a `ScimTarget` of another namespace) makes
    /// the resource Ready=False and nothing is written anywhere. Taking a target out of the
    /// list applies the deletion policy there, and only there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = [
        {"rule": UNIQUE_TARGETS_RULE, "message": "a target may be named once"}
    ]))]
    pub targets: Vec<TargetRef>,
}

fn default_true() -> bool {
    true
}

// Status fields are serialized even when empty or unset (`[]`, `null`): the status is written
// as a merge patch, where an omitted field would keep its old value.
/// Observed state of a `ScimUser`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimUserStatus {
    /// The generation the status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// Id of the user on the SCIM server. Every write by this id first checks that the server
    /// user still carries this resource's ownership marker.
    #[serde(default)]
    pub scim_id: Option<String>,
    /// Roles the user effectively has on the server (explicit, mapped or default); kept as last
    /// read when the server cannot be asked.
    #[serde(default)]
    pub effective_roles: Vec<String>,
    /// One entry per target the spec names: the object's id there, whether it is in sync, why.
    #[serde(default)]
    pub targets: Vec<TargetSync>,
    /// Targets in sync out of those named, as `n/m`.
    #[serde(default)]
    pub targets_ready: Option<String>,
    /// Roles the operator granted on the default target for this resource (as `spec.roles`
    /// names them), so that it withdraws exactly these when the spec stops asking, and never a
    /// role an identity provider or an administrator granted (other targets keep theirs in the
    /// operator's ownership records). Recorded before a grant is sent. Unset
    /// on a status an earlier release wrote: the roles its spec names are then taken as granted
    /// by it (that release sent them).
    #[serde(default)]
    pub granted_roles: Option<Vec<String>>,
    /// `Ready`, specific conditions, and the kstatus conditions `Reconciling` (a retry is pending)
    /// and `Stalled` (a refusal stands that only a change of the spec or of the trust
    /// configuration ends), which Flux, Argo CD and `kubectl wait` read.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Membership policy of a `ManagedTeam`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MemberPolicy {
    /// The declared members are the whole membership: others are removed. A declared member is
    /// removed only when its ScimUser is gone or being deleted, or it is refused on ownership
    /// grounds; one whose ScimUser is there but not provisioned right now (an error, not Ready
    /// yet) stays.
    #[default]
    Authoritative,
    /// Declared members are added; members someone else added stay.
    Additive,
}

/// What happens on the SCIM server when a `ManagedTeam` is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TeamDeletionPolicy {
    /// Unlink the team and remove its members (the team itself stays, unmanaged).
    #[default]
    Unlink,
    /// Leave the team and its members as they are.
    Keep,
}

/// One member of a team.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.scimUserRef) != has(self.userName)", "message": "name exactly one of scimUserRef or userName"}
]))]
pub struct TeamMember {
    /// Name of a `ScimUser` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_user_ref: Option<String>,
    /// userName of a user on the SCIM server. In a trusted namespace, a user nobody owns (one an
    /// identity provider or an administrator made) or one a ScimUser of a trusted namespace owns
    /// (as its ownership marker on the server says); a user owned by an untrusted namespace (or
    /// another cluster) is left out, and removed if it is a member, while the other members are
    /// applied, and the team reports Ready=False with reason `MemberNotAllowed`. In an untrusted
    /// namespace, only a user owned by a ScimUser of the same namespace; any other makes the team
    /// Ready=False with reason `MemberNotAllowed` and nothing is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}

/// A team whose membership is managed from Kubernetes.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scim.dev",
    version = "v1alpha1",
    kind = "ManagedTeam",
    plural = "managedteams",
    shortname = "mt",
    category = "scim",
    namespaced,
    status = "ManagedTeamStatus",
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.memberCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Targets","type":"string","jsonPath":".status.targetsReady"}"#,
    printcolumn = r#"{"name":"SCIM ID","type":"string","jsonPath":".status.scimId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedTeamSpec {
    /// Team name. A team of this name that exists on the server and is not this resource's is
    /// never changed: the resource reports `Conflict` unless `linkExisting` applies. In an
    /// untrusted namespace, a name some RoleMapping names is refused
    /// (`RoleMappedTeamNotAllowed`), so that only trusted namespaces grant roles.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// Link an existing team of exactly this name that no identity provider or other resource
    /// manages (one an administrator made with `teams create`, or one an identity provider
    /// unlinked): it becomes managed by this resource and its members are replaced by the
    /// declared ones. Honoured only in trusted namespaces; elsewhere Ready=False with reason
    /// `LinkNotAllowed` and nothing is written. A team an identity provider manages is never
    /// linked. Without it, an existing team is a `Conflict`.
    #[serde(default)]
    pub link_existing: bool,
    /// Members named one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<TeamMember>,
    /// Members selected by label among the `ScimUser`s of the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_selector: Option<LabelSelector>,
    /// `Authoritative` (default): the declared members are the whole membership. `Additive`:
    /// never remove members someone else added.
    #[serde(default)]
    pub member_policy: MemberPolicy,
    /// On deletion: `Unlink` (default) unlinks the team and removes its members; `Keep` leaves them.
    #[serde(default)]
    pub deletion_policy: TeamDeletionPolicy,
    /// The SCIM targets to provision into (at most 16, none twice). Absent or empty: the
    /// operator's own server alone (`ClusterScimTarget` `default`). Every target is resolved
    /// before anything is written: a target that does not exist (`TargetNotFound`) or that this
    /// namespace may not use (`TargetNotAllowed`: a `ClusterScimTarget` whose
    /// `spec.namespaces.allowed` leaves it out, or a `ScimTarget` of another namespace) makes
    /// the resource Ready=False and nothing is written anywhere. Taking a target out of the
    /// list applies the deletion policy there, and only there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-validations" = [
        {"rule": UNIQUE_TARGETS_RULE, "message": "a target may be named once"}
    ]))]
    pub targets: Vec<TargetRef>,
}

/// Observed state of a `ManagedTeam`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedTeamStatus {
    /// The generation the status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// Id of the group on the SCIM server. Every write by this id first checks that the group
    /// still carries this resource's ownership marker.
    #[serde(default)]
    pub scim_id: Option<String>,
    /// Number of members resolved and provisioned.
    #[serde(default)]
    pub member_count: i64,
    /// Members that are not provisioned yet (ScimUser names or userNames).
    #[serde(default)]
    pub pending_members: Vec<String>,
    /// One entry per target the spec names: the object's id there, whether it is in sync, why.
    #[serde(default)]
    pub targets: Vec<TargetSync>,
    /// Targets in sync out of those named, as `n/m`.
    #[serde(default)]
    pub targets_ready: Option<String>,
    /// `Ready`, specific conditions, and the kstatus conditions `Reconciling` (a retry is pending)
    /// and `Stalled` (a refusal stands that only a change of the spec or of the trust
    /// configuration ends), which Flux, Argo CD and `kubectl wait` read.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Grants roles to the members of teams. Cluster-scoped, so only cluster administrators grant
/// roles. On this project's server the server applies it; on any other target that keeps
/// roles, the operator computes them for the members of the ManagedTeams of those names that
/// name that target, in namespaces trusted there, and withdraws them when that ends. Only a server mapping this resource created is replaced or deleted: one of the same
/// name made another way is reported as `Conflict` and left as it is. Teams are named, so a mapping also reaches teams made later under that name: the
/// operator lets no untrusted namespace create or link a team a mapping names.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scim.dev",
    version = "v1alpha1",
    kind = "RoleMapping",
    plural = "rolemappings",
    shortname = "rm",
    category = "scim",
    status = "RoleMappingStatus",
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.roles"}"#,
    printcolumn = r#"{"name":"Teams","type":"string","jsonPath":".spec.teams"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RoleMappingSpec {
    /// Roles granted (names of the server's role catalog).
    #[schemars(length(min = 1))]
    pub roles: Vec<String>,
    /// Names of the teams whose members receive the roles (matched exactly): teams of the SCIM
    /// server however they were made (an identity provider, `teams create`, a ManagedTeam of a
    /// trusted namespace).
    #[schemars(length(min = 1))]
    pub teams: Vec<String>,
}

/// Observed state of a `RoleMapping`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleMappingStatus {
    /// The generation the status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// Id of the role mapping on the SCIM server.
    #[serde(default)]
    pub scim_id: Option<String>,
    /// `Ready`, specific conditions, and the kstatus conditions `Reconciling` (a retry is pending)
    /// and `Stalled` (a refusal stands that only a change of the spec or of the trust
    /// configuration ends), which Flux, Argo CD and `kubectl wait` read.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The CRDs as YAML documents, one per kind: (file name, YAML).
pub fn crd_documents() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    use kube::CustomResourceExt;
    Ok(vec![
        ("scimusers.scim.dev.yaml".to_string(), serde_yaml::to_string(&ScimUser::crd())?),
        ("managedteams.scim.dev.yaml".to_string(), serde_yaml::to_string(&ManagedTeam::crd())?),
        ("rolemappings.scim.dev.yaml".to_string(), serde_yaml::to_string(&RoleMapping::crd())?),
        ("scimtargets.scim.dev.yaml".to_string(), serde_yaml::to_string(&ScimTarget::crd())?),
        ("clusterscimtargets.scim.dev.yaml".to_string(), serde_yaml::to_string(&ClusterScimTarget::crd())?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// RFC 7386 JSON merge patch, as the API server applies a status patch.
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn status_patches_clear_lists_and_fields() {
        let mut stored = json!({"scimId": "g1", "memberCount": 1, "pendingMembers": ["zed"], "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "MembersPending", "message": "zed",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let now = ManagedTeamStatus { member_count: 2, observed_generation: Some(2), ..Default::default() };
        merge(&mut stored, &serde_json::to_value(&now).unwrap());
        assert_eq!(
            stored,
            json!({"memberCount": 2, "pendingMembers": [], "observedGeneration": 2, "conditions": [], "targets": []})
        );

        let mut user = json!({"scimId": "u1", "effectiveRoles": ["Admin"], "conditions": [], "targetsReady": "1/1",
            "targets": [{"target": "ClusterScimTarget/default", "ready": true}]});
        merge(&mut user, &serde_json::to_value(ScimUserStatus::default()).unwrap());
        assert_eq!(user, json!({"effectiveRoles": [], "conditions": [], "targets": []}));
        let mut mapping = json!({"scimId": "m1", "conditions": [], "observedGeneration": 3});
        merge(&mut mapping, &serde_json::to_value(RoleMappingStatus::default()).unwrap());
        assert_eq!(mapping, json!({"conditions": []}));
    }
}
