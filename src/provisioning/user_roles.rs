//! Effective roles of users: explicit SCIM roles win, else role mapping rules, else the default
//! role, else none (roles the user had are revoked, and the revocation audited). Recomputed in
//! the transaction that changes them.

use serde_json::{Map, Value, json};

use super::access_review::GrantDetail;
use super::observer::RoleOutcome;
use super::roles::{Role, match_roles};
use super::*;
use crate::store::{RoleGrant, UserRoleGrant};

/// The roles a user held before a change, with their grants, as `role.provision`,
/// `role.revoke` and `role.delete` record them (`grantsBefore`, `holders`): what the access
/// review needs to undo the change (see [`super::access_review::GrantDetail`]).
pub(super) fn grants_detail(grants: &[UserRoleGrant]) -> Value {
    let details: Vec<GrantDetail> = grants.iter().map(GrantDetail::from).collect();
    json!(details)
}

/// Setting that names the default role (by id); absent or empty means no default role.
pub const DEFAULT_ROLE_SETTING: &str = "default_role";

impl Directory {
    /// Matches the `roles` a request put in `doc` against the catalog: keeps only matched roles
    /// there (as the explicit roles), audits every unmatched one, and returns the matched roles.
    pub(super) async fn match_requested_roles(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user_id: &str,
        user_name: &str,
        doc: &mut Map<String, Value>,
    ) -> OpResult<Vec<Role>> {
        let requested: Vec<Value> = match doc.get("roles") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let mut explicit: Vec<Role> = Vec::new();
        if !requested.is_empty() {
            let catalog = tx.roles().await?;
            let m = match_roles(&requested, &catalog);
            for raw in &m.unmatched {
                self.audit(
                    tx,
                    ctx,
                    "role.unmatched",
                    "user",
                    user_id,
                    json!({"userName": user_name, "requestedRole": raw}),
                )
                .await?;
            }
            self.observer.role_event(RoleOutcome::Unmatched, m.unmatched.len() as u64);
            self.observer.role_event(RoleOutcome::Matched, m.matched.len() as u64);
            explicit = m.matched;
            if explicit.is_empty() {
                doc.remove("roles");
            } else {
                doc.insert("roles".into(), Value::Array(m.assigned));
            }
        }
        Ok(explicit)
    }

    /// Recomputes the effective roles of users whose team memberships changed, when a role
    /// mapping could be involved. Users with explicit SCIM roles are left alone. Users are
    /// locked in id order, the same in every transaction, so two recomputations of
    /// overlapping users queue instead of deadlocking.
    pub(super) async fn recompute_roles(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user_ids: &[String],
    ) -> OpResult<()> {
        let ordered: std::collections::BTreeSet<&String> = user_ids.iter().collect();
        for id in ordered {
            let Some(user) = tx.user(id).await? else { continue };
            if user.data.get("roles").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
                continue;
            }
            self.write_effective_roles(tx, ctx, id, Vec::new()).await?;
        }
        Ok(())
    }

    /// Writes the user's effective roles (see the module docs); the user row must exist.
    pub(super) async fn write_effective_roles(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user_id: &str,
        explicit: Vec<Role>,
    ) -> OpResult<()> {
        let previous = tx.role_grants(Some(user_id)).await?;
        self.assign_roles(tx, ctx, user_id, explicit, Some(previous)).await
    }

    /// Writes the effective roles of a user created in this transaction: it has no roles and
    /// belongs to no team yet, so neither needs reading.
    pub(super) async fn write_initial_roles(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user_id: &str,
        explicit: Vec<Role>,
    ) -> OpResult<()> {
        self.assign_roles(tx, ctx, user_id, explicit, None).await
    }

    /// `previous` holds the user's roles as read, or `None` for a user created in this
    /// transaction (no roles, no teams: nothing to read).
    async fn assign_roles(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user_id: &str,
        explicit: Vec<Role>,
        previous: Option<Vec<UserRoleGrant>>,
    ) -> OpResult<()> {
        let existing = previous.is_some();
        let previous = previous.unwrap_or_default();
        let (roles, source) = if !explicit.is_empty() {
            (explicit, "scim")
        } else {
            let mapped = if existing { tx.mapped_roles_of_user(user_id).await? } else { Vec::new() };
            if !mapped.is_empty() {
                self.observer.role_event(RoleOutcome::Mapping, mapped.len() as u64);
                (mapped, "mapping")
            } else {
                match self.default_role(tx).await? {
                    Some(role) => {
                        self.observer.role_event(RoleOutcome::DefaultRole, 1);
                        (vec![role], "default")
                    }
                    None => return self.revoke_roles(tx, ctx, user_id, &previous).await,
                }
            }
        };
        let new: Vec<(String, String)> = roles.iter().map(|r| (r.id.clone(), source.to_string())).collect();
        let old: Vec<(String, String)> = previous.iter().map(|g| (g.role.id.clone(), g.grant.source.clone())).collect();
        if new != old {
            // A role kept through the same path keeps its grant; anything else is granted now,
            // by this request's actor.
            let now = self.now();
            let grants: Vec<RoleGrant> = new
                .into_iter()
                .map(|(role_id, source)| {
                    previous.iter().find(|g| g.grant.role_id == role_id && g.grant.source == source).map_or_else(
                        || RoleGrant {
                            role_id: role_id.clone(),
                            source: source.clone(),
                            granted_at: Some(now.clone()),
                            granted_by: Some(ctx.actor.clone()),
                        },
                        |g| g.grant.clone(),
                    )
                })
                .collect();
            tx.set_user_roles(user_id, &grants, !previous.is_empty()).await?;
            let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
            let before: Vec<&str> = previous.iter().map(|g| g.role.name.as_str()).collect();
            self.audit(
                tx,
                ctx,
                "role.provision",
                "user",
                user_id,
                json!({"roles": names, "source": source, "previous": before,
                       "grantsBefore": grants_detail(&previous)}),
            )
            .await?;
        }
        Ok(())
    }

    /// No explicit, mapped or default role applies: the user keeps no role. A user that had
    /// roles loses them, and the audit trail says which and why.
    async fn revoke_roles(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user_id: &str,
        previous: &[UserRoleGrant],
    ) -> OpResult<()> {
        if previous.is_empty() {
            return Ok(());
        }
        tx.set_user_roles(user_id, &[], true).await?;
        self.observer.role_event(RoleOutcome::Revoked, 1);
        let before: Vec<&str> = previous.iter().map(|g| g.role.name.as_str()).collect();
        self.audit(
            tx,
            ctx,
            "role.revoke",
            "user",
            user_id,
            json!({"previous": before, "reason": "no explicit, mapped or default role applies",
                   "grantsBefore": grants_detail(previous)}),
        )
        .await
    }

    /// The configured default role, if any.
    pub(super) async fn default_role(&self, tx: &mut dyn ReadTx) -> OpResult<Option<Role>> {
        Ok(tx.role_named_by_setting(DEFAULT_ROLE_SETTING).await?)
    }
}
