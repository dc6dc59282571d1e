//! Managed teams: SCIM Groups linked to teams, membership kept as rows.
//!
//! A POST whose displayName equals an existing unmanaged team's name exactly links that team;
//! DELETE unlinks (the team stays, without members). Members must be existing users.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

use super::access::{self, Action};
use super::view::group_json;
use super::*;
use crate::scim::filter::{AttrPath, CompareOp, Filter, matches};
use crate::scim::list::ListQuery;
use crate::scim::patch::{MultiValueOp, PatchRequest, apply_patch, parse_patch_request};
use crate::scim::projection::Projection;
use crate::scim::resource::normalize;
use crate::store::{StoreError, TeamRecord};

/// Whether a POST /Groups may link an existing unmanaged team of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkExisting {
    /// Link it (the seeds' "link an existing team" flow).
    Allowed,
    /// Never: answer 409 `uniqueness` instead.
    Never,
}

/// How a Group PATCH is answered (RFC 7644 §3.5.2).
#[derive(Debug, Clone)]
pub enum PatchReply {
    /// 200 with the group.
    Resource(Resource),
    /// 204 No Content; the group's new version, for the ETag header.
    NoContent { version: i64 },
}

/// A Group PATCH evaluated on one read of the group.
struct GroupPatchPlan {
    /// The group as read.
    before: TeamRecord,
    /// The new document.
    doc: Map<String, Value>,
    add: Vec<String>,
    remove: Vec<String>,
    /// Whether the evaluation read the member list.
    read_members: bool,
    /// Whether every operation adds or removes named members and nothing else.
    incremental: bool,
}

/// How many member ids an audit event lists before it only counts.
const AUDIT_MEMBER_LIST: usize = 100;

/// Derives a team handle from its name: lower-case ASCII letters and digits joined by dashes.
pub fn handle_from_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_end_matches('-').chars().take(64).collect();
    if trimmed.is_empty() { "team".to_string() } else { trimmed }
}

/// Member ids named by SCIM member values (`{"value": id, ...}`), refusing non-user members.
fn member_ids(values: &[Value]) -> Result<Vec<String>, ScimError> {
    let mut ids = Vec::with_capacity(values.len());
    for v in values {
        let id = v.get("value").and_then(Value::as_str).ok_or_else(|| {
            ScimError::invalid_value(format!("a member must be an object with a string 'value', got {v}"))
        })?;
        if let Some(t) = v.get("type").and_then(Value::as_str)
            && !t.eq_ignore_ascii_case("User")
        {
            return Err(ScimError::invalid_value(format!("member {id} has type '{t}': teams contain users only")));
        }
        ids.push(id.to_string());
    }
    let mut seen = BTreeSet::new();
    ids.retain(|i| seen.insert(i.clone()));
    Ok(ids)
}

fn listed(ids: &[String]) -> Value {
    json!({"count": ids.len(), "ids": ids.iter().take(AUDIT_MEMBER_LIST).collect::<Vec<_>>()})
}

fn group_not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("Group {id} not found"))
}

