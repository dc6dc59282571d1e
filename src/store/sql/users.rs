//! SQL for users.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl UserReads for SqlTx {
    async fn user(&mut self, id: &str) -> StoreResult<Option<UserRecord>> {
        let sql =
            format!("SELECT {} FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL{}", self.user_cols(), self.lock);
        Ok(self.fetch_users(sql, vec![SqlValue::Text(id.to_string())]).await?.pop())
    }

    async fn user_by_name(&mut self, user_name: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!(
            "SELECT {} FROM users u WHERE u.user_name_key = $1 AND u.deleted_at IS NULL{}",
            self.user_cols(),
            self.lock
        );
        Ok(self.fetch_users(sql, vec![SqlValue::Text(fold(user_name))]).await?.pop())
    }

    async fn all_accounts(&mut self) -> StoreResult<Vec<AccountRecord>> {
        let sql = format!("SELECT {}, u.deleted_at FROM users u ORDER BY u.seq", self.user_cols());
        let rows = q(sql).fetch_all(self.conn()).await?;
        rows.iter()
            .map(|r| Ok(AccountRecord { user: Self::user_from(r)?, deleted_at: r.try_get("deleted_at")? }))
            .collect()
    }

    async fn list_users(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<UserRecord>)> {
        let (total, rows) = self.user_page(spec, false).await?;
        Ok((total, rows.into_iter().map(|(u, _)| u).collect()))
    }

    async fn user_with_groups(&mut self, id: &str) -> StoreResult<Option<UserWithGroups>> {
        let sql = format!(
            "SELECT {}, {} AS groups_json FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL",
            self.user_cols(),
            self.d.user_groups_json()
        );
        let row = q(sql).bind(id.to_string()).fetch_optional(self.conn()).await?;
        row.as_ref().map(|r| Ok((Self::user_from(r)?, groups_from(r)?))).transpose()
    }

    async fn list_users_with_groups(
        &mut self,
        spec: &ListSpec<'_>,
        with_groups: bool,
    ) -> StoreResult<(u64, Vec<UserWithGroups>)> {
        self.user_page(spec, with_groups).await
    }

    async fn existing_user_ids(&mut self, ids: &[String]) -> StoreResult<Vec<String>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let sql =
                format!("SELECT id FROM users WHERE deleted_at IS NULL AND id IN ({})", placeholders(1, chunk.len()));
            let params = chunk.iter().map(|i| SqlValue::Text(i.clone())).collect();
            for row in bind_all(q(sql), params).fetch_all(self.conn()).await? {
                found.push(row.try_get::<String, _>(0)?);
            }
        }
        Ok(found)
    }

    async fn groups_of_user(&mut self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
        let rows = q("SELECT t.scim_id, t.name FROM team_members m JOIN teams t ON t.id = m.team_id \
                      WHERE m.user_id = $1 AND t.scim_id IS NOT NULL ORDER BY t.name, t.scim_id"
            .into())
        .bind(user_id.to_string())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }
}

#[async_trait]
impl UserWrites for SqlTx {
    async fn insert_user(&mut self, u: &UserRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO users (id, user_name, user_name_key, external_id, display_name, active, data, created, last_modified, version, data_folded) \
             VALUES ($1, $2, $3, $4, $5, $6, {}, $8, $9, $10, {})",
            self.d.json_in(7),
            self.d.json_in(11)
        );
        q(sql)
            .bind(u.id.clone())
            .bind(u.user_name.clone())
            .bind(fold(&u.user_name))
            .bind(u.external_id.clone())
            .bind(u.display_name.clone())
            .bind(u.active as i64)
            .bind(doc_text(&u.data))
            .bind(u.created.clone())
            .bind(u.last_modified.clone())
            .bind(u.version)
            .bind(user_folded_text(&u.data))
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("userName '{}' is already taken", u.user_name)))?;
        Ok(())
    }

    async fn update_user(&mut self, before: &UserRecord, u: &UserRecord) -> StoreResult<()> {
        let mut set = SetClause::new(self.d);
        set.value("display_name", SqlValue::opt(&u.display_name));
        set.value("active", SqlValue::Int(u.active as i64));
        set.json("data", doc_text(&u.data));
        set.json("data_folded", user_folded_text(&u.data));
        set.value("last_modified", SqlValue::Text(u.last_modified.clone()));
        set.value("version", SqlValue::Int(u.version));
        if u.user_name != before.user_name {
            set.value("user_name", SqlValue::Text(u.user_name.clone()));
            set.value("user_name_key", SqlValue::Text(fold(&u.user_name)));
        }
        if u.external_id != before.external_id {
            set.value("external_id", SqlValue::opt(&u.external_id));
        }
        let (set_sql, mut params) = set.finish();
        let sql = format!(
            "UPDATE users SET {set_sql} WHERE id = ${} AND version = ${} AND deleted_at IS NULL",
            params.len() + 1,
            params.len() + 2
        );
        params.push(SqlValue::Text(u.id.clone()));
        params.push(SqlValue::Int(u.version - 1));
        let done = bind_all(q(sql), params)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("userName '{}' is already taken", u.user_name)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Concurrent(format!("user {}", u.id)));
        }
        Ok(())
    }

    async fn delete_user(&mut self, id: &str, now: &str) -> StoreResult<bool> {
        let done = q("UPDATE users SET deleted_at = $2, active = 0, version = version + 1, last_modified = $2 \
                      WHERE id = $1 AND deleted_at IS NULL"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Teams that lose a member change version too (their ETag must not lie).
        q("UPDATE teams SET version = version + 1, last_modified = $2 \
           WHERE id IN (SELECT team_id FROM team_members WHERE user_id = $1)"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        q("DELETE FROM team_members WHERE user_id = $1".into()).bind(id.to_string()).execute(self.conn()).await?;
        Ok(true)
    }
}
