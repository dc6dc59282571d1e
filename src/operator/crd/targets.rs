//! SCIM targets as resources: `ScimTarget` (namespaced, for its own namespace) and
//! `ClusterScimTarget` (cluster-scoped, shared by the namespaces it allows). Both say where a
//! SCIM service provider is, what kind it is, how to authenticate and how fast to talk to it;
//! their status says whether it answers, whether the credentials work and what it supports.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use kube::core::{Selector, SelectorExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::client::{Capabilities, Profile};

/// A key of a Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret. A `ScimTarget` reads it from its own namespace; a
    /// `ClusterScimTarget` from the operator's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret; may be left out. When set it must be the namespace the target
    /// reads Secrets from (its own for a `ScimTarget`, the operator's for a
    /// `ClusterScimTarget`): any other is refused with `SecretNotAllowed` and no request is
    /// sent, so a namespace cannot borrow another's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// An OAuth 2.0 client-credentials grant (RFC 6749 §4.4).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientCredentials {
    /// The authorization server's token endpoint (`https://`, or `http://` for a server on the
    /// same host), e.g. `https://sso.example.com/realms/acme/protocol/openid-connect/token`.
    #[schemars(length(min = 1), regex(pattern = r"^https?://"))]
    pub token_url: String,
    /// Secret key holding the client id.
    pub client_id: SecretKeyRef,
    /// Secret key holding the client secret.
    pub client_secret: SecretKeyRef,
    /// Scopes to request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// An `audience` parameter to send, for authorization servers that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// How the operator authenticates to the target: exactly one of `bearerToken` or `oauth2`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.bearerToken) != has(self.oauth2)", "message": "set exactly one of bearerToken or oauth2"}
]))]
pub struct TargetCredentials {
    /// A static bearer token (an API key, a service-account token) from a Secret key. It is
    /// read again when the Secret changes; no restart is needed to rotate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKeyRef>,
    /// OAuth 2.0 client credentials: tokens are fetched from the token endpoint, again before
    /// they expire, and once more when the target answers 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuthClientCredentials>,
}

/// How fast the operator talks to the target.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestBudget {
    /// Requests per second at most.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: u32,
    /// Requests in flight at most.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 256))]
    pub max_concurrency: u32,
    /// Membership changes sent in one PATCH at most, when the target limits them below what
    /// its profile assumes (AWS IAM Identity Center: 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_member_operations: Option<u32>,
}

fn default_rate() -> u32 {
    10
}

fn default_concurrency() -> u32 {
    4
}

impl Default for RequestBudget {
    fn default() -> Self {
        Self {
            requests_per_second: default_rate(),
            max_concurrency: default_concurrency(),
            max_member_operations: None,
        }
    }
}

/// Where a SCIM service provider is and how to talk to it; shared by both target kinds.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetEndpoint {
    /// Base URL of the SCIM API, to which `/Users` and `/Groups` are appended, e.g.
    /// `https://api.datadoghq.com/api/v2/scim` or `https://sso.example.com/realms/acme/scim/v2`.
    #[schemars(length(min = 1), regex(pattern = r"^https?://"))]
    pub base_url: String,
    /// The kind of server, for what discovery cannot tell: `Generic` (any RFC 7644 server),
    /// `ScimOperator` (this project's server), `Keycloak`, `Datadog` or `Grafana`. The README's
    /// profile table lists what each changes.
    #[serde(default)]
    pub profile: Profile,
    /// How the operator authenticates.
    pub credentials: TargetCredentials,
    /// PEM certificates that sign the target's TLS certificate. When set, only these are
    /// trusted for this target (a private CA); when absent, the system's roots are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// How fast the operator talks to the target.
    #[serde(default)]
    pub budget: RequestBudget,
}

