//! The store's interface for teams (managed or not, the SCIM Groups among them) and their members.

use async_trait::async_trait;

use super::*;

/// Reads of teams (managed or not, the SCIM Groups among them) and their members.
#[async_trait]
pub trait TeamReads: Send {
    /// A team by its team id.
    async fn team(&mut self, team_id: &str) -> StoreResult<Option<TeamRecord>>;
    /// A managed team by its SCIM Group id.
    async fn group(&mut self, scim_id: &str) -> StoreResult<Option<TeamRecord>>;
    /// A team whose name equals `name` exactly.
    async fn team_by_name(&mut self, name: &str) -> StoreResult<Option<TeamRecord>>;
    /// Whether `handle` is taken.
    async fn handle_taken(&mut self, handle: &str) -> StoreResult<bool>;
    /// A page of managed teams (SCIM Groups) and the total count.
    async fn list_groups(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<TeamRecord>)>;
    /// Every team, managed or not, by name.
    async fn list_teams(&mut self) -> StoreResult<Vec<TeamRecord>>;
    /// Member user ids of a team, in insertion-independent stable order.
    async fn team_members(&mut self, team_id: &str) -> StoreResult<Vec<String>>;
    /// Every membership of every team, with when and by whom it was added.
    async fn memberships(&mut self) -> StoreResult<Vec<Membership>>;
    /// Number of members of a team.
    async fn team_member_count(&mut self, team_id: &str) -> StoreResult<u64>;
}

/// Writes of teams (managed or not, the SCIM Groups among them) and their members; only a write transaction has them.
#[async_trait]
pub trait TeamWrites: TeamReads {
    /// Inserts a team.
    async fn insert_team(&mut self, team: &TeamRecord) -> StoreResult<()>;
    /// Writes a team whose version was incremented by the caller (optimistic, as for users;
    /// indexed columns written only when they differ from `before`).
    async fn update_team(&mut self, before: &TeamRecord, team: &TeamRecord) -> StoreResult<()>;
    /// Adds members, recording `now` and `actor` (the audit actor) on the new ones; members
    /// already present keep their first addition. Returns how many were new.
    async fn add_team_members(
        &mut self,
        team_id: &str,
        user_ids: &[String],
        now: &str,
        actor: &str,
    ) -> StoreResult<u64>;
    /// Removes members; returns how many were removed.
    async fn remove_team_members(&mut self, team_id: &str, user_ids: &[String]) -> StoreResult<u64>;
    /// Removes every member; returns how many were removed.
    async fn clear_team_members(&mut self, team_id: &str) -> StoreResult<u64>;
}
