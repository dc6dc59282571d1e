//! Targets as the resource controllers (ScimUser, ManagedTeam) use them: from a namespace and
//! the targets a spec names to a client and a standing per target, and the one client cache the
//! target controller shares (so a target's client is built once and keeps its OAuth token, its
//! request budget and its rate-limit state; it is rebuilt when the target's spec or a Secret it
//! reads changes).
//!
//! Resolution is all-or-nothing: every named target is looked up (in the operator's stores of
//! targets and namespace labels, [`TargetStores`], never with a request) and checked before
//! anything is written to any of them. A target that does not exist (`TargetNotFound`) or that the
//! namespace may not use (`TargetNotAllowed`) is a refusal for the whole resource. A target that
//! exists and may be used but cannot be spoken to right now (a missing Secret) only fails its own
//! entry (`TargetNotReady`).
//!
//! `ClusterScimTarget/default` is the operator's own server on the path that predates targets
//! (`--scim-url`, `--trusted-namespaces` as its trust list, RoleMappings on the server): no
//! object of that name is read for it.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::conditions::{self, Desired, reason};
use super::crd::{
    ClusterScimTarget, ScimTarget, SecretKeyRef, Standing, TargetAccess, TargetEndpoint, TargetRef, TargetRefKind,
    TargetSync, secret_namespace,
};
use super::ownership::Record;
use super::ownership::{OwnershipRecords, RecordOwner};
use super::scim_target::{Refusal, TargetKind, check};
use super::target_work::{Finished, Job, Polled, Step, TargetWork};
use super::{Context, ReconcileError, key};
use crate::client::{ClientCredentialsGrant, Credentials, Fence, ScimClient, SecretSource, TargetConfig};

// ---- the client cache

/// What connecting to a target gave.
#[derive(Debug, Clone)]
pub enum Connection {
    /// A client, with the Secret values it was built from (to hide them from messages).
    Client { client: ScimClient, secrets: Arc<Vec<String>> },
    /// Refused by the check of the target's spec: nothing read or sent.
    Refused(Refusal),
    /// A referenced Secret or key is missing (or may not be read).
    SecretMissing(String),
    /// The spec cannot make a client (a CA bundle that is not PEM, say).
    Invalid(String),
}

/// Errors that end a reconcile without a status (Kubernetes API failures).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("reading Secret {namespace}/{name}: {source}")]
    Secret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// A client as cached: built from this generation of the target and these Secret versions.
struct Cached {
    generation: Option<i64>,
    fingerprint: u64,
    client: ScimClient,
    secrets: Arc<Vec<String>>,
}

/// The operator's caches of the target objects and of the namespaces' labels, each fed by one
/// watch of the cluster (the target controller reads the same stores). Resolving a resource's
/// targets reads them, never the API server: a reconcile that only reports a finished task
/// costs no GET of its targets.
#[derive(Clone)]
pub struct TargetStores {
    pub clusters: Store<ClusterScimTarget>,
    pub scoped: Store<ScimTarget>,
    /// Namespaces, metadata only (the labels a ClusterScimTarget's selectors read).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
}

impl TargetStores {
    /// The labels of `namespace` as the watch last saw them (none when it is not listed).
    pub fn labels_of(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces.get(&ObjectRef::new(namespace)).and_then(|n| n.metadata.labels.clone()).unwrap_or_default()
    }

    /// The object `target` names (a ScimTarget of `namespace` when it names none), from the
    /// stores.
    fn object(&self, target: &TargetRef, namespace: &str) -> Option<Object> {
        match target.kind {
            TargetRefKind::ClusterScimTarget => self.clusters.get(&ObjectRef::new(&target.name)).map(Object::Cluster),
            TargetRefKind::ScimTarget => self
                .scoped
                .get(&ObjectRef::new(&target.name).within(target.namespace_in(namespace)))
                .map(Object::Namespaced),
        }
    }

    /// The standing of `namespace` on `target` (as a resource of `from` names it), for judging
    /// an object another namespace's resource owns there: see [`TargetStores::standings_of`].
    pub fn standing_of(&self, target: &TargetRef, from: &str, namespace: &str) -> Standing {
        let standings = self.standings_of(target, from, &std::collections::BTreeSet::from([namespace.to_string()]));
        standings.get(namespace).copied().unwrap_or(Standing::NotAllowed)
    }

    /// The standing of each of `namespaces` on `target` (as a resource of `from` names it), from
    /// the stores: a ScimTarget trusts its own namespace only; a ClusterScimTarget says so in its
    /// `spec.namespaces` (a target that is gone, or whose selectors cannot be read, stands
    /// nobody: fail closed).
    pub fn standings_of(
        &self,
        target: &TargetRef,
        from: &str,
        namespaces: &std::collections::BTreeSet<String>,
    ) -> BTreeMap<String, Standing> {
        let cluster = match target.kind {
            TargetRefKind::ScimTarget => None,
            TargetRefKind::ClusterScimTarget => match self.object(target, from) {
                Some(Object::Cluster(c)) => Some(c),
                _ => return namespaces.iter().map(|ns| (ns.clone(), Standing::NotAllowed)).collect(),
            },
        };
        let own = target.namespace_in(from);
        let standing = |ns: &str| match &cluster {
            None if own == ns => Standing::Trusted,
            None => Standing::NotAllowed,
            Some(c) => c.spec.namespaces.standing(ns, &self.labels_of(ns)).unwrap_or(Standing::NotAllowed),
        };
        namespaces.iter().map(|ns| (ns.clone(), standing(ns))).collect()
    }
}

