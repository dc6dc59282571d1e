//! Application keys: bearer tokens for the SCIM API. Only a SHA-256 of each secret is stored.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::access::{Action, Permissions, Preset};
use super::{Directory, OpError, OpResult, RequestContext};
use crate::clock::{format_time, parse_time};
use crate::scim::ScimError;
use crate::store::{ApiKeyRecord, KeyOwner, Tx};

/// Prefix of every secret, so leaked keys are recognisable by secret scanners.
pub const SECRET_PREFIX: &str = "scimop_";

/// A freshly generated secret. Shown once; `Debug` never prints it.
pub struct Secret(String);

impl Secret {
    /// Generates 256 random bits, URL-safe base64.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        use base64::Engine;
        Self(format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }
    /// The secret text, to print once to the person who asked for it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A key record for a new secret.
pub fn new_key_record(
    secret: &Secret,
    name: &str,
    owner: KeyOwner,
    owner_user_id: Option<String>,
    permissions: &Permissions,
    now: &str,
) -> ApiKeyRecord {
    let hint: String = secret.expose().chars().take(SECRET_PREFIX.len() + 4).collect();
    ApiKeyRecord {
        id: super::ids::new_id(),
        name: name.to_string(),
        owner,
        owner_user_id,
        secret_hash: hash_secret(secret.expose()),
        hint,
        permissions: permissions.names(),
        created: now.to_string(),
        revoked_at: None,
        revoked_reason: None,
        last_used_at: None,
    }
}

/// Whether a key may create or change users: an identity provider's or the operator's key.
fn provisions_users(key: &ApiKeyRecord) -> bool {
    let permissions = Permissions::from_stored(&key.permissions);
    super::access::allowed(&permissions, Action::InviteUsers)
        || super::access::allowed(&permissions, Action::ChangeUsers)
}

/// Names of keys registered from a bootstrap key file start with this (`keys create` refuses
/// it), which is how a rotation tells the bootstrap keys it supersedes from every other key.
pub const BOOTSTRAP_PREFIX: &str = "bootstrap-";

/// Shortest secret accepted from a bootstrap key file.
pub const BOOTSTRAP_MIN_LEN: usize = 32;

/// Whether `key` was registered from a bootstrap key file.
pub fn is_bootstrap(key: &ApiKeyRecord) -> bool {
    key.name.starts_with(BOOTSTRAP_PREFIX)
}

/// Which bootstrap keys to revoke now: every unrevoked bootstrap key, other than the one whose
/// hash is `current`, for which a newer bootstrap key was registered at least `grace` ago.
/// Also returns when the next revocation falls due, if one is pending. Pure: the time is passed
/// in, and supersession is read from the keys' creation times, so a server that restarts (or
/// only looks later) revokes on the same schedule.
pub fn bootstrap_revocations<'k>(
    keys: &'k [ApiKeyRecord],
    current: &str,
    grace: chrono::Duration,
    now: DateTime<Utc>,
) -> (Vec<&'k ApiKeyRecord>, Option<DateTime<Utc>>) {
    let created = |k: &ApiKeyRecord| parse_time(&k.created);
    let mut due_now = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for key in keys.iter().filter(|k| is_bootstrap(k) && k.revoked_at.is_none() && k.secret_hash != current) {
        let Some(born) = created(key) else { continue };
        let superseded = keys.iter().filter(|k| is_bootstrap(k)).filter_map(created).filter(|t| *t > born).min();
        let Some(superseded) = superseded else { continue };
        let due = superseded + grace;
        if due <= now {
            due_now.push(key);
        } else {
            next = Some(next.map_or(due, |n| n.min(due)));
        }
    }
    (due_now, next)
}

