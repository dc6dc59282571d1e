//! The console's rules: who may sign in, what a signed-in person may do, server-side sessions
//! and single-use sign-in links.
//!
//! - Only provisioned people sign in: the identity provider's claim is matched against
//!   `userName` folded as the server folds it (no account is created on the fly).
//! - Every request reads the session, the user and the user's effective roles again, so a
//!   deactivation or a role taken away over SCIM takes effect on the person's next request.
//! - A browser holds only random secrets (session id, sign-in flow id, link token); the store
//!   holds their SHA-256.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::access::{Action, Permissions};
use super::keys::{Secret, hash_secret};
use super::roles::Role;
use super::*;
use crate::clock::parse_time;
use crate::store::{ConsoleSessionRecord, LoginLinkRecord, SigninFlowRecord, UserRecord};

/// Prefix of the audit actor of every change made in the console: `console:<userName>`.
pub const ACTOR_PREFIX: &str = "console:";

/// Whether a person holding `roles` may sign in at all: they need some role (what they may do
/// then is [`access::role_permissions`] of those roles, decided by [`access::allowed`] like a
/// key's requests).
fn may_sign_in(roles: &[Role]) -> bool {
    !roles.is_empty()
}

/// How long sessions, sign-ins under way and sign-in links last.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: chrono::Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: chrono::Duration,
    /// An OpenID Connect sign-in must come back from the identity provider within this.
    pub flow: chrono::Duration,
    /// `last_seen` is written at most this often (a page view is otherwise read-only).
    pub touch_every: chrono::Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: chrono::Duration::minutes(30),
            absolute: chrono::Duration::hours(12),
            flow: chrono::Duration::minutes(10),
            touch_every: chrono::Duration::seconds(60),
        }
    }
}

/// The person behind a session, as read on this request.
#[derive(Clone)]
pub struct ConsoleUser {
    pub user_id: String,
    pub user_name: String,
    pub display_name: Option<String>,
    /// Effective roles now.
    pub roles: Vec<Role>,
    /// What those roles allow ([`access::role_permissions`]).
    pub permissions: Permissions,
    /// The token the session's forms carry.
    pub csrf_token: String,
    session_hash: String,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CSRF token and the session's hash stay out of logs.
        f.debug_struct("ConsoleUser")
            .field("user_id", &self.user_id)
            .field("user_name", &self.user_name)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl ConsoleUser {
    /// The person as it signs in: their user id and effective roles now.
    fn new(user: UserRecord, roles: Vec<Role>, csrf_token: String, session_hash: String) -> Self {
        let permissions = access::role_permissions(roles.iter().map(|r| r.id.as_str()));
        Self {
            user_id: user.id,
            user_name: user.user_name,
            display_name: user.display_name,
            roles,
            permissions,
            csrf_token,
            session_hash,
        }
    }

    /// Whether this person may do `action` ([`access::allowed`] over their permissions).
    pub fn may(&self, action: Action) -> bool {
        access::allowed(&self.permissions, action)
    }

    /// Whether this person may do `action` on the user `target` ([`access::allowed_on_user`]:
    /// their own page is always theirs to read).
    pub fn may_on_user(&self, action: Action, target: &str) -> bool {
        access::allowed_on_user(&self.permissions, action, Some(&self.user_id), target)
    }

    /// Whether any change form is theirs to submit (the header says "read only" otherwise).
    pub fn may_change_anything(&self) -> bool {
        [Action::InviteUsers, Action::ChangeUsers, Action::ChangeTeams, Action::ManageKeys]
            .into_iter()
            .any(|a| self.may(a))
    }

    /// Whether `token` is this session's CSRF token (compared as hashes, so the comparison's
    /// time says nothing about the token).
    pub fn csrf_matches(&self, token: &str) -> bool {
        !token.is_empty() && hash_secret(token) == hash_secret(&self.csrf_token)
    }

    /// The request context of a change made by this person: audited with them as actor.
    pub fn context(&self, request_id: Option<String>) -> RequestContext {
        let principal = access::Principal {
            actor: format!("{ACTOR_PREFIX}{}", self.user_name),
            name: self.user_name.clone(),
            permissions: self.permissions.clone(),
        };
        RequestContext::for_principal(&principal, request_id, String::new())
    }
}

/// Why a request has no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// No cookie, an unknown session, or one past a timeout.
    #[error("not signed in, or the session expired")]
    NoSession,
    /// The person may no longer use the console; the session was ended.
    #[error("{0}")]
    Ended(String),
    #[error("{0}")]
    Failed(String),
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigninError {
    #[error("no provisioned user has the userName '{0}': ask an administrator to provision you")]
    NotProvisioned(String),
    #[error("your account is deactivated")]
    Inactive,
    #[error("your account holds no role, so it may not use the console")]
    NoRole,
    #[error("this sign-in link is unknown, used or expired")]
    LinkRefused,
    #[error("this sign-in is unknown or expired; start again")]
    FlowRefused,
    #[error("{0}")]
    Failed(String),
}

fn failed_signin(e: impl Into<OpError>) -> SigninError {
    SigninError::Failed(e.into().into_scim().detail)
}

fn failed_session(e: impl Into<OpError>) -> SessionRefusal {
    SessionRefusal::Failed(e.into().into_scim().detail)
}

/// Why `user` (with `roles`) may not use the console, if they may not.
fn refusal_of(user: &UserRecord, roles: &[Role]) -> Option<SigninError> {
    if !user.active {
        Some(SigninError::Inactive)
    } else if !may_sign_in(roles) {
        Some(SigninError::NoRole)
    } else {
        None
    }
}

/// Whether a session is past its absolute or idle timeout at `now`.
pub fn session_expired(s: &ConsoleSessionRecord, policy: &SessionPolicy, now: DateTime<Utc>) -> bool {
    let absolute = parse_time(&s.expires_at).is_none_or(|t| now >= t);
    let idle = parse_time(&s.last_seen).is_none_or(|t| now >= t + policy.idle);
    absolute || idle
}

/// The audit context of the sign-in machinery itself.
fn signin_context(actor: String, request_id: Option<String>) -> RequestContext {
    RequestContext::for_principal(&access::Principal::trusted(actor), request_id, String::new())
}

impl Directory {
    /// Stores an OpenID Connect sign-in under way; returns the flow id for the browser's
    /// cookie (the callback must come from the browser that started it).
    pub async fn save_signin_flow(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
        policy: &SessionPolicy,
    ) -> Result<Secret, ScimError> {
        let flow = Secret::generate();
        let now = self.clock.now();
        let record = SigninFlowRecord {
            flow_hash: hash_secret(flow.expose()),
            state: state.to_string(),
            nonce: nonce.to_string(),
            pkce_verifier: pkce_verifier.to_string(),
            created: format_time(now),
            expires_at: format_time(now + policy.flow),
        };
        let mut tx = self.store.begin_write().await?;
        tx.purge_console(&format_time(now), &format_time(now - policy.idle)).await?;
        tx.insert_signin_flow(&record).await?;
        tx.commit().await?;
        Ok(flow)
    }

