//! Role mapping rules as a SCIM resource type (`/RoleMappings`). A change recomputes, in the
//! same transaction, the effective roles of every member of the teams it names.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

use super::access::Action;
use super::roles::{Role, match_roles};
use super::*;
use crate::scim::filter::{matches, parse_filter};
use crate::scim::list::ListQuery;
use crate::scim::patch::{apply_patch, parse_patch_request};
use crate::scim::resource::normalize;
use crate::scim::schema::ROLE_MAPPING_SCHEMA;
use crate::store::RoleMappingRecord;

fn mapping_not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("RoleMapping {id} not found"))
}

/// Values of a multi-valued `{value: ...}` attribute.
fn values_of(doc: &Map<String, Value>, key: &str) -> Vec<Value> {
    match doc.get(key) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    }
}

/// What a mapping document asks for, checked against the catalog: every role must exist.
fn resolve(doc: &Map<String, Value>, catalog: &[Role]) -> Result<(String, Vec<String>, Vec<String>), ScimError> {
    let name = doc_str(doc, "displayName")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?;
    let requested = values_of(doc, "roles");
    let m = match_roles(&requested, catalog);
    if !m.unmatched.is_empty() {
        return Err(ScimError::invalid_value(format!("unknown roles: {}", m.unmatched.join(", "))));
    }
    if m.matched.is_empty() {
        return Err(ScimError::invalid_value("a role mapping grants at least one role"));
    }
    let mut teams: Vec<String> = values_of(doc, "teams")
        .iter()
        .filter_map(|t| t.get("value").and_then(Value::as_str).map(str::to_string))
        .filter(|t| !t.is_empty())
        .collect();
    teams.sort();
    teams.dedup();
    if teams.is_empty() {
        return Err(ScimError::invalid_value("a role mapping names at least one team"));
    }
    Ok((name, m.matched.into_iter().map(|r| r.id).collect(), teams))
}

/// A mapping as `rolemapping.update` and `rolemapping.delete` record what it was: what the
/// access review needs to undo the change.
fn mapping_detail(m: &RoleMappingRecord) -> Value {
    json!({"displayName": m.display_name, "roleIds": m.role_ids, "teams": m.teams, "created": m.created})
}

