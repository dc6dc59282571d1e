//! Invitations: creating a user sends a sign-in link valid for a limited time (two days by
//! default). The message goes through the outbox, in the same transaction as the user.
//!
//! Only a hash of the link's token is stored with the invitation. The link itself waits beside
//! the message (never in its body) until the message is sent, then it is gone. Opening the link
//! shows a page and consumes nothing (mail scanners open links); the page's form accepts it.

use serde_json::{Value, json};

use super::keys::{SECRET_PREFIX, Secret, hash_secret};
use super::*;
use crate::clock::parse_time;
use crate::store::{InvitationRecord, InvitationStatus, LINK_PLACEHOLDER, OutboxMessage, UserRecord};

impl Settings {
    /// Why invitation links built from [`Settings::invitation_url`] cannot reach anyone outside
    /// this machine (a loopback or unspecified host such as the default `localhost`, or not an
    /// absolute http(s) URL), or `None` when they may. A server that e-mails such links sends
    /// people links that do not work; it says so at start and on `/readyz`. The text names no
    /// user, key, token or URL, only the setting.
    pub fn invitation_link_warning(&self) -> Option<String> {
        let problem = match url::Url::parse(&self.invitation_url) {
            Err(e) => format!("is not a URL ({e})"),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => format!("has the scheme '{}', not http(s)", u.scheme()),
            Ok(u) => match u.host() {
                None => "has no host".to_string(),
                Some(url::Host::Domain(d)) if d == "localhost" || d.ends_with(".localhost") => {
                    format!("points at {d}")
                }
                Some(url::Host::Ipv4(ip)) if ip.is_loopback() || ip.is_unspecified() => format!("points at {ip}"),
                Some(url::Host::Ipv6(ip)) if ip.is_loopback() || ip.is_unspecified() => format!("points at [{ip}]"),
                Some(_) => return None,
            },
        };
        Some(format!(
            "invitation e-mails are sent, but the invitation URL {problem}: nobody outside this machine can open \
             their links; set --invitation-url (chart: server.baseUrl or server.invitationUrl) to the server's public address"
        ))
    }
}

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

/// An invitation link that can still be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenInvitation {
    pub email: String,
    pub expires_at: String,
}

