//! Persistence: one SQL store behind the [`Store`] trait, serving SQLite (embedded default) and
//! PostgreSQL (shared by several replicas).
//!
//! The store knows rows, not rules: provisioning decisions live in `crate::provisioning`, which
//! runs each request as one [`Tx`] so that a change, its memberships and its audit event commit
//! together or not at all.

pub mod copy;
mod dialect;
mod filter_sql;
mod records;
mod sql;

pub use dialect::Dialect;
pub use filter_sql::{ResourceTable, SqlCondition, SqlValue, translate as translate_filter};
pub use records::*;
pub use sql::SqlStore;

use async_trait::async_trait;
use std::sync::Arc;

use crate::provisioning::roles::Role;
use crate::scim::filter::Filter;
use crate::scim::list::SortOrder;
use crate::scim::schema::ResourceType;

/// Errors of the store. Callers map them to SCIM errors in one place (`provisioning::error`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (e.g. userName taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The row changed since it was read (optimistic concurrency).
    #[error("concurrent modification of {0}")]
    Concurrent(String),
    /// The request cannot be expressed against this store (e.g. an unsupported filter).
    #[error("{0}")]
    Unsupported(String),
    /// A filter or sort named something the store cannot evaluate.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// Any database failure.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored document could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// PostgreSQL's `serialization_failure` and `deadlock_detected`: the transaction lost a race
/// with another one (possibly on another replica) and is worth running again.
const RETRYABLE_SQLSTATES: [&str; 2] = ["40001", "40P01"];

impl From<sqlx::Error> for StoreError {
    /// Serialization failures and deadlocks become [`StoreError::Concurrent`], which callers
    /// retry like a lost optimistic update; everything else stays a database error.
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && let Some(code) = db.code()
            && RETRYABLE_SQLSTATES.contains(&code.as_ref())
        {
            tracing::debug!(sqlstate = %code, message = db.message(), "transaction lost a race");
            return StoreError::Concurrent("the resource".into());
        }
        StoreError::Database(e)
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What a list query asks of the store: already-parsed filter, sort, and the page.
#[derive(Debug, Clone)]
pub struct ListSpec<'a> {
    /// The resource type the filter's attribute names resolve against.
    pub resource_type: &'a ResourceType,
    pub filter: Option<&'a Filter>,
    pub sort_by: Option<&'a crate::scim::filter::AttrPath>,
    pub sort_order: SortOrder,
    /// Zero-based offset.
    pub offset: u64,
    pub limit: u64,
}

/// A database holding users, teams, keys and the audit trail.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which SQL dialect serves this store.
    fn dialect(&self) -> Dialect;
    /// Starts a transaction that may write. On SQLite, writers queue for the single write lock.
    async fn begin_write(&self) -> StoreResult<Box<dyn Tx>>;
    /// Starts a read-only transaction: a consistent snapshot for a list and its count.
    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>>;
    /// A read handle without a transaction: each statement reads the latest committed state on
    /// its own (no BEGIN and ROLLBACK round trips). For reads that are one statement, or that
    /// do not need one snapshot across statements.
    async fn read(&self) -> StoreResult<Box<dyn Tx>>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// A counter bumped after every commit in this process that revoked or added API keys, so
    /// caches of verified keys can drop what they hold at once.
    fn key_generation(&self) -> u64;
    /// Closes the pool, waiting for connections to be returned.
    async fn close(&self);
}

