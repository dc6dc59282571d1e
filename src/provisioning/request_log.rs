//! The log of recent provisioning requests: what the console's "Recent provisioning requests"
//! page shows an administrator when an identity provider's push fails. The HTTP layer records
//! each answered request to `/scim/v2` and `/api/v1` ([`RequestRecord`]: no body, header, query
//! string or secret); the store keeps the newest few of every replica.

use super::*;
use crate::store::{RequestQuery, RequestRecord};

/// Which statuses the page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusClass {
    /// Every request.
    #[default]
    All,
    /// 4xx and 5xx: refused or failed.
    Errors,
    /// 2xx (and 3xx, such as 304 Not Modified).
    Success,
    /// 4xx: the server refused the request (the client's to fix).
    ClientErrors,
    /// 5xx: the server failed.
    ServerErrors,
}

impl StatusClass {
    /// Every class, as the filter offers them.
    pub const ALL: [StatusClass; 5] = [
        StatusClass::All,
        StatusClass::Errors,
        StatusClass::Success,
        StatusClass::ClientErrors,
        StatusClass::ServerErrors,
    ];

    /// The name in a query string (`?status=errors`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::All => "all",
            StatusClass::Errors => "errors",
            StatusClass::Success => "success",
            StatusClass::ClientErrors => "4xx",
            StatusClass::ServerErrors => "5xx",
        }
    }

    /// The class of this name (empty: every request).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "" => Some(StatusClass::All),
            n => Self::ALL.into_iter().find(|c| c.as_str() == n),
        }
    }

    /// How the filter labels it.
    pub fn describe(self) -> &'static str {
        match self {
            StatusClass::All => "Every status",
            StatusClass::Errors => "Errors only (4xx and 5xx)",
            StatusClass::Success => "Successes (2xx, 3xx)",
            StatusClass::ClientErrors => "Refused (4xx)",
            StatusClass::ServerErrors => "Failed (5xx)",
        }
    }

    /// The statuses it covers (inclusive).
    pub fn range(self) -> Option<(u16, u16)> {
        match self {
            StatusClass::All => None,
            StatusClass::Errors => Some((400, 599)),
            StatusClass::Success => Some((200, 399)),
            StatusClass::ClientErrors => Some((400, 499)),
            StatusClass::ServerErrors => Some((500, 599)),
        }
    }
}

/// The longest path recorded; longer paths are cut (no SCIM path of this server is near it).
pub const MAX_PATH: usize = 512;

/// `path` as recorded: at most [`MAX_PATH`] bytes, cut at a character boundary.
pub fn recorded_path(path: &str) -> String {
    if path.len() <= MAX_PATH {
        return path.to_string();
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

impl Directory {
    /// Stores answered requests and keeps only the newest `keep` of them (of every replica).
    /// Not audited: the log is a diagnostic view, not a record of changes.
    pub async fn record_requests(&self, records: &[RequestRecord], keep: u64) -> Result<u64, ScimError> {
        let mut tx = self.store.begin_write().await?;
        let pruned = tx.append_requests(records, keep).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    /// The newest logged requests matching `query`, newest first, and every key (id, name) that
    /// made one (for the filter). Callers check [`access::Action::ReadAuditTrail`].
    pub async fn recent_requests(
        &self,
        query: &RequestQuery,
    ) -> Result<(Vec<RequestRecord>, Vec<(String, String)>), ScimError> {
        let mut tx = self.store.begin_read().await?;
        let rows = tx.recent_requests(query).await?;
        let keys = tx.request_keys().await?;
        Ok((rows, keys))
    }

    /// Now on this directory's clock (RFC 3339, as stored).
    pub fn now_text(&self) -> String {
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_parse_by_name_and_cover_their_ranges() {
        for c in StatusClass::ALL {
            assert_eq!(StatusClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(StatusClass::parse(""), Some(StatusClass::All));
        assert_eq!(StatusClass::parse("teapots"), None);
        assert_eq!(StatusClass::Errors.range(), Some((400, 599)));
        assert_eq!(StatusClass::All.range(), None);
    }

    #[test]
    fn long_paths_are_cut_at_a_character_boundary() {
        assert_eq!(recorded_path("/scim/v2/Users/abc"), "/scim/v2/Users/abc");
        let long = format!("/scim/v2/Users/{}", "é".repeat(400));
        let cut = recorded_path(&long);
        assert!(cut.len() <= MAX_PATH + "…".len() && cut.ends_with('…'), "{}", cut.len());
    }
}
