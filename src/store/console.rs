//! The store's interface for the console's sign-in state: sessions, OpenID Connect sign-ins
//! under way and single-use sign-in links. Every key is the SHA-256 of a secret a browser or a
//! person holds; the secrets themselves are never stored.

use async_trait::async_trait;

use super::*;

/// A console session.
#[derive(Clone, PartialEq)]
pub struct ConsoleSessionRecord {
    /// SHA-256 of the session id in the cookie.
    pub id_hash: String,
    pub user_id: String,
    /// The token every form of the session carries.
    pub csrf_token: String,
    /// How the person signed in: `oidc` or `link`.
    pub method: String,
    pub created: String,
    /// The last request seen (written at most about once a minute); the idle timeout counts
    /// from here.
    pub last_seen: String,
    /// The absolute timeout.
    pub expires_at: String,
}

impl std::fmt::Debug for ConsoleSessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSessionRecord")
            .field("user_id", &self.user_id)
            .field("method", &self.method)
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An OpenID Connect sign-in under way: what the callback needs to finish it.
#[derive(Clone, PartialEq)]
pub struct SigninFlowRecord {
    /// SHA-256 of the flow id in the browser's short-lived cookie.
    pub flow_hash: String,
    /// The `state` sent to the identity provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    pub created: String,
    pub expires_at: String,
}

impl std::fmt::Debug for SigninFlowRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigninFlowRecord").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

/// A single-use sign-in link.
#[derive(Clone, PartialEq)]
pub struct LoginLinkRecord {
    pub id: String,
    /// SHA-256 of the link's token.
    pub token_hash: String,
    pub user_id: String,
    pub created: String,
    pub expires_at: String,
    pub used_at: Option<String>,
}

impl std::fmt::Debug for LoginLinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLinkRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// Reads of the console's sign-in state.
#[async_trait]
pub trait ConsoleReads: Send {
    /// A session by the hash of its id.
    async fn console_session(&mut self, id_hash: &str) -> StoreResult<Option<ConsoleSessionRecord>>;
    /// A sign-in link by the hash of its token.
    async fn login_link(&mut self, token_hash: &str) -> StoreResult<Option<LoginLinkRecord>>;
}

/// Writes of the console's sign-in state; only a write transaction has them.
#[async_trait]
pub trait ConsoleWrites: ConsoleReads {
    /// Stores a new session.
    async fn insert_console_session(&mut self, s: &ConsoleSessionRecord) -> StoreResult<()>;
    /// Records a request of a session.
    async fn touch_console_session(&mut self, id_hash: &str, now: &str) -> StoreResult<()>;
    /// Ends a session; returns whether it existed.
    async fn delete_console_session(&mut self, id_hash: &str) -> StoreResult<bool>;
    /// Deletes sessions past their absolute timeout at `now` or idle since before
    /// `idle_cutoff`, and sign-in flows past their expiry; returns how many rows went.
    async fn purge_console(&mut self, now: &str, idle_cutoff: &str) -> StoreResult<u64>;
    /// Stores a sign-in under way.
    async fn insert_signin_flow(&mut self, f: &SigninFlowRecord) -> StoreResult<()>;
    /// Takes (reads and deletes) a sign-in under way: of concurrent takes of one flow exactly
    /// one gets it.
    async fn take_signin_flow(&mut self, flow_hash: &str) -> StoreResult<Option<SigninFlowRecord>>;
    /// Stores a sign-in link.
    async fn insert_login_link(&mut self, l: &LoginLinkRecord) -> StoreResult<()>;
    /// Marks a link used at `now` if it is unused and unexpired then, in one conditional
    /// update: of concurrent uses exactly one gets `true`.
    async fn use_login_link(&mut self, token_hash: &str, now: &str) -> StoreResult<bool>;
}
