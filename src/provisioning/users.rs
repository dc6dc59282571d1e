//! Users: create, read, replace, patch, deactivate, delete, list.

use serde_json::{Map, Value, json};

use super::access::{self, Action};
use super::view::user_json;
use super::*;
use crate::scim::list::ListQuery;
use crate::scim::patch::{PatchRequest, apply_patch, parse_patch_request};
use crate::scim::projection::Projection;
use crate::scim::resource::normalize;
use crate::store::UserRecord;

/// Columns mirrored from a user document.
struct UserColumns {
    user_name: String,
    external_id: Option<String>,
    display_name: Option<String>,
    active: bool,
}

fn columns(doc: &Map<String, Value>) -> Result<UserColumns, ScimError> {
    let user_name = doc_str(doc, "userName")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("userName is required and must be a non-empty string"))?;
    Ok(UserColumns {
        user_name,
        external_id: doc_str(doc, "externalId"),
        display_name: doc_str(doc, "displayName"),
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
    })
}

impl Directory {
    /// The SCIM representation of a user: its document with effective roles and, when they will
    /// be returned, its groups.
    async fn user_view(
        &self,
        tx: &mut dyn ReadTx,
        rec: &UserRecord,
        with_groups: bool,
        ctx: &RequestContext,
    ) -> OpResult<Resource> {
        let groups = if with_groups { tx.groups_of_user(&rec.id).await? } else { Vec::new() };
        Ok(user_resource(rec, &groups, ctx))
    }

    /// Creates a user (POST /Users).
    pub async fn create_user(&self, ctx: &RequestContext, body: &Value) -> Result<Resource, ScimError> {
        ctx.authorize(Action::InviteUsers)?;
        let mut doc = normalize(&self.types.user, body)?;
        // A new user is active unless the request says otherwise.
        doc.entry("active").or_insert(Value::Bool(true));
        let cols = columns(&doc)?;
        ctx.authorize_external_id(None, cols.external_id.as_deref())?;
        self.retry(|| self.try_create_user(ctx, &doc, &cols)).await
    }

    async fn try_create_user(
        &self,
        ctx: &RequestContext,
        doc: &Map<String, Value>,
        cols: &UserColumns,
    ) -> OpResult<Resource> {
        let mut tx = self.store.begin_write().await?;
        // A taken userName (without regard to case) fails the insert below on the database's
        // unique index, as 409 `uniqueness`: no read beforehand.
        let now = self.now();
        let id = super::ids::new_id();
        let mut doc = doc.clone();
        let explicit = self.match_requested_roles(tx.as_mut(), ctx, &id, &cols.user_name, &mut doc).await?;
        let rec = UserRecord {
            id,
            user_name: cols.user_name.clone(),
            external_id: cols.external_id.clone(),
            display_name: cols.display_name.clone(),
            active: cols.active,
            data: doc,
            created: now.clone(),
            last_modified: now,
            version: 1,
        };
        tx.insert_user(&rec).await?;
        self.write_initial_roles(tx.as_mut(), ctx, &rec.id, explicit).await?;
        if rec.active && ctx.withhold_invitation {
            let details = json!({"userName": rec.user_name, "reason": "the client asked to withhold it"});
            self.audit(tx.as_mut(), ctx, "invitation.withheld", "user", &rec.id, details).await?;
        } else if rec.active {
            self.issue_invitation(tx.as_mut(), ctx, &rec).await?;
        }
        self.audit(
            tx.as_mut(),
            ctx,
            "user.create",
            "user",
            &rec.id,
            json!({"userName": rec.user_name, "active": rec.active}),
        )
        .await?;
        let view = self.user_view(tx.as_mut(), &rec, false, ctx).await?;
        tx.commit().await?;
        Ok(view)
    }

