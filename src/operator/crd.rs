//! The custom resources: `ScimUser`, `ManagedTeam` (namespaced) and `RoleMapping`
//! (cluster-scoped). Field documentation becomes the schema descriptions `kubectl explain` shows.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    namespaced,
    status = "ScimUserStatus",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".spec.userName"}"#,
    printcolumn = r#"{"name":"Active","type":"boolean","jsonPath":".spec.active"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"SCIM ID","type":"string","jsonPath":".status.scimId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.emails) || self.emails.filter(e, e.primary).size() <= 1", "message": "at most one e-mail may be primary"},
    {"rule": "self.userName == oldSelf.userName || !has(oldSelf.userName)", "message": "userName cannot be changed; create a new ScimUser"}
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
    /// Identifier of the user in the identity provider. When unset, the operator records the
    /// resource's UID (`k8s:<uid>`) there, marking the SCIM user as owned by this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Enterprise User attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise: Option<EnterpriseFields>,
    /// Roles to assign explicitly (names of the server's role catalog). Honoured only in
    /// namespaces the operator trusts; elsewhere the resource reports `RolesNotAllowed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// What deleting this resource does on the SCIM server: `Deactivate` (default), `Delete` or `Orphan`.
    #[serde(default)]
    pub deletion_policy: UserDeletionPolicy,
    /// Take over an existing SCIM user with the same userName that no resource owns, instead of
    /// reporting a conflict.
    #[serde(default)]
    pub adopt: bool,
}

fn default_true() -> bool {
    true
}

/// Observed state of a `ScimUser`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimUserStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Id of the user on the SCIM server; authoritative once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    /// Roles the user effectively has on the server (explicit, mapped or default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_roles: Vec<String>,
    /// `Ready` and specific conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Membership policy of a `ManagedTeam`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MemberPolicy {
    /// The declared members are the whole membership: others are removed.
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
    /// userName of a user on the SCIM server (provisioned by any means).
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
    namespaced,
    status = "ManagedTeamStatus",
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Members","type":"integer","jsonPath":".status.memberCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"SCIM ID","type":"string","jsonPath":".status.scimId","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedTeamSpec {
    /// Team name. An existing team of exactly this name is linked rather than duplicated.
    #[schemars(length(min = 1, max = 256))]
    pub display_name: String,
    /// Members named one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<TeamMember>,
    /// Members selected by label among the `ScimUser`s of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_selector: Option<LabelSelector>,
    /// `Authoritative` (default): the declared members are the whole membership. `Additive`:
    /// never remove members someone else added.
    #[serde(default)]
    pub member_policy: MemberPolicy,
    /// On deletion: `Unlink` (default) unlinks the team and removes its members; `Keep` leaves them.
    #[serde(default)]
    pub deletion_policy: TeamDeletionPolicy,
}

/// Observed state of a `ManagedTeam`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedTeamStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Id of the group on the SCIM server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    /// Number of members resolved and provisioned.
    #[serde(default)]
    pub member_count: i64,
    /// Members that are not provisioned yet (ScimUser names or userNames).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_members: Vec<String>,
    /// `Ready` and specific conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Grants roles to the members of teams. Cluster-scoped, so only cluster administrators grant roles.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scim.dev",
    version = "v1alpha1",
    kind = "RoleMapping",
    plural = "rolemappings",
    shortname = "rm",
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
    /// Names of the teams whose members receive the roles (matched exactly).
    #[schemars(length(min = 1))]
    pub teams: Vec<String>,
}

/// Observed state of a `RoleMapping`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleMappingStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Id of the role mapping on the SCIM server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    /// `Ready` and specific conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The CRDs as YAML documents, one per kind: (file name, YAML).
pub fn crd_documents() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    use kube::CustomResourceExt;
    Ok(vec![
        ("scimusers.scim.dev.yaml".to_string(), serde_yaml::to_string(&ScimUser::crd())?),
        ("managedteams.scim.dev.yaml".to_string(), serde_yaml::to_string(&ManagedTeam::crd())?),
        ("rolemappings.scim.dev.yaml".to_string(), serde_yaml::to_string(&RoleMapping::crd())?),
    ])
}
