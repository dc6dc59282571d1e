//! SQL for invitations and the outbox.

use async_trait::async_trait;

use super::*;

#[async_trait]
impl InvitationReads for SqlTx {
    async fn invitation_by_token_hash(&mut self, token_hash: &str) -> StoreResult<Option<InvitationRecord>> {
        let row = q("SELECT * FROM invitations WHERE token_hash = $1".into())
            .bind(token_hash.to_string())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(invitation_from).transpose()
    }

    async fn invitations(&mut self, user_id: Option<&str>) -> StoreResult<Vec<InvitationRecord>> {
        let rows = match user_id {
            Some(u) => {
                q("SELECT * FROM invitations WHERE user_id = $1 ORDER BY seq DESC".into())
                    .bind(u.to_string())
                    .fetch_all(self.conn())
                    .await?
            }
            None => q("SELECT * FROM invitations ORDER BY seq DESC".into()).fetch_all(self.conn()).await?,
        };
        rows.iter().map(invitation_from).collect()
    }

    async fn outbox(&mut self, limit: u64) -> StoreResult<Vec<OutboxMessage>> {
        let rows = q("SELECT * FROM outbox ORDER BY seq DESC LIMIT $1".into())
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(outbox_from).collect()
    }
}

#[async_trait]
impl InvitationWrites for SqlTx {
    async fn insert_invitation(&mut self, i: &InvitationRecord) -> StoreResult<()> {
        q("INSERT INTO invitations (id, user_id, token_hash, email, created, expires_at, status, status_at) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            .into())
        .bind(i.id.clone())
        .bind(i.user_id.clone())
        .bind(i.token_hash.clone())
        .bind(i.email.clone())
        .bind(i.created.clone())
        .bind(i.expires_at.clone())
        .bind(i.status.as_str())
        .bind(i.status_at.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn accept_invitation(&mut self, id: &str, now: &str) -> StoreResult<bool> {
        // The condition is evaluated on the row as it is when the update locks it: a second
        // concurrent accept waits for the first and then finds the invitation no longer pending.
        let done = q("UPDATE invitations SET status = 'accepted', status_at = $2 \
                      WHERE id = $1 AND status = 'pending' AND expires_at > $2"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_invitations(&mut self, user_id: &str, now: &str) -> StoreResult<u64> {
        q("UPDATE outbox SET cancelled_at = $2, link = NULL \
           WHERE sent_at IS NULL AND parked_at IS NULL AND cancelled_at IS NULL \
           AND invitation_id IN (SELECT id FROM invitations WHERE user_id = $1 AND status = 'pending')"
            .into())
        .bind(user_id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        let done =
            q("UPDATE invitations SET status = 'cancelled', status_at = $2 WHERE user_id = $1 AND status = 'pending'"
                .into())
            .bind(user_id.to_string())
            .bind(now.to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_outbox(&mut self, m: &OutboxMessage) -> StoreResult<()> {
        q("INSERT INTO outbox (id, kind, recipient, subject, body, created, attempts, invitation_id, link) \
           VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)"
            .into())
        .bind(m.id.clone())
        .bind(m.kind.clone())
        .bind(m.recipient.clone())
        .bind(m.subject.clone())
        .bind(m.body.clone())
        .bind(m.created.clone())
        .bind(m.invitation_id.clone())
        .bind(m.link.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn claim_outbox(
        &mut self,
        now: &str,
        until: &str,
        claim: &str,
        limit: u64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        // PostgreSQL: rows locked by another replica's claim in progress are skipped. SQLite:
        // this write transaction is the only writer, so the select and update are one step.
        let skip_locked = match self.d {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "SELECT id FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL AND cancelled_at IS NULL \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $1) AND (claimed_until IS NULL OR claimed_until <= $1) \
             ORDER BY seq LIMIT $2{skip_locked}"
        );
        let ids: Vec<String> = q(sql)
            .bind(now.to_string())
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = vec![SqlValue::Text(claim.to_string()), SqlValue::Text(until.to_string())];
        params.extend(ids.iter().map(|i| SqlValue::Text(i.clone())));
        let update =
            format!("UPDATE outbox SET claim = $1, claimed_until = $2 WHERE id IN ({})", placeholders(3, ids.len()));
        bind_all(q(update), params).execute(self.conn()).await?;
        let mut params: Vec<SqlValue> = ids.iter().map(|i| SqlValue::Text(i.clone())).collect();
        params.push(SqlValue::Text(claim.to_string()));
        let select = format!(
            "SELECT * FROM outbox WHERE id IN ({}) AND claim = ${} ORDER BY seq",
            placeholders(1, ids.len()),
            ids.len() + 1
        );
        let rows = bind_all(q(select), params).fetch_all(self.conn()).await?;
        rows.iter().map(outbox_from).collect()
    }

    async fn outbox_sent(&mut self, id: &str, claim: &str, now: &str, body: &str) -> StoreResult<bool> {
        let done =
            q("UPDATE outbox SET sent_at = $3, body = $4, link = NULL, attempts = attempts + 1, last_error = NULL, \
                      next_attempt_at = NULL, claim = NULL, claimed_until = NULL \
                      WHERE id = $1 AND claim = $2 AND sent_at IS NULL"
                .into())
            .bind(id.to_string())
            .bind(claim.to_string())
            .bind(now.to_string())
            .bind(body.to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox_failed(
        &mut self,
        id: &str,
        claim: &str,
        error: &str,
        now: &str,
        retry_at: Option<&str>,
    ) -> StoreResult<bool> {
        let sql = match retry_at {
            Some(_) => {
                "UPDATE outbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4, \
                 claim = NULL, claimed_until = NULL WHERE id = $1 AND claim = $2 AND sent_at IS NULL"
            }
            None => {
                "UPDATE outbox SET attempts = attempts + 1, last_error = $3, parked_at = $4, link = NULL, \
                 next_attempt_at = NULL, claim = NULL, claimed_until = NULL WHERE id = $1 AND claim = $2 AND sent_at IS NULL"
            }
        };
        let done = q(sql.into())
            .bind(id.to_string())
            .bind(claim.to_string())
            .bind(error.to_string())
            .bind(retry_at.unwrap_or(now).to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
