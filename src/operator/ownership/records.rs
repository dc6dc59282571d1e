//! Who created or adopted each object on each target, recorded where no namespace can write:
//! one ConfigMap per (target, kind, key) in the operator's namespace, which only the operator's
//! service account (and cluster administrators) may write. It serves targets that keep no
//! ownership marker (Keycloak, Datadog, Grafana), survives restarts and upgrades, and gives one
//! winner when two resources claim one userName on one target: the record's name is derived from
//! the claim, and the API server creates a name once.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{Expression, Selector};
use kube::{Api, Client};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Label every record carries.
pub const RECORD_LABEL: &str = "scim.dev/ownership-record";
/// Label with the owning resource's uid, to find a resource's records.
pub const OWNER_UID_LABEL: &str = "scim.dev/owner-uid";
/// Owner uids one LIST of [`OwnershipRecords::held_by`] selects at most, so that its URL stays
/// a few KiB (a uid and its separator are 37 characters).
const OWNERS_PER_LIST: usize = 100;

/// Data key of the roles granted on the target ([`Record::granted_roles`]).
const GRANTED_ROLES: &str = "grantedRoles";

/// The kind of object on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    User,
    Group,
}

impl ObjectKind {
    fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "User",
            ObjectKind::Group => "Group",
        }
    }
}

/// One object on one target, named the way the target makes it unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    /// The target (`ClusterScimTarget/<name>` or `ScimTarget/<namespace>/<name>`).
    pub target: String,
    pub kind: ObjectKind,
    /// userName (compared without regard to case, as servers do) or displayName.
    pub key: String,
}

impl ObjectKey {
    /// A user by userName.
    pub fn user(target: &str, user_name: &str) -> Self {
        Self { target: target.to_string(), kind: ObjectKind::User, key: user_name.to_lowercase() }
    }

    /// A group by displayName.
    pub fn group(target: &str, display_name: &str) -> Self {
        Self { target: target.to_string(), kind: ObjectKind::Group, key: display_name.to_string() }
    }

    /// The record's name: a digest of the claim, so that two claims of one object meet on one name.
    pub fn record_name(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.target.as_str(), self.kind.as_str(), self.key.as_str()] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("scim-owner-{}", &hex::encode(h.finalize())[..40])
    }
}

/// The resource that owns an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOwner {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// How the resource came to own the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The operator created it for the resource.
    Created,
    /// It existed on the target and a trusted resource adopted (or linked) it.
    Adopted,
}

/// One ownership record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub object: ObjectKey,
    pub owner: RecordOwner,
    pub origin: Origin,
    /// The object's id on the target, once known.
    pub remote_id: Option<String>,
    /// Roles the operator granted the user on the target for this resource (data key
    /// `grantedRoles`, a JSON list), so that it withdraws exactly these and never a role an
    /// identity provider or an administrator set there. Written before a grant is sent. `None`:
    /// a record of an earlier release, or of a group.
    pub granted_roles: Option<Vec<String>>,
}

impl Record {
    fn to_config_map(&self) -> ConfigMap {
        let mut data = BTreeMap::from([
            ("target".to_string(), self.object.target.clone()),
            ("kind".to_string(), self.object.kind.as_str().to_string()),
            ("key".to_string(), self.object.key.clone()),
            ("ownerNamespace".to_string(), self.owner.namespace.clone()),
            ("ownerName".to_string(), self.owner.name.clone()),
            ("ownerUid".to_string(), self.owner.uid.clone()),
            ("origin".to_string(), format!("{:?}", self.origin)),
        ]);
        if let Some(id) = &self.remote_id {
            data.insert("remoteId".into(), id.clone());
        }
        if let Some(roles) = &self.granted_roles {
            data.insert(GRANTED_ROLES.into(), json!(roles).to_string());
        }
        let mut cm = ConfigMap { data: Some(data), ..Default::default() };
        cm.metadata.name = Some(self.object.record_name());
        cm.metadata.labels = Some(BTreeMap::from([
            (RECORD_LABEL.into(), "true".into()),
            (OWNER_UID_LABEL.into(), self.owner.uid.clone()),
        ]));
        cm
    }

    fn from_config_map(cm: &ConfigMap) -> Result<Self, String> {
        let data = cm.data.as_ref().ok_or("the record has no data")?;
        let field = |k: &str| data.get(k).cloned().ok_or_else(|| format!("the record has no {k}"));
        let kind = match field("kind")?.as_str() {
            "User" => ObjectKind::User,
            "Group" => ObjectKind::Group,
            other => return Err(format!("the record's kind {other:?} is unknown")),
        };
        let origin = match field("origin")?.as_str() {
            "Created" => Origin::Created,
            "Adopted" => Origin::Adopted,
            other => return Err(format!("the record's origin {other:?} is unknown")),
        };
        Ok(Self {
            object: ObjectKey { target: field("target")?, kind, key: field("key")? },
            owner: RecordOwner {
                namespace: field("ownerNamespace")?,
                name: field("ownerName")?,
                uid: field("ownerUid")?,
            },
            origin,
            remote_id: data.get("remoteId").cloned(),
            granted_roles: match data.get(GRANTED_ROLES) {
                Some(text) => Some(
                    serde_json::from_str(text)
                        .map_err(|e| format!("the record's {GRANTED_ROLES} is not a list: {e}"))?,
                ),
                None => None,
            },
        })
    }
}