    /// Takes the sign-in under way of this flow id (once), if it has not expired.
    pub async fn take_signin_flow(&self, flow_id: &str) -> Result<SigninFlowRecord, SigninError> {
        let mut tx = self.store.begin_write().await.map_err(failed_signin)?;
        let flow = tx.take_signin_flow(&hash_secret(flow_id)).await.map_err(failed_signin)?;
        tx.commit().await.map_err(failed_signin)?;
        let flow = flow.ok_or(SigninError::FlowRefused)?;
        if parse_time(&flow.expires_at).is_none_or(|t| self.clock.now() >= t) {
            return Err(SigninError::FlowRefused);
        }
        Ok(flow)
    }

    /// Signs in the person whose identity provider claim is `subject`: a provisioned, active
    /// user with a role, matched by folded `userName`. Returns the new session id (for the
    /// cookie) and the person. Sign-ins and refusals are audited.
    pub async fn console_sign_in(
        &self,
        subject: &str,
        policy: &SessionPolicy,
        request_id: Option<String>,
    ) -> Result<(Secret, ConsoleUser), SigninError> {
        let mut tx = self.store.begin_write().await.map_err(failed_signin)?;
        let Some(user) = tx.user_by_name(subject).await.map_err(failed_signin)? else {
            let ctx = signin_context(format!("oidc:{subject}"), request_id);
            let details = json!({"subject": subject, "reason": "not provisioned"});
            self.audit(tx.as_mut(), &ctx, "console.signin.refused", "console", "signin", details)
                .await
                .map_err(failed_signin)?;
            tx.commit().await.map_err(failed_signin)?;
            return Err(SigninError::NotProvisioned(subject.to_string()));
        };
        let out = self.open_session(tx.as_mut(), &user, "oidc", policy, request_id, json!({})).await;
        Self::commit_signin(tx, out).await
    }

    /// Commits a sign-in, or its audited refusal (the link it used stays used); a failure
    /// rolls everything back.
    async fn commit_signin(
        tx: Box<dyn Tx>,
        out: Result<(Secret, ConsoleUser), SigninError>,
    ) -> Result<(Secret, ConsoleUser), SigninError> {
        if let Err(SigninError::Failed(_)) = out {
            return out;
        }
        tx.commit().await.map_err(failed_signin)?;
        out
    }

