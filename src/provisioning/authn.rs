//! The one door of authentication: a bearer secret in, the [`Principal`] it stands for out.
//! Every caller (the SCIM API, the access API, later the console) authenticates here and
//! decides with [`super::access::allowed`]; nothing else reads the key table to let a request in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Directory;
use super::access::Principal;
use super::keys::hash_secret;
use crate::scim::ScimError;
use crate::store::ApiKeyRecord;

/// Keys verified recently, by secret hash, so a burst of requests does not read the key table
/// for each one. An entry is trusted for `ttl` at most, and not at all once this process has
/// committed a key revocation since it was read (the store's key generation moved on); a key
/// revoked by another process (the CLI, another replica) stops working within `ttl`. Only valid
/// keys are cached.
pub(super) struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, CachedKey>>,
}

#[derive(Clone)]
struct CachedKey {
    principal: Principal,
    verified_at: Instant,
    generation: u64,
}

/// Entries held at most; the cache is emptied when full (only valid keys are cached, so this
/// bounds memory without an eviction policy that a key flood could exploit).
const KEY_CACHE_CAPACITY: usize = 1024;

impl KeyCache {
    /// A cache trusting entries for `ttl`; zero disables caching.
    pub(super) fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, hash: &str, generation: u64, now: Instant) -> Option<Principal> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|e| e.generation == generation && now.saturating_duration_since(e.verified_at) < self.ttl)
            .map(|e| e.principal.clone())
    }

    fn put(&self, hash: String, principal: Principal, generation: u64, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= KEY_CACHE_CAPACITY && !entries.contains_key(&hash) {
            entries.clear();
        }
        entries.insert(hash, CachedKey { principal, verified_at: now, generation });
    }
}

impl Directory {
    /// Authenticates a bearer secret: the principal of the unrevoked key it belongs to, with
    /// that key's permissions, or `None` for an unknown or revoked secret. A key with no
    /// permission is still authenticated (each action is then refused with 403 by
    /// [`super::access::check`]).
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, ScimError> {
        let hash = hash_secret(secret);
        // Read the generation before the key: a revocation committed after this point makes the
        // entry written below stale at once.
        let generation = self.store.key_generation();
        let now = Instant::now();
        if let Some(hit) = self.key_cache.get(&hash, generation, now) {
            return Ok(Some(hit));
        }
        let Some(key) = self.store.read().await?.key_by_hash(&hash).await? else { return Ok(None) };
        self.record_key_use(&key).await;
        let principal = Principal::from_key(&key);
        self.key_cache.put(hash, principal.clone(), generation, now);
        Ok(Some(principal))
    }

    /// Records that `key` is being used, when its recorded last use is older than
    /// [`LAST_USE_GRANULARITY`] (so a busy client writes once a minute, not per request; the
    /// cache above spares most requests the read too). A failure is logged, never the
    /// request's: a valid key is not refused because its last use could not be written.
    async fn record_key_use(&self, key: &ApiKeyRecord) {
        let now = self.clock.now();
        let not_before = crate::clock::format_time(now - LAST_USE_GRANULARITY);
        if key.last_used_at.as_deref().is_some_and(|t| t >= not_before.as_str()) {
            return;
        }
        let write = async {
            let mut tx = self.store.begin_write().await?;
            tx.touch_key(&key.id, &crate::clock::format_time(now), &not_before).await?;
            tx.commit().await
        };
        if let Err(e) = write.await {
            tracing::warn!(key = %key.id, error = %e, "recording the key's last use failed");
        }
    }
}

/// How precisely a key's last use is recorded.
const LAST_USE_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal::trusted("k")
    }

    #[test]
    fn cached_keys_expire_and_follow_the_generation() {
        let cache = KeyCache::new(Duration::from_secs(2));
        let t0 = Instant::now();
        cache.put("h".into(), principal(), 7, t0);
        assert!(cache.get("h", 7, t0 + Duration::from_secs(1)).is_some());
        assert!(cache.get("h", 7, t0 + Duration::from_secs(2)).is_none(), "expired");
        assert!(cache.get("h", 8, t0).is_none(), "a revocation since the read invalidates");
        assert!(cache.get("other", 7, t0).is_none());
    }

    #[test]
    fn a_zero_ttl_disables_the_cache_and_a_full_cache_starts_over() {
        let off = KeyCache::new(Duration::ZERO);
        let t0 = Instant::now();
        off.put("h".into(), principal(), 0, t0);
        assert!(off.get("h", 0, t0).is_none());
        let cache = KeyCache::new(Duration::from_secs(60));
        for i in 0..KEY_CACHE_CAPACITY {
            cache.put(format!("h{i}"), principal(), 0, t0);
        }
        assert!(cache.get("h0", 0, t0).is_some());
        cache.put("new".into(), principal(), 0, t0);
        assert!(cache.get("new", 0, t0).is_some());
        assert!(cache.get("h0", 0, t0).is_none(), "the full cache was emptied");
    }
}
