//! The store's interface for the log of recent provisioning requests: bounded, shared by every
//! replica, holding no body, header, query string or secret.

use async_trait::async_trait;

use super::*;

/// One answered request to `/scim/v2` or `/api/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it arrived (RFC 3339, UTC).
    pub time: String,
    pub method: String,
    /// The path without its query string.
    pub path: String,
    pub status: u16,
    /// The key that authenticated it (id and name); `None` when no key did.
    pub key_id: Option<String>,
    pub key_name: Option<String>,
    /// How long the server took to answer, in microseconds.
    pub duration_us: i64,
    pub request_id: Option<String>,
}

/// Which requests to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestQuery {
    /// Only statuses in this range (inclusive).
    pub status: Option<(u16, u16)>,
    /// Only requests of this key (`Some(None)`: only requests no key authenticated).
    pub key_id: Option<Option<String>>,
    /// At most this many, newest first.
    pub limit: u64,
}

/// Reads of the request log.
#[async_trait]
pub trait RequestReads: Send {
    /// The newest requests matching `query`, newest first.
    async fn recent_requests(&mut self, query: &RequestQuery) -> StoreResult<Vec<RequestRecord>>;
    /// The keys (id, latest name) that made any logged request, by name.
    async fn request_keys(&mut self) -> StoreResult<Vec<(String, String)>>;
}

/// Writes of the request log; only a write transaction has them.
#[async_trait]
pub trait RequestWrites: RequestReads {
    /// Appends `records`, then deletes all but the newest `keep` rows (of every replica);
    /// returns how many rows went.
    async fn append_requests(&mut self, records: &[RequestRecord], keep: u64) -> StoreResult<u64>;
}
