//! The store's interface for users: live users and their managed teams.

use async_trait::async_trait;

use super::*;

/// Reads of users: live users and their managed teams.
#[async_trait]
pub trait UserReads: Send {
    /// A live (not deleted) user by id.
    async fn user(&mut self, id: &str) -> StoreResult<Option<UserRecord>>;
    /// A live user by userName, compared without regard to case.
    async fn user_by_name(&mut self, user_name: &str) -> StoreResult<Option<UserRecord>>;
    /// A live user by id, or else by userName (how the command line and the console name a
    /// user).
    async fn user_by_id_or_name(&mut self, user: &str) -> StoreResult<Option<UserRecord>> {
        match self.user(user).await? {
            Some(u) => Ok(Some(u)),
            None => self.user_by_name(user).await,
        }
    }
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
    /// Every user row, deleted ones included, oldest first (the access review).
    async fn all_accounts(&mut self) -> StoreResult<Vec<AccountRecord>>;
    /// Which of `ids` are live users.
    async fn existing_user_ids(&mut self, ids: &[String]) -> StoreResult<Vec<String>>;
    /// The managed teams a user belongs to, as (group id, display name).
    async fn groups_of_user(&mut self, user_id: &str) -> StoreResult<Vec<(String, String)>>;
}

/// Writes of users: live users and their managed teams; only a write transaction has them.
#[async_trait]
pub trait UserWrites: UserReads {
    /// Inserts a user; a taken userName is [`StoreError::Conflict`].
    async fn insert_user(&mut self, user: &UserRecord) -> StoreResult<()>;
    /// Writes a user whose `version` was incremented by the caller; fails with
    /// [`StoreError::Concurrent`] when the stored version is not `version - 1`. `before` is the
    /// row as read: indexed columns are written only when they change (rewriting an index entry
    /// with the same value still costs its pages).
    async fn update_user(&mut self, before: &UserRecord, user: &UserRecord) -> StoreResult<()>;
    /// Marks a user deleted (invisible to SCIM) and drops its memberships.
    async fn delete_user(&mut self, id: &str, now: &str) -> StoreResult<bool>;
}