/// Who holds an object after a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The claimant (its record, new or as it was).
    Claimant(Record),
    /// Another resource: the claimant gets `Conflict` and writes nothing.
    Other(RecordOwner),
}

/// What went wrong with the records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the ownership record API: {0}")]
    Api(#[from] kube::Error),
    #[error("the ownership record {0} was created and released again while being claimed; retry")]
    Contended(String),
    #[error("the ownership record {name} cannot be read: {why}")]
    Corrupt { name: String, why: String },
}

/// The records in the operator's namespace.
#[derive(Clone)]
pub struct OwnershipRecords {
    api: Api<ConfigMap>,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl OwnershipRecords {
    /// The records kept in `namespace` (the operator's).
    pub fn new(client: Client, namespace: &str) -> Self {
        Self { api: Api::namespaced(client, namespace) }
    }

    fn read(cm: &ConfigMap) -> Result<Record, RecordError> {
        Record::from_config_map(cm)
            .map_err(|why| RecordError::Corrupt { name: cm.metadata.name.clone().unwrap_or_default(), why })
    }

    /// The record of `object`, if any.
    pub async fn get(&self, object: &ObjectKey) -> Result<Option<Record>, RecordError> {
        match self.api.get_opt(&object.record_name()).await? {
            Some(cm) => Self::read(&cm).map(Some),
            None => Ok(None),
        }
    }

    /// Claims `object` for `owner`: records it when nobody holds it (the API server creates a
    /// name once, so of two claimants exactly one wins and keeps winning), and says who holds it.
    /// Call it before the object is created or adopted on the target.
    pub async fn claim(&self, object: &ObjectKey, owner: &RecordOwner, origin: Origin) -> Result<Holder, RecordError> {
        // A user's record starts with nothing granted; `None` stays for records of earlier releases.
        let granted_roles = (object.kind == ObjectKind::User).then(Vec::new);
        let record = Record { object: object.clone(), owner: owner.clone(), origin, remote_id: None, granted_roles };
        // A record released between our create and our read is claimed again, a few times.
        for _ in 0..3 {
            match self.api.create(&PostParams::default(), &record.to_config_map()).await {
                Ok(_) => return Ok(Holder::Claimant(record)),
                Err(e) if is_status(&e, 409) => {}
                Err(e) => return Err(e.into()),
            }
            match self.get(object).await? {
                Some(r) if r.owner.uid == owner.uid => return Ok(Holder::Claimant(r)),
                Some(r) => return Ok(Holder::Other(r.owner)),
                None => continue,
            }
        }
        Err(RecordError::Contended(object.record_name()))
    }

    /// Records the object's id on the target, if `owner` holds it.
    pub async fn set_remote_id(&self, object: &ObjectKey, owner: &RecordOwner, id: &str) -> Result<bool, RecordError> {
        let Some(cm) = self.api.get_opt(&object.record_name()).await? else { return Ok(false) };
        if Self::read(&cm)?.owner.uid != owner.uid {
            return Ok(false);
        }
        let patch = serde_json::json!({"metadata": {"resourceVersion": cm.metadata.resource_version},
            "data": {"remoteId": id}});
        self.api.patch(&object.record_name(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(true)
    }

    /// Records the roles granted on the target for `owner`, if it holds `object`: before a grant
    /// is sent (what it granted plus what it is about to grant), and once the target answered.
    /// Written at the version read, so a concurrent change fails it (and the reconcile retries).
    pub async fn set_granted_roles(
        &self,
        object: &ObjectKey,
        owner: &RecordOwner,
        roles: &[String],
    ) -> Result<bool, RecordError> {
        let Some(cm) = self.api.get_opt(&object.record_name()).await? else { return Ok(false) };
        if Self::read(&cm)?.owner.uid != owner.uid {
            return Ok(false);
        }
        let patch = json!({"metadata": {"resourceVersion": cm.metadata.resource_version},
            "data": {GRANTED_ROLES: json!(roles).to_string()}});
        self.api.patch(&object.record_name(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(true)
    }

    /// Releases `object` if `owner` holds it (after its deletion policy ran, or when the resource
    /// dropped the target). Deletes only the record read, never one made since.
    pub async fn release(&self, object: &ObjectKey, owner: &RecordOwner) -> Result<bool, RecordError> {
        let Some(cm) = self.api.get_opt(&object.record_name()).await? else { return Ok(false) };
        if Self::read(&cm)?.owner.uid != owner.uid {
            return Ok(false);
        }
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: cm.metadata.uid.clone(),
                resource_version: cm.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        match self.api.delete(&object.record_name(), &dp).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The records of the resources with `uids`: one LIST per [`OWNERS_PER_LIST`] owners.
    async fn of_owners<'a>(&self, uids: impl IntoIterator<Item = &'a str>) -> Result<Vec<ConfigMap>, RecordError> {
        let uids: BTreeSet<&str> = uids.into_iter().collect();
        let uids: Vec<&str> = uids.into_iter().collect();
        let mut out = Vec::new();
        for chunk in uids.chunks(OWNERS_PER_LIST) {
            let selector = Selector::from_iter([
                Expression::Equal(RECORD_LABEL.into(), "true".into()),
                Expression::In(OWNER_UID_LABEL.into(), chunk.iter().map(|u| u.to_string()).collect()),
            ]);
            out.extend(self.api.list(&ListParams::default().labels_from(&selector)).await?.items);
        }
        Ok(out)
    }

    /// Every record a resource holds (to apply its deletion policy on each target).
    pub async fn owned_by(&self, uid: &str) -> Result<Vec<Record>, RecordError> {
        self.of_owners([uid]).await?.iter().map(Self::read).collect()
    }

    /// For each `(object, owner uid)`: the record of the object when that resource holds it,
    /// `None` when nobody or another resource does. Read with one labelled LIST per
    /// [`OWNERS_PER_LIST`] owners (a team's members on a target), not one GET per object; only
    /// the records asked for are parsed, so a corrupt record fails only a read that asks for it.
    pub async fn held_by(&self, wanted: &[(ObjectKey, &str)]) -> Result<Vec<Option<Record>>, RecordError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let listed = self.of_owners(wanted.iter().map(|(_, uid)| *uid)).await?;
        let by_name: HashMap<&str, &ConfigMap> =
            listed.iter().filter_map(|cm| Some((cm.metadata.name.as_deref()?, cm))).collect();
        wanted
            .iter()
            .map(|(object, uid)| match by_name.get(object.record_name().as_str()) {
                Some(cm) => Self::read(cm).map(|r| (r.owner.uid == *uid).then_some(r)),
                None => Ok(None),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_one_record_name() {
        let a = ObjectKey::user("ClusterScimTarget/keycloak", "Ada@Example.com");
        let b = ObjectKey::user("ClusterScimTarget/keycloak", "ada@example.com");
        assert_eq!(a.record_name(), b.record_name(), "userNames are compared without case");
        assert_ne!(a.record_name(), ObjectKey::user("ClusterScimTarget/datadog", "ada@example.com").record_name());
        assert_ne!(a.record_name(), ObjectKey::group("ClusterScimTarget/keycloak", "ada@example.com").record_name());
        // The separator keeps ("a", "bc") and ("ab", "c") apart.
        assert_ne!(ObjectKey::user("t/a", "bc").record_name(), ObjectKey::user("t/ab", "c").record_name());
        assert!(a.record_name().len() <= 63 && a.record_name().starts_with("scim-owner-"));
    }

    #[test]
    fn records_read_back_as_written() {
        let r = Record {
            object: ObjectKey::group("ScimTarget/team-a/grafana", "Platform"),
            owner: RecordOwner { namespace: "team-a".into(), name: "platform".into(), uid: "u-1".into() },
            origin: Origin::Adopted,
            remote_id: Some("g-9".into()),
            granted_roles: None,
        };
        let cm = r.to_config_map();
        assert_eq!(cm.metadata.labels.as_ref().unwrap()[OWNER_UID_LABEL], "u-1");
        assert_eq!(Record::from_config_map(&cm).unwrap(), r);
        let mut broken = cm.clone();
        broken.data.as_mut().unwrap().insert("origin".into(), "Stolen".into());
        assert!(Record::from_config_map(&broken).is_err());
        let user = Record {
            object: ObjectKey::user("ClusterScimTarget/kc", "ada@example.com"),
            granted_roles: Some(vec!["admin".into(), "Auditor".into()]),
            ..r
        };
        let cm = user.to_config_map();
        assert_eq!(cm.data.as_ref().unwrap()[GRANTED_ROLES], r#"["admin","Auditor"]"#);
        assert_eq!(Record::from_config_map(&cm).unwrap(), user);
        let mut broken = cm.clone();
        broken.data.as_mut().unwrap().insert(GRANTED_ROLES.into(), "admin".into());
        assert!(Record::from_config_map(&broken).is_err(), "a record that cannot be read fails, never reads as none");
    }
}