impl Directory {
    fn mapping_json(&self, m: &RoleMappingRecord, catalog: &[Role], base_url: &str) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("schemas".into(), json!([ROLE_MAPPING_SCHEMA]));
        out.insert("id".into(), Value::String(m.id.clone()));
        if let Some(e) = &m.external_id {
            out.insert("externalId".into(), Value::String(e.clone()));
        }
        out.insert("displayName".into(), Value::String(m.display_name.clone()));
        let roles: Vec<Value> = m
            .role_ids
            .iter()
            .filter_map(|id| catalog.iter().find(|r| &r.id == id))
            .map(|r| json!({"value": r.name}))
            .collect();
        out.insert("roles".into(), Value::Array(roles));
        out.insert("teams".into(), Value::Array(m.teams.iter().map(|t| json!({"value": t})).collect()));
        out.insert(
            "meta".into(),
            json!({"resourceType": "RoleMapping", "created": m.created, "lastModified": m.last_modified,
                   "location": format!("{base_url}/RoleMappings/{}", m.id), "version": view::etag(m.version)}),
        );
        out
    }

    fn mapping_resource(&self, m: &RoleMappingRecord, catalog: &[Role], ctx: &RequestContext) -> Resource {
        Resource { id: m.id.clone(), version: m.version, json: self.mapping_json(m, catalog, &ctx.base_url) }
    }

    /// Recomputes roles of everyone in the teams a mapping named before or names now.
    async fn mapping_changed(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        before: &[String],
        after: &[String],
    ) -> OpResult<()> {
        let teams: BTreeSet<String> = before.iter().chain(after.iter()).cloned().collect();
        let teams: Vec<String> = teams.into_iter().collect();
        // Before reading members: a member joining one of these teams meanwhile either waits
        // for this change or is read here (see `RoleWrites::lock_team_names`).
        tx.lock_team_names(&teams).await?;
        let users = tx.members_of_team_names(&teams).await?;
        self.recompute_roles(tx, ctx, &users).await
    }

    /// Creates a role mapping (POST /RoleMappings).
    pub async fn create_role_mapping(&self, ctx: &RequestContext, body: &Value) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ChangeRoleMappings)?;
        let doc = normalize(&self.types.role_mapping, body)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let catalog = tx.roles().await?;
            let (name, role_ids, teams) = resolve(&doc, &catalog)?;
            let now = self.now();
            let rec = RoleMappingRecord {
                id: super::ids::new_id(),
                display_name: name.clone(),
                external_id: doc_str(&doc, "externalId"),
                data: Map::new(),
                role_ids,
                teams,
                created: now.clone(),
                last_modified: now,
                version: 1,
            };
            tx.insert_role_mapping(&rec).await?;
            self.mapping_changed(tx.as_mut(), ctx, &[], &rec.teams).await?;
            let out = self.mapping_resource(&rec, &catalog, ctx);
            self.audit(
                tx.as_mut(),
                ctx,
                "rolemapping.create",
                "rolemapping",
                &rec.id,
                json!({"displayName": name, "roles": out.json["roles"], "teams": rec.teams}),
            )
            .await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    /// Reads a role mapping.
    pub async fn get_role_mapping(&self, ctx: &RequestContext, id: &str) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ReadRoleMappings)?;
        let mut tx = self.store.begin_read().await?;
        let rec = tx.role_mapping(id).await?.ok_or_else(|| mapping_not_found(id))?;
        let catalog = tx.roles().await?;
        Ok(self.mapping_resource(&rec, &catalog, ctx))
    }

    /// Replaces (`patch = None`) or patches a role mapping.
    async fn change_role_mapping(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        patch: bool,
        if_match: Option<&str>,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ChangeRoleMappings)?;
        let replacement = if patch { None } else { Some(normalize(&self.types.role_mapping, body)?) };
        let request = if patch { Some(parse_patch_request(body)?) } else { None };
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let before = tx.role_mapping(id).await?.ok_or_else(|| mapping_not_found(id))?;
            check_if_match(if_match, before.version)?;
            let catalog = tx.roles().await?;
            let doc = match (&replacement, &request) {
                (Some(doc), _) => doc.clone(),
                (None, Some(req)) => {
                    let mut doc = self.mapping_json(&before, &catalog, &ctx.base_url);
                    for k in ["schemas", "id", "meta"] {
                        doc.remove(k);
                    }
                    apply_patch(&self.types.role_mapping, &mut doc, req, &[])?;
                    doc
                }
                (None, None) => return Err(ScimError::internal("nothing to apply").into()),
            };
            let (name, role_ids, teams) = resolve(&doc, &catalog)?;
            let rec = RoleMappingRecord {
                display_name: name,
                external_id: doc_str(&doc, "externalId"),
                role_ids,
                teams,
                last_modified: self.now(),
                version: before.version + 1,
                ..before.clone()
            };
            if rec.display_name == before.display_name
                && rec.external_id == before.external_id
                && rec.role_ids == before.role_ids
                && rec.teams == before.teams
            {
                return Ok(self.mapping_resource(&before, &catalog, ctx));
            }
            tx.update_role_mapping(&rec).await?;
            self.mapping_changed(tx.as_mut(), ctx, &before.teams, &rec.teams).await?;
            let out = self.mapping_resource(&rec, &catalog, ctx);
            self.audit(
                tx.as_mut(),
                ctx,
                "rolemapping.update",
                "rolemapping",
                &rec.id,
                json!({"displayName": rec.display_name, "roles": out.json["roles"], "teams": rec.teams,
                       "before": mapping_detail(&before)}),
            )
            .await?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }

    /// Replaces a role mapping (PUT).
    pub async fn replace_role_mapping(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Resource, ScimError> {
        self.change_role_mapping(ctx, id, body, false, if_match).await
    }

    /// Patches a role mapping (PATCH).
    pub async fn patch_role_mapping(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Resource, ScimError> {
        self.change_role_mapping(ctx, id, body, true, if_match).await
    }

    /// Deletes a role mapping; its members' roles are recomputed.
    pub async fn delete_role_mapping(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        ctx.authorize(Action::ChangeRoleMappings)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let before = tx.role_mapping(id).await?.ok_or_else(|| mapping_not_found(id))?;
            check_if_match(if_match, before.version)?;
            tx.delete_role_mapping(id).await?;
            self.mapping_changed(tx.as_mut(), ctx, &before.teams, &[]).await?;
            self.audit(
                tx.as_mut(),
                ctx,
                "rolemapping.delete",
                "rolemapping",
                id,
                json!({"displayName": before.display_name, "before": mapping_detail(&before)}),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Lists role mappings; there are few, so they are filtered in memory.
    pub async fn list_role_mappings(
        &self,
        ctx: &RequestContext,
        query: &ListQuery,
    ) -> Result<(u64, Vec<Resource>), ScimError> {
        ctx.authorize(Action::ReadRoleMappings)?;
        let filter = query.filter.as_deref().map(parse_filter).transpose()?;
        let mut tx = self.store.begin_read().await?;
        let catalog = tx.roles().await?;
        let all: Vec<Resource> = tx
            .role_mappings()
            .await?
            .iter()
            .map(|m| self.mapping_resource(m, &catalog, ctx))
            .filter(|r| {
                filter.as_ref().is_none_or(|f| matches(f, &self.types.role_mapping, &Value::Object(r.json.clone())))
            })
            .collect();
        let total = all.len() as u64;
        let page =
            all.into_iter().skip(query.start_index.saturating_sub(1) as usize).take(query.count as usize).collect();
        Ok((total, page))
    }
}