    /// Opens a session for `user` in `tx`, or audits why not.
    async fn open_session(
        &self,
        tx: &mut dyn Tx,
        user: &UserRecord,
        method: &str,
        policy: &SessionPolicy,
        request_id: Option<String>,
        extra: serde_json::Value,
    ) -> Result<(Secret, ConsoleUser), SigninError> {
        let roles: Vec<Role> =
            tx.user_roles(&user.id).await.map_err(failed_signin)?.into_iter().map(|(r, _)| r).collect();
        let ctx = signin_context(format!("{ACTOR_PREFIX}{}", user.user_name), request_id);
        if let Some(refused) = refusal_of(user, &roles) {
            let details = json!({"method": method, "reason": refused.to_string()});
            self.audit(tx, &ctx, "console.signin.refused", "user", &user.id, details).await.map_err(failed_signin)?;
            return Err(refused);
        }
        let now = self.clock.now();
        tx.purge_console(&format_time(now), &format_time(now - policy.idle)).await.map_err(failed_signin)?;
        let session = Secret::generate();
        let csrf = Secret::generate();
        let record = ConsoleSessionRecord {
            id_hash: hash_secret(session.expose()),
            user_id: user.id.clone(),
            csrf_token: csrf.expose().to_string(),
            method: method.to_string(),
            created: format_time(now),
            last_seen: format_time(now),
            expires_at: format_time(now + policy.absolute),
        };
        tx.insert_console_session(&record).await.map_err(failed_signin)?;
        let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        let mut details = json!({"method": method, "roles": names, "expiresAt": record.expires_at});
        if let (Some(d), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
            d.extend(extra);
        }
        self.audit(tx, &ctx, "console.signin", "user", &user.id, details).await.map_err(failed_signin)?;
        let person = ConsoleUser::new(user.clone(), roles, record.csrf_token, record.id_hash);
        Ok((session, person))
    }

    /// The person behind a session id, read again on every request: the session must be within
    /// its timeouts and its user live, active and holding a role. A session whose person may no
    /// longer use the console is ended (and that is audited).
    pub async fn console_session(
        &self,
        session_id: &str,
        policy: &SessionPolicy,
    ) -> Result<ConsoleUser, SessionRefusal> {
        let hash = hash_secret(session_id);
        let now = self.clock.now();
        let mut tx = self.store.begin_read().await.map_err(failed_session)?;
        let session = tx.console_session(&hash).await.map_err(failed_session)?.ok_or(SessionRefusal::NoSession)?;
        if session_expired(&session, policy, now) {
            return Err(SessionRefusal::NoSession);
        }
        let user = tx.user(&session.user_id).await.map_err(failed_session)?;
        let roles: Vec<Role> = match &user {
            Some(_) => {
                tx.user_roles(&session.user_id).await.map_err(failed_session)?.into_iter().map(|(r, _)| r).collect()
            }
            None => Vec::new(),
        };
        drop(tx);
        let refused = match &user {
            None => Some("your account was deleted".to_string()),
            Some(u) => refusal_of(u, &roles).map(|r| r.to_string()),
        };
        if let Some(reason) = refused {
            let mut tx = self.store.begin_write().await.map_err(failed_session)?;
            if tx.delete_console_session(&hash).await.map_err(failed_session)? {
                let actor = format!("{ACTOR_PREFIX}{}", user.as_ref().map_or("?", |u| u.user_name.as_str()));
                self.audit(
                    tx.as_mut(),
                    &signin_context(actor, None),
                    "console.session.end",
                    "user",
                    &session.user_id,
                    json!({"reason": reason}),
                )
                .await
                .map_err(failed_session)?;
            }
            tx.commit().await.map_err(failed_session)?;
            return Err(SessionRefusal::Ended(reason));
        }
        let Some(user) = user else { return Err(SessionRefusal::NoSession) };
        if parse_time(&session.last_seen).is_none_or(|t| now >= t + policy.touch_every) {
            let mut tx = self.store.begin_write().await.map_err(failed_session)?;
            tx.touch_console_session(&hash, &format_time(now)).await.map_err(failed_session)?;
            tx.commit().await.map_err(failed_session)?;
        }
        Ok(ConsoleUser::new(user, roles, session.csrf_token, hash))
    }

