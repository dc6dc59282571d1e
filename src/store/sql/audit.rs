//! SQL for the audit trail.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl AuditReads for SqlTx {
    async fn list_audit(&mut self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.select_audit(query, &[]).await
    }

    async fn list_audit_of(&mut self, query: &AuditQuery, actions: &[&str]) -> StoreResult<Vec<AuditEvent>> {
        if actions.is_empty() {
            return Ok(Vec::new());
        }
        self.select_audit(query, actions).await
    }
}

impl SqlTx {
    /// Events matching `query`, and one of `actions` unless it is empty, oldest first.
    async fn select_audit(&mut self, query: &AuditQuery, actions: &[&str]) -> StoreResult<Vec<AuditEvent>> {
        self.flush_audit().await?;
        let mut conds = vec!["1 = 1".to_string()];
        let mut params = Vec::new();
        if let Some(s) = &query.since {
            params.push(SqlValue::Text(crate::clock::normalize_time(s)));
            conds.push(format!("time >= ${}", params.len()));
        }
        if let Some(u) = &query.until {
            params.push(SqlValue::Text(crate::clock::normalize_time(u)));
            conds.push(format!("time < ${}", params.len()));
        }
        if let Some(a) = &query.actor {
            params.push(SqlValue::Text(a.clone()));
            conds.push(format!("actor = ${}", params.len()));
        }
        if let Some(a) = &query.action {
            params.push(SqlValue::Text(a.clone()));
            conds.push(format!("action = ${}", params.len()));
        }
        if let Some(t) = &query.target_id {
            params.push(SqlValue::Text(t.clone()));
            conds.push(format!("target_id = ${}", params.len()));
        }
        if !actions.is_empty() {
            conds.push(format!("action IN ({})", placeholders(params.len() + 1, actions.len())));
            params.extend(actions.iter().map(|a| SqlValue::Text(a.to_string())));
        }
        let mut sql = format!(
            "SELECT id, time, actor, action, target_type, target_id, request_id, {} AS details FROM audit_events WHERE {} ORDER BY seq",
            self.d.json_out("details"),
            conds.join(" AND ")
        );
        if let Some(limit) = query.limit {
            params.push(SqlValue::Int(limit.min(i64::MAX as u64) as i64));
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        let rows = bind_all(q(sql), params).fetch_all(self.conn()).await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(AuditEvent {
                    id: r.try_get("id")?,
                    time: r.try_get("time")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target_type: r.try_get("target_type")?,
                    target_id: r.try_get("target_id")?,
                    request_id: r.try_get("request_id")?,
                    details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl AuditWrites for SqlTx {
    async fn append_audit(&mut self, e: &AuditEvent) -> StoreResult<()> {
        self.pending_audit.push(e.clone());
        Ok(())
    }
}