/// A SCIM service provider that resources of this namespace may provision into. Its Secrets
/// are read from this namespace only.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scim.dev",
    version = "v1alpha1",
    kind = "ScimTarget",
    plural = "scimtargets",
    shortname = "st",
    category = "scim",
    namespaced,
    status = "TargetStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.baseUrl"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profile"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ScimTargetSpec {
    #[serde(flatten)]
    pub endpoint: TargetEndpoint,
}

/// Namespaces, by name or by label.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSet {
    /// Namespaces by name; `*` is every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Namespaces whose labels match. A namespace is in the set when either its name is listed
    /// or its labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl NamespaceSet {
    /// Whether the namespace `name` with `labels` is in the set. A selector that cannot be read
    /// (an unknown operator) is an error, never a match.
    pub fn contains(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        if self.names.iter().any(|n| n == "*" || n == name) {
            return Ok(true);
        }
        match &self.selector {
            None => Ok(false),
            Some(s) => {
                let selector = Selector::try_from(s.clone()).map_err(|e| format!("the namespace selector: {e}"))?;
                Ok(selector.matches(labels))
            }
        }
    }

    /// Whether the selector can be read (an unknown operator, a malformed expression cannot).
    pub fn check(&self) -> Result<(), String> {
        match &self.selector {
            None => Ok(()),
            Some(s) => Selector::try_from(s.clone()).map(|_| ()).map_err(|e| format!("the namespace selector: {e}")),
        }
    }

    /// A set of the listed names.
    pub fn of_names(names: &[String]) -> Self {
        Self { names: names.to_vec(), selector: None }
    }

    /// Whether the set is written so that it can match nothing at all.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.selector.is_none()
    }
}

/// Which namespaces may use a `ClusterScimTarget`, and which of them are trusted on it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetAccess {
    /// Namespaces whose resources may provision into the target. Others get
    /// `TargetNotAllowed` and nothing is written.
    #[serde(default)]
    pub allowed: NamespaceSet,
    /// Namespaces trusted on the target: their resources may set roles, adopt existing users
    /// and link existing teams there. A trusted namespace must also be allowed.
    #[serde(default)]
    pub trusted: NamespaceSet,
}

/// A namespace's standing on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It may not use the target.
    NotAllowed,
    /// It may provision its own objects.
    Allowed,
    /// It may also set roles, adopt and link.
    Trusted,
}

impl TargetAccess {
    /// Whether both selectors can be read; an error names the one that cannot.
    pub fn check(&self) -> Result<(), String> {
        self.allowed.check().map_err(|e| format!("namespaces.allowed: {e}"))?;
        self.trusted.check().map_err(|e| format!("namespaces.trusted: {e}"))
    }