impl Directory {
    /// Refuses member ids that are not live users, naming them; nothing is applied then.
    async fn require_users(&self, tx: &mut dyn ReadTx, ids: &[String]) -> OpResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let found: BTreeSet<String> = tx.existing_user_ids(ids).await?.into_iter().collect();
        let missing: Vec<&String> = ids.iter().filter(|i| !found.contains(*i)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            let shown: Vec<&str> = missing.iter().take(20).map(|s| s.as_str()).collect();
            Err(ScimError::invalid_value(format!(
                "members must be existing users; unknown: {}{}",
                shown.join(", "),
                if missing.len() > shown.len() {
                    format!(" and {} more", missing.len() - shown.len())
                } else {
                    String::new()
                }
            ))
            .into())
        }
    }

    async fn unique_handle(&self, tx: &mut dyn ReadTx, name: &str) -> OpResult<String> {
        let base = handle_from_name(name);
        let mut candidate = base.clone();
        let mut n = 1;
        while tx.handle_taken(&candidate).await? {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        Ok(candidate)
    }

    fn group_resource(&self, team: &TeamRecord, members: Option<&[String]>, ctx: &RequestContext) -> Resource {
        let scim_id = team.scim_id.clone().unwrap_or_default();
        Resource {
            id: scim_id.clone(),
            version: team.version,
            json: group_json(team, &scim_id, members, &ctx.base_url),
        }
    }

    /// Creates a group, or links the unmanaged team of exactly that name (POST /Groups).
    pub async fn create_group(
        &self,
        ctx: &RequestContext,
        body: &Value,
        projection: &Projection,
    ) -> Result<Resource, ScimError> {
        self.create_group_with(ctx, body, projection, LinkExisting::Allowed).await
    }

    /// Creates a group; with [`LinkExisting::Never`] (POST with `If-None-Match: *`) an existing
    /// team of that name, managed or not, is a 409 `uniqueness` instead of being linked, so that
    /// a client that decided to create cannot link by accident or race.
    pub async fn create_group_with(
        &self,
        ctx: &RequestContext,
        body: &Value,
        projection: &Projection,
        link: LinkExisting,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ChangeTeams)?;
        let mut doc = normalize(&self.types.group, body)?;
        ctx.authorize_external_id(None, doc_str(&doc, "externalId").as_deref())?;
        let declared_by = ctx.declaration(doc_str(&doc, "externalId").as_deref());
        let members = member_ids(&match doc.remove("members") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })?;
        let name = doc_str(&doc, "displayName")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("displayName is required and must be a non-empty string"))?;
        let with_members = projection.includes_top_level(&self.types.group, "members");
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            self.require_users(tx.as_mut(), &members).await?;
            let now = self.now();
            let scim_id = super::ids::new_id();
            let team = match tx.team_by_name(&name).await? {
                Some(existing) if existing.scim_id.is_some() => {
                    return Err(ScimError::uniqueness(format!(
                        "a group named '{name}' already exists and is managed by an identity provider"
                    ))
                    .into());
                }
                Some(_) if link == LinkExisting::Never => {
                    return Err(ScimError::uniqueness(format!(
                        "a team named '{name}' already exists; it is linked only by a POST without If-None-Match"
                    ))
                    .into());
                }
                Some(existing) => {
                    // Link: the team becomes managed; its membership is replaced by the request's.
                    ctx.authorize_external_id(existing.external_id.as_deref(), doc_str(&doc, "externalId").as_deref())?;
                    let team = TeamRecord {
                        scim_id: Some(scim_id.clone()),
                        external_id: doc_str(&doc, "externalId"),
                        declared_by: declared_by.clone(),
                        data: doc.clone(),
                        last_modified: now.clone(),
                        version: existing.version + 1,
                        ..existing.clone()
                    };
                    tx.update_team(&existing, &team).await?;
                    tx.lock_team_names(std::slice::from_ref(&team.name)).await?;
                    let mapped = tx.team_is_mapped(&team.name).await?;
                    // Read even when no mapping names the team: the audit event lists them.
                    let previous = tx.team_members(&team.id).await?;
                    let removed = tx.clear_team_members(&team.id).await?;
                    tx.add_team_members(&team.id, &members, &self.now(), &ctx.actor).await?;
                    if mapped {
                        let mut affected = previous.clone();
                        affected.extend(members.iter().cloned());
                        self.recompute_roles(tx.as_mut(), ctx, &affected).await?;
                    }
                    self.audit(
                        tx.as_mut(),
                        ctx,
                        "group.link",
                        "group",
                        &scim_id,
                        json!({"team": team.id, "handle": team.handle, "name": name, "previousMembers": removed,
                               "membersRemoved": listed(&previous), "members": listed(&members),
                               "declaredBy": team.declared_by}),
                    )
                    .await?;
                    team
                }
                None => {
                    let handle = self.unique_handle(tx.as_mut(), &name).await?;
                    let team = TeamRecord {
                        id: super::ids::new_id(),
                        name: name.clone(),
                        handle,
                        scim_id: Some(scim_id.clone()),
                        external_id: doc_str(&doc, "externalId"),
                        declared_by: declared_by.clone(),
                        data: doc.clone(),
                        created: now.clone(),
                        last_modified: now,
                        version: 1,
                    };
                    tx.insert_team(&team).await?;
                    tx.add_team_members(&team.id, &members, &self.now(), &ctx.actor).await?;
                    tx.lock_team_names(std::slice::from_ref(&team.name)).await?;
                    if tx.team_is_mapped(&team.name).await? {
                        self.recompute_roles(tx.as_mut(), ctx, &members).await?;
                    }
                    self.audit(
                        tx.as_mut(),
                        ctx,
                        "group.create",
                        "group",
                        &scim_id,
                        json!({"team": team.id, "handle": team.handle, "name": name, "members": listed(&members),
                               "declaredBy": team.declared_by}),
                    )
                    .await?;
                    team
                }
            };
            let stored = if with_members { Some(tx.team_members(&team.id).await?) } else { None };
            tx.commit().await?;
            Ok(self.group_resource(&team, stored.as_deref(), ctx))
        })
        .await
    }

    /// Reads a group (GET /Groups/{id}); members are read only when they will be returned.
    pub async fn get_group(
        &self,
        ctx: &RequestContext,
        id: &str,
        projection: &Projection,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ReadTeams)?;
        let with_members = projection.includes_top_level(&self.types.group, "members");
        // Without members this is one statement and needs no transaction.
        let mut tx = if with_members { self.store.begin_read().await? } else { self.store.read().await? };
        let team = tx.group(id).await?.ok_or_else(|| group_not_found(id))?;
        let members = if with_members { Some(tx.team_members(&team.id).await?) } else { None };
        Ok(self.group_resource(&team, members.as_deref(), ctx))
    }

    /// Replaces a group (PUT /Groups/{id}); only membership differences are written.
    ///
    /// On SQLite the group and its members are read and the differences computed before the
    /// write transaction; the transaction only checks that the group is still at the version
    /// read (else everything starts over) and writes. On PostgreSQL they are computed inside,
    /// on the locked row.
    pub async fn replace_group(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        projection: &Projection,
    ) -> Result<Resource, ScimError> {
        ctx.authorize(Action::ChangeTeams)?;
        let mut doc = normalize(&self.types.group, body)?;
        let wanted = member_ids(&match doc.remove("members") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        })?;
        let wanted_set: BTreeSet<String> = wanted.iter().cloned().collect();
        let with_members = projection.includes_top_level(&self.types.group, "members");
        self.retry(|| async {
            // As for PATCH: on SQLite (one writer) the differences are computed on a read before
            // the write transaction, which then only checks the version and writes; PostgreSQL
            // writers run in parallel and lock the group's row, so there they are computed on
            // the row as locked (no read before, and no retry when a concurrent change lands
            // between the two).
            let planned = if self.store.dialect() == Dialect::Sqlite {
                // Group and members from one snapshot.
                let mut rd = self.store.begin_read().await?;
                let before = rd.group(id).await?.ok_or_else(|| group_not_found(id))?;
                check_if_match(if_match, before.version)?;
                let (add, remove) = membership_changes(rd.as_mut(), &before.id, &wanted_set).await?;
                Some((before.version, add, remove))
            } else {
                None
            };
            let mut tx = self.store.begin_write().await?;
            let before = tx.group(id).await?.ok_or_else(|| group_not_found(id))?;
            check_if_match(if_match, before.version)?;
            let (add, remove) = match planned {
                Some((version, _, _)) if version != before.version => {
                    return Err(StoreError::Concurrent(format!("group {id}")).into());
                }
                Some((_, add, remove)) => (add, remove),
                None => membership_changes(tx.as_mut(), &before.id, &wanted_set).await?,
            };
            self.require_users(tx.as_mut(), &wanted).await?;
            let team = self.write_group(tx.as_mut(), ctx, &before, doc.clone(), &add, &remove, "group.replace").await?;
            tx.commit().await?;
            // What was written: the membership is exactly the request's (its users exist: checked
            // in the transaction), sorted by id.
            let members: Option<Vec<String>> = with_members.then(|| wanted_set.iter().cloned().collect());
            Ok(self.group_resource(&team, members.as_deref(), ctx))
        })
        .await
    }

    /// Applies a PATCH (PATCH /Groups/{id}); member operations become row inserts and deletes.
    ///
    /// `wanted` is the projection the client asked for with `attributes` or
    /// `excludedAttributes`, or `None` when it asked for neither. A PATCH whose operations all
    /// add or remove named members (what Okta and Microsoft Entra ID send for membership
    /// changes) is then answered 204 No Content (RFC 7644 §3.5.2 allows it; Entra documents 204
    /// for group PATCH, Okta accepts 200 or 204): the answer would carry every member, which
    /// would make one membership change cost as much as reading the whole group, and the client
    /// did not ask for it; such a PATCH reads no member at all. Every other PATCH (a rename, an
    /// `externalId`, removing or replacing all members, a member filter other than `value eq`)
    /// and every PATCH that names a projection is answered 200 with the group, as before: strict
    /// clients, such as the `scim-sanity` conformance probe, expect 200 with the resource for
    /// those.
    pub async fn patch_group(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        wanted: Option<&Projection>,
    ) -> Result<PatchReply, ScimError> {
        ctx.authorize(Action::ChangeTeams)?;
        let request = parse_patch_request(body)?;
        self.retry(|| async {
            let (plan, mut tx, current) = if self.store.dialect() == Dialect::Sqlite {
                // SQLite has one writer: evaluate outside the write transaction, on one read of
                // the group, and hold the writer only to write.
                let plan = {
                    let mut rd = self.store.read().await?;
                    self.plan_group_patch(rd.as_mut(), id, &request, if_match).await?
                };
                let mut tx = self.store.begin_write().await?;
                let current = tx.group(id).await?.ok_or_else(|| group_not_found(id))?;
                check_if_match(if_match, current.version)?;
                // The evaluation holds if the group is still at the version it read, or if only
                // its membership changed since and the evaluation did not read the membership:
                // adding or removing named members does not depend on the others (so concurrent
                // membership PATCHes on one group do not make each other start over).
                let unchanged_inputs =
                    !plan.read_members && current.data == plan.before.data && current.name == plan.before.name;
                if current.version != plan.before.version && !unchanged_inputs {
                    return Err(StoreError::Concurrent(format!("group {id}")).into());
                }
                (plan, tx, current)
            } else {
                // PostgreSQL writers run in parallel and lock only the group's row: evaluate on
                // the row as locked, without a read before the transaction.
                let mut tx = self.store.begin_write().await?;
                let plan = self.plan_group_patch(tx.as_mut(), id, &request, if_match).await?;
                let current = plan.before.clone();
                (plan, tx, current)
            };
            let no_content = wanted.is_none() && plan.incremental;
            let with_members = match wanted {
                Some(p) => p.includes_top_level(&self.types.group, "members"),
                None => !no_content,
            };
            self.require_users(tx.as_mut(), &plan.add).await?;
            let team =
                self.write_group(tx.as_mut(), ctx, &current, plan.doc, &plan.add, &plan.remove, "group.patch").await?;
            let members = if with_members { Some(tx.team_members(&team.id).await?) } else { None };
            tx.commit().await?;
            Ok(if no_content {
                PatchReply::NoContent { version: team.version }
            } else {
                PatchReply::Resource(self.group_resource(&team, members.as_deref(), ctx))
            })
        })
        .await
    }

    /// Reads a group and evaluates a PATCH on it: the new document and the member ids to add and
    /// to remove, resolved in request order. The member list is read only when an operation
    /// needs it (removing all, a filter other than `value eq`, replacing them).
    async fn plan_group_patch(
        &self,
        rd: &mut dyn ReadTx,
        id: &str,
        request: &PatchRequest,
        if_match: Option<&str>,
    ) -> OpResult<GroupPatchPlan> {
        let before = rd.group(id).await?.ok_or_else(|| group_not_found(id))?;
        check_if_match(if_match, before.version)?;
        let mut doc = before.data.clone();
        let outcome = apply_patch(&self.types.group, &mut doc, request, &["members"])?;
        // Every operation adds or removes named members (and nothing else changed).
        let incremental = !outcome.changed
            && outcome.external.len() == request.operations.len()
            && outcome.external.iter().all(|e| match &e.op {
                MultiValueOp::Add(_) | MultiValueOp::RemoveValues(_) => true,
                MultiValueOp::Remove(Some(f)) => simple_member_ids(f).is_some(),
                MultiValueOp::Remove(None) | MultiValueOp::Replace(_) => false,
            });
        let mut add: BTreeSet<String> = BTreeSet::new();
        let mut remove: BTreeSet<String> = BTreeSet::new();
        let mut stored: Option<Vec<String>> = None;
        for op in outcome.external.iter().map(|e| &e.op) {
            match op {
                MultiValueOp::Add(values) => {
                    for m in member_ids(values)? {
                        remove.remove(&m);
                        add.insert(m);
                    }
                }
                MultiValueOp::RemoveValues(values) => {
                    for m in member_ids(values)? {
                        add.remove(&m);
                        remove.insert(m);
                    }
                }
                MultiValueOp::Remove(filter) => {
                    let targets = match filter.as_ref().and_then(simple_member_ids) {
                        Some(ids) => ids,
                        None => {
                            let all = current_members(&mut *rd, &mut stored, &before.id, &add, &remove).await?;
                            match filter {
                                None => all,
                                Some(f) => {
                                    all.into_iter().filter(|m| member_matches(&self.types.group, f, m)).collect()
                                }
                            }
                        }
                    };
                    for m in targets {
                        add.remove(&m);
                        remove.insert(m);
                    }
                }
                MultiValueOp::Replace(values) => {
                    let wanted: BTreeSet<String> = member_ids(values)?.into_iter().collect();
                    let all = current_members(&mut *rd, &mut stored, &before.id, &add, &remove).await?;
                    remove.extend(all.into_iter().filter(|m| !wanted.contains(m)));
                    for m in &wanted {
                        remove.remove(m);
                    }
                    add = wanted;
                }
            }
        }
        Ok(GroupPatchPlan {
            before,
            doc,
            add: add.into_iter().collect(),
            remove: remove.into_iter().collect(),
            read_members: stored.is_some(),
            incremental,
        })
    }

    /// Writes a group change: document, then only the membership rows that change.
    #[allow(clippy::too_many_arguments)]
    async fn write_group(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        before: &TeamRecord,
        doc: Map<String, Value>,
        add: &[String],
        remove: &[String],
        action: &str,
    ) -> OpResult<TeamRecord> {
        ctx.authorize_external_id(before.external_id.as_deref(), doc_str(&doc, "externalId").as_deref())?;
        let name = doc_str(&doc, "displayName")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("displayName is required and must be a non-empty string"))?;
        if name != before.name
            && let Some(other) = tx.team_by_name(&name).await?
            && other.id != before.id
        {
            return Err(ScimError::uniqueness(format!("a team named '{name}' already exists")).into());
        }
        let removed = if remove.is_empty() { 0 } else { tx.remove_team_members(&before.id, remove).await? };
        let added =
            if add.is_empty() { 0 } else { tx.add_team_members(&before.id, add, &self.now(), &ctx.actor).await? };
        let external_id = doc_str(&doc, "externalId");
        // The declaring object is kept while the group carries an operator marker (a PATCH of
        // members need not repeat it) and dropped with the marker.
        let declared_by = ctx.declaration(external_id.as_deref()).or_else(|| {
            access::is_kubernetes_owned(external_id.as_deref()).then(|| before.declared_by.clone()).flatten()
        });
        if doc == before.data && name == before.name && declared_by == before.declared_by && added == 0 && removed == 0
        {
            return Ok(before.clone());
        }
        let team = TeamRecord {
            name: name.clone(),
            external_id,
            declared_by,
            data: doc,
            last_modified: self.now(),
            version: before.version + 1,
            ..before.clone()
        };
        tx.update_team(before, &team).await?;
        // Role mappings name teams: members who joined or left, or all of them on a rename,
        // may have different roles now.
        let renamed = name != before.name;
        tx.lock_team_names(&[before.name.clone(), name.clone()]).await?;
        let mapped_before = tx.team_is_mapped(&before.name).await?;
        let mapped_now = if renamed { tx.team_is_mapped(&name).await? } else { mapped_before };
        if renamed && (mapped_before || mapped_now) {
            let mut affected = tx.team_members(&team.id).await?;
            affected.extend(remove.iter().cloned());
            self.recompute_roles(tx, ctx, &affected).await?;
        } else if mapped_now && (!add.is_empty() || !remove.is_empty()) {
            let affected: Vec<String> = add.iter().chain(remove.iter()).cloned().collect();
            self.recompute_roles(tx, ctx, &affected).await?;
        }
        let scim_id = team.scim_id.clone().unwrap_or_default();
        self.audit(
            tx,
            ctx,
            action,
            "group",
            &scim_id,
            json!({"team": team.id, "name": name, "renamedFrom": (name != before.name).then_some(&before.name),
                   "membersAdded": listed(add), "membersRemoved": listed(remove),
                   "declaredBy": (team.declared_by != before.declared_by).then_some(&team.declared_by)}),
        )
        .await?;
        Ok(team)
    }

    /// Unlinks a group (DELETE /Groups/{id}): members removed, the team stays, unmanaged.
    pub async fn delete_group(&self, ctx: &RequestContext, id: &str, if_match: Option<&str>) -> Result<(), ScimError> {
        ctx.authorize(Action::ChangeTeams)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let before = tx.group(id).await?.ok_or_else(|| group_not_found(id))?;
            check_if_match(if_match, before.version)?;
            if access::is_kubernetes_owned(before.external_id.as_deref()) {
                ctx.authorize(Action::ChangeKubernetesOwned)?;
            }
            tx.lock_team_names(std::slice::from_ref(&before.name)).await?;
            let mapped = tx.team_is_mapped(&before.name).await?;
            // Read even when no mapping names the team: the audit event lists them.
            let previous = tx.team_members(&before.id).await?;
            let removed = tx.clear_team_members(&before.id).await?;
            if mapped {
                self.recompute_roles(tx.as_mut(), ctx, &previous).await?;
            }
            let team =
                TeamRecord { scim_id: None, last_modified: self.now(), version: before.version + 1, ..before.clone() };
            tx.update_team(&before, &team).await?;
            self.audit(
                tx.as_mut(),
                ctx,
                "group.unlink",
                "group",
                id,
                json!({"team": team.id, "handle": team.handle, "name": team.name, "membersRemoved": listed(&previous),
                       "removedCount": removed}),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Lists groups (GET /Groups, POST /Groups/.search).
    pub async fn list_groups(
        &self,
        ctx: &RequestContext,
        query: &ListQuery,
        projection: &Projection,
    ) -> Result<(u64, Vec<Resource>), ScimError> {
        ctx.authorize(Action::ReadTeams)?;
        let parsed = ParsedList::parse(query)?;
        let spec = parsed.spec(&self.types.group, query);
        let with_members = projection.includes_top_level(&self.types.group, "members");
        // Members come from further statements: then one snapshot; else no transaction.
        let mut tx = if with_members { self.store.begin_read().await? } else { self.store.read().await? };
        let (total, rows) = tx.list_groups(&spec).await?;
        let mut out = Vec::with_capacity(rows.len());
        for team in &rows {
            let members = if with_members { Some(tx.team_members(&team.id).await?) } else { None };
            out.push(self.group_resource(team, members.as_deref(), ctx));
        }
        Ok((total, out))
    }
}

/// The member ids to add and to remove for a group to have exactly `wanted`.
async fn membership_changes(
    rd: &mut dyn ReadTx,
    team_id: &str,
    wanted: &BTreeSet<String>,
) -> OpResult<(Vec<String>, Vec<String>)> {
    let current: BTreeSet<String> = rd.team_members(team_id).await?.into_iter().collect();
    Ok((wanted.difference(&current).cloned().collect(), current.difference(wanted).cloned().collect()))
}

/// The membership as pending operations would leave it; the stored list is read once.
async fn current_members(
    rd: &mut dyn ReadTx,
    stored: &mut Option<Vec<String>>,
    team_id: &str,
    add: &BTreeSet<String>,
    remove: &BTreeSet<String>,
) -> OpResult<Vec<String>> {
    if stored.is_none() {
        *stored = Some(rd.team_members(team_id).await?);
    }
    let mut all: BTreeSet<String> = stored.iter().flatten().cloned().collect();
    all.extend(add.iter().cloned());
    all.retain(|m| !remove.contains(m));
    Ok(all.into_iter().collect())
}

/// Member ids of a filter made only of `value eq "id"` terms joined by `or` (the common case),
/// so removal needs no member list.
fn simple_member_ids(f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare { path, op: CompareOp::Eq, value: Value::String(id) }
            if path.uri.is_none() && path.sub_attr.is_none() && path.attr.eq_ignore_ascii_case("value") =>
        {
            Some(vec![id.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = simple_member_ids(a)?;
            ids.extend(simple_member_ids(b)?);
            Some(ids)
        }
        _ => None,
    }
}

/// Evaluates a member value filter against one member.
fn member_matches(rt: &crate::scim::schema::ResourceType, filter: &Filter, member_id: &str) -> bool {
    let whole = Filter::ValuePath {
        path: AttrPath { uri: None, attr: "members".into(), sub_attr: None },
        filter: Box::new(filter.clone()),
    };
    matches(&whole, rt, &json!({"members": [{"value": member_id, "type": "User"}]}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_slugs() {
        assert_eq!(handle_from_name("Identity Team"), "identity-team");
        assert_eq!(handle_from_name("  SRE / On-call!! "), "sre-on-call");
        assert_eq!(handle_from_name("???"), "team");
    }
}