impl Directory {
    /// Creates a key named `name` with `permissions` for a service account, or for `user` (id
    /// or userName), and returns its record and secret (shown once). Audited as `key.create`,
    /// with the permissions.
    pub async fn create_key(
        &self,
        ctx: &RequestContext,
        name: &str,
        user: Option<&str>,
        permissions: &Permissions,
    ) -> Result<(ApiKeyRecord, Secret), ScimError> {
        ctx.authorize(Action::ManageKeys)?;
        super::access::check_grant(&ctx.permissions, permissions)?;
        if permissions.is_empty() {
            return Err(ScimError::invalid_value("a key needs at least one permission"));
        }
        if name.starts_with(BOOTSTRAP_PREFIX) {
            return Err(ScimError::invalid_value(format!(
                "key names starting with '{BOOTSTRAP_PREFIX}' are reserved for the bootstrap key file"
            )));
        }
        let secret = Secret::generate();
        let record = self
            .retry(|| async {
                let mut tx = self.store.begin_write().await?;
                let owner_user_id = match user {
                    Some(u) => {
                        let found = tx
                            .user_by_id_or_name(u)
                            .await?
                            .ok_or_else(|| ScimError::not_found(format!("no user with id or userName '{u}'")))?;
                        Some(found.id)
                    }
                    None => None,
                };
                let owner = if owner_user_id.is_some() { KeyOwner::User } else { KeyOwner::ServiceAccount };
                let record = new_key_record(&secret, name, owner, owner_user_id, permissions, &self.now());
                self.insert_key_audited(tx.as_mut(), ctx, &record, None).await?;
                tx.commit().await?;
                Ok(record)
            })
            .await?;
        Ok((record, secret))
    }

    /// Revokes the unrevoked keys with this id or name (a name may have been given to several
    /// keys). Audited as `key.revoke`, one event per key, naming the key by its id.
    pub async fn revoke_key(&self, ctx: &RequestContext, key: &str) -> Result<(), ScimError> {
        ctx.authorize(Action::ManageKeys)?;
        const REASON: &str = "revoked by administrator";
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let matching: Vec<ApiKeyRecord> = tx
                .list_keys()
                .await?
                .into_iter()
                .filter(|k| k.revoked_at.is_none() && (k.id == key || k.name == key))
                .collect();
            if matching.is_empty() {
                return Err(ScimError::not_found(format!("no unrevoked key with id or name '{key}'")).into());
            }
            let now = self.now();
            for k in &matching {
                self.revoke_key_audited(tx.as_mut(), ctx, k, &now, REASON, json!({})).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Every key, revoked ones included (never a secret: only its hash is stored).
    pub async fn keys(&self) -> Result<Vec<ApiKeyRecord>, ScimError> {
        Ok(self.store.begin_read().await?.list_keys().await?)
    }

    /// Unrevoked keys owned by users that may provision users: they stop working when that user
    /// is offboarded, and with them all provisioning, which is worth a warning.
    pub async fn user_owned_scim_keys(&self) -> Result<Vec<ApiKeyRecord>, ScimError> {
        Ok(self
            .keys()
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none() && k.owner == KeyOwner::User && provisions_users(k))
            .collect())
    }

    /// Warnings an operator should act on, naming the keys and users (for the log and the
    /// audit trail, never for unauthenticated endpoints).
    pub async fn key_warnings(&self) -> Result<Vec<String>, ScimError> {
        Ok(self
            .user_owned_scim_keys()
            .await?
            .iter()
            .map(|k| {
                format!(
                    "SCIM key '{}' ({}) belongs to user {}: deactivating that user revokes the key and breaks provisioning; use a service-account key",
                    k.name,
                    k.id,
                    k.owner_user_id.as_deref().unwrap_or("?")
                )
            })
            .collect())
    }

    /// The one place a key is created: inserts `record` and audits it as `key.create` in the
    /// same transaction, whoever asked (the command line, the bootstrap key file). `source`
    /// says where a secret came from when it was not generated here.
    async fn insert_key_audited(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        record: &ApiKeyRecord,
        source: Option<&str>,
    ) -> OpResult<()> {
        tx.insert_key(record).await?;
        let mut details = json!({"name": record.name, "owner": record.owner.as_str(), "ownerUserId": record.owner_user_id,
                                 "permissions": record.permissions});
        if let Some(source) = source {
            details["source"] = json!(source);
        }
        self.audit(tx, ctx, "key.create", "key", &record.id, details).await
    }

    /// The one place a key is revoked on request: revokes `key` (by id) and audits it as
    /// `key.revoke` with its name, the reason and `extra` details. Returns whether it was still
    /// unrevoked (nothing is audited otherwise). Offboarding revokes a user's keys in bulk and
    /// audits them in its own `user.deactivate`/`user.delete` event.
    async fn revoke_key_audited(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        key: &ApiKeyRecord,
        now: &str,
        reason: &str,
        extra: Value,
    ) -> OpResult<bool> {
        if !tx.revoke_key(&key.id, now, reason).await? {
            return Ok(false);
        }
        let mut details = json!({"name": key.name, "reason": reason});
        if let (Some(details), Value::Object(extra)) = (details.as_object_mut(), extra) {
            details.extend(extra);
        }
        self.audit(tx, ctx, "key.revoke", "key", &key.id, details).await?;
        Ok(true)
    }
}

/// What [`Directory::sync_bootstrap_key`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BootstrapSync {
    /// Id of the key registered for the file's secret, when it was new.
    pub registered: Option<String>,
    /// Ids of the superseded bootstrap keys revoked now.
    pub revoked: Vec<String>,
    /// When the next superseded bootstrap key falls due.
    pub next_revocation: Option<DateTime<Utc>>,
}

