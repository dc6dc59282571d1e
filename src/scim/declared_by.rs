//! The request header by which the operator tells the server which Kubernetes object declares a
//! group: `Scim-Declared-By: <namespace>/<name>` of the ManagedTeam. The group's ownership
//! marker (`externalId`) names the namespace and the object's uid, never its name, so without
//! this header the console could not show which ManagedTeam a team comes from.
//!
//! Only parsing lives here; whether a request may declare (the operator's permission, a group
//! carrying a marker) is the provisioning layer's decision.

use super::ScimError;

/// Header name (lower case, as HTTP/2 carries it).
pub const HEADER: &str = "scim-declared-by";

/// Longest Kubernetes namespace: a DNS-1123 label.
const NAMESPACE_MAX: usize = 63;
/// Longest Kubernetes object name: a DNS-1123 subdomain.
const NAME_MAX: usize = 253;

/// A validated `namespace/name` of the Kubernetes object that declares a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredBy(String);

impl DeclaredBy {
    /// `namespace/name`, as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a header value: exactly one `/` between a namespace (a DNS-1123 label) and a name
    /// (a DNS-1123 subdomain); anything else is a 400 `invalidValue`.
    pub fn parse(value: &str) -> Result<Self, ScimError> {
        let bad =
            |why: &str| ScimError::invalid_value(format!("header {HEADER}: {why}; expected '<namespace>/<name>'"));
        let (namespace, name) = value.split_once('/').ok_or_else(|| bad("no '/'"))?;
        if name.contains('/') {
            return Err(bad("more than one '/'"));
        }
        if namespace.len() > NAMESPACE_MAX || !is_label(namespace) {
            return Err(bad("the namespace is not a DNS-1123 label"));
        }
        if name.len() > NAME_MAX || !name.split('.').all(is_label) {
            return Err(bad("the name is not a DNS-1123 subdomain"));
        }
        Ok(Self(value.to_string()))
    }

    /// Parses the header when it was sent; a value that is not text is a 400 as well.
    pub fn from_header(value: Option<&[u8]>) -> Result<Option<Self>, ScimError> {
        value
            .map(|v| {
                std::str::from_utf8(v)
                    .map_err(|_| ScimError::invalid_value(format!("header {HEADER} is not text")))
                    .and_then(Self::parse)
            })
            .transpose()
    }
}

/// A DNS-1123 label: 1 to 63 lower-case letters, digits and `-`, starting and ending with a
/// letter or digit.
fn is_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= NAMESPACE_MAX
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;

    #[test]
    fn a_namespace_and_a_name_are_accepted() {
        for ok in ["team-a/platform", "a/b", "ns1/web.frontend-2", &format!("{}/{}", "n".repeat(63), "x".repeat(63))] {
            assert_eq!(DeclaredBy::parse(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn anything_else_is_an_invalid_value() {
        let long_ns = format!("{}/x", "n".repeat(64));
        let long_name = format!("ns/{}", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "",
            "platform",
            "/platform",
            "ns/",
            "a/b/c",
            "Team/x",
            "ns/Web",
            "-ns/x",
            "ns/x-",
            "ns/a..b",
            "ns/a b",
            "ns/ä",
            long_ns.as_str(),
            long_name.as_str(),
        ] {
            let e = DeclaredBy::parse(bad).expect_err(bad);
            assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)), "{bad}");
        }
    }

    #[test]
    fn a_missing_header_declares_nothing_and_bytes_that_are_not_text_are_refused() {
        assert_eq!(DeclaredBy::from_header(None).expect("absent"), None);
        assert_eq!(DeclaredBy::from_header(Some(b"ns/x")).expect("text").map(|d| d.0), Some("ns/x".to_string()));
        assert!(DeclaredBy::from_header(Some(&[0xff, b'/', b'x'])).is_err());
    }
}