    /// Reads a user (GET /Users/{id}).
    pub async fn get_user(
        &self,
        ctx: &RequestContext,
        id: &str,
        projection: &Projection,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ReadUsers)?;
        // One statement: no transaction needed for a consistent answer.
        let mut tx = self.store.read().await?;
        let (rec, groups) = tx.user_with_groups(id).await?.ok_or_else(|| user_not_found(id))?;
        let groups = if projection.includes_top_level(&self.types.user, "groups") { groups } else { Vec::new() };
        Ok(user_resource(&rec, &groups, ctx))
    }

    /// Replaces a user (PUT /Users/{id}).
    ///
    /// The new document and its columns are computed before the write transaction (they do not
    /// depend on the stored user), and the answer is built after it from what was written.
    pub async fn replace_user(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ChangeUsers)?;
        let mut doc = normalize(&self.types.user, body)?;
        doc.entry("active").or_insert(Value::Bool(true));
        let cols = columns(&doc)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let before = tx.user(id).await?.ok_or_else(|| user_not_found(id))?;
            check_if_match(if_match, before.version)?;
            let rec = self.write_user(tx.as_mut(), ctx, &before, doc.clone(), &cols, "user.replace").await?;
            let groups = tx.groups_of_user(&rec.id).await?;
            tx.commit().await?;
            Ok(user_resource(&rec, &groups, ctx))
        })
        .await
    }

    /// Applies a PATCH (PATCH /Users/{id}).
    ///
    /// The PATCH is evaluated on a read of the user, outside the write transaction (its cost
    /// grows with the values it touches and must not hold up other writers); the transaction
    /// reads the user again and writes only if it is still at the version evaluated, else the
    /// attempt starts over from a new read. The answer is built after the commit.
    pub async fn patch_user(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ChangeUsers)?;
        let request = parse_patch_request(body)?;
        // On SQLite (one writer) the first attempt evaluates the PATCH outside the write
        // transaction, which is held only to write; a retry after losing a race evaluates it
        // inside, on the row as locked, so concurrent PATCHes of one user queue instead of
        // losing to each other. PostgreSQL writers run in parallel and lock only the row:
        // there, every attempt evaluates inside (no read before the transaction).
        let optimistic = std::sync::atomic::AtomicBool::new(self.store.dialect() == Dialect::Sqlite);
        self.retry(|| async {
            if !optimistic.swap(false, std::sync::atomic::Ordering::Relaxed) {
                return self.patch_user_locked(ctx, id, &request, if_match).await;
            }
            let (before, groups) = {
                let mut rd = self.store.read().await?;
                rd.user_with_groups(id).await?.ok_or_else(|| user_not_found(id))?
            };
            check_if_match(if_match, before.version)?;
            let mut doc = before.data.clone();
            let outcome = apply_patch(&self.types.user, &mut doc, &request, &[])?;
            if !outcome.changed {
                // Nothing to write: the user as read is the answer.
                return Ok(user_resource(&before, &groups, ctx));
            }
            let cols = columns(&doc)?;
            let mut tx = self.store.begin_write().await?;
            let current = tx.user(id).await?.ok_or_else(|| user_not_found(id))?;
            check_if_match(if_match, current.version)?;
            if current.version != before.version {
                return Err(StoreError::Concurrent(format!("user {id}")).into());
            }
            let rec = self.write_user(tx.as_mut(), ctx, &current, doc, &cols, "user.patch").await?;
            let groups = tx.groups_of_user(&rec.id).await?;
            tx.commit().await?;
            Ok(user_resource(&rec, &groups, ctx))
        })
        .await
    }

    /// One attempt of a PATCH evaluated inside the write transaction.
    async fn patch_user_locked(
        &self,
        ctx: &RequestContext,
        id: &str,
        request: &PatchRequest,
        if_match: Option<&str>,
    ) -> OpResult<Resource> {
        let mut tx = self.store.begin_write().await?;
        let before = tx.user(id).await?.ok_or_else(|| user_not_found(id))?;
        check_if_match(if_match, before.version)?;
        let mut doc = before.data.clone();
        let outcome = apply_patch(&self.types.user, &mut doc, request, &[])?;
        let rec = if outcome.changed {
            let cols = columns(&doc)?;
            self.write_user(tx.as_mut(), ctx, &before, doc, &cols, "user.patch").await?
        } else {
            before
        };
        let groups = tx.groups_of_user(&rec.id).await?;
        tx.commit().await?;
        Ok(user_resource(&rec, &groups, ctx))
    }

    /// Writes a changed user document, with the audit event and the offboarding rules.
    async fn write_user(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        before: &UserRecord,
        mut doc: Map<String, Value>,
        cols: &UserColumns,
        action: &str,
    ) -> OpResult<UserRecord> {
        ctx.authorize_external_id(before.external_id.as_deref(), cols.external_id.as_deref())?;
        if !cols.user_name.eq_ignore_ascii_case(&before.user_name)
            && let Some(other) = tx.user_by_name(&cols.user_name).await?
            && other.id != before.id
        {
            return Err(ScimError::uniqueness(format!("userName '{}' is already taken", cols.user_name)).into());
        }
        let explicit = self.match_requested_roles(tx, ctx, &before.id, &cols.user_name, &mut doc).await?;
        if doc == before.data {
            return Ok(before.clone());
        }
        let rec = UserRecord {
            id: before.id.clone(),
            user_name: cols.user_name.clone(),
            external_id: cols.external_id.clone(),
            display_name: cols.display_name.clone(),
            active: cols.active,
            data: doc,
            created: before.created.clone(),
            last_modified: self.now(),
            version: before.version + 1,
        };
        tx.update_user(before, &rec).await?;
        self.write_effective_roles(tx, ctx, &rec.id, explicit).await?;
        let changed: Vec<&String> = changed_keys(&before.data, &rec.data);
        self.audit(tx, ctx, action, "user", &rec.id, json!({"changed": changed})).await?;
        if before.active && !rec.active {
            self.on_deactivated(tx, ctx, &rec).await?;
        } else if !before.active && rec.active {
            self.audit(tx, ctx, "user.reactivate", "user", &rec.id, json!({})).await?;
        }
        Ok(rec)
    }

    /// Offboarding: a deactivated user loses every access path it had.
    async fn on_deactivated(&self, tx: &mut dyn Tx, ctx: &RequestContext, rec: &UserRecord) -> OpResult<()> {
        let now = self.now();
        let revoked = tx.revoke_user_keys(&rec.id, &now, "owner deactivated").await?;
        let cancelled = tx.cancel_invitations(&rec.id, &now).await?;
        self.audit(
            tx,
            ctx,
            "user.deactivate",
            "user",
            &rec.id,
            json!({"revokedKeys": revoked, "cancelledInvitations": cancelled}),
        )
        .await?;
        Ok(())
    }

    /// Deletes a user (DELETE /Users/{id}): disabled, memberships removed, gone from SCIM.
    pub async fn delete_user(&self, ctx: &RequestContext, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
        ctx.authorize(Action::DeleteUsers)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let before = tx.user(id).await?.ok_or_else(|| user_not_found(id))?;
            check_if_match(if_match, before.version)?;
            if access::is_kubernetes_owned(before.external_id.as_deref()) {
                ctx.authorize(Action::ChangeKubernetesOwned)?;
            }
            let now = self.now();
            let groups = tx.groups_of_user(id).await?;
            let revoked = tx.revoke_user_keys(id, &now, "owner deleted").await?;
            tx.cancel_invitations(id, &now).await?;
            tx.delete_user(id, &now).await?;
            let teams: Vec<&String> = groups.iter().map(|(g, _)| g).collect();
            self.audit(
                tx.as_mut(),
                ctx,
                "user.delete",
                "user",
                id,
                json!({"userName": before.user_name, "removedFromGroups": teams, "revokedKeys": revoked,
                       "wasActive": before.active}),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Lists users (GET /Users, POST /Users/.search).
    pub async fn list_users(
        &self,
        ctx: &RequestContext,
        query: &ListQuery,
        projection: &Projection,
    ) -> Result<(u64, Vec<Resource>), ScimError> {
        ctx.authorize(Action::ReadUsers)?;
        let parsed = ParsedList::parse(query)?;
        let spec = parsed.spec(&self.types.user, query);
        // The page and its users' groups are one statement (see `Tx::list_users_with_groups`).
        let mut tx = self.store.read().await?;
        let with_groups = projection.includes_top_level(&self.types.user, "groups");
        let (total, rows) = tx.list_users_with_groups(&spec, with_groups).await?;
        Ok((total, rows.iter().map(|(rec, groups)| user_resource(rec, groups, ctx)).collect()))
    }
}

impl Directory {
    /// The access a user effectively has: its effective roles (with the reason for each) and
    /// its teams. This is derived state, served outside SCIM (`/api/v1/users/{id}/access`).
    pub async fn user_access(&self, ctx: &RequestContext, id: &str) -> Result<Value, ScimError> {
        ctx.authorize(Action::ReadUserAccess)?;
        let mut tx = self.store.begin_read().await?;
        let rec = tx.user(id).await?.ok_or_else(|| user_not_found(id))?;
        let roles = tx.user_roles(id).await?;
        let groups = tx.groups_of_user(id).await?;
        Ok(json!({
            "id": rec.id,
            "userName": rec.user_name,
            "active": rec.active,
            "effectiveRoles": roles.iter().map(|(r, source)| json!({"id": r.id, "name": r.name, "source": source})).collect::<Vec<_>>(),
            "groups": groups.iter().map(|(g, name)| json!({"id": g, "name": name})).collect::<Vec<_>>(),
        }))
    }
}

/// The SCIM resource of a user with its groups (group id, display name).
fn user_resource(rec: &UserRecord, groups: &[(String, String)], ctx: &RequestContext) -> Resource {
    Resource { id: rec.id.clone(), version: rec.version, json: user_json(rec, groups, &ctx.base_url) }
}

fn user_not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("User {id} not found"))
}

/// Top-level keys whose values differ between two documents.
fn changed_keys<'a>(a: &'a Map<String, Value>, b: &'a Map<String, Value>) -> Vec<&'a String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).collect();
    keys.sort();
    keys.dedup();
    keys
}