/// The targets of the cluster as the controllers reach them: one client per target, the
/// ownership records, and the stores targets are resolved from.
pub struct Targets {
    kube: Client,
    /// Target objects and namespace labels, as the watches see them.
    pub stores: TargetStores,
    /// The namespace a `ClusterScimTarget` reads its Secrets from, which also keeps the
    /// ownership records.
    operator_namespace: String,
    /// Timeout of every request to a target.
    timeout: Duration,
    /// The fence of the operator's own client (requests stop when this replica stops leading).
    fence: Option<Fence>,
    clients: Mutex<HashMap<String, Cached>>,
    /// Who created or adopted each object on each target (targets other than the default).
    pub records: OwnershipRecords,
}

/// The cache key of a target object.
pub fn cache_key<K: TargetKind>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// The value of one Secret key, trimmed; `Err` says what is missing (never a value).
fn key_of(secret: Option<&Secret>, namespace: &str, r: &SecretKeyRef) -> Result<String, String> {
    let secret = secret.ok_or_else(|| format!("Secret {namespace}/{} does not exist", r.name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| format!("Secret {namespace}/{} has no key {}", r.name, r.key))?;
    let text = String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("key {} of Secret {namespace}/{} is not UTF-8 text", r.key, r.name))?;
    Ok(text.trim().to_string())
}

/// The referenced Secrets of `namespace` by name (`None`: absent), with their resource versions
/// folded into `fingerprint`. A Secret the operator may not read counts as missing.
async fn read_secrets(
    api: &Api<Secret>,
    namespace: &str,
    refs: &[&SecretKeyRef],
    fingerprint: &mut std::collections::hash_map::DefaultHasher,
) -> Result<Result<HashMap<String, Option<Secret>>, String>, FetchError> {
    let mut found = HashMap::new();
    for r in refs {
        if found.contains_key(&r.name) {
            continue;
        }
        let secret = match api.get_opt(&r.name).await {
            Ok(s) => s,
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return Ok(Err(format!("the operator may not read Secret {namespace}/{}: {}", r.name, e.message)));
            }
            Err(source) => {
                return Err(FetchError::Secret { namespace: namespace.to_string(), name: r.name.clone(), source });
            }
        };
        secret.as_ref().and_then(|s| s.metadata.resource_version.clone()).hash(fingerprint);
        found.insert(r.name.clone(), secret);
    }
    Ok(Ok(found))
}

/// The credentials the endpoint names, from the Secret values read; `Err` says what is missing.
fn credentials(
    endpoint: &TargetEndpoint,
    secrets: &HashMap<String, Option<Secret>>,
    namespace: &str,
) -> Result<(Credentials, Vec<String>), String> {
    let value = |r: &SecretKeyRef| key_of(secrets.get(&r.name).and_then(Option::as_ref), namespace, r);
    let fixed = |v: String| -> Arc<dyn SecretSource> { Arc::new(move || Ok(v.clone())) };
    let c = &endpoint.credentials;
    match (&c.bearer_token, &c.oauth2) {
        (Some(r), _) => {
            let token = value(r)?;
            Ok((Credentials::bearer(fixed(token.clone())), vec![token]))
        }
        (None, Some(o)) => {
            let (id, secret) = (value(&o.client_id)?, value(&o.client_secret)?);
            let grant = ClientCredentialsGrant {
                token_url: o.token_url.clone(),
                client_id: fixed(id.clone()),
                client_secret: fixed(secret.clone()),
                scopes: o.scopes.clone(),
                audience: o.audience.clone(),
            };
            Ok((Credentials::client_credentials(grant), vec![id, secret]))
        }
        // The API server refuses both or neither (a CEL rule); an older object may still say so.
        (None, None) => Err("the credentials name neither bearerToken nor oauth2".to_string()),
    }
}

impl Targets {
    /// The targets reached with `kube`, looked up in `stores`, Secrets of cluster targets and
    /// the ownership records in `operator_namespace`, requests under `fence` with `timeout`.
    pub fn new(
        kube: Client,
        stores: TargetStores,
        operator_namespace: String,
        timeout: Duration,
        fence: Option<Fence>,
    ) -> Self {
        let records = OwnershipRecords::new(kube.clone(), &operator_namespace);
        Self { kube, stores, operator_namespace, timeout, fence, clients: Mutex::new(HashMap::new()), records }
    }

