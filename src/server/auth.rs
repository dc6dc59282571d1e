//! Bearer-key authentication of SCIM requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::metrics::AuthLabels;
use super::response::ApiError;
use crate::provisioning::keys::{allows_scim, hash_secret};
use crate::scim::ScimError;

/// The key a request authenticated with, put into request extensions.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub id: String,
}

/// Keys verified recently, by secret hash, so a burst of requests does not read the key table
/// for each one. An entry is trusted for `ttl` at most, and not at all once this process has
/// committed a key revocation since it was read (the store's key generation moved on); a key
/// revoked by another process (the CLI, another replica) stops working within `ttl`.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, CachedKey>>,
}

#[derive(Clone)]
struct CachedKey {
    id: String,
    allows_scim: bool,
    verified_at: Instant,
    generation: u64,
}

/// Entries held at most; the cache is emptied when full (only valid keys are cached, so this
/// bounds memory without an eviction policy that a key flood could exploit).
const KEY_CACHE_CAPACITY: usize = 1024;

impl KeyCache {
    /// A cache trusting entries for `ttl`; zero disables caching.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, hash: &str, generation: u64, now: Instant) -> Option<CachedKey> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|e| e.generation == generation && now.saturating_duration_since(e.verified_at) < self.ttl)
            .cloned()
    }

    fn put(&self, hash: String, entry: CachedKey) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= KEY_CACHE_CAPACITY && !entries.contains_key(&hash) {
            entries.clear();
        }
        entries.insert(hash, entry);
    }
}

/// Extracts the bearer token: exactly `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}

/// Middleware: 401 without a valid key, 403 for a key lacking the SCIM permissions.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let refuse = |reason: &str, err: ScimError| {
        state.metrics.auth_failures.get_or_create(&AuthLabels { reason: reason.into() }).inc();
        ApiError(err).into_response()
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(
            "missing",
            ScimError::unauthorized("authentication required: send 'Authorization: Bearer <key>'"),
        );
    };
    let Some(token) = value.to_str().ok().and_then(bearer) else {
        return refuse("malformed", ScimError::unauthorized("malformed Authorization header: expected 'Bearer <key>'"));
    };
    let hash = hash_secret(token);
    let store = state.directory.store();
    // Read the generation before the key: a revocation committed after this point makes the
    // entry written below stale at once.
    let generation = store.key_generation();
    let now = Instant::now();
    let verified = match state.keys.get(&hash, generation, now) {
        Some(hit) => Ok(Some(hit)),
        None => {
            let key = match store.read().await {
                Ok(mut tx) => tx.key_by_hash(&hash).await,
                Err(e) => Err(e),
            };
            key.map(|found| {
                found.map(|key| {
                    let entry = CachedKey { allows_scim: allows_scim(&key), id: key.id, verified_at: now, generation };
                    state.keys.put(hash, entry.clone());
                    entry
                })
            })
        }
    };
    match verified {
        Ok(Some(key)) if key.allows_scim => {
            req.extensions_mut().insert(AuthenticatedKey { id: key.id });
            next.run(req).await
        }
        Ok(Some(_)) => refuse(
            "forbidden",
            ScimError::forbidden("this key lacks the user_access_invite and user_access_manage permissions"),
        ),
        Ok(None) => refuse("invalid", ScimError::unauthorized("the key is unknown or revoked")),
        Err(e) => ApiError(crate::provisioning::scim_from_store(e)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64, at: Instant) -> CachedKey {
        CachedKey { id: "k".into(), allows_scim: true, verified_at: at, generation }
    }

    #[test]
    fn cached_keys_expire_and_follow_the_generation() {
        let cache = KeyCache::new(Duration::from_secs(2));
        let t0 = Instant::now();
        cache.put("h".into(), entry(7, t0));
        assert!(cache.get("h", 7, t0 + Duration::from_secs(1)).is_some());
        assert!(cache.get("h", 7, t0 + Duration::from_secs(2)).is_none(), "expired");
        assert!(cache.get("h", 8, t0).is_none(), "a revocation since the read invalidates");
        assert!(cache.get("other", 7, t0).is_none());
    }

    #[test]
    fn a_zero_ttl_disables_the_cache_and_a_full_cache_starts_over() {
        let off = KeyCache::new(Duration::ZERO);
        let t0 = Instant::now();
        off.put("h".into(), entry(0, t0));
        assert!(off.get("h", 0, t0).is_none());
        let cache = KeyCache::new(Duration::from_secs(60));
        for i in 0..KEY_CACHE_CAPACITY {
            cache.put(format!("h{i}"), entry(0, t0));
        }
        assert!(cache.get("h0", 0, t0).is_some());
        cache.put("new".into(), entry(0, t0));
        assert!(cache.get("new", 0, t0).is_some());
        assert!(cache.get("h0", 0, t0).is_none(), "the full cache was emptied");
    }

    #[test]
    fn bearer_parsing_is_strict() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("abc"), None);
    }
}
