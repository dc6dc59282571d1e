//! The directory: users and managed teams as identity providers provision them, with the rules
//! of the product (role provisioning, team linking, offboarding, audit) applied in the same
//! transaction as each change.

pub mod access;
pub mod access_review;
mod admin;
mod authn;
pub mod console;
pub mod console_views;
mod error;
pub mod groups;
pub mod ids;
pub mod invitations;
pub mod keys;
pub mod observer;
pub mod request_log;
mod role_mappings;
pub mod roles;
mod user_roles;
mod users;
pub mod view;

pub use error::scim_from_store;

use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;

use crate::clock::{Clock, format_time};
use crate::scim::ScimError;
use crate::scim::schema::{ResourceType, group_resource_type, role_mapping_resource_type, user_resource_type};
use crate::store::prelude::*;
use crate::store::{AuditEvent, AuditQuery, Dialect, SharedStore, StoreError};

/// How many times a write is retried when it lost a race with another writer.
const MAX_ATTEMPTS: usize = 8;

/// How long a verified key is trusted unless [`Directory::with_key_cache_ttl`] says otherwise.
const DEFAULT_KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Who is asking, for authorisation decisions and the audit trail.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The application key id (or `cli:<user>`, `system`).
    pub actor: String,
    pub request_id: Option<String>,
    /// Base URL of the SCIM API, for `meta.location` and `$ref`.
    pub base_url: String,
    /// What the actor may do; every operation checks it with [`access::check`].
    pub permissions: access::Permissions,
    /// The client asked to create users without sending their invitation (see
    /// [`crate::scim::invitation`]); the withholding is audited.
    pub withhold_invitation: bool,
    /// The Kubernetes object the client says declares the group it writes (see
    /// [`crate::scim::declared_by`]); stored only as [`RequestContext::declaration`] allows.
    pub declared_by: Option<crate::scim::declared_by::DeclaredBy>,
}

impl RequestContext {
    /// A request of `principal` (as [`Directory::authenticate`] returned it).
    pub fn for_principal(principal: &access::Principal, request_id: Option<String>, base_url: String) -> Self {
        Self {
            actor: principal.actor.clone(),
            request_id,
            base_url,
            permissions: principal.permissions.clone(),
            withhold_invitation: false,
            declared_by: None,
        }
    }

    /// A request with every permission, by `actor`: the command line (whoever can open the
    /// database may do anything anyway) and the server's own tasks.
    pub fn trusted(actor: impl Into<String>) -> Self {
        Self::for_principal(&access::Principal::trusted(actor), None, String::new())
    }

    /// `Ok` when the actor may do `action`, else 403 (decided by [`access::allowed`]).
    pub fn authorize(&self, action: access::Action) -> Result<(), ScimError> {
        access::check(&self.permissions, action)
    }

    /// The `namespace/name` to store as the declaring object of a group whose `externalId` is
    /// `external_id`: the request's [`Self::declared_by`] when the key may manage
    /// Kubernetes-owned objects (the operator's) and the group carries an operator marker.
    /// From any other key the header is ignored, not refused, so that an identity provider
    /// cannot make a team look declared in Kubernetes.
    fn declaration(&self, external_id: Option<&str>) -> Option<String> {
        let declared = self.declared_by.as_ref()?;
        (access::allowed(&self.permissions, access::Action::ChangeKubernetesOwned)
            && access::is_kubernetes_owned(external_id))
        .then(|| declared.as_str().to_string())
    }

    /// Authorises a write that turns an object's `externalId` from `before` into `after`:
    /// writing, changing or removing an operator ownership marker needs
    /// [`access::Action::ChangeKubernetesOwned`].
    fn authorize_external_id(&self, before: Option<&str>, after: Option<&str>) -> Result<(), ScimError> {
        if before != after && (access::is_kubernetes_owned(before) || access::is_kubernetes_owned(after)) {
            self.authorize(access::Action::ChangeKubernetesOwned)?;
        }
        Ok(())
    }
}

/// A resource as returned to a client, with what HTTP needs besides the body.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    pub version: i64,
    pub json: Map<String, Value>,
}

/// The resource types this server serves.
#[derive(Debug, Clone)]
pub struct ResourceTypes {
    pub user: ResourceType,
    pub group: ResourceType,
    pub role_mapping: ResourceType,
}

impl Default for ResourceTypes {
    fn default() -> Self {
        Self { user: user_resource_type(), group: group_resource_type(), role_mapping: role_mapping_resource_type() }
    }
}

/// The provisioning service.
#[derive(Clone)]
pub struct Directory {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    types: Arc<ResourceTypes>,
    observer: Arc<dyn observer::Observer>,
    settings: Arc<Settings>,
    key_cache: Arc<authn::KeyCache>,
}

/// Tunables of the provisioning rules.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long an invitation link stays valid.
    pub invitation_ttl: chrono::Duration,
    /// Base URL of invitation links; the token is appended as a path segment.
    pub invitation_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self { invitation_ttl: chrono::Duration::days(2), invitation_url: "http://localhost:8080/invitations".into() }
    }
}

/// A failure inside one attempt of a write: either final, or a lost race worth retrying.
#[derive(Debug)]
enum OpError {
    Scim(ScimError),
    Store(StoreError),
}

