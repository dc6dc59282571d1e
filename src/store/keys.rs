//! The store's interface for application and service-account keys.

use async_trait::async_trait;

use super::*;

/// Reads of application and service-account keys.
#[async_trait]
pub trait KeyReads: Send {
    /// An unrevoked key by the hash of its secret.
    async fn key_by_hash(&mut self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Every key, revoked ones included.
    async fn list_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>>;
}

/// Writes of application and service-account keys; only a write transaction has them.
#[async_trait]
pub trait KeyWrites: KeyReads {
    /// Stores a new key.
    async fn insert_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// Revokes a key by id or name; returns whether one was revoked.
    async fn revoke_key(&mut self, id_or_name: &str, now: &str, reason: &str) -> StoreResult<bool>;
    /// Records that key `id` was used at `now`, unless a use at or after `not_before` is
    /// already recorded; returns whether it wrote.
    async fn touch_key(&mut self, id: &str, now: &str, not_before: &str) -> StoreResult<bool>;
    /// Revokes every unrevoked key owned by a user; returns their ids.
    async fn revoke_user_keys(&mut self, user_id: &str, now: &str, reason: &str) -> StoreResult<Vec<String>>;
}
