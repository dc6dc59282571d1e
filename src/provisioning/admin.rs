//! Administration outside SCIM (the command line): unmanaged teams and the role catalog.

use serde_json::json;

use super::access::Action;
use super::groups::handle_from_name;
use super::roles::Role;
use super::user_roles::DEFAULT_ROLE_SETTING;
use super::*;
use crate::store::{TeamRecord, UserRoleGrant};

impl Directory {
    async fn find_team(&self, tx: &mut dyn ReadTx, team: &str) -> OpResult<TeamRecord> {
        if let Some(t) = tx.team(team).await? {
            return Ok(t);
        }
        if let Some(t) = tx.team_by_name(team).await? {
            return Ok(t);
        }
        let all = tx.list_teams().await?;
        all.into_iter()
            .find(|t| t.handle == team)
            .ok_or_else(|| ScimError::not_found(format!("no team with id, name or handle '{team}'")).into())
    }

    /// Creates an unmanaged team (one an identity provider can later link by exact name).
    pub async fn create_team(&self, ctx: &RequestContext, name: &str) -> Result<TeamRecord, ScimError> {
        ctx.authorize(Action::ChangeTeams)?;
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(ScimError::invalid_value("a team needs a name"));
        }
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            if tx.team_by_name(&name).await?.is_some() {
                return Err(ScimError::uniqueness(format!("a team named '{name}' already exists")).into());
            }
            let base = handle_from_name(&name);
            let mut handle = base.clone();
            let mut n = 1;
            while tx.handle_taken(&handle).await? {
                n += 1;
                handle = format!("{base}-{n}");
            }
            let now = self.now();
            let mut data = serde_json::Map::new();
            data.insert("displayName".into(), serde_json::Value::String(name.clone()));
            let team = TeamRecord {
                id: super::ids::new_id(),
                name: name.clone(),
                handle,
                scim_id: None,
                external_id: None,
                declared_by: None,
                data,
                created: now.clone(),
                last_modified: now,
                version: 1,
            };
            tx.insert_team(&team).await?;
            self.audit(tx.as_mut(), ctx, "team.create", "team", &team.id, json!({"name": name, "handle": team.handle}))
                .await?;
            tx.commit().await?;
            Ok(team)
        })
        .await
    }

    /// Every team with its member count.
    pub async fn teams(&self) -> Result<Vec<(TeamRecord, u64)>, ScimError> {
        let mut tx = self.store.begin_read().await?;
        let teams = tx.list_teams().await?;
        let mut out = Vec::with_capacity(teams.len());
        for t in teams {
            let n = tx.team_member_count(&t.id).await?;
            out.push((t, n));
        }
        Ok(out)
    }

    /// Adds (`add = true`) or removes a member of an unmanaged team. Managed teams change only
    /// through SCIM, so the identity provider stays the source of truth.
    pub async fn change_team_member(
        &self,
        ctx: &RequestContext,
        team: &str,
        user: &str,
        add: bool,
    ) -> Result<(), ScimError> {
        ctx.authorize(Action::ChangeTeams)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let t = self.find_team(tx.as_mut(), team).await?;
            if t.scim_id.is_some() {
                return Err(ScimError::mutability(format!(
                    "team '{}' is managed by an identity provider: change its membership there (or unlink it first)",
                    t.name
                ))
                .into());
            }
            let u =
                tx.user_by_id_or_name(user).await?.ok_or_else(|| ScimError::not_found(format!("no user '{user}'")))?;
            let ids = vec![u.id.clone()];
            let changed = if add {
                tx.add_team_members(&t.id, &ids, &self.now(), &ctx.actor).await?
            } else {
                tx.remove_team_members(&t.id, &ids).await?
            };
            if changed > 0 {
                let updated = TeamRecord { last_modified: self.now(), version: t.version + 1, ..t.clone() };
                tx.update_team(&t, &updated).await?;
                tx.lock_team_names(std::slice::from_ref(&t.name)).await?;
                if tx.team_is_mapped(&t.name).await? {
                    self.recompute_roles(tx.as_mut(), ctx, &ids).await?;
                }
                let action = if add { "team.member.add" } else { "team.member.remove" };
                self.audit(tx.as_mut(), ctx, action, "team", &t.id, json!({"user": u.id, "userName": u.user_name}))
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The role catalog and the default role's id.
    pub async fn role_catalog(&self) -> Result<(Vec<Role>, Option<String>), ScimError> {
        let mut tx = self.store.begin_read().await?;
        let roles = tx.roles().await?;
        let default = tx.setting(DEFAULT_ROLE_SETTING).await?.filter(|s| !s.is_empty());
        Ok((roles, default))
    }

    /// Adds a custom role.
    pub async fn create_role(&self, ctx: &RequestContext, name: &str, description: &str) -> Result<Role, ScimError> {
        ctx.authorize(Action::ChangeRoleCatalog)?;
        let name = name.trim().to_string();
        if name.is_empty() || name.starts_with('{') {
            return Err(ScimError::invalid_value("a role needs a plain name"));
        }
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let role = Role {
                id: super::ids::new_id(),
                name: name.clone(),
                builtin: false,
                description: description.to_string(),
            };
            tx.insert_role(&role, &self.now()).await?;
            self.audit(tx.as_mut(), ctx, "role.create", "role", &role.id, json!({"name": name})).await?;
            tx.commit().await?;
            Ok(role)
        })
        .await
    }

    /// Deletes a custom role; built-in roles and the default role cannot be deleted.
    pub async fn delete_role(&self, ctx: &RequestContext, id_or_name: &str) -> Result<(), ScimError> {
        ctx.authorize(Action::ChangeRoleCatalog)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let roles = tx.roles().await?;
            let role = roles
                .iter()
                .find(|r| r.id == id_or_name || r.name.eq_ignore_ascii_case(id_or_name))
                .cloned()
                .ok_or_else(|| ScimError::not_found(format!("no role '{id_or_name}'")))?;
            if role.builtin {
                return Err(ScimError::mutability(format!("'{}' is a built-in role", role.name)).into());
            }
            if tx.setting(DEFAULT_ROLE_SETTING).await?.as_deref() == Some(role.id.as_str()) {
                return Err(ScimError::mutability(format!(
                    "'{}' is the default role: choose another default first",
                    role.name
                ))
                .into());
            }
            // Who held it, and since when: the role's rows go with it, the access review reads
            // them back from here.
            let holders: Vec<UserRoleGrant> =
                tx.role_grants(None).await?.into_iter().filter(|g| g.role.id == role.id).collect();
            tx.delete_role(&role.id).await?;
            self.audit(
                tx.as_mut(),
                ctx,
                "role.delete",
                "role",
                &role.id,
                json!({"name": role.name, "holders": super::user_roles::grants_detail(&holders)}),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Sets the default role (`None`: no default role; a user to whom no explicit or mapped role
    /// applies then has none).
    pub async fn set_default_role(
        &self,
        ctx: &RequestContext,
        id_or_name: Option<&str>,
    ) -> Result<Option<Role>, ScimError> {
        ctx.authorize(Action::ChangeRoleCatalog)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let role = match id_or_name {
                Some(r) => Some(
                    tx.roles()
                        .await?
                        .into_iter()
                        .find(|x| x.id == r || x.name.eq_ignore_ascii_case(r))
                        .ok_or_else(|| ScimError::not_found(format!("no role '{r}'")))?,
                ),
                None => None,
            };
            tx.set_setting(DEFAULT_ROLE_SETTING, role.as_ref().map(|r| r.id.as_str())).await?;
            let name = role.as_ref().map(|r| r.name.clone());
            self.audit(tx.as_mut(), ctx, "role.default", "setting", DEFAULT_ROLE_SETTING, json!({"defaultRole": name}))
                .await?;
            tx.commit().await?;
            Ok(role)
        })
        .await
    }
}