    /// The namespace a `ClusterScimTarget` reads its Secrets from.
    pub fn operator_namespace(&self) -> &str {
        &self.operator_namespace
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached client of `key`, if it was built from what `current` accepts.
    fn cached(&self, key: &str, current: impl Fn(&Cached) -> bool) -> Option<Connection> {
        let clients = self.lock();
        let c = clients.get(key).filter(|c| current(c))?;
        Some(Connection::Client { client: c.client.clone(), secrets: c.secrets.clone() })
    }

    /// A client for `obj`. With `recheck` (the target controller's probes, triggered by spec and
    /// Secret changes) the Secrets are read and the client rebuilt when they or the spec
    /// changed; without it (a resource's reconcile) the cached client of the current generation
    /// is used as it is, and built only when there is none.
    pub async fn connect<K: TargetKind>(&self, obj: &K, recheck: bool) -> Result<Connection, FetchError> {
        let key = cache_key(obj);
        let generation = obj.meta().generation;
        if !recheck && let Some(c) = self.cached(&key, |c| c.generation == generation) {
            return Ok(c);
        }
        let readable = secret_namespace(obj.namespace().as_deref(), &self.operator_namespace).to_string();
        if let Err(refusal) = check(obj.endpoint(), obj.access(), &readable) {
            return Ok(Connection::Refused(refusal));
        }
        let endpoint = obj.endpoint();
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), &readable);
        let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
        generation.hash(&mut fingerprint);
        let secrets = match read_secrets(&api, &readable, &endpoint.secret_refs(), &mut fingerprint).await? {
            Ok(s) => s,
            Err(why) => return Ok(Connection::SecretMissing(why)),
        };
        let (credentials, values) = match credentials(endpoint, &secrets, &readable) {
            Ok(c) => c,
            Err(why) => return Ok(Connection::SecretMissing(why)),
        };
        let fingerprint = fingerprint.finish();
        if let Some(c) = self.cached(&key, |c| c.fingerprint == fingerprint) {
            return Ok(c);
        }
        let config = TargetConfig {
            base_url: endpoint.base_url.clone(),
            profile: endpoint.profile,
            credentials,
            ca_bundle: endpoint.ca_bundle.clone(),
            timeout: self.timeout,
            max_concurrency: endpoint.budget.max_concurrency as usize,
            rate_limit: endpoint.budget.requests_per_second,
        };
        let mut client = match ScimClient::for_target(config) {
            Ok(c) => c,
            Err(e) => return Ok(Connection::Invalid(e.to_string())),
        };
        if let Some(fence) = &self.fence {
            client = client.with_fence(fence.clone());
        }
        let secrets = Arc::new(values);
        self.lock().insert(key, Cached { generation, fingerprint, client: client.clone(), secrets: secrets.clone() });
        Ok(Connection::Client { client, secrets })
    }

    /// Forgets the client of a target that is gone.
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

// ---- resolution

/// A target a resource provisions into, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// As the spec names it.
    pub target: TargetRef,
    /// `ClusterScimTarget/<name>` or `ScimTarget/<namespace>/<name>`.
    pub id: String,
    /// The namespace's standing on it.
    pub standing: Standing,
    /// How to reach it.
    pub endpoint: Endpoint,
}

/// How a resolved target is reached.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The operator's own server, through the controller's existing path.
    Default,
    /// Another target, with its client.
    Remote(Remote),
    /// The target may be used but cannot be spoken to now (`TargetNotReady`): only its entry
    /// fails.
    NotReady(String),
}

/// A target other than the default, ready to be spoken to.
#[derive(Debug, Clone)]
pub struct Remote {
    pub client: ScimClient,
    /// Secret values, hidden from every message.
    pub secrets: Arc<Vec<String>>,
    /// Membership operations per PATCH at most, when the target's spec lowers its dialect's.
    pub max_member_operations: Option<usize>,
    /// How many resources' syncs may run on it at once (its budget's `maxConcurrency`).
    pub lanes: usize,
}

impl Remote {
    /// `text` without any Secret value of the target.
    pub fn hide(&self, text: &str) -> String {
        crate::redact::hide_secrets(text, self.secrets.iter().map(String::as_str))
    }
}

/// A target the resource may not use: nothing is written anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRefusal {
    pub id: String,
    /// `TargetNotFound` or `TargetNotAllowed`.
    pub reason: &'static str,
    pub message: String,
}

/// Who may use a target that was found.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// A `ClusterScimTarget`: its `spec.namespaces`.
    Cluster(&'a TargetAccess),
    /// A `ScimTarget` of this namespace.
    Namespaced,
}

/// The standing of `namespace` (with `labels`) on the target `id` that was found as `found`
/// (`None`: not found). A target of another namespace is refused before it is looked up.
pub fn standing(
    id: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    found: Option<Found<'_>>,
) -> Result<Standing, TargetRefusal> {
    let refuse = |reason, message: String| TargetRefusal { id: id.to_string(), reason, message };
    match found {
        None => Err(refuse(reason::TARGET_NOT_FOUND, format!("target {id} does not exist; nothing was written"))),
        // The namespace's own service: it decides what it provisions there.
        Some(Found::Namespaced) => Ok(Standing::Trusted),
        Some(Found::Cluster(access)) => match access.standing(namespace, labels) {
            Ok(Standing::NotAllowed) => Err(refuse(
                reason::TARGET_NOT_ALLOWED,
                format!(
                    "namespace {namespace} may not use target {id} (its spec.namespaces.allowed); nothing was written"
                ),
            )),
            Ok(s) => Ok(s),
            // Fail closed: a selector that cannot be read matches nobody.
            Err(e) => Err(refuse(
                reason::TARGET_NOT_ALLOWED,
                format!("target {id} cannot say which namespaces may use it ({e}); nothing was written"),
            )),
        },
    }
}

