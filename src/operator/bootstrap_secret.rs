//! The bootstrap key's Secret, made in the cluster by the operator instead of rendered by the
//! chart. A chart that generates a random value makes a new key on every render wherever
//! `lookup` cannot see the cluster (`helm template`, so Argo CD): the key would change at every
//! sync. The operator creates the Secret when it is missing and replaces its token only when
//! `bootstrapKey.rotation` changed; the server reads the mounted Secret as before.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::BTreeMap;

/// The Secret's key holding the token (what the chart mounts).
pub const TOKEN_KEY: &str = "token";
/// The annotation recording the rotation a token was made for.
pub const ROTATION_ANNOTATION: &str = "scim.dev/key-rotation";
/// Characters of a generated token (the server asks for at least 32).
const TOKEN_LEN: usize = 48;
/// Attempts when another replica writes the Secret at the same moment.
const ATTEMPTS: usize = 3;

/// What to do with the Secret as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It is missing: create it.
    Create,
    /// It holds a usable token for this rotation: leave it.
    Keep,
    /// Its token is missing, too short, or made for another rotation: write a new one.
    Replace,
}

/// Decides from the Secret as read (`None`: not found) and the rotation asked for.
pub fn decide(existing: Option<&Secret>, rotation: &str) -> Decision {
    let Some(secret) = existing else { return Decision::Create };
    let recorded = secret.metadata.annotations.as_ref().and_then(|a| a.get(ROTATION_ANNOTATION)).map(String::as_str);
    let usable = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .is_some_and(|t| t.0.trim_ascii().len() >= crate::provisioning::keys::BOOTSTRAP_MIN_LEN);
    if usable && recorded.unwrap_or("") == rotation { Decision::Keep } else { Decision::Replace }
}

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Kept,
    Replaced,
}

/// Makes sure the Secret `name` in `api`'s namespace holds a token for `rotation`. Safe to run
/// from every replica at once: a create that finds the Secret made meanwhile, or a replace
/// that finds it changed (resourceVersion), reads it again and decides again.
pub async fn ensure(api: &Api<Secret>, name: &str, rotation: &str) -> anyhow::Result<Outcome> {
    use anyhow::Context as _;
    let mut last_conflict = None;
    for _ in 0..ATTEMPTS {
        let existing = api.get_opt(name).await.with_context(|| format!("reading the Secret {name}"))?;
        let written = match decide(existing.as_ref(), rotation) {
            Decision::Keep => return Ok(Outcome::Kept),
            Decision::Create => {
                api.create(&PostParams::default(), &fresh(name, rotation, None)).await.map(|_| Outcome::Created)
            }
            Decision::Replace => {
                let rv = existing.and_then(|s| s.metadata.resource_version);
                api.replace(name, &PostParams::default(), &fresh(name, rotation, rv)).await.map(|_| Outcome::Replaced)
            }
        };
        match written {
            Ok(outcome) => return Ok(outcome),
            // Another replica wrote it first: read what it wrote.
            Err(kube::Error::Api(e)) if e.code == 409 => last_conflict = Some(e),
            Err(e) => return Err(e).with_context(|| format!("writing the Secret {name}")),
        }
    }
    Err(anyhow::anyhow!("the Secret {name} kept changing while it was written: {last_conflict:?}"))
}

/// A Secret with a new random token, made for `rotation`; `resource_version` makes a replace
/// conditional on the version read.
fn fresh(name: &str, rotation: &str, resource_version: Option<String>) -> Secret {
    let token = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LEN);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            resource_version,
            annotations: Some(BTreeMap::from([(ROTATION_ANNOTATION.to_string(), rotation.to_string())])),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "scim-operator".to_string())])),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), ByteString(token.into_bytes()))])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(token: Option<&str>, rotation: Option<&str>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                annotations: rotation.map(|r| BTreeMap::from([(ROTATION_ANNOTATION.to_string(), r.to_string())])),
                ..Default::default()
            },
            data: token.map(|t| BTreeMap::from([(TOKEN_KEY.to_string(), ByteString(t.as_bytes().to_vec()))])),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let good = "k".repeat(48);
        let short = "k".repeat(10);
        let rows: [(Option<Secret>, &str, Decision); 8] = [
            (None, "", Decision::Create),
            (Some(secret(Some(&good), Some(""))), "", Decision::Keep),
            // A Secret of an earlier chart, with no annotation, counts as the first rotation.
            (Some(secret(Some(&good), None)), "", Decision::Keep),
            (Some(secret(Some(&good), None)), "2", Decision::Replace),
            (Some(secret(Some(&good), Some("1"))), "2", Decision::Replace),
            (Some(secret(Some(&good), Some("2"))), "2", Decision::Keep),
            (Some(secret(Some(&short), Some(""))), "", Decision::Replace),
            (Some(secret(None, Some(""))), "", Decision::Replace),
        ];
        for (i, (existing, rotation, want)) in rows.iter().enumerate() {
            assert_eq!(decide(existing.as_ref(), rotation), *want, "row {i}");
        }
    }

    #[test]
    fn a_fresh_secret_holds_a_long_random_token_for_its_rotation() {
        let a = fresh("k", "3", None);
        let b = fresh("k", "3", None);
        assert_eq!(decide(Some(&a), "3"), Decision::Keep);
        assert_ne!(a.data, b.data, "two tokens are never the same");
        let token = &a.data.as_ref().and_then(|d| d.get(TOKEN_KEY).cloned()).map(|t| t.0).expect("a token");
        assert_eq!(token.len(), TOKEN_LEN);
    }
}
