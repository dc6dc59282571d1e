//! SQL for roles, settings and role mappings.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl RoleReads for SqlTx {
    async fn roles(&mut self) -> StoreResult<Vec<Role>> {
        let rows = q("SELECT id, name, builtin, description FROM roles ORDER BY builtin DESC, seq".into())
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(role_from).collect()
    }

    async fn setting(&mut self, name: &str) -> StoreResult<Option<String>> {
        let row = q("SELECT value FROM settings WHERE name = $1".into())
            .bind(name.to_string())
            .fetch_optional(self.conn())
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(0)?,
            None => None,
        })
    }

    async fn role_named_by_setting(&mut self, name: &str) -> StoreResult<Option<Role>> {
        let row = q("SELECT r.id, r.name, r.builtin, r.description FROM settings s \
                     JOIN roles r ON r.id = s.value WHERE s.name = $1"
            .into())
        .bind(name.to_string())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(role_from).transpose()
    }

    async fn user_roles(&mut self, user_id: &str) -> StoreResult<Vec<(Role, String)>> {
        let rows = q("SELECT r.id, r.name, r.builtin, r.description, ur.source FROM user_roles ur \
                      JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1 ORDER BY r.builtin DESC, r.seq"
            .into())
        .bind(user_id.to_string())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|r| Ok((role_from(r)?, r.try_get("source")?))).collect()
    }

    async fn role_grants(&mut self, user_id: Option<&str>) -> StoreResult<Vec<UserRoleGrant>> {
        let sql = format!(
            "SELECT ur.user_id, r.id, r.name, r.builtin, r.description, ur.source, ur.granted_at, ur.granted_by \
             FROM user_roles ur JOIN roles r ON r.id = ur.role_id {} ORDER BY ur.user_id, r.builtin DESC, r.seq",
            if user_id.is_some() { "WHERE ur.user_id = $1" } else { "" }
        );
        let params = user_id.map(|u| SqlValue::Text(u.to_string())).into_iter().collect();
        let rows = bind_all(q(sql), params).fetch_all(self.conn()).await?;
        rows.iter()
            .map(|r| {
                let role = role_from(r)?;
                Ok(UserRoleGrant {
                    user_id: r.try_get("user_id")?,
                    grant: RoleGrant {
                        role_id: role.id.clone(),
                        source: r.try_get("source")?,
                        granted_at: r.try_get("granted_at")?,
                        granted_by: r.try_get("granted_by")?,
                    },
                    role,
                })
            })
            .collect()
    }

    async fn mapped_roles_of_user(&mut self, user_id: &str) -> StoreResult<Vec<Role>> {
        let rows = q("SELECT DISTINCT r.id, r.name, r.builtin, r.description, r.seq FROM team_members m \
                      JOIN teams t ON t.id = m.team_id \
                      JOIN role_mapping_teams mt ON mt.team_name = t.name \
                      JOIN role_mapping_roles mr ON mr.mapping_id = mt.mapping_id \
                      JOIN roles r ON r.id = mr.role_id \
                      WHERE m.user_id = $1 ORDER BY r.builtin DESC, r.seq"
            .into())
        .bind(user_id.to_string())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(role_from).collect()
    }

    async fn team_is_mapped(&mut self, team_name: &str) -> StoreResult<bool> {
        let n = self
            .count(
                "SELECT COUNT(*) FROM role_mapping_teams WHERE team_name = $1".into(),
                vec![SqlValue::Text(team_name.into())],
            )
            .await?;
        Ok(n > 0)
    }

    async fn members_of_team_names(&mut self, names: &[String]) -> StoreResult<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for chunk in names.chunks(CHUNK) {
            let sql = format!(
                "SELECT DISTINCT m.user_id FROM team_members m JOIN teams t ON t.id = m.team_id WHERE t.name IN ({})",
                placeholders(1, chunk.len())
            );
            let params = chunk.iter().map(|n| SqlValue::Text(n.clone())).collect();
            for row in bind_all(q(sql), params).fetch_all(self.conn()).await? {
                out.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn role_mapping(&mut self, id: &str) -> StoreResult<Option<RoleMappingRecord>> {
        let sql = format!(
            "SELECT id, display_name, external_id, {} AS data, created, last_modified, version FROM role_mappings WHERE id = $1{}",
            self.d.json_out("data"),
            self.lock
        );
        let row = q(sql).bind(id.to_string()).fetch_optional(self.conn()).await?;
        match row {
            Some(r) => Ok(Some(self.mapping_from(r).await?)),
            None => Ok(None),
        }
    }

    async fn role_mappings(&mut self) -> StoreResult<Vec<RoleMappingRecord>> {
        let sql = format!(
            "SELECT id, display_name, external_id, {} AS data, created, last_modified, version FROM role_mappings ORDER BY seq",
            self.d.json_out("data")
        );
        let rows = q(sql).fetch_all(self.conn()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.mapping_from(r).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl RoleWrites for SqlTx {
    async fn insert_role(&mut self, r: &Role, now: &str) -> StoreResult<()> {
        q("INSERT INTO roles (id, name, name_key, builtin, description, created) VALUES ($1, $2, $3, $4, $5, $6)"
            .into())
        .bind(r.id.clone())
        .bind(r.name.clone())
        .bind(r.name.to_lowercase())
        .bind(r.builtin as i64)
        .bind(r.description.clone())
        .bind(now.to_string())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, &format!("a role named '{}' already exists", r.name)))?;
        Ok(())
    }

    async fn delete_role(&mut self, id_or_name: &str) -> StoreResult<bool> {
        let done = q("DELETE FROM roles WHERE builtin = 0 AND (id = $1 OR name_key = $2)".into())
            .bind(id_or_name.to_string())
            .bind(id_or_name.to_lowercase())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_setting(&mut self, name: &str, value: Option<&str>) -> StoreResult<()> {
        q("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            .into())
        .bind(name.to_string())
        .bind(value.map(str::to_string))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn set_user_roles(&mut self, user_id: &str, roles: &[RoleGrant], had_roles: bool) -> StoreResult<()> {
        if had_roles {
            q("DELETE FROM user_roles WHERE user_id = $1".into())
                .bind(user_id.to_string())
                .execute(self.conn())
                .await?;
        }
        if roles.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..roles.len())
            .map(|i| format!("($1, ${}, ${}, ${}, ${})", 4 * i + 2, 4 * i + 3, 4 * i + 4, 4 * i + 5))
            .collect();
        let sql = format!(
            "INSERT INTO user_roles (user_id, role_id, source, granted_at, granted_by) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let text = |v: &Option<String>| v.clone().map_or(SqlValue::Null, SqlValue::Text);
        let mut params = vec![SqlValue::Text(user_id.to_string())];
        for g in roles {
            params.push(SqlValue::Text(g.role_id.clone()));
            params.push(SqlValue::Text(g.source.clone()));
            params.push(text(&g.granted_at));
            params.push(text(&g.granted_by));
        }
        bind_all(q(sql), params).execute(self.conn()).await?;
        Ok(())
    }

    async fn lock_team_names(&mut self, names: &[String]) -> StoreResult<()> {
        // Only PostgreSQL write transactions lock (`self.lock` is set for them alone).
        if self.d != Dialect::Postgres || self.lock.is_empty() {
            return Ok(());
        }
        let keys: std::collections::BTreeSet<i64> = names.iter().map(|n| team_lock_key(n)).collect();
        for key in keys {
            // The function returns void, which the Any driver cannot decode: count instead.
            q("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l".into())
                .bind(key)
                .fetch_one(self.conn())
                .await?;
        }
        Ok(())
    }

    async fn insert_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO role_mappings (id, display_name, external_id, data, created, last_modified, version) \
             VALUES ($1, $2, $3, {}, $5, $6, $7)",
            self.d.json_in(4)
        );
        q(sql)
            .bind(m.id.clone())
            .bind(m.display_name.clone())
            .bind(m.external_id.clone())
            .bind(doc_text(&m.data))
            .bind(m.created.clone())
            .bind(m.last_modified.clone())
            .bind(m.version)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a role mapping named '{}' already exists", m.display_name)))?;
        self.write_mapping_links(m).await
    }

    async fn update_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()> {
        let sql = format!(
            "UPDATE role_mappings SET display_name = $2, external_id = $3, data = {}, last_modified = $5, version = $6 \
             WHERE id = $1 AND version = $7",
            self.d.json_in(4)
        );
        let done = q(sql)
            .bind(m.id.clone())
            .bind(m.display_name.clone())
            .bind(m.external_id.clone())
            .bind(doc_text(&m.data))
            .bind(m.last_modified.clone())
            .bind(m.version)
            .bind(m.version - 1)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a role mapping named '{}' already exists", m.display_name)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Concurrent(format!("role mapping {}", m.id)));
        }
        q("DELETE FROM role_mapping_roles WHERE mapping_id = $1".into())
            .bind(m.id.clone())
            .execute(self.conn())
            .await?;
        q("DELETE FROM role_mapping_teams WHERE mapping_id = $1".into())
            .bind(m.id.clone())
            .execute(self.conn())
            .await?;
        self.write_mapping_links(m).await
    }

    async fn delete_role_mapping(&mut self, id: &str) -> StoreResult<bool> {
        q("DELETE FROM role_mapping_roles WHERE mapping_id = $1".into())
            .bind(id.to_string())
            .execute(self.conn())
            .await?;
        q("DELETE FROM role_mapping_teams WHERE mapping_id = $1".into())
            .bind(id.to_string())
            .execute(self.conn())
            .await?;
        let done =
            q("DELETE FROM role_mappings WHERE id = $1".into()).bind(id.to_string()).execute(self.conn()).await?;
        Ok(done.rows_affected() > 0)
    }
}
