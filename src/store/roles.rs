//! The store's interface for the role catalog, server settings, users' effective roles and role mappings.

use async_trait::async_trait;

use super::*;

/// Reads of the role catalog, server settings, users' effective roles and role mappings.
#[async_trait]
pub trait RoleReads: Send {
    /// The role catalog, built-in roles first.
    async fn roles(&mut self) -> StoreResult<Vec<Role>>;
    /// A server setting.
    async fn setting(&mut self, name: &str) -> StoreResult<Option<String>>;
    /// The catalog role a setting names by id (`None` when unset, empty, or naming no role).
    async fn role_named_by_setting(&mut self, name: &str) -> StoreResult<Option<Role>>;
    /// A user's effective roles with the source of each.
    async fn user_roles(&mut self, user_id: &str) -> StoreResult<Vec<(Role, String)>>;
    /// The roles of one user (`Some`) or of every user, deleted ones included (`None`), each
    /// with its grant, by user then role.
    async fn role_grants(&mut self, user_id: Option<&str>) -> StoreResult<Vec<UserRoleGrant>>;
    /// Roles that role mappings grant to a user through its teams.
    async fn mapped_roles_of_user(&mut self, user_id: &str) -> StoreResult<Vec<Role>>;
    /// Whether any role mapping names this team.
    async fn team_is_mapped(&mut self, team_name: &str) -> StoreResult<bool>;
    /// Ids of live users who belong to any team with one of these names.
    async fn members_of_team_names(&mut self, names: &[String]) -> StoreResult<Vec<String>>;
    /// A role mapping by id.
    async fn role_mapping(&mut self, id: &str) -> StoreResult<Option<RoleMappingRecord>>;
    /// Every role mapping.
    async fn role_mappings(&mut self) -> StoreResult<Vec<RoleMappingRecord>>;
}

/// Writes of the role catalog, server settings, users' effective roles and role mappings; only a write transaction has them.
#[async_trait]
pub trait RoleWrites: RoleReads {
    /// Adds a role; a taken name is [`StoreError::Conflict`].
    async fn insert_role(&mut self, role: &Role, now: &str) -> StoreResult<()>;
    /// Deletes a custom role by id or name; returns whether one was deleted.
    async fn delete_role(&mut self, id_or_name: &str) -> StoreResult<bool>;
    /// Sets (or clears, with `None`) a server setting.
    async fn set_setting(&mut self, name: &str, value: Option<&str>) -> StoreResult<()>;
    /// Replaces a user's effective roles with `roles`, each with its grant time and actor as
    /// given; `had_roles: false` promises the user has none yet (a user being created), which
    /// saves the delete.
    async fn set_user_roles(&mut self, user_id: &str, roles: &[RoleGrant], had_roles: bool) -> StoreResult<()>;
    /// Serialises role recomputation for the teams of these names with every other write
    /// transaction that locks one of them, until this transaction ends. A role mapping change
    /// locks the teams it names before reading their members; a membership change locks its
    /// team before asking whether a mapping names it: of two such transactions, the second
    /// sees what the first committed, so neither recomputes roles from a state the other is
    /// changing. PostgreSQL: transaction-scoped advisory locks keyed by the name (a team name
    /// a mapping names may have no row yet, so there is no row to lock), taken in one order;
    /// SQLite: nothing to do, its writers are serial.
    async fn lock_team_names(&mut self, names: &[String]) -> StoreResult<()>;
    /// Inserts a role mapping.
    async fn insert_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()>;
    /// Writes a role mapping whose version the caller incremented (optimistic).
    async fn update_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()>;
    /// Deletes a role mapping.
    async fn delete_role_mapping(&mut self, id: &str) -> StoreResult<bool>;
}