impl Directory {
    /// Makes the key table agree with the bootstrap key file: its secret is registered as a
    /// service-account key with the `operator` preset ([`Preset::Operator`]: the chart hands
    /// this key to the operator) at once if new, and bootstrap keys it superseded are revoked
    /// once `grace` has passed since their successor was registered. Every registration and
    /// revocation is audited. Safe to run again and from several replicas at once.
    pub async fn sync_bootstrap_key(
        &self,
        ctx: &RequestContext,
        secret: &str,
        grace: chrono::Duration,
    ) -> Result<BootstrapSync, ScimError> {
        let secret = secret.trim();
        if secret.len() < BOOTSTRAP_MIN_LEN {
            return Err(ScimError::invalid_value(format!(
                "the bootstrap key is shorter than {BOOTSTRAP_MIN_LEN} characters"
            )));
        }
        let hash = hash_secret(secret);
        // The file is read every few seconds and rarely changes: look before taking the write lock.
        let keys = self.store.begin_read().await?.list_keys().await?;
        let known = keys.iter().any(|k| k.secret_hash == hash && k.revoked_at.is_none());
        let (due, next_revocation) = bootstrap_revocations(&keys, &hash, grace, self.clock.now());
        if known && due.is_empty() {
            return Ok(BootstrapSync { next_revocation, ..Default::default() });
        }
        self.retry(|| async {
            let mut tx = self.store.begin_write().await?;
            let now = self.clock.now();
            let stamp = format_time(now);
            let mut keys = tx.list_keys().await?;
            let mut done = BootstrapSync::default();
            match keys.iter().find(|k| k.secret_hash == hash) {
                Some(k) if k.revoked_at.is_some() => {
                    return Err(OpError::from(ScimError::invalid_value(format!(
                        "the bootstrap key file holds key {} ('{}'), revoked at {}; write a new secret into it",
                        k.id,
                        k.name,
                        k.revoked_at.as_deref().unwrap_or("?")
                    ))));
                }
                Some(_) => {}
                None => {
                    let record = ApiKeyRecord {
                        id: super::ids::new_id(),
                        name: format!("{BOOTSTRAP_PREFIX}{}", &hash[..8]),
                        owner: KeyOwner::ServiceAccount,
                        owner_user_id: None,
                        secret_hash: hash.clone(),
                        hint: secret.chars().take(4).collect(),
                        permissions: Preset::Operator.permissions().names(),
                        created: stamp.clone(),
                        revoked_at: None,
                        revoked_reason: None,
                        last_used_at: None,
                    };
                    self.insert_key_audited(tx.as_mut(), ctx, &record, Some("bootstrap file")).await?;
                    done.registered = Some(record.id.clone());
                    keys.push(record);
                }
            }
            let (due, next) = bootstrap_revocations(&keys, &hash, grace, now);
            done.next_revocation = next;
            let reason = "superseded by a newer bootstrap key; grace period over";
            for key in due {
                let extra = json!({"graceSeconds": grace.num_seconds()});
                if self.revoke_key_audited(tx.as_mut(), ctx, key, &stamp, reason, extra).await? {
                    done.revoked.push(key.id.clone());
                }
            }
            tx.commit().await?;
            Ok(done)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrap(name: &str, created: &str, revoked: bool) -> ApiKeyRecord {
        ApiKeyRecord {
            id: name.into(),
            name: format!("{BOOTSTRAP_PREFIX}{name}"),
            owner: KeyOwner::ServiceAccount,
            owner_user_id: None,
            secret_hash: format!("hash-{name}"),
            hint: String::new(),
            permissions: vec![],
            created: created.into(),
            revoked_at: revoked.then(|| created.to_string()),
            revoked_reason: None,
            last_used_at: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).expect("a valid time")
    }

    #[test]
    fn superseded_bootstrap_keys_are_revoked_once_the_grace_has_passed() {
        let keys = vec![
            bootstrap("a", "2026-01-01T00:00:00.000Z", false),
            bootstrap("b", "2026-01-01T01:00:00.000Z", false),
            bootstrap("c", "2026-01-01T03:00:00.000Z", false),
        ];
        let grace = chrono::Duration::minutes(90);
        let ids = |v: Vec<&ApiKeyRecord>| v.into_iter().map(|k| k.id.clone()).collect::<Vec<_>>();
        // b superseded a at 01:00 (due 02:30); c superseded b at 03:00 (due 04:30).
        let (due, next) = bootstrap_revocations(&keys, "hash-c", grace, at("2026-01-01T02:29:59.000Z"));
        assert!(due.is_empty());
        assert_eq!(next, Some(at("2026-01-01T02:30:00.000Z")));
        let (due, next) = bootstrap_revocations(&keys, "hash-c", grace, at("2026-01-01T02:30:00.000Z"));
        assert_eq!(ids(due), ["a"]);
        assert_eq!(next, Some(at("2026-01-01T04:30:00.000Z")));
        let (due, next) = bootstrap_revocations(&keys, "hash-c", grace, at("2026-02-01T00:00:00.000Z"));
        assert_eq!(ids(due), ["a", "b"], "a server that looks only much later revokes both");
        assert_eq!(next, None);
    }

    #[test]
    fn the_current_newest_revoked_and_other_keys_are_left_alone() {
        let mut cli = bootstrap("cli", "2026-01-01T00:00:00.000Z", false);
        cli.name = "operator".into();
        let keys = vec![
            cli,
            bootstrap("old", "2026-01-01T00:00:00.000Z", true),
            bootstrap("a", "2026-01-01T01:00:00.000Z", false),
            bootstrap("b", "2026-01-01T02:00:00.000Z", false),
        ];
        let later = at("2027-01-01T00:00:00.000Z");
        let (due, _) = bootstrap_revocations(&keys, "hash-b", chrono::Duration::zero(), later);
        assert_eq!(due.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["a"]);
        // A file rolled back to `a` keeps `a` (and the newer `b` is not revoked either).
        let (due, _) = bootstrap_revocations(&keys, "hash-a", chrono::Duration::zero(), later);
        assert!(due.is_empty());
    }

    #[test]
    fn secrets_are_random_prefixed_and_redacted() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert!(a.expose().len() > 40);
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
        assert_eq!(hash_secret("x").len(), 64);
        let perms = Permissions::of(&[super::super::access::Permission::TeamsManage]);
        let rec = new_key_record(&a, "k", KeyOwner::ServiceAccount, None, &perms, "t");
        assert_eq!(rec.permissions, ["teams_manage"]);
        assert!(!provisions_users(&rec));
        assert!(!format!("{rec:?}").contains(&rec.secret_hash));
    }
}
