//! Persistence: one SQL store behind the [`Store`] trait, serving SQLite (embedded default) and
//! PostgreSQL (shared by several replicas).
//!
//! The store knows rows, not rules: provisioning decisions live in `crate::provisioning`, which
//! runs each request as one [`Tx`] so that a change, its memberships and its audit event commit
//! together or not at all.

mod audit;
mod console;
pub mod copy;
mod dialect;
mod filter_sql;
mod invitations;
mod keys;
mod records;
mod requests;
mod roles;
mod sql;
mod teams;
mod users;

pub use audit::{AuditReads, AuditWrites};
pub use console::{ConsoleReads, ConsoleSessionRecord, ConsoleWrites, LoginLinkRecord, SigninFlowRecord};
pub use dialect::Dialect;
pub use filter_sql::{ResourceTable, SqlCondition, SqlValue, translate as translate_filter};
pub use invitations::{InvitationReads, InvitationWrites};
pub use keys::{KeyReads, KeyWrites};
pub use records::*;
pub use requests::{RequestQuery, RequestReads, RequestRecord, RequestWrites};
pub use roles::{RoleReads, RoleWrites};
pub use sql::SqlStore;
pub use teams::{TeamReads, TeamWrites};
pub use users::{UserReads, UserWrites};

/// The handle traits of every area, for callers that run transactions.
pub mod prelude {
    pub use super::{
        AuditReads, AuditWrites, ConsoleReads, ConsoleWrites, InvitationReads, InvitationWrites, KeyReads, KeyWrites,
        ReadTx, RequestReads, RequestWrites, RoleReads, RoleWrites, Store, TeamReads, TeamWrites, Tx, UserReads,
        UserWrites,
    };
}

use async_trait::async_trait;
use std::sync::Arc;

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
    /// Any database failure (PostgreSQL, and SQLite while migrating).
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A failure of the embedded SQLite database.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// The commit of a group of SQLite transactions failed: none of them took effect.
    #[error("commit failed: {0}")]
    CommitFailed(String),
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

impl From<rusqlite::Error> for StoreError {
    /// A busy or locked database (another process holding the write lock past the busy
    /// timeout) is worth retrying like a lost race; everything else is a database error.
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        {
            tracing::debug!(error = %e, "SQLite was busy");
            return StoreError::Concurrent("the resource".into());
        }
        StoreError::Sqlite(e)
    }
}

/// Counts of the SQLite writer's group commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Commits of the writer connection (each one sync of the log).
    pub commits: u64,
    /// Request transactions those commits made durable.
    pub transactions: u64,
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
    async fn begin_read(&self) -> StoreResult<Box<dyn ReadTx>>;
    /// A read handle without a transaction: each statement reads the latest committed state on
    /// its own (no BEGIN and ROLLBACK round trips). For reads that are one statement, or that
    /// do not need one snapshot across statements.
    async fn read(&self) -> StoreResult<Box<dyn ReadTx>>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// A counter bumped after every commit in this process that revoked or added API keys, so
    /// caches of verified keys can drop what they hold at once.
    fn key_generation(&self) -> u64;
    /// Closes the pool, waiting for connections to be returned.
    async fn close(&self);
    /// What the SQLite writer committed so far in this process (all zero on PostgreSQL, whose
    /// transactions commit one by one).
    fn commit_stats(&self) -> CommitStats {
        CommitStats::default()
    }
}

/// A user and its managed teams as (group id, display name).
pub type UserWithGroups = (UserRecord, Vec<(String, String)>);

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// A read handle: every area's reads and nothing else. A read transaction or a read handle
/// cannot write, by its type (and, on SQLite, by its connection, opened read-only).
pub trait ReadTx:
    UserReads + TeamReads + KeyReads + AuditReads + RoleReads + InvitationReads + ConsoleReads + RequestReads
{
}

impl<
    T: UserReads + TeamReads + KeyReads + AuditReads + RoleReads + InvitationReads + ConsoleReads + RequestReads + ?Sized,
> ReadTx for T
{
}

/// One write transaction: every area's reads and writes. Dropping it without [`Tx::commit`]
/// rolls back.
#[async_trait]
pub trait Tx:
    ReadTx
    + UserWrites
    + TeamWrites
    + KeyWrites
    + AuditWrites
    + RoleWrites
    + InvitationWrites
    + ConsoleWrites
    + RequestWrites
{
    /// Makes the transaction's writes durable.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// Opens (creating and migrating) the database named by `url`: a file path or `sqlite://...`
/// for SQLite, `postgres://...` for PostgreSQL.
pub async fn open(url: &str) -> StoreResult<SharedStore> {
    Ok(Arc::new(SqlStore::open(url).await?))
}
