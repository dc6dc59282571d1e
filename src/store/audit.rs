//! The store's interface for the audit trail.

use async_trait::async_trait;

use super::*;

/// Reads of the audit trail.
#[async_trait]
pub trait AuditReads: Send {
    /// Events matching the query, oldest first.
    async fn list_audit(&mut self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Events matching the query whose action is one of `actions`, oldest first (the access
    /// review reads only the actions it undoes, however long the trail).
    async fn list_audit_of(&mut self, query: &AuditQuery, actions: &[&str]) -> StoreResult<Vec<AuditEvent>>;
}

/// Writes of the audit trail; only a write transaction has them.
#[async_trait]
pub trait AuditWrites: AuditReads {
    /// Appends an event.
    async fn append_audit(&mut self, event: &AuditEvent) -> StoreResult<()>;
}
