//! Application keys: bearer tokens for the SCIM API. Only a SHA-256 of each secret is stored.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::{ApiKeyRecord, KeyOwner};

/// Permission to invite users (create them).
pub const PERM_USER_ACCESS_INVITE: &str = "user_access_invite";
/// Permission to manage users, teams and roles.
pub const PERM_USER_ACCESS_MANAGE: &str = "user_access_manage";
/// Permissions a key needs to use the SCIM API.
pub const SCIM_PERMISSIONS: [&str; 2] = [PERM_USER_ACCESS_INVITE, PERM_USER_ACCESS_MANAGE];

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
    permissions: Vec<String>,
    now: &str,
) -> ApiKeyRecord {
    let hint: String = secret.expose().chars().take(SECRET_PREFIX.len() + 4).collect();
    ApiKeyRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_string(),
        owner,
        owner_user_id,
        secret_hash: hash_secret(secret.expose()),
        hint,
        permissions,
        created: now.to_string(),
        revoked_at: None,
        revoked_reason: None,
    }
}

/// Whether a key may use the SCIM API.
pub fn allows_scim(key: &ApiKeyRecord) -> bool {
    SCIM_PERMISSIONS.iter().all(|p| key.permissions.iter().any(|k| k == p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_prefixed_and_redacted() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert!(a.expose().len() > 40);
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
        assert_eq!(hash_secret("x").len(), 64);
        let rec = new_key_record(&a, "k", KeyOwner::ServiceAccount, None, vec!["user_access_invite".into()], "t");
        assert!(!allows_scim(&rec));
        assert!(!format!("{rec:?}").contains(&rec.secret_hash));
    }
}