/// A user and its managed teams as (group id, display name).
pub type UserWithGroups = (UserRecord, Vec<(String, String)>);

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// One database transaction. Dropping it without [`Tx::commit`] rolls back.
#[async_trait]
pub trait Tx: Send {
    // ---- users
    /// A live (not deleted) user by id.
    async fn user(&mut self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// A live user by userName, compared without regard to case.
    async fn user_by_name(&mut self, user_name: &str) -> StoreResult<Option<UserRecord>>;
    /// Inserts a user; a taken userName is [`StoreError::Conflict`].
    async fn insert_user(&mut self, user: &UserRecord) -> StoreResult<()>;
    /// Writes a user whose `version` was incremented by the caller; fails with
    /// [`StoreError::Concurrent`] when the stored version is not `version - 1`. `before` is the
    /// row as read: indexed columns are written only when they change (rewriting an index entry
    /// with the same value still costs its pages).
    async fn update_user(&mut self, before: &UserRecord, user: &UserRecord) -> StoreResult<()>;
    /// Marks a user deleted (invisible to SCIM) and drops its memberships.
    async fn delete_user(&mut self, id: &str, now: &str) -> StoreResult<bool>;
    /// A page of live users and the total count.
    async fn list_users(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<UserRecord>)>;
    /// A live user with its managed teams (group id, display name), read in one statement.
    async fn user_with_groups(&mut self, id: &str) -> StoreResult<Option<UserWithGroups>>;
    /// A page of live users, each with its managed teams when `with_groups` (else none are
    /// read), and the total count: one statement for the page, plus a COUNT only when the page
    /// does not tell the total.
    async fn list_users_with_groups(
        &mut self,
        spec: &ListSpec<'_>,
        with_groups: bool,
    ) -> StoreResult<(u64, Vec<UserWithGroups>)>;
    /// Which of `ids` are live users.
    async fn existing_user_ids(&mut self, ids: &[String]) -> StoreResult<Vec<String>>;
    /// The managed teams a user belongs to, as (group id, display name).
    async fn groups_of_user(&mut self, user_id: &str) -> StoreResult<Vec<(String, String)>>;

    // ---- teams
    /// A team by its team id.
    async fn team(&mut self, team_id: &str) -> StoreResult<Option<TeamRecord>>;
    /// A managed team by its SCIM Group id.
    async fn group(&mut self, scim_id: &str) -> StoreResult<Option<TeamRecord>>;
    /// A team whose name equals `name` exactly.
    async fn team_by_name(&mut self, name: &str) -> StoreResult<Option<TeamRecord>>;
    /// Whether `handle` is taken.
    async fn handle_taken(&mut self, handle: &str) -> StoreResult<bool>;
    /// Inserts a team.
    async fn insert_team(&mut self, team: &TeamRecord) -> StoreResult<()>;
    /// Writes a team whose version was incremented by the caller (optimistic, as for users;
    /// indexed columns written only when they differ from `before`).
    async fn update_team(&mut self, before: &TeamRecord, team: &TeamRecord) -> StoreResult<()>;
    /// A page of managed teams (SCIM Groups) and the total count.
    async fn list_groups(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<TeamRecord>)>;
    /// Every team, managed or not, by name.
    async fn list_teams(&mut self) -> StoreResult<Vec<TeamRecord>>;
    /// Member user ids of a team, in insertion-independent stable order.
    async fn team_members(&mut self, team_id: &str) -> StoreResult<Vec<String>>;
    /// Number of members of a team.
    async fn team_member_count(&mut self, team_id: &str) -> StoreResult<u64>;
    /// Adds members (already present ones are kept once); returns how many were new.
    async fn add_team_members(&mut self, team_id: &str, user_ids: &[String]) -> StoreResult<u64>;
    /// Removes members; returns how many were removed.
    async fn remove_team_members(&mut self, team_id: &str, user_ids: &[String]) -> StoreResult<u64>;
    /// Removes every member; returns how many were removed.
    async fn clear_team_members(&mut self, team_id: &str) -> StoreResult<u64>;

    // ---- application keys
    /// Stores a new key.
    async fn insert_key(&mut self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// An unrevoked key by the hash of its secret.
    async fn key_by_hash(&mut self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Every key, revoked ones included.
    async fn list_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key by id or name; returns whether one was revoked.
    async fn revoke_key(&mut self, id_or_name: &str, now: &str, reason: &str) -> StoreResult<bool>;
    /// Revokes every unrevoked key owned by a user; returns their ids.
    async fn revoke_user_keys(&mut self, user_id: &str, now: &str, reason: &str) -> StoreResult<Vec<String>>;

    // ---- audit trail
    /// Appends an event.
    async fn append_audit(&mut self, event: &AuditEvent) -> StoreResult<()>;
    /// Events matching the query, oldest first.
    async fn list_audit(&mut self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;

    // ---- roles
    /// The role catalog, built-in roles first.
    async fn roles(&mut self) -> StoreResult<Vec<Role>>;
    /// Adds a role; a taken name is [`StoreError::Conflict`].
    async fn insert_role(&mut self, role: &Role, now: &str) -> StoreResult<()>;
    /// Deletes a custom role by id or name; returns whether one was deleted.
    async fn delete_role(&mut self, id_or_name: &str) -> StoreResult<bool>;
    /// A server setting.
    async fn setting(&mut self, name: &str) -> StoreResult<Option<String>>;
    /// The catalog role a setting names by id (`None` when unset, empty, or naming no role).
    async fn role_named_by_setting(&mut self, name: &str) -> StoreResult<Option<Role>>;
    /// Sets (or clears, with `None`) a server setting.
    async fn set_setting(&mut self, name: &str, value: Option<&str>) -> StoreResult<()>;
    /// A user's effective roles with the source of each.
    async fn user_roles(&mut self, user_id: &str) -> StoreResult<Vec<(Role, String)>>;
    /// Replaces a user's effective roles; `had_roles: false` promises the user has none yet
    /// (a user being created), which saves the delete.
    async fn set_user_roles(&mut self, user_id: &str, roles: &[(String, String)], had_roles: bool) -> StoreResult<()>;
    /// Roles that role mappings grant to a user through its teams.
    async fn mapped_roles_of_user(&mut self, user_id: &str) -> StoreResult<Vec<Role>>;
    /// Whether any role mapping names this team.
    async fn team_is_mapped(&mut self, team_name: &str) -> StoreResult<bool>;
    /// Ids of live users who belong to any team with one of these names.
    async fn members_of_team_names(&mut self, names: &[String]) -> StoreResult<Vec<String>>;
    /// Serialises role recomputation for the teams of these names with every other write
    /// transaction that locks one of them, until this transaction ends. A role mapping change
    /// locks the teams it names before reading their members; a membership change locks its
    /// team before asking whether a mapping names it: of two such transactions, the second
    /// sees what the first committed, so neither recomputes roles from a state the other is
    /// changing. PostgreSQL: transaction-scoped advisory locks keyed by the name (a team name
    /// a mapping names may have no row yet, so there is no row to lock), taken in one order;
    /// SQLite: nothing to do, its writers are serial.
    async fn lock_team_names(&mut self, names: &[String]) -> StoreResult<()>;

    // ---- role mappings
    /// A role mapping by id.
    async fn role_mapping(&mut self, id: &str) -> StoreResult<Option<RoleMappingRecord>>;
    /// Every role mapping.
    async fn role_mappings(&mut self) -> StoreResult<Vec<RoleMappingRecord>>;
    /// Inserts a role mapping.
    async fn insert_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()>;
    /// Writes a role mapping whose version the caller incremented (optimistic).
    async fn update_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()>;
    /// Deletes a role mapping.
    async fn delete_role_mapping(&mut self, id: &str) -> StoreResult<bool>;

    // ---- invitations and outbox
    /// Stores an invitation.
    async fn insert_invitation(&mut self, inv: &InvitationRecord) -> StoreResult<()>;
    /// An invitation by the hash of its token.
    async fn invitation_by_token_hash(&mut self, token_hash: &str) -> StoreResult<Option<InvitationRecord>>;
    /// Invitations, newest first, optionally of one user.
    async fn invitations(&mut self, user_id: Option<&str>) -> StoreResult<Vec<InvitationRecord>>;
    /// Accepts an invitation that is pending and not expired at `now`, in one conditional
    /// update: of concurrent accepts (on any replica) exactly one gets `true`.
    async fn accept_invitation(&mut self, id: &str, now: &str) -> StoreResult<bool>;
    /// Cancels every pending invitation of a user and withdraws their unsent messages (their
    /// links cleared); returns how many invitations.
    async fn cancel_invitations(&mut self, user_id: &str, now: &str) -> StoreResult<u64>;
    /// Queues a message.
    async fn insert_outbox(&mut self, m: &OutboxMessage) -> StoreResult<()>;
    /// Every message, newest first.
    async fn outbox(&mut self, limit: u64) -> StoreResult<Vec<OutboxMessage>>;
    /// Claims up to `limit` messages that are due at `now` (unsent, neither parked nor
    /// withdrawn, next attempt due, no unexpired claim), oldest first, for `claim` until
    /// `until`: while the claim holds, no other deliverer takes them. On PostgreSQL, rows
    /// another replica is claiming at this moment are skipped, not waited for.
    async fn claim_outbox(
        &mut self,
        now: &str,
        until: &str,
        claim: &str,
        limit: u64,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Marks a message of `claim` sent at `now`, clears its link and claim, and keeps `body`
    /// as its text. `false`: the message is no longer this claim's (it expired and another
    /// deliverer took the message over).
    async fn outbox_sent(&mut self, id: &str, claim: &str, now: &str, body: &str) -> StoreResult<bool>;
    /// Records a failed attempt of a message of `claim`: retried not before `retry_at`, or,
    /// with `None`, parked at `now` (its link cleared). `false` as for [`Tx::outbox_sent`].
    async fn outbox_failed(
        &mut self,
        id: &str,
        claim: &str,
        error: &str,
        now: &str,
        retry_at: Option<&str>,
    ) -> StoreResult<bool>;

    /// Makes the transaction's writes durable.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Opens (creating and migrating) the database named by `url`: a file path or `sqlite://...`
/// for SQLite, `postgres://...` for PostgreSQL.
pub async fn open(url: &str) -> StoreResult<SharedStore> {
    Ok(Arc::new(SqlStore::open(url).await?))
}
