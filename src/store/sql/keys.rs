//! SQL for keys.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl KeyReads for SqlTx {
    async fn key_by_hash(&mut self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = q("SELECT * FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL".into())
            .bind(secret_hash.to_string())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(Self::key_from).transpose()
    }

    async fn list_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = q("SELECT * FROM api_keys ORDER BY seq".into()).fetch_all(self.conn()).await?;
        rows.iter().map(Self::key_from).collect()
    }
}

#[async_trait]
impl KeyWrites for SqlTx {
    async fn insert_key(&mut self, k: &ApiKeyRecord) -> StoreResult<()> {
        self.keys_changed = true;
        q("INSERT INTO api_keys (id, name, owner_kind, owner_user_id, secret_hash, hint, permissions, created) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            .into())
        .bind(k.id.clone())
        .bind(k.name.clone())
        .bind(k.owner.as_str())
        .bind(k.owner_user_id.clone())
        .bind(k.secret_hash.clone())
        .bind(k.hint.clone())
        .bind(k.permissions.join(","))
        .bind(k.created.clone())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, "key collision"))?;
        Ok(())
    }

    async fn revoke_key(&mut self, id_or_name: &str, now: &str, reason: &str) -> StoreResult<bool> {
        self.keys_changed = true;
        let done = q("UPDATE api_keys SET revoked_at = $2, revoked_reason = $3 \
                      WHERE (id = $1 OR name = $1) AND revoked_at IS NULL"
            .into())
        .bind(id_or_name.to_string())
        .bind(now.to_string())
        .bind(reason.to_string())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_key(&mut self, id: &str, now: &str, not_before: &str) -> StoreResult<bool> {
        // Not a change of who may sign in: the key generation (the cache's) stays.
        let done = q("UPDATE api_keys SET last_used_at = $2 \
                      WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .bind(not_before.to_string())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_keys(&mut self, user_id: &str, now: &str, reason: &str) -> StoreResult<Vec<String>> {
        self.keys_changed = true;
        let rows = q("SELECT id FROM api_keys WHERE owner_user_id = $1 AND revoked_at IS NULL ORDER BY seq".into())
            .bind(user_id.to_string())
            .fetch_all(self.conn())
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        if !ids.is_empty() {
            q("UPDATE api_keys SET revoked_at = $2, revoked_reason = $3 WHERE owner_user_id = $1 AND revoked_at IS NULL"
                .into())
            .bind(user_id.to_string())
            .bind(now.to_string())
            .bind(reason.to_string())
            .execute(self.conn())
            .await?;
        }
        Ok(ids)
    }
}