    /// The standing of the namespace `name` with `labels`.
    pub fn standing(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<Standing, String> {
        if !self.allowed.contains(name, labels)? {
            return Ok(Standing::NotAllowed);
        }
        Ok(if self.trusted.contains(name, labels)? { Standing::Trusted } else { Standing::Allowed })
    }
}

/// A SCIM service provider shared by the namespaces it allows. Its Secrets are read from the
/// operator's namespace only. The chart creates one named `default` for its own server.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "scim.dev",
    version = "v1alpha1",
    kind = "ClusterScimTarget",
    plural = "clusterscimtargets",
    shortname = "cst",
    category = "scim",
    status = "TargetStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.baseUrl"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".spec.profile"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterScimTargetSpec {
    #[serde(flatten)]
    pub endpoint: TargetEndpoint,
    /// Which namespaces may use the target and which are trusted on it. When absent, no
    /// namespace may.
    #[serde(default)]
    pub namespaces: TargetAccess,
}

// Status fields are serialized even when empty or unset: the status is written as a merge
// patch, where an omitted field would keep its old value.
/// Observed state of a target.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The generation the status describes.
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// What the target's `/ServiceProviderConfig` says it supports (the capabilities the
    /// operator uses); empty until it was read.
    #[serde(default)]
    pub capabilities: Option<Capabilities>,
    /// `Reachable` (the base URL answers as a SCIM server), `CredentialsValid` (an
    /// authenticated query succeeds), `Ready` (both), and kstatus' `Reconciling` and
    /// `Stalled`. Messages never contain a token.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The one namespace a target reads its Secrets from: its own for a `ScimTarget`, the
/// operator's for a `ClusterScimTarget` (which has none).
pub fn secret_namespace<'a>(target_namespace: Option<&'a str>, operator_namespace: &'a str) -> &'a str {
    target_namespace.unwrap_or(operator_namespace)
}

impl TargetEndpoint {
    /// Every Secret key the endpoint references, in a fixed order.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let c = &self.credentials;
        c.bearer_token.iter().chain(c.oauth2.iter().flat_map(|o| [&o.client_id, &o.client_secret])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn namespaces_are_allowed_and_trusted_by_name_or_label() {
        let access = TargetAccess {
            allowed: NamespaceSet {
                names: vec!["legacy".into()],
                selector: Some(LabelSelector {
                    match_labels: Some(labels(&[("scim.dev/targets", "keycloak")]).into_iter().collect()),
                    ..Default::default()
                }),
            },
            trusted: NamespaceSet {
                names: vec![],
                selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "tier".into(),
                        operator: "In".into(),
                        values: Some(vec!["platform".into()]),
                    }]),
                    ..Default::default()
                }),
            },
        };
        let kc = ("scim.dev/targets", "keycloak");
        let cases = [
            ("legacy", labels(&[]), Standing::Allowed),
            ("team-a", labels(&[kc]), Standing::Allowed),
            ("platform", labels(&[kc, ("tier", "platform")]), Standing::Trusted),
            ("rogue", labels(&[("tier", "platform")]), Standing::NotAllowed),
            ("other", labels(&[("scim.dev/targets", "datadog")]), Standing::NotAllowed),
        ];
        for (name, l, want) in cases {
            assert_eq!(access.standing(name, &l).unwrap(), want, "{name} {l:?}");
        }
        assert_eq!(TargetAccess::default().standing("any", &labels(&[])).unwrap(), Standing::NotAllowed);
        let every = TargetAccess { allowed: NamespaceSet::of_names(&["*".into()]), trusted: NamespaceSet::default() };
        assert_eq!(every.standing("any", &labels(&[])).unwrap(), Standing::Allowed);
    }

    #[test]
    fn an_unreadable_selector_is_an_error_not_a_match() {
        let bad = NamespaceSet {
            names: vec![],
            selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "Near".into(),
                    values: Some(vec!["x".into()]),
                }]),
                ..Default::default()
            }),
        };
        assert!(bad.contains("ns", &labels(&[("tier", "x")])).is_err());
    }

    #[test]
    fn secrets_are_read_from_the_targets_namespace_or_the_operators() {
        assert_eq!(secret_namespace(Some("team-a"), "scim-system"), "team-a");
        assert_eq!(secret_namespace(None, "scim-system"), "scim-system");
    }

    #[test]
    fn credentials_take_exactly_one_kind_and_budgets_have_defaults() {
        let spec: ScimTargetSpec = serde_json::from_value(serde_json::json!({
            "baseUrl": "https://kc.example/realms/a/scim/v2", "profile": "Keycloak",
            "credentials": {"oauth2": {"tokenUrl": "https://kc.example/realms/a/protocol/openid-connect/token",
                "clientId": {"name": "kc", "key": "id"}, "clientSecret": {"name": "kc", "key": "secret"}}}
        }))
        .unwrap();
        assert_eq!(spec.endpoint.profile, Profile::Keycloak);
        assert_eq!(spec.endpoint.budget, RequestBudget::default());
        let schema = serde_json::to_value(schemars::schema_for!(TargetCredentials)).unwrap();
        assert_eq!(
            schema["x-kubernetes-validations"][0]["rule"], "has(self.bearerToken) != has(self.oauth2)",
            "the API server refuses both or neither"
        );
    }
}