    /// Ends the session of `person` (sign-out), audited.
    pub async fn end_console_session(&self, person: &ConsoleUser, request_id: Option<String>) -> Result<(), ScimError> {
        let mut tx = self.store.begin_write().await?;
        if tx.delete_console_session(&person.session_hash).await? {
            self.audit(tx.as_mut(), &person.context(request_id), "console.signout", "user", &person.user_id, json!({}))
                .await
                .map_err(OpError::into_scim)?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes a single-use sign-in link token for `user` (id or userName), valid for `ttl`:
    /// how the first administrator signs in before single sign-on is set up. The user must be
    /// active and hold a role. Audited as `console.link.create`.
    pub async fn create_login_link(
        &self,
        ctx: &RequestContext,
        user: &str,
        ttl: chrono::Duration,
    ) -> Result<(LoginLinkRecord, Secret), ScimError> {
        let token = Secret::generate();
        let mut tx = self.store.begin_write().await?;
        let rec = tx
            .user_by_id_or_name(user)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no user with id or userName '{user}'")))?;
        let roles: Vec<Role> = tx.user_roles(&rec.id).await?.into_iter().map(|(r, _)| r).collect();
        if let Some(refused) = refusal_of(&rec, &roles) {
            return Err(ScimError::invalid_value(format!("{} may not sign in: {refused}", rec.user_name)));
        }
        let now = self.clock.now();
        let link = LoginLinkRecord {
            id: super::ids::new_id(),
            token_hash: hash_secret(token.expose()),
            user_id: rec.id.clone(),
            created: format_time(now),
            expires_at: format_time(now + ttl),
            used_at: None,
        };
        tx.insert_login_link(&link).await?;
        self.audit(
            tx.as_mut(),
            ctx,
            "console.link.create",
            "user",
            &rec.id,
            json!({"link": link.id, "userName": rec.user_name, "expiresAt": link.expires_at}),
        )
        .await
        .map_err(OpError::into_scim)?;
        tx.commit().await?;
        Ok((link, token))
    }

    /// Whether a sign-in link can be used now (what its page shows; nothing is consumed, since
    /// mail and chat scanners open links).
    pub async fn check_login_link(&self, token: &str) -> Result<LoginLinkRecord, SigninError> {
        let mut tx = self.store.read().await.map_err(failed_signin)?;
        let link = tx.login_link(&hash_secret(token)).await.map_err(failed_signin)?.ok_or(SigninError::LinkRefused)?;
        let open = link.used_at.is_none() && parse_time(&link.expires_at).is_some_and(|t| self.clock.now() < t);
        if open { Ok(link) } else { Err(SigninError::LinkRefused) }
    }

    /// Uses a sign-in link: once, before it expires, for a user who may still sign in. Of
    /// concurrent uses exactly one signs in.
    pub async fn redeem_login_link(
        &self,
        token: &str,
        policy: &SessionPolicy,
        request_id: Option<String>,
    ) -> Result<(Secret, ConsoleUser), SigninError> {
        let hash = hash_secret(token);
        let mut tx = self.store.begin_write().await.map_err(failed_signin)?;
        let link = tx.login_link(&hash).await.map_err(failed_signin)?.ok_or(SigninError::LinkRefused)?;
        if !tx.use_login_link(&hash, &self.now()).await.map_err(failed_signin)? {
            return Err(SigninError::LinkRefused);
        }
        let user = tx.user(&link.user_id).await.map_err(failed_signin)?.ok_or(SigninError::LinkRefused)?;
        let out = self.open_session(tx.as_mut(), &user, "link", policy, request_id, json!({"link": link.id})).await;
        Self::commit_signin(tx, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let policy = SessionPolicy::default();
        let t0 = parse_time("2026-01-01T08:00:00.000Z").expect("time");
        let s = ConsoleSessionRecord {
            id_hash: "h".into(),
            user_id: "u".into(),
            csrf_token: "c".into(),
            method: "oidc".into(),
            created: format_time(t0),
            last_seen: format_time(t0 + chrono::Duration::hours(11)),
            expires_at: format_time(t0 + policy.absolute),
        };
        let at = |h: i64, m: i64| t0 + chrono::Duration::hours(h) + chrono::Duration::minutes(m);
        assert!(!session_expired(&s, &policy, at(11, 29)));
        assert!(session_expired(&s, &policy, at(11, 30)), "idle for the idle timeout");
        let busy = ConsoleSessionRecord { last_seen: format_time(at(11, 59)), ..s.clone() };
        assert!(!session_expired(&busy, &policy, at(11, 59)));
        assert!(session_expired(&busy, &policy, at(12, 0)), "the absolute timeout holds however busy");
        let corrupt = ConsoleSessionRecord { expires_at: "soon".into(), ..s };
        assert!(session_expired(&corrupt, &policy, t0), "an unreadable time ends the session");
    }
}
