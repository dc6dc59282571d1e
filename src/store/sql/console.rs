//! SQL for the console's sign-in state.

use async_trait::async_trait;

use super::*;

fn session_from(row: &Row) -> StoreResult<ConsoleSessionRecord> {
    Ok(ConsoleSessionRecord {
        id_hash: row.try_get("id_hash")?,
        user_id: row.try_get("user_id")?,
        csrf_token: row.try_get("csrf_token")?,
        method: row.try_get("method")?,
        created: row.try_get("created")?,
        last_seen: row.try_get("last_seen")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn flow_from(row: &Row) -> StoreResult<SigninFlowRecord> {
    Ok(SigninFlowRecord {
        flow_hash: row.try_get("flow_hash")?,
        state: row.try_get("state")?,
        nonce: row.try_get("nonce")?,
        pkce_verifier: row.try_get("pkce_verifier")?,
        created: row.try_get("created")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn link_from(row: &Row) -> StoreResult<LoginLinkRecord> {
    Ok(LoginLinkRecord {
        id: row.try_get("id")?,
        token_hash: row.try_get("token_hash")?,
        user_id: row.try_get("user_id")?,
        created: row.try_get("created")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
    })
}

#[async_trait]
impl ConsoleReads for SqlTx {
    async fn console_session(&mut self, id_hash: &str) -> StoreResult<Option<ConsoleSessionRecord>> {
        let row = q("SELECT * FROM console_sessions WHERE id_hash = $1".into())
            .bind(id_hash)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(session_from).transpose()
    }

    async fn login_link(&mut self, token_hash: &str) -> StoreResult<Option<LoginLinkRecord>> {
        let row = q("SELECT * FROM console_login_links WHERE token_hash = $1".into())
            .bind(token_hash)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(link_from).transpose()
    }
}

#[async_trait]
impl ConsoleWrites for SqlTx {
    async fn insert_console_session(&mut self, s: &ConsoleSessionRecord) -> StoreResult<()> {
        q("INSERT INTO console_sessions (id_hash, user_id, csrf_token, method, created, last_seen, expires_at) \
           VALUES ($1, $2, $3, $4, $5, $6, $7)"
            .into())
        .bind(s.id_hash.clone())
        .bind(s.user_id.clone())
        .bind(s.csrf_token.clone())
        .bind(s.method.clone())
        .bind(s.created.clone())
        .bind(s.last_seen.clone())
        .bind(s.expires_at.clone())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, "session id collision"))?;
        Ok(())
    }

    async fn touch_console_session(&mut self, id_hash: &str, now: &str) -> StoreResult<()> {
        q("UPDATE console_sessions SET last_seen = $2 WHERE id_hash = $1".into())
            .bind(id_hash)
            .bind(now)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn delete_console_session(&mut self, id_hash: &str) -> StoreResult<bool> {
        let done =
            q("DELETE FROM console_sessions WHERE id_hash = $1".into()).bind(id_hash).execute(self.conn()).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_console(&mut self, now: &str, idle_cutoff: &str) -> StoreResult<u64> {
        let sessions = q("DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen < $2".into())
            .bind(now)
            .bind(idle_cutoff)
            .execute(self.conn())
            .await?;
        let flows =
            q("DELETE FROM console_signin_flows WHERE expires_at <= $1".into()).bind(now).execute(self.conn()).await?;
        Ok(sessions.rows_affected() + flows.rows_affected())
    }

    async fn insert_signin_flow(&mut self, f: &SigninFlowRecord) -> StoreResult<()> {
        q("INSERT INTO console_signin_flows (flow_hash, state, nonce, pkce_verifier, created, expires_at) \
           VALUES ($1, $2, $3, $4, $5, $6)"
            .into())
        .bind(f.flow_hash.clone())
        .bind(f.state.clone())
        .bind(f.nonce.clone())
        .bind(f.pkce_verifier.clone())
        .bind(f.created.clone())
        .bind(f.expires_at.clone())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, "sign-in flow collision"))?;
        Ok(())
    }

    async fn take_signin_flow(&mut self, flow_hash: &str) -> StoreResult<Option<SigninFlowRecord>> {
        let row = q("SELECT * FROM console_signin_flows WHERE flow_hash = $1".into())
            .bind(flow_hash)
            .fetch_optional(self.conn())
            .await?;
        let Some(flow) = row.as_ref().map(flow_from).transpose()? else { return Ok(None) };
        // A concurrent take deleted it first (its delete waited for ours or ours for its): only
        // the one whose delete removed the row finishes the sign-in.
        let done = q("DELETE FROM console_signin_flows WHERE flow_hash = $1".into())
            .bind(flow_hash)
            .execute(self.conn())
            .await?;
        Ok((done.rows_affected() == 1).then_some(flow))
    }

    async fn insert_login_link(&mut self, l: &LoginLinkRecord) -> StoreResult<()> {
        q("INSERT INTO console_login_links (id, token_hash, user_id, created, expires_at) VALUES ($1, $2, $3, $4, $5)"
            .into())
        .bind(l.id.clone())
        .bind(l.token_hash.clone())
        .bind(l.user_id.clone())
        .bind(l.created.clone())
        .bind(l.expires_at.clone())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, "sign-in link collision"))?;
        Ok(())
    }

    async fn use_login_link(&mut self, token_hash: &str, now: &str) -> StoreResult<bool> {
        let done = q("UPDATE console_login_links SET used_at = $2 \
                      WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"
            .into())
        .bind(token_hash)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
