//! What a target's `/ServiceProviderConfig` (RFC 7643 §5) says it supports, as far as the
//! operator uses it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Capabilities a target announces.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// PATCH is supported (otherwise changes are sent as PUT, where the profile allows it).
    pub patch: bool,
    /// Filtering is supported.
    pub filter: bool,
    /// Largest page a filtered query answers (`filter.maxResults`), if announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u64>,
    /// ETags are supported (`If-Match` is sent on writes).
    pub etag: bool,
    /// Sorting is supported.
    pub sort: bool,
    /// `/Bulk` is supported.
    pub bulk: bool,
}

impl Capabilities {
    /// Reads a `/ServiceProviderConfig` document. Absent or malformed entries count as "not
    /// supported", except `filter` and `patch`, which RFC 7644 clients may assume when a server
    /// announces nothing at all (`None` then: the caller decides).
    pub fn from_service_provider_config(doc: &Value) -> Option<Self> {
        if !doc.is_object() {
            return None;
        }
        let supported =
            |name: &str| doc.pointer(&format!("/{name}/supported")).and_then(Value::as_bool).unwrap_or(false);
        Some(Self {
            patch: supported("patch"),
            filter: supported("filter"),
            max_results: doc.pointer("/filter/maxResults").and_then(Value::as_u64).filter(|n| *n > 0),
            etag: supported("etag"),
            sort: supported("sort"),
            bulk: supported("bulk"),
        })
    }

    /// What a target that answers no `/ServiceProviderConfig` is assumed to do: filter by
    /// `userName`/`displayName` and PATCH, which every profile the operator knows does.
    pub fn assumed() -> Self {
        Self { patch: true, filter: true, ..Default::default() }
    }

    /// The page size to ask for: `wanted`, lowered to what the target announces and what its
    /// profile is known to cap at.
    pub fn page_size(&self, wanted: usize, profile_cap: Option<usize>) -> usize {
        let announced = self.max_results.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        wanted.min(announced).min(profile_cap.unwrap_or(usize::MAX)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keycloak_service_provider_config_is_read() {
        // As Keycloak 26.7 answers it (id "" included).
        let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"], "id": "",
            "patch": {"supported": true}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": 100}, "changePassword": {"supported": false},
            "sort": {"supported": false}, "etag": {"supported": false}, "authenticationSchemes": []});
        let caps = Capabilities::from_service_provider_config(&doc).unwrap();
        assert_eq!(
            caps,
            Capabilities { patch: true, filter: true, max_results: Some(100), etag: false, sort: false, bulk: false }
        );
        assert_eq!(caps.page_size(200, None), 100);
        assert_eq!(caps.page_size(50, None), 50);
        assert_eq!(Capabilities::assumed().page_size(200, Some(100)), 100);
        assert_eq!(Capabilities::from_service_provider_config(&json!("<html>")), None);
        let bare = Capabilities::from_service_provider_config(&json!({"etag": {"supported": "yes"}})).unwrap();
        assert_eq!(bare, Capabilities::default(), "malformed entries count as unsupported");
    }
}
