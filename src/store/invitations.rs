//! The store's interface for invitations and the outbox of messages to send.

use async_trait::async_trait;

use super::*;

/// Reads of invitations and the outbox of messages to send.
#[async_trait]
pub trait InvitationReads: Send {
    /// An invitation by the hash of its token.
    async fn invitation_by_token_hash(&mut self, token_hash: &str) -> StoreResult<Option<InvitationRecord>>;
    /// Invitations, newest first, optionally of one user.
    async fn invitations(&mut self, user_id: Option<&str>) -> StoreResult<Vec<InvitationRecord>>;
    /// Every message, newest first.
    async fn outbox(&mut self, limit: u64) -> StoreResult<Vec<OutboxMessage>>;
}

/// Writes of invitations and the outbox of messages to send; only a write transaction has them.
#[async_trait]
pub trait InvitationWrites: InvitationReads {
    /// Stores an invitation.
    async fn insert_invitation(&mut self, inv: &InvitationRecord) -> StoreResult<()>;
    /// Accepts an invitation that is pending and not expired at `now`, in one conditional
    /// update: of concurrent accepts (on any replica) exactly one gets `true`.
    async fn accept_invitation(&mut self, id: &str, now: &str) -> StoreResult<bool>;
    /// Cancels every pending invitation of a user and withdraws their unsent messages (their
    /// links cleared); returns how many invitations.
    async fn cancel_invitations(&mut self, user_id: &str, now: &str) -> StoreResult<u64>;
    /// Queues a message.
    async fn insert_outbox(&mut self, m: &OutboxMessage) -> StoreResult<()>;
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
    /// with `None`, parked at `now` (its link cleared). `false` as for [`InvitationWrites::outbox_sent`].
    async fn outbox_failed(
        &mut self,
        id: &str,
        claim: &str,
        error: &str,
        now: &str,
        retry_at: Option<&str>,
    ) -> StoreResult<bool>;
}
