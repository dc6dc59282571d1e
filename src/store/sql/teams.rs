//! SQL for teams and their members.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl TeamReads for SqlTx {
    async fn team(&mut self, team_id: &str) -> StoreResult<Option<TeamRecord>> {
        let sql = format!("SELECT {} FROM teams t WHERE t.id = $1{}", self.team_cols(), self.lock);
        Ok(self.fetch_teams(sql, vec![SqlValue::Text(team_id.to_string())]).await?.pop())
    }

    async fn group(&mut self, scim_id: &str) -> StoreResult<Option<TeamRecord>> {
        let sql = format!("SELECT {} FROM teams t WHERE t.scim_id = $1{}", self.team_cols(), self.lock);
        Ok(self.fetch_teams(sql, vec![SqlValue::Text(scim_id.to_string())]).await?.pop())
    }

    async fn team_by_name(&mut self, name: &str) -> StoreResult<Option<TeamRecord>> {
        let sql =
            format!("SELECT {} FROM teams t WHERE t.name = $1 ORDER BY t.seq LIMIT 1{}", self.team_cols(), self.lock);
        Ok(self.fetch_teams(sql, vec![SqlValue::Text(name.to_string())]).await?.pop())
    }

    async fn handle_taken(&mut self, handle: &str) -> StoreResult<bool> {
        let n = self
            .count("SELECT COUNT(*) FROM teams WHERE handle = $1".into(), vec![SqlValue::Text(handle.into())])
            .await?;
        Ok(n > 0)
    }

    async fn list_groups(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<TeamRecord>)> {
        let (where_sql, order, params) = self.list_clauses(spec, ResourceTable::Groups)?;
        let count_sql = format!("SELECT COUNT(*) FROM teams t WHERE {where_sql}");
        if spec.limit == 0 {
            return Ok((self.count(count_sql, params).await?, Vec::new()));
        }
        let n = params.len();
        let sql = format!(
            "SELECT {} FROM teams t WHERE {where_sql} ORDER BY {order} LIMIT ${} OFFSET ${}",
            self.team_cols(),
            n + 1,
            n + 2
        );
        let page = self.fetch_teams(sql, page_params(&params, spec)).await?;
        let total = self.page_total(spec, page.len(), count_sql, params).await?;
        Ok((total, page))
    }

    async fn list_teams(&mut self) -> StoreResult<Vec<TeamRecord>> {
        let sql = format!("SELECT {} FROM teams t ORDER BY t.name, t.seq", self.team_cols());
        self.fetch_teams(sql, Vec::new()).await
    }

    async fn team_members(&mut self, team_id: &str) -> StoreResult<Vec<String>> {
        let rows = q("SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY user_id".into())
            .bind(team_id.to_string())
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    async fn memberships(&mut self) -> StoreResult<Vec<Membership>> {
        let rows = q("SELECT team_id, user_id, added_at, added_by FROM team_members ORDER BY team_id, user_id".into())
            .fetch_all(self.conn())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    team_id: r.try_get("team_id")?,
                    user_id: r.try_get("user_id")?,
                    added_at: r.try_get("added_at")?,
                    added_by: r.try_get("added_by")?,
                })
            })
            .collect()
    }

    async fn team_member_count(&mut self, team_id: &str) -> StoreResult<u64> {
        self.count("SELECT COUNT(*) FROM team_members WHERE team_id = $1".into(), vec![SqlValue::Text(team_id.into())])
            .await
    }
}

#[async_trait]
impl TeamWrites for SqlTx {
    async fn insert_team(&mut self, t: &TeamRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO teams (id, name, handle, scim_id, external_id, data, created, last_modified, version, name_key, data_folded, declared_by) \
             VALUES ($1, $2, $3, $4, $5, {}, $7, $8, $9, $10, {}, $12)",
            self.d.json_in(6),
            self.d.json_in(11)
        );
        q(sql)
            .bind(t.id.clone())
            .bind(t.name.clone())
            .bind(t.handle.clone())
            .bind(t.scim_id.clone())
            .bind(t.external_id.clone())
            .bind(doc_text(&t.data))
            .bind(t.created.clone())
            .bind(t.last_modified.clone())
            .bind(t.version)
            .bind(fold(&t.name))
            .bind(team_folded_text(&t.data))
            .bind(t.declared_by.clone())
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a team with handle '{}' already exists", t.handle)))?;
        Ok(())
    }

    async fn update_team(&mut self, before: &TeamRecord, t: &TeamRecord) -> StoreResult<()> {
        let mut set = SetClause::new(self.d);
        set.json("data", doc_text(&t.data));
        set.json("data_folded", team_folded_text(&t.data));
        set.value("last_modified", SqlValue::Text(t.last_modified.clone()));
        set.value("version", SqlValue::Int(t.version));
        if t.name != before.name {
            set.value("name", SqlValue::Text(t.name.clone()));
            set.value("name_key", SqlValue::Text(fold(&t.name)));
        }
        if t.handle != before.handle {
            set.value("handle", SqlValue::Text(t.handle.clone()));
        }
        if t.scim_id != before.scim_id {
            set.value("scim_id", SqlValue::opt(&t.scim_id));
        }
        if t.external_id != before.external_id {
            set.value("external_id", SqlValue::opt(&t.external_id));
        }
        if t.declared_by != before.declared_by {
            set.value("declared_by", SqlValue::opt(&t.declared_by));
        }
        let (set_sql, mut params) = set.finish();
        let sql =
            format!("UPDATE teams SET {set_sql} WHERE id = ${} AND version = ${}", params.len() + 1, params.len() + 2);
        params.push(SqlValue::Text(t.id.clone()));
        params.push(SqlValue::Int(t.version - 1));
        let done = bind_all(q(sql), params)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a team with handle '{}' already exists", t.handle)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Concurrent(format!("team {}", t.id)));
        }
        Ok(())
    }

    async fn add_team_members(
        &mut self,
        team_id: &str,
        user_ids: &[String],
        now: &str,
        actor: &str,
    ) -> StoreResult<u64> {
        let mut added = 0;
        for chunk in user_ids.chunks(CHUNK) {
            let values: Vec<String> = (0..chunk.len()).map(|i| format!("($1, ${}, $2, $3)", i + 4)).collect();
            let sql = format!(
                "INSERT INTO team_members (team_id, user_id, added_at, added_by) VALUES {} ON CONFLICT DO NOTHING",
                values.join(", ")
            );
            let mut params = vec![
                SqlValue::Text(team_id.to_string()),
                SqlValue::Text(now.to_string()),
                SqlValue::Text(actor.to_string()),
            ];
            params.extend(chunk.iter().map(|u| SqlValue::Text(u.clone())));
            added += bind_all(q(sql), params).execute(self.conn()).await?.rows_affected();
        }
        Ok(added)
    }

    async fn remove_team_members(&mut self, team_id: &str, user_ids: &[String]) -> StoreResult<u64> {
        let mut removed = 0;
        for chunk in user_ids.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM team_members WHERE team_id = $1 AND user_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut params = vec![SqlValue::Text(team_id.to_string())];
            params.extend(chunk.iter().map(|u| SqlValue::Text(u.clone())));
            removed += bind_all(q(sql), params).execute(self.conn()).await?.rows_affected();
        }
        Ok(removed)
    }

    async fn clear_team_members(&mut self, team_id: &str) -> StoreResult<u64> {
        let done = q("DELETE FROM team_members WHERE team_id = $1".into())
            .bind(team_id.to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }
}