/// The refusal of a `ScimTarget` of another namespace, if `target` names one.
pub fn foreign(target: &TargetRef, namespace: &str) -> Option<TargetRefusal> {
    let own = target.namespace_in(namespace);
    (target.kind == TargetRefKind::ScimTarget && own != namespace).then(|| TargetRefusal {
        id: target.id(namespace),
        reason: reason::TARGET_NOT_ALLOWED,
        message: format!(
            "ScimTarget {own}/{} serves only resources of namespace {own}, not of {namespace}; nothing was written",
            target.name
        ),
    })
}

/// The object behind a reference, if it exists.
enum Object {
    Cluster(Arc<ClusterScimTarget>),
    Namespaced(Arc<ScimTarget>),
}

impl Targets {
    /// The client of a target object, or why there is none now.
    async fn endpoint_of<K: TargetKind>(&self, obj: &K) -> Result<Endpoint, ReconcileError> {
        let connection = self.connect(obj, false).await.map_err(|e| ReconcileError::Invalid(e.to_string()))?;
        Ok(match connection {
            Connection::Client { client, secrets } => Endpoint::Remote(Remote {
                client,
                secrets,
                max_member_operations: obj.endpoint().budget.max_member_operations.map(|m| m as usize),
                lanes: obj.endpoint().budget.max_concurrency as usize,
            }),
            Connection::Refused(r) => Endpoint::NotReady(r.message),
            Connection::SecretMissing(m) | Connection::Invalid(m) => Endpoint::NotReady(m),
        })
    }

    /// Resolves every target of a resource in `namespace` (`[default]` when `declared` is
    /// empty); `Ok(Err(..))` lists the refusals when any target is refused, and then nothing may
    /// be written anywhere. `default_trusted` is the namespace's standing on the default target.
    pub async fn resolve(
        &self,
        namespace: &str,
        declared: &[TargetRef],
        default_trusted: bool,
    ) -> Result<Result<Vec<Resolved>, Vec<TargetRefusal>>, ReconcileError> {
        let mut resolved = Vec::new();
        let mut refused = Vec::new();
        for target in super::crd::effective_targets(declared) {
            let id = target.id(namespace);
            if target.is_default() {
                let standing = if default_trusted { Standing::Trusted } else { Standing::Allowed };
                resolved.push(Resolved { target, id, standing, endpoint: Endpoint::Default });
                continue;
            }
            if let Some(r) = foreign(&target, namespace) {
                refused.push(r);
                continue;
            }
            let object = self.stores.object(&target, namespace);
            let labels = self.stores.labels_of(namespace);
            let found = match &object {
                None => None,
                Some(Object::Cluster(c)) => Some(Found::Cluster(&c.spec.namespaces)),
                Some(Object::Namespaced(_)) => Some(Found::Namespaced),
            };
            let standing = match standing(&id, namespace, &labels, found) {
                Ok(s) => s,
                Err(r) => {
                    refused.push(r);
                    continue;
                }
            };
            let endpoint = match &object {
                Some(Object::Cluster(c)) => self.endpoint_of(c.as_ref()).await?,
                Some(Object::Namespaced(t)) => self.endpoint_of(t.as_ref()).await?,
                None => continue,
            };
            resolved.push(Resolved { target, id, standing, endpoint });
        }
        Ok(if refused.is_empty() { Ok(resolved) } else { Err(refused) })
    }

    /// The client of the target `id` (as records name it), for removing what a resource owns
    /// there: whatever the namespace's standing now (taking away access never blocks a
    /// clean-up). `Ok(None)`: the target is gone, so nothing can be done there.
    pub async fn reach(&self, id: &str) -> Result<Option<Endpoint>, ReconcileError> {
        let mut parts = id.splitn(3, '/');
        let (kind, first, second) = (parts.next(), parts.next(), parts.next());
        let target = match (kind, first, second) {
            (Some("ClusterScimTarget"), Some(name), None) => {
                TargetRef { kind: TargetRefKind::ClusterScimTarget, name: name.to_string(), namespace: None }
            }
            (Some("ScimTarget"), Some(ns), Some(name)) => {
                TargetRef { kind: TargetRefKind::ScimTarget, name: name.to_string(), namespace: Some(ns.to_string()) }
            }
            _ => return Err(ReconcileError::Invalid(format!("an ownership record names an unknown target {id}"))),
        };
        if target.is_default() {
            return Ok(Some(Endpoint::Default));
        }
        let namespace = target.namespace.clone().unwrap_or_default();
        Ok(match self.stores.object(&target, &namespace) {
            None => None,
            Some(Object::Cluster(c)) => Some(self.endpoint_of(c.as_ref()).await?),
            Some(Object::Namespaced(t)) => Some(self.endpoint_of(t.as_ref()).await?),
        })
    }
}

