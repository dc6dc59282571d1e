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
            // Bound by position on SQLite (see q_positional): its text has no `$` but the placeholders.
            let mut query = q_positional(format!(
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

#[cfg(test)]
mod tests {
    use crate::store::{RequestQuery, RequestRecord, SharedStore};

    fn record(n: usize) -> RequestRecord {
        RequestRecord {
            time: format!("2026-01-01T00:{:02}:{:02}.{:03}Z", n / 3600 % 60, n / 60 % 60, n % 1000),
            method: ["GET", "POST", "PATCH"][n % 3].into(),
            path: format!("/scim/v2/Users/{n}"),
            status: 200 + (n % 300) as u16,
            key_id: n.is_multiple_of(2).then(|| format!("key-{n}")),
            key_name: n.is_multiple_of(4).then(|| format!("name-{n}")),
            duration_us: n as i64 * 7,
            request_id: (!n.is_multiple_of(5)).then(|| format!("req-{n}")),
        }
    }

    async fn sqlite_store(dir: &tempfile::TempDir) -> SharedStore {
        crate::store::open(&dir.path().join("log.db").to_string_lossy()).await.expect("open")
    }

    async fn append(store: &SharedStore, records: &[RequestRecord], keep: u64) -> u64 {
        let mut tx = store.begin_write().await.expect("begin");
        let pruned = tx.append_requests(records, keep).await.expect("append");
        tx.commit().await.expect("commit");
        pruned
    }

    /// Every field of every row lands in its own column, across several multi-row INSERTs
    /// (the last one partial) and with NULLs among the values.
    #[tokio::test]
    async fn a_batch_is_stored_field_by_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = sqlite_store(&dir).await;
        let records: Vec<RequestRecord> = (0..super::ROWS_PER_INSERT * 2 + 7).map(record).collect();
        assert_eq!(append(&store, &records, 1_000_000).await, 0);
        let mut tx = store.begin_read().await.expect("begin");
        let query = RequestQuery { limit: 1_000, ..Default::default() };
        let mut stored = tx.recent_requests(&query).await.expect("read");
        stored.reverse();
        assert_eq!(stored, records);
        // Pruned by sequence: the newest ten stay.
        assert_eq!(append(&store, &[record(10_000)], 10).await, records.len() as u64 + 1 - 10);
    }

    /// The request log's batched insert, timed: 100 batches of 500 rows on SQLite.
    /// `cargo test --lib request_log_insert_cost -- --ignored --nocapture`
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn request_log_insert_cost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = sqlite_store(&dir).await;
        let batches: Vec<Vec<RequestRecord>> =
            (0..100).map(|b| (0..500).map(|i| record(b * 500 + i)).collect()).collect();
        let start = std::time::Instant::now();
        for batch in &batches {
            append(&store, batch, 1_000).await;
        }
        let took = start.elapsed();
        println!(
            "request log: 100 batches of 500 rows in {took:.2?} ({:.0} rows/s, {:.2?} a batch)",
            50_000.0 / took.as_secs_f64(),
            took / 100
        );
    }
}