impl From<ScimError> for OpError {
    fn from(e: ScimError) -> Self {
        OpError::Scim(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

impl OpError {
    fn retryable(&self) -> bool {
        match self {
            OpError::Store(StoreError::Concurrent(_)) => true,
            OpError::Store(StoreError::Database(sqlx::Error::Database(db))) => {
                // PostgreSQL serialization failure / deadlock; SQLite busy.
                matches!(db.code().as_deref(), Some("40001") | Some("40P01") | Some("5") | Some("517"))
            }
            _ => false,
        }
    }
    fn into_scim(self) -> ScimError {
        match self {
            OpError::Scim(e) => e,
            OpError::Store(e) => scim_from_store(e),
        }
    }
}

type OpResult<T> = Result<T, OpError>;

impl Directory {
    /// A directory over `store`, reading time from `clock`.
    pub fn new(store: SharedStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            types: Arc::new(ResourceTypes::default()),
            observer: Arc::new(observer::NoopObserver),
            settings: Arc::new(Settings::default()),
            key_cache: Arc::new(authn::KeyCache::new(DEFAULT_KEY_CACHE_TTL)),
        }
    }

    /// Trusts a key verified by [`Directory::authenticate`] for `ttl` without reading the key
    /// table again (zero: read it every time). Revocations committed through this directory
    /// take effect at once regardless.
    pub fn with_key_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.key_cache = Arc::new(authn::KeyCache::new(ttl));
        self
    }

    /// The provisioning settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Uses these provisioning settings.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = Arc::new(settings);
        self
    }

    /// Reports provisioning events to `observer` (metrics, StatsD).
    pub fn with_observer(mut self, observer: Arc<dyn observer::Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The resource types served.
    pub fn types(&self) -> &ResourceTypes {
        &self.types
    }

    /// The resource types as discovery advertises them: the role catalog's names become the
    /// canonical values of `roles.value` (of users and of role mappings).
    pub async fn advertised_types(&self) -> Result<ResourceTypes, ScimError> {
        let (roles, _) = self.role_catalog().await?;
        let names: Vec<String> = roles.into_iter().map(|r| r.name).collect();
        let mut types = (*self.types).clone();
        types.user.set_canonical_values("roles.value", names.clone());
        types.role_mapping.set_canonical_values("roles.value", names);
        Ok(types)
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Now, in the stored form.
    fn now(&self) -> String {
        format_time(self.clock.now())
    }

    /// Runs one write attempt after another until it does not lose a race.
    async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, ScimError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = OpResult<T>>,
    {
        let mut n = 0;
        loop {
            n += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && n < MAX_ATTEMPTS => {
                    tracing::debug!(attempt = n, error = ?e, "write lost a race; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(2u64 << n.min(6))).await;
                }
                Err(e) => return Err(e.into_scim()),
            }
        }
    }

    /// Appends an audit event inside `tx`.
    async fn audit(
        &self,
        tx: &mut dyn Tx,
        ctx: &RequestContext,
        action: &str,
        target_type: &str,
        target_id: &str,
        details: Value,
    ) -> OpResult<()> {
        let event = AuditEvent {
            id: ids::new_id(),
            time: self.now(),
            actor: ctx.actor.clone(),
            action: action.to_string(),
            target_type: target_type.to_string(),
            target_id: target_id.to_string(),
            request_id: ctx.request_id.clone(),
            details,
        };
        tx.append_audit(&event).await?;
        Ok(())
    }
}

impl Directory {
    /// Records an operational warning in the audit trail (e.g. a SCIM key owned by a user).
    pub async fn record_warning(&self, ctx: &RequestContext, warning: &str) -> Result<(), ScimError> {
        let mut tx = self.store.begin_write().await?;
        self.audit(tx.as_mut(), ctx, "warning", "server", "scim", serde_json::json!({"message": warning}))
            .await
            .map_err(OpError::into_scim)?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit events matching `query`, oldest first: what the `audit` command prints.
    pub async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>, ScimError> {
        Ok(self.store.begin_read().await?.list_audit(query).await?)
    }
}

/// A list query's filter and sort path, parsed once for the store.
struct ParsedList {
    filter: Option<crate::scim::filter::Filter>,
    sort_by: Option<crate::scim::filter::AttrPath>,
}

impl ParsedList {
    fn parse(query: &crate::scim::list::ListQuery) -> Result<Self, ScimError> {
        Ok(Self {
            filter: query.filter.as_deref().map(crate::scim::filter::parse_filter).transpose()?,
            sort_by: query.sort_by.as_deref().map(crate::scim::filter::parse_attr_path).transpose()?,
        })
    }

    fn spec<'a>(&'a self, rt: &'a ResourceType, query: &crate::scim::list::ListQuery) -> crate::store::ListSpec<'a> {
        crate::store::ListSpec {
            resource_type: rt,
            filter: self.filter.as_ref(),
            sort_by: self.sort_by.as_ref(),
            sort_order: query.sort_order,
            offset: query.start_index.saturating_sub(1),
            limit: query.count,
        }
    }
}

/// Checks an `If-Match` precondition against the stored version (RFC 7644 §3.14).
fn check_if_match(if_match: Option<&str>, version: i64) -> OpResult<()> {
    match if_match {
        Some(h) if !view::etag_matches(h, version) => Err(OpError::Scim(ScimError::precondition_failed(format!(
            "the resource is at version {} and the request expected {h}",
            view::etag(version)
        )))),
        _ => Ok(()),
    }
}

/// A string attribute of a normalised document.
fn doc_str(doc: &Map<String, Value>, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(str::to_string)
}