// ---- status

/// How one target stands after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub target: String,
    pub remote_id: Option<String>,
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
    /// Whether this reconcile changed something there (the entry's `lastSync` moves).
    pub wrote: bool,
    /// What the target asked for (Retry-After), if it failed.
    pub retry_after: Option<Duration>,
    /// The target's task ([`super::target_work`]) times its next sync, not the reconcile.
    pub by_task: bool,
}

impl Outcome {
    /// In sync.
    pub fn synced(target: &str, remote_id: Option<String>, message: impl Into<String>, wrote: bool) -> Self {
        Self {
            target: target.to_string(),
            remote_id,
            ready: true,
            reason: reason::PROVISIONED,
            message: message.into(),
            wrote,
            retry_after: None,
            by_task: false,
        }
    }

    /// Not in sync, for `reason`.
    pub fn failed(target: &str, remote_id: Option<String>, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            target: target.to_string(),
            remote_id,
            ready: false,
            reason,
            message: message.into(),
            wrote: false,
            retry_after: None,
            by_task: false,
        }
    }

    /// A failed request, as its outcome: the reason and retry hint of the error, the message
    /// cleared of `secrets`.
    pub fn error(target: &str, remote_id: Option<String>, e: &crate::client::ClientError, secrets: &[String]) -> Self {
        let failure = super::conditions::failure(e);
        let message = crate::redact::hide_secrets(&e.to_string(), secrets.iter().map(String::as_str));
        Self { retry_after: failure.retry_after, ..Self::failed(target, remote_id, failure.reason, message) }
    }

    /// A failure of the ownership records' API (Kubernetes), as the target's outcome.
    pub fn error_of_records(target: &str, remote_id: Option<String>, e: &ReconcileError) -> Self {
        Self::failed(target, remote_id, reason::RECORD_FAILED, format!("the ownership record of target {target}: {e}"))
    }

    /// The refusal of a target, as its outcome.
    pub fn refused(r: &TargetRefusal) -> Self {
        Self::failed(&r.id, None, r.reason, r.message.clone())
    }
}

/// The backoff key of `target` for the resource of key `own`: the default target counts the
/// resource's own failures, each other target its own.
fn target_key(own: &str, target: &str) -> String {
    if target == TargetRef::default_target().id("") { own.to_string() } else { format!("{own}@{target}") }
}

/// How long after `outcome` (of a target's task) that task should run again: its backoff when it
/// failed (Retry-After honoured), else the resync (a standing refusal is looked at again then).
pub fn task_due<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K, outcome: &Outcome) -> Duration {
    let target = target_key(&key(obj), &outcome.target);
    if outcome.ready {
        ctx.succeeded(&target);
        ctx.resync_wait()
    } else if conditions::progress(outcome.reason) == conditions::Progress::Stalled {
        ctx.resync_wait()
    } else {
        ctx.backoff(&target, outcome.retry_after)
    }
}

/// A remote target of a reconcile, with what its task table said.
pub type Turn<'a, T> = (&'a Resolved, &'a Remote, Polled<T>);

/// The first steps of a reconcile's target tasks for the resource `uid` at `generation`: tasks on
/// targets the spec no longer names are stopped (before their deletion policy applies), each
/// remote target is polled, and the resource's ownership records are read, only when a task
/// starts or a target was dropped (a default-only resource, or one whose tasks run, costs no
/// request). `previous` are the status entries before this reconcile.
pub async fn poll_tasks<'a, T: Finished>(
    ctx: &Context,
    work: &TargetWork<T>,
    uid: &str,
    generation: Option<i64>,
    resolved: &'a [Resolved],
    previous: &[TargetSync],
    now: std::time::Instant,
) -> Result<(Vec<Turn<'a, T>>, Vec<Record>), ReconcileError> {
    for target in work.targets_of(uid) {
        if !resolved.iter().any(|r| r.id == target) {
            work.abort(uid, Some(&target));
        }
    }
    let polled: Vec<Turn<'a, T>> = resolved
        .iter()
        .filter_map(|r| match &r.endpoint {
            Endpoint::Remote(remote) => Some((r, remote, work.poll(uid, &r.id, generation, now))),
            _ => None,
        })
        .collect();
    let default_id = TargetRef::default_target().id("");
    let dropped = previous.iter().any(|e| e.target != default_id && !resolved.iter().any(|r| r.id == e.target));
    let records = if dropped || polled.iter().any(|(_, _, p)| p.step == Step::Start) {
        ctx.targets.records.owned_by(uid).await.map_err(|e| ReconcileError::Invalid(e.to_string()))?
    } else {
        Vec::new()
    };
    Ok((polled, records))
}

