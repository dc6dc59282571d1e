//! SQL for the log of recent provisioning requests.

use async_trait::async_trait;

use super::*;

/// Rows put in one multi-row INSERT (8 parameters each, under [`CHUNK`] in all).
const ROWS_PER_INSERT: usize = CHUNK / 8;

fn record_from(row: &Row) -> StoreResult<RequestRecord> {
    let status: i64 = row.try_get("status")?;
    Ok(RequestRecord {
        time: row.try_get("time")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        status: u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("request status {status}")))?,
        key_id: row.try_get("key_id")?,
        key_name: row.try_get("key_name")?,
        duration_us: row.try_get("duration_us")?,
        request_id: row.try_get("request_id")?,
    })
}

#[async_trait]
impl RequestReads for SqlTx {
    async fn recent_requests(&mut self, query: &RequestQuery) -> StoreResult<Vec<RequestRecord>> {
        let mut conds = vec!["1 = 1".to_string()];
        let mut params = Vec::new();
        if let Some((low, high)) = query.status {
            params.push(SqlValue::Int(low.into()));
            params.push(SqlValue::Int(high.into()));
            conds.push(format!("status >= ${} AND status <= ${}", params.len() - 1, params.len()));
        }
        match &query.key_id {
            None => {}
            Some(None) => conds.push("key_id IS NULL".into()),
            Some(Some(id)) => {
                params.push(SqlValue::Text(id.clone()));
                conds.push(format!("key_id = ${}", params.len()));
            }
        }
        params.push(SqlValue::Int(query.limit.min(i64::MAX as u64) as i64));
        let sql = format!(
            "SELECT time, method, path, status, key_id, key_name, duration_us, request_id FROM provisioning_requests \
             WHERE {} ORDER BY seq DESC LIMIT ${}",
            conds.join(" AND "),
            params.len()
        );
        let rows = bind_all(q(sql), params).fetch_all(self.conn()).await?;
        rows.iter().map(record_from).collect()
    }

    async fn request_keys(&mut self) -> StoreResult<Vec<(String, String)>> {
        // The name of the newest request of each key (a key keeps its id; names are unique
        // among unrevoked keys only).
        let rows = q("SELECT r.key_id AS key_id, r.key_name AS key_name FROM provisioning_requests r \
                      JOIN (SELECT key_id, MAX(seq) AS seq FROM provisioning_requests WHERE key_id IS NOT NULL \
                            GROUP BY key_id) newest ON newest.seq = r.seq \
                      ORDER BY r.key_name, r.key_id"
            .into())
        .fetch_all(self.conn())
        .await?;
        rows.iter()
            .map(|r| {
                let name: Option<String> = r.try_get("key_name")?;
                Ok((r.try_get("key_id")?, name.unwrap_or_default()))
            })
            .collect()
    }
}

#[async_trait]
impl RequestWrites for SqlTx {
    async fn append_requests(&mut self, records: &[RequestRecord], keep: u64) -> StoreResult<u64> {
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 8;
                    let params: Vec<String> = (1..=8).map(|n| format!("${}", b + n)).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let mut query = q(format!(
                "INSERT INTO provisioning_requests \
                 (time, method, path, status, key_id, key_name, duration_us, request_id) VALUES {}",
                rows.join(", ")
            ));
            for r in chunk {
                query = query
                    .bind(r.time.clone())
                    .bind(r.method.clone())
                    .bind(r.path.clone())
                    .bind(i64::from(r.status))
                    .bind(r.key_id.clone())
                    .bind(r.key_name.clone())
                    .bind(r.duration_us)
                    .bind(r.request_id.clone());
            }
            query.execute(self.conn()).await?;
        }
        // By sequence, not by time: replicas' clocks differ, the sequence is the database's.
        let pruned = q("DELETE FROM provisioning_requests \
                        WHERE seq <= (SELECT MAX(seq) FROM provisioning_requests) - $1"
            .into())
        .bind(keep.min(i64::MAX as u64) as i64)
        .execute(self.conn())
        .await?;
        Ok(pruned.rows_affected())
    }
}