/// `text` with every token of a link (or key) replaced by a marker, for text that is kept or
/// shown: what remains cannot be used.
pub fn redact_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(SECRET_PREFIX) {
        out.push_str(&rest[..at]);
        out.push_str(SECRET_PREFIX);
        let after = &rest[at + SECRET_PREFIX.len()..];
        let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(after.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A store failure while handling a link: nothing was accepted.
fn failed(e: StoreError) -> InvitationError {
    InvitationError::Failed(scim_from_store(e).detail)
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
            id: super::ids::new_id(),
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
            "Hello {},\n\nYou have been given access. Open this link to accept the invitation and sign in for the first time:\n\n{LINK_PLACEHOLDER}\n\nThe link is valid until {} (UTC).\n",
            user.display_name.clone().unwrap_or_else(|| user.user_name.clone()),
            inv.expires_at
        );
        tx.insert_outbox(&OutboxMessage {
            id: super::ids::new_id(),
            kind: "invitation".into(),
            recipient: email.clone(),
            subject: "Your invitation".into(),
            body,
            created: inv.created.clone(),
            attempts: 0,
            last_error: None,
            sent_at: None,
            invitation_id: Some(inv.id.clone()),
            link: Some(link),
            next_attempt_at: None,
            parked_at: None,
            cancelled_at: None,
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
        ctx.authorize(super::access::Action::InviteUsers)?;
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let rec = tx
                .user_by_id_or_name(user)
                .await?
                .ok_or_else(|| ScimError::not_found(format!("User {user} not found")))?;
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

    /// Why an invitation can no longer be accepted at `now`, if it cannot.
    fn refusal(inv: &InvitationRecord, now: chrono::DateTime<chrono::Utc>) -> Option<InvitationError> {
        match inv.status {
            InvitationStatus::Pending => {}
            InvitationStatus::Accepted => return Some(InvitationError::NotPending("used")),
            InvitationStatus::Cancelled => return Some(InvitationError::NotPending("cancelled")),
        }
        parse_time(&inv.expires_at)
            .is_none_or(|exp| now >= exp)
            .then(|| InvitationError::Expired(inv.expires_at.clone()))
    }

    /// The invitation of a link, if it can be accepted now by an active user; else why not.
    async fn acceptable(&self, tx: &mut dyn ReadTx, token: &str) -> Result<InvitationRecord, InvitationError> {
        let inv =
            tx.invitation_by_token_hash(&hash_secret(token)).await.map_err(failed)?.ok_or(InvitationError::Unknown)?;
        if let Some(refused) = Self::refusal(&inv, self.clock.now()) {
            return Err(refused);
        }
        if !tx.user(&inv.user_id).await.map_err(failed)?.is_some_and(|u| u.active) {
            return Err(InvitationError::UserInactive);
        }
        Ok(inv)
    }

    /// Checks an invitation link without changing anything (what the link's page shows).
    pub async fn open_invitation(&self, token: &str) -> Result<OpenInvitation, InvitationError> {
        let mut tx = self.store.begin_read().await.map_err(failed)?;
        let inv = self.acceptable(tx.as_mut(), token).await?;
        Ok(OpenInvitation { email: inv.email, expires_at: inv.expires_at })
    }

    /// Accepts an invitation link: valid once, before it expires, for an active user. Of
    /// concurrent accepts of one link (on any replica) exactly one succeeds; the others are
    /// told the link was used.
    pub async fn accept_invitation(&self, ctx: &RequestContext, token: &str) -> Result<String, InvitationError> {
        let mut tx = self.store.begin_write().await.map_err(failed)?;
        let inv = self.acceptable(tx.as_mut(), token).await?;
        if !tx.accept_invitation(&inv.id, &self.now()).await.map_err(failed)? {
            // Another accept (or a cancellation) committed since the read above: say which.
            let current = tx.invitation_by_token_hash(&inv.token_hash).await.map_err(failed)?;
            return Err(current
                .and_then(|c| Self::refusal(&c, self.clock.now()))
                .unwrap_or(InvitationError::NotPending("used")));
        }
        self.audit(tx.as_mut(), ctx, "invitation.accept", "user", &inv.user_id, json!({"invitation": inv.id}))
            .await
            .map_err(|e| InvitationError::Failed(e.into_scim().detail))?;
        tx.commit().await.map_err(failed)?;
        Ok(inv.user_id)
    }

    /// Invitations (newest first) and the outbox (newest first, at most `limit` messages), as
    /// `invites list` shows them: bodies hold no usable link.
    pub async fn invitations_and_outbox(
        &self,
        limit: u64,
    ) -> Result<(Vec<InvitationRecord>, Vec<OutboxMessage>), ScimError> {
        let mut tx = self.store.begin_read().await?;
        let invitations = tx.invitations(None).await?;
        let messages = tx
            .outbox(limit)
            .await?
            .into_iter()
            .map(|m| OutboxMessage { body: redact_links(&m.body), link: None, ..m })
            .collect();
        Ok((invitations, messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_malformed_invitation_urls_are_warned_about() {
        let warn = |url: &str| Settings { invitation_url: url.into(), ..Settings::default() }.invitation_link_warning();
        for bad in [
            "http://localhost:8080/invitations",
            "http://app.localhost/invitations",
            "http://127.0.0.1:8080/invitations",
            "http://0.0.0.0/invitations",
            "http://[::1]:8080/invitations",
            "/invitations",
            "ftp://scim.example.com/invitations",
        ] {
            let w = warn(bad).unwrap_or_else(|| panic!("no warning for {bad}"));
            assert!(w.contains("--invitation-url") && !w.contains(bad), "{w}");
        }
        assert!(Settings::default().invitation_link_warning().is_some(), "the default is localhost");
        for good in ["https://scim.example.com/invitations", "http://10.0.0.5:8080/invitations"] {
            assert_eq!(warn(good), None, "{good}");
        }
    }

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

    #[test]
    fn redacted_text_keeps_no_token() {
        let token = Secret::generate();
        let text = format!("Open https://x.test/invitations/{} now.\nAnd {}", token.expose(), token.expose());
        let redacted = redact_links(&text);
        assert!(!redacted.contains(token.expose()), "{redacted}");
        assert_eq!(redacted, "Open https://x.test/invitations/scimop_<redacted> now.\nAnd scimop_<redacted>");
        assert_eq!(redact_links("no link here"), "no link here");
        assert_eq!(redact_links("ends with scimop_"), "ends with scimop_");
        assert_eq!(redact_links(&redacted), redacted, "redacting twice changes nothing");
    }
}