/// Starts the sync of `obj` on the remote target `r` as a task of `work` ([`super::target_work`]):
/// `run` is the target's pipeline; `wake` reconciles `obj` again once the result is kept.
pub fn start_task<K, T, W>(
    ctx: &Arc<Context>,
    work: &Arc<TargetWork<T>>,
    obj: &Arc<K>,
    r: &Resolved,
    remote: &Remote,
    run: W,
    wake: impl FnOnce() + Send + 'static,
) where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    T: Finished,
    W: std::future::Future<Output = T> + Send + 'static,
{
    let generation = obj.meta().generation;
    let job = Job { uid: record_owner(obj.as_ref()).uid, target: r.id.clone(), generation, width: remote.lanes };
    let (c, o) = (ctx.clone(), obj.clone());
    work.start(job, run, move |t: &T| task_due(&c, o.as_ref(), t.outcome()), wake);
}

/// What a resource shows for a target whose task has not reported for this spec: the task's last
/// result, written again as it was (`wrote: false`); else the status entry of this generation
/// (after a restart of the operator nothing else is known); else `Syncing`.
pub fn meanwhile(previous: &[TargetSync], target: &str, generation: Option<i64>, last: Option<Outcome>) -> Outcome {
    if let Some(last) = last {
        return Outcome { wrote: false, by_task: true, ..last };
    }
    let entry = previous.iter().find(|e| e.target == target && e.observed_generation == generation);
    let known = entry.and_then(|e| conditions::entry_reason(&e.reason).map(|r| (e, r)));
    let outcome = match known {
        Some((e, reason)) => {
            Outcome { ready: e.ready, ..Outcome::failed(target, e.remote_id.clone(), reason, e.message.clone()) }
        }
        None => Outcome::failed(
            target,
            previous.iter().find(|e| e.target == target).and_then(|e| e.remote_id.clone()),
            reason::SYNCING,
            format!("syncing with target {target}"),
        ),
    };
    Outcome { by_task: true, ..outcome }
}

/// When to reconcile `obj` again after `outcomes`: the shortest backoff of a failing target
/// (each target keeps its own count, the default target the resource's own; Retry-After
/// honoured), else, when a refusal stands, the refusal interval, else the resync. Outcomes of
/// target tasks are timed by their tasks, and `tasks` is when the next of those is due.
pub fn next_action<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    outcomes: &[Outcome],
    tasks: Option<Duration>,
) -> Action {
    let own = key(obj);
    let mut retry: Option<Duration> = None;
    let mut stalled = false;
    for o in outcomes.iter().filter(|o| !o.by_task) {
        let key_of = |o: &Outcome| target_key(&own, &o.target);
        if o.ready {
            ctx.succeeded(&key_of(o));
        } else if conditions::progress(o.reason) == conditions::Progress::Stalled {
            stalled = true;
        } else {
            let wait = ctx.backoff(&key_of(o), o.retry_after);
            retry = Some(retry.map_or(wait, |r| r.min(wait)));
        }
    }
    let wait = match retry {
        Some(wait) => wait,
        None if stalled => ctx.refused_wait(&own, Duration::from_secs(300)),
        None => {
            ctx.succeeded(&own);
            ctx.resync_wait()
        }
    };
    Action::requeue(tasks.map_or(wait, |t| t.min(wait)))
}

