//! Invitations: creating a user sends a sign-in link valid for a limited time (two days by
//! default). The message goes through the outbox, in the same transaction as the user.

use serde_json::{Value, json};

use super::keys::{Secret, hash_secret};
use super::*;
use crate::clock::parse_time;
use crate::store::{InvitationRecord, InvitationStatus, OutboxMessage, UserRecord};

/// Why an invitation link was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvitationError {
    #[error("unknown invitation link")]
    Unknown,
    #[error("this invitation link expired at {0}; ask an administrator to resend it")]
    Expired(String),
    #[error("this invitation link was already {0}")]
    NotPending(&'static str),
    #[error("the invited user is deactivated")]
    UserInactive,
    #[error("{0}")]
    Failed(String),
}

/// Where a user's invitation is sent: the primary e-mail, else the first, else the userName
/// when it looks like an address.
pub fn invitation_address(user: &UserRecord) -> Option<String> {
    let emails = user.data.get("emails").and_then(Value::as_array);
    let pick = |primary: bool| {
        emails.and_then(|es| {
            es.iter()
                .find(|e| !primary || e.get("primary").and_then(Value::as_bool) == Some(true))
                .and_then(|e| e.get("value").and_then(Value::as_str))
                .map(str::to_string)
        })
    };
    pick(true).or_else(|| pick(false)).or_else(|| user.user_name.contains('@').then(|| user.user_name.clone()))
}

impl Directory {
    /// Issues an invitation for `user` and queues its message; returns the invitation id, or
    /// None when the user has no address to invite.
    pub(super) async fn issue_invitation(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        user: &UserRecord,
    ) -> OpResult<Option<String>> {
        let Some(email) = invitation_address(user) else {
            self.audit(tx, ctx, "invitation.skipped", "user", &user.id, json!({"reason": "no e-mail address"})).await?;
            return Ok(None);
        };
        let now = self.clock.now();
        let expires = now + self.settings.invitation_ttl;
        let token = Secret::generate();
        let inv = InvitationRecord {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            token_hash: hash_secret(token.expose()),
            email: email.clone(),
            created: crate::clock::format_time(now),
            expires_at: crate::clock::format_time(expires),
            status: InvitationStatus::Pending,
            status_at: None,
        };
        tx.insert_invitation(&inv).await?;
        let link = format!("{}/{}", self.settings.invitation_url.trim_end_matches('/'), token.expose());
        let body = format!(
            "Hello {},\n\nYou have been given access. Sign in for the first time with this link:\n\n{link}\n\nThe link is valid until {} (UTC).\n",
            user.display_name.clone().unwrap_or_else(|| user.user_name.clone()),
            inv.expires_at
        );
        tx.insert_outbox(&OutboxMessage {
            id: uuid::Uuid::new_v4().to_string(),
            kind: "invitation".into(),
            recipient: email.clone(),
            subject: "Your invitation".into(),
            body,
            created: inv.created.clone(),
            attempts: 0,
            last_error: None,
            sent_at: None,
        })
        .await?;
        self.audit(
            tx,
            ctx,
            "invitation.create",
            "user",
            &user.id,
            json!({"invitation": inv.id, "email": email, "expiresAt": inv.expires_at}),
        )
        .await?;
        Ok(Some(inv.id))
    }

    /// Cancels a user's pending invitations and issues a fresh one (by id or userName).
    pub async fn resend_invitation(&self, ctx: &RequestContext, user: &str) -> Result<Option<String>, ScimError> {
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let rec = match tx.user(user).await? {
                Some(r) => r,
                None => tx
                    .user_by_name(user)
                    .await?
                    .ok_or_else(|| ScimError::not_found(format!("User {user} not found")))?,
            };
            if !rec.active {
                return Err(ScimError::invalid_value(format!(
                    "user {} is deactivated; reactivate it first",
                    rec.user_name
                ))
                .into());
            }
            let cancelled = tx.cancel_invitations(&rec.id, &self.now()).await?;
            let id = self.issue_invitation(tx.as_mut(), ctx, &rec).await?;
            self.audit(tx.as_mut(), ctx, "invitation.resend", "user", &rec.id, json!({"cancelled": cancelled})).await?;
            tx.commit().await?;
            Ok(id)
        })
        .await
    }

    /// Accepts an invitation link: valid once, before it expires, for an active user.
    pub async fn accept_invitation(&self, ctx: &RequestContext, token: &str) -> Result<String, InvitationError> {
        let fail = |e: StoreError| InvitationError::Failed(scim_from_store(e).detail);
        let mut tx = self.store.begin_write().await.map_err(fail)?;
        let inv =
            tx.invitation_by_token_hash(&hash_secret(token)).await.map_err(fail)?.ok_or(InvitationError::Unknown)?;
        match inv.status {
            InvitationStatus::Pending => {}
            InvitationStatus::Accepted => return Err(InvitationError::NotPending("used")),
            InvitationStatus::Cancelled => return Err(InvitationError::NotPending("cancelled")),
        }
        let now = self.clock.now();
        if parse_time(&inv.expires_at).is_none_or(|exp| now >= exp) {
            return Err(InvitationError::Expired(inv.expires_at));
        }
        let user = tx.user(&inv.user_id).await.map_err(fail)?;
        if !user.is_some_and(|u| u.active) {
            return Err(InvitationError::UserInactive);
        }
        let now = self.now();
        tx.set_invitation_status(&inv.id, InvitationStatus::Accepted, &now).await.map_err(fail)?;
        self.audit(tx.as_mut(), ctx, "invitation.accept", "user", &inv.user_id, json!({"invitation": inv.id}))
            .await
            .map_err(|e| InvitationError::Failed(e.into_scim().detail))?;
        tx.commit().await.map_err(fail)?;
        Ok(inv.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(user_name: &str, emails: Value) -> UserRecord {
        let mut data = serde_json::Map::new();
        if !emails.is_null() {
            data.insert("emails".into(), emails);
        }
        UserRecord {
            id: "u".into(),
            user_name: user_name.into(),
            external_id: None,
            display_name: None,
            active: true,
            data,
            created: String::new(),
            last_modified: String::new(),
            version: 1,
        }
    }

    #[test]
    fn invitations_go_to_the_primary_address_first() {
        let u = user("x", json!([{"value": "a@x.test"}, {"value": "b@x.test", "primary": true}]));
        assert_eq!(invitation_address(&u).as_deref(), Some("b@x.test"));
        let u = user("x", json!([{"value": "a@x.test"}]));
        assert_eq!(invitation_address(&u).as_deref(), Some("a@x.test"));
        assert_eq!(invitation_address(&user("c@x.test", Value::Null)).as_deref(), Some("c@x.test"));
        assert_eq!(invitation_address(&user("carol", Value::Null)), None);
    }
}