/// The owner of `obj` in the ownership records.
pub fn record_owner<K: Resource>(obj: &K) -> RecordOwner {
    let meta = obj.meta();
    RecordOwner {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

/// The status entries of `outcomes`, in their order: an entry keeps its last sync time while
/// nothing was written and it stays ready.
pub fn entries(
    previous: &[TargetSync],
    outcomes: &[Outcome],
    generation: Option<i64>,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> Vec<TargetSync> {
    outcomes
        .iter()
        .map(|o| {
            let before = previous.iter().find(|p| p.target == o.target);
            let last_sync = match before {
                Some(b) if o.ready && b.ready && !o.wrote && b.last_sync.is_some() => b.last_sync.clone(),
                _ if o.ready => Some(now.clone()),
                Some(b) => b.last_sync.clone(),
                None => None,
            };
            let remote_id = o.remote_id.clone().or_else(|| before.and_then(|b| b.remote_id.clone()));
            TargetSync {
                target: o.target.clone(),
                remote_id,
                ready: o.ready,
                reason: o.reason.to_string(),
                message: o.message.clone(),
                observed_generation: generation,
                last_sync,
            }
        })
        .collect()
}

/// The `Ready` condition of a resource from its targets' outcomes: True only when every target
/// is in sync; otherwise the first failing target's reason, with every failure in the message.
pub fn ready_condition(outcomes: &[Outcome]) -> Desired {
    let failing: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ready).collect();
    match failing.first() {
        None if outcomes.len() == 1 => Desired::ready(outcomes[0].message.clone()),
        None => Desired::ready(format!("in sync on {} targets", outcomes.len())),
        Some(first) if outcomes.len() == 1 => Desired::not_ready(first.reason, first.message.clone()),
        Some(first) => Desired::not_ready(
            first.reason,
            failing.iter().map(|o| format!("{}: {}", o.target, o.message)).collect::<Vec<_>>().join("; "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::NamespaceSet;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_namespace_stands_on_a_target_as_the_target_says() {
        let access = TargetAccess {
            allowed: NamespaceSet {
                names: vec!["team-a".into()],
                selector: Some(LabelSelector {
                    match_labels: Some(labels(&[("scim", "on")]).into_iter().collect()),
                    ..Default::default()
                }),
            },
            trusted: NamespaceSet::of_names(&["platform".into()]),
        };
        let bad = TargetAccess {
            allowed: NamespaceSet {
                names: vec![],
                selector: Some(LabelSelector {
                    match_expressions: Some(vec![Default::default()]),
                    ..Default::default()
                }),
            },
            trusted: NamespaceSet::default(),
        };
        let id = "ClusterScimTarget/kc";
        type Case<'a> = (&'a str, BTreeMap<String, String>, Option<Found<'a>>, Result<Standing, &'static str>);
        let cases: Vec<Case<'_>> = vec![
            ("team-a", labels(&[]), Some(Found::Cluster(&access)), Ok(Standing::Allowed)),
            ("team-b", labels(&[("scim", "on")]), Some(Found::Cluster(&access)), Ok(Standing::Allowed)),
            ("team-b", labels(&[]), Some(Found::Cluster(&access)), Err(reason::TARGET_NOT_ALLOWED)),
            // Trusted but not allowed: not allowed.
            ("platform", labels(&[]), Some(Found::Cluster(&access)), Err(reason::TARGET_NOT_ALLOWED)),
            ("team-a", labels(&[]), Some(Found::Cluster(&bad)), Err(reason::TARGET_NOT_ALLOWED)),
            ("team-a", labels(&[]), Some(Found::Namespaced), Ok(Standing::Trusted)),
            ("team-a", labels(&[]), None, Err(reason::TARGET_NOT_FOUND)),
        ];
        for (ns, l, found, want) in cases {
            let got = standing(id, ns, &l, found).map_err(|r| r.reason);
            assert_eq!(got, want, "{ns} {l:?}");
        }
        let mut both = access.clone();
        both.allowed.names.push("platform".into());
        assert_eq!(standing(id, "platform", &labels(&[]), Some(Found::Cluster(&both))), Ok(Standing::Trusted));
    }

    #[test]
    fn standings_are_read_from_the_stores_and_follow_namespace_labels() {
        use kube::runtime::{reflector, watcher};
        let (clusters, mut cw) = reflector::store::<ClusterScimTarget>();
        let (scoped, _sw) = reflector::store::<ScimTarget>();
        let (namespaces, mut nw) = reflector::store::<PartialObjectMeta<Namespace>>();
        let stores = TargetStores { clusters, scoped, namespaces };
        let kc: ClusterScimTarget = serde_json::from_value(serde_json::json!({
            "apiVersion": "scim.dev/v1alpha1", "kind": "ClusterScimTarget", "metadata": {"name": "kc"},
            "spec": {"baseUrl": "https://kc.example/scim/v2", "credentials": {"bearerToken": {"name": "s", "key": "k"}},
                "namespaces": {"allowed": {"names": ["team-a", "team-b"]}, "trusted": {"selector": {"matchLabels": {"scim": "trusted"}}}}}
        }))
        .expect("a ClusterScimTarget");
        cw.apply_watcher_event(&watcher::Event::Apply(kc));
        let ns = |name: &str, l: &[(&str, &str)]| {
            let mut n = PartialObjectMeta::<Namespace>::default();
            n.metadata.name = Some(name.to_string());
            n.metadata.labels = Some(labels(l));
            watcher::Event::Apply(n)
        };
        nw.apply_watcher_event(&ns("team-a", &[("scim", "trusted")]));
        nw.apply_watcher_event(&ns("team-b", &[]));
        let kc_ref = TargetRef { kind: TargetRefKind::ClusterScimTarget, name: "kc".into(), namespace: None };
        let all: std::collections::BTreeSet<String> =
            ["team-a", "team-b", "team-c"].iter().map(|s| s.to_string()).collect();
        let want = |pairs: &[(&str, Standing)]| -> BTreeMap<String, Standing> {
            pairs.iter().map(|(n, s)| (n.to_string(), *s)).collect()
        };
        assert_eq!(
            stores.standings_of(&kc_ref, "team-a", &all),
            want(&[("team-a", Standing::Trusted), ("team-b", Standing::Allowed), ("team-c", Standing::NotAllowed)])
        );
        // The label given to team-b is seen at the next look, without any read of the API server.
        nw.apply_watcher_event(&ns("team-b", &[("scim", "trusted")]));
        assert_eq!(stores.standing_of(&kc_ref, "team-a", "team-b"), Standing::Trusted);
        // A target the store does not hold stands nobody (fail closed).
        let gone = TargetRef { name: "gone".into(), ..kc_ref.clone() };
        assert_eq!(stores.standing_of(&gone, "team-a", "team-a"), Standing::NotAllowed);
        // A ScimTarget trusts its own namespace only.
        let st = TargetRef { kind: TargetRefKind::ScimTarget, name: "grafana".into(), namespace: None };
        assert_eq!(
            stores.standings_of(&st, "team-a", &all),
            want(&[("team-a", Standing::Trusted), ("team-b", Standing::NotAllowed), ("team-c", Standing::NotAllowed)])
        );
        assert!(matches!(stores.object(&kc_ref, "any"), Some(Object::Cluster(_))));
        assert!(stores.object(&st, "team-a").is_none(), "no ScimTarget listed");
    }

    #[test]
    fn a_scim_target_serves_its_own_namespace_only() {
        let st = |ns: Option<&str>| TargetRef {
            kind: TargetRefKind::ScimTarget,
            name: "grafana".into(),
            namespace: ns.map(str::to_string),
        };
        assert_eq!(foreign(&st(None), "team-b"), None);
        assert_eq!(foreign(&st(Some("team-b")), "team-b"), None);
        let refused = foreign(&st(Some("team-a")), "team-b").expect("refused");
        assert_eq!((refused.id.as_str(), refused.reason), ("ScimTarget/team-a/grafana", reason::TARGET_NOT_ALLOWED));
        assert!(refused.message.contains("serves only resources of namespace team-a"), "{}", refused.message);
        let cst = TargetRef { kind: TargetRefKind::ClusterScimTarget, name: "kc".into(), namespace: None };
        assert_eq!(foreign(&cst, "team-b"), None);
    }

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_767_225_600 + s).unwrap())
    }

    #[test]
    fn ready_only_when_every_target_is_in_sync() {
        let ok = |t: &str| Outcome::synced(t, Some("1".into()), "provisioned", false);
        let down = |t: &str| Outcome::failed(t, None, reason::SCIM_UNAVAILABLE, "503");
        let brief = |d: Desired| (d.status, d.reason, d.message);
        assert_eq!(brief(ready_condition(&[ok("a")])), (true, reason::PROVISIONED, "provisioned".into()));
        assert_eq!(
            brief(ready_condition(&[ok("a"), ok("b")])),
            (true, reason::PROVISIONED, "in sync on 2 targets".into())
        );
        assert_eq!(brief(ready_condition(&[down("a")])), (false, reason::SCIM_UNAVAILABLE, "503".into()));
        let conflict = Outcome::failed("c", None, reason::CONFLICT, "taken");
        assert_eq!(
            brief(ready_condition(&[ok("a"), down("b"), conflict])),
            (false, reason::SCIM_UNAVAILABLE, "b: 503; c: taken".into())
        );
    }

    #[test]
    fn a_target_whose_task_has_not_reported_shows_what_is_known_of_this_spec() {
        let written = entries(&[], &[Outcome::synced("a", Some("7".into()), "provisioned", true)], Some(2), &t(0));
        let brief = |o: Outcome| (o.ready, o.reason, o.remote_id, o.wrote, o.by_task);
        // The task's last result, again, as written.
        let last = Outcome::failed("a", Some("7".into()), reason::CONFLICT, "taken");
        assert_eq!(
            brief(meanwhile(&written, "a", Some(2), Some(last))),
            (false, reason::CONFLICT, Some("7".into()), false, true)
        );
        // After a restart: the entry of this generation.
        assert_eq!(
            brief(meanwhile(&written, "a", Some(2), None)),
            (true, reason::PROVISIONED, Some("7".into()), false, true)
        );
        // A new spec: syncing, and the remote id is still known.
        let syncing = meanwhile(&written, "a", Some(3), None);
        assert_eq!(brief(syncing.clone()), (false, reason::SYNCING, Some("7".into()), false, true));
        assert_eq!(syncing.message, "syncing with target a");
        assert_eq!(brief(meanwhile(&[], "b", Some(1), None)), (false, reason::SYNCING, None, false, true));
        let mut odd = written.clone();
        odd[0].reason = "SomethingAnOlderReleaseSaid".into();
        assert_eq!(meanwhile(&odd, "a", Some(2), None).reason, reason::SYNCING, "an unknown reason is not repeated");
    }

    #[test]
    fn entries_keep_their_sync_time_until_something_is_written() {
        let first = entries(&[], &[Outcome::synced("a", Some("1".into()), "ok", true)], Some(1), &t(0));
        assert_eq!(first[0].last_sync, Some(t(0)));
        assert_eq!(crate::operator::crd::targets_ready(&first), "1/1");
        let quiet = entries(&first, &[Outcome::synced("a", Some("1".into()), "ok", false)], Some(1), &t(60));
        assert_eq!(quiet, first, "a resync that changes nothing changes no entry");
        let changed = entries(&first, &[Outcome::synced("a", Some("1".into()), "ok", true)], Some(2), &t(90));
        assert_eq!((changed[0].last_sync.clone(), changed[0].observed_generation), (Some(t(90)), Some(2)));
        let down = entries(&changed, &[Outcome::failed("a", None, reason::SCIM_UNAVAILABLE, "503")], Some(2), &t(99));
        assert_eq!(down[0].last_sync, Some(t(90)), "the last sync stays what it was");
        assert_eq!(down[0].remote_id.as_deref(), Some("1"), "the remote id is kept while the target is down");
        assert_eq!(crate::operator::crd::targets_ready(&down), "0/1");
    }
}
