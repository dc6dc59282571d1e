//! The Kubernetes operator: `ScimUser`, `ManagedTeam` and `RoleMapping` reconciled into the
//! SCIM server through [`crate::client::ScimClient`], with status conditions written back;
//! `ScimTarget` and `ClusterScimTarget` probed for their status.
//!
//! Each controller runs its reconcile as a pipeline: fetch what is referenced, validate (pure),
//! build the desired SCIM document (pure), apply it, write status (only when it changed).

pub mod bootstrap_secret;
pub mod conditions;
pub mod crd;
pub mod fairness;
mod leader;
mod managed_team;
mod metrics;
mod namespace_labels;
pub mod ownership;
mod role_mapping;
mod scim_target;
mod scim_user;
mod target_roles;
pub mod target_work;
pub mod targets;
pub mod user_cache;
mod user_doc;

pub use leader::LeaseArgs;
pub use metrics::OperatorMetrics;

use anyhow::{Context as _, Result};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{ClientConfig, ScimClient};
use crd::{ClusterScimTarget, ManagedTeam, RoleMapping, ScimTarget};
use user_cache::CachedUser;

/// Finalizer the operator puts on its resources.
pub const FINALIZER: &str = "scim.dev/cleanup";
/// Annotation that releases a resource without touching the SCIM server (for a server that is
/// gone for good): set it to `"true"` and delete the resource.
pub const RELEASE_ANNOTATION: &str = "scim.dev/release";

/// How long a team waits for its members' changes to settle before it reconciles.
const TEAM_DEBOUNCE: Duration = Duration::from_secs(1);

/// Watch events a shared store buffers for a subscriber that lags.
const SHARED_BUFFER: usize = 1024;

/// The value last seen of each object of a store (what matters of it, or a hash of that).
/// Objects that left the store are forgotten once the memory exceeds twice the store.
///
/// Keyed by the object's uid, namespace and name, hashed: 8 bytes of key an object, where an
/// `ObjectRef` key would keep copies of the name, namespace, uid and resourceVersion (the
/// operator holds one entry per ScimUser in each of two filters). A collision of two objects'
/// 64-bit hashes could hold back a trigger until the next resync, at odds of about n²/2⁶⁵.
struct LastSeen<K: Resource<DynamicType = ()> + Clone + 'static, V> {
    seen: Mutex<HashMap<u64, V>>,
    store: reflector::Store<K>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static, V> LastSeen<K, V> {
    fn new(store: reflector::Store<K>) -> Self {
        Self { seen: Mutex::new(HashMap::new()), store }
    }

    fn key(obj: &K) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        // The uid is unique in time too: a ScimUser deleted and made again under its name is new.
        obj.meta().uid.hash(&mut h);
        obj.meta().namespace.hash(&mut h);
        obj.meta().name.hash(&mut h);
        h.finish()
    }

    /// Keeps `value` as what was seen of `obj`, and returns what was seen before (`None` the
    /// first time).
    fn swap(&self, obj: &K, value: V) -> Option<V> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 2 * self.store.len() + 1024 {
            let live: std::collections::HashSet<u64> = self.store.state().iter().map(|o| Self::key(o)).collect();
            seen.retain(|k, _| live.contains(k));
        }
        seen.insert(Self::key(obj), value)
    }
}

/// A predicate filter for shared streams: remembers a hash of what matters per object and lets
/// an object through when it changed (or was not seen before).
struct ChangeFilter<K: Resource<DynamicType = ()> + Clone + 'static>(LastSeen<K, u64>);

impl<K: Resource<DynamicType = ()> + Clone + 'static> ChangeFilter<K> {
    fn new(store: reflector::Store<K>) -> Self {
        Self(LastSeen::new(store))
    }

    fn changed(&self, obj: &K, hash: Option<u64>) -> bool {
        let Some(hash) = hash else { return true };
        self.0.swap(obj, hash) != Some(hash)
    }
}

/// Drops what the operator never reads from a watched object before it is stored:
/// `managedFields` and kubectl's last-applied annotation (a copy of the whole object).
fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What a controller acts on in its own resource: the spec (generation), deletion and the
/// release annotation. Its own writes (the finalizer it adds, the status) change none of
/// these, so they trigger no second reconcile; resyncs still come from the requeue (which also
/// puts back a finalizer someone removed).
pub fn resource_trigger<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.as_ref().map(|t| t.0.as_second()).hash(&mut h);
    meta.annotations.as_ref().and_then(|a| a.get(RELEASE_ANNOTATION)).hash(&mut h);
    Some(h.finish())
}

/// What the ScimUser controller acts on in a ScimUser: [`resource_trigger`], and its labels
/// (a team's `memberSelector` may start or stop selecting it, which changes its roles on
/// targets other than the default).
fn user_trigger<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    resource_trigger(obj).hash(&mut h);
    obj.meta().labels.hash(&mut h);
    Some(h.finish())
}

/// Runs the watch of every `K` of the cluster into a shared store (what the operator never reads
/// dropped, see [`slim`]), retrying with backoff, until the task is aborted.
fn spawn_watch<K>(api: Api<K>, writer: reflector::store::Writer<K>, kind: &'static str) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    spawn_watch_then(api, writer, kind, |_| {})
}

/// [`spawn_watch`], calling `deleted` with each object the watch sees deleted (a shared store's
/// subscribers hear of objects applied only).
fn spawn_watch_then<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    kind: &'static str,
    deleted: impl Fn(&K) + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    tokio::spawn(
        watcher(api, watcher::Config::default()).default_backoff().modify(slim).reflect_shared(writer).for_each(
            move |r| {
                match r {
                    Ok(watcher::Event::Delete(obj)) => deleted(&obj),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, kind, "watch failed; retrying"),
                }
                futures::future::ready(())
            },
        ),
    )
}

/// Waits until `store` holds the first list of its watch (logging while it does not), so that
/// nothing is judged missing that is merely not listed yet.
async fn listed<K>(store: &reflector::Store<K>, kind: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready()).await {
            Ok(r) => return r.with_context(|| format!("the {kind} watch stopped before its first list")),
            Err(_) => tracing::warn!(kind, "still waiting for the first list (may the operator list and watch them?)"),
        }
    }
}

/// The merge patch that adds [`FINALIZER`] to an object of `meta`, computed from that version
/// (it carries the resourceVersion, so a concurrent change fails it with 409 instead of being
/// overwritten); `None` when the object has it or is being deleted.
pub fn finalizer_patch(meta: &ObjectMeta) -> Option<serde_json::Value> {
    let finalizers = meta.finalizers.as_deref().unwrap_or(&[]);
    if meta.deletion_timestamp.is_some() || finalizers.iter().any(|f| f == FINALIZER) {
        return None;
    }
    let mut finalizers = finalizers.to_vec();
    finalizers.push(FINALIZER.to_string());
    Some(serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": meta.resource_version}
    }))
}

/// Adds [`FINALIZER`] when it is missing on an object that is not being deleted, and returns
/// the object as the API server answered, so that the same reconcile goes on to apply it (the
/// finalizer helper of kube-runtime would end the reconcile there and wait for the watch to
/// bring the change back). The patch carries the resourceVersion it was computed from, so a
/// concurrent change to the finalizers fails it (409) instead of being overwritten.
async fn ensure_finalizer<K>(api: &Api<K>, obj: Arc<K>) -> Result<Arc<K>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let Some(patch) = finalizer_patch(obj.meta()) else { return Ok(obj) };
    let patched = api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(Arc::new(patched))
}

/// The reconcile of every controller: makes sure the object carries [`FINALIZER`] (see
/// [`ensure_finalizer`]), then runs `reconcile` with an apply or a cleanup event through
/// kube-runtime's finalizer helper, and records the reconcile's duration under `kind`.
pub async fn reconcile_with_finalizer<K, E, Fut>(
    kind: &str,
    ctx: &Context,
    api: &Api<K>,
    obj: Arc<K>,
    reconcile: impl FnOnce(kube::runtime::finalizer::Event<K>) -> Fut,
) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    E: std::error::Error + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, E>>,
{
    let start = std::time::Instant::now();
    let result = match ensure_finalizer(api, obj).await {
        Ok(obj) => kube::runtime::finalizer::finalizer(api, FINALIZER, obj, reconcile)
            .await
            .map_err(|e| ReconcileError::Finalizer(e.to_string())),
        Err(e) => Err(ReconcileError::Kube(e)),
    };
    ctx.metrics.reconciled(kind, start.elapsed());
    result
}

/// Flags of `scim-operator controller`.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Base URL of the SCIM API, e.g. `http://scim-operator:8080/scim/v2`.
    #[arg(long, env = "SCIM_OPERATOR_SCIM_URL")]
    pub scim_url: String,
    /// File holding the bearer key (re-read when it changes).
    #[arg(long, env = "SCIM_OPERATOR_TOKEN_FILE")]
    pub token_file: std::path::PathBuf,
    /// Trusted namespaces (comma-separated; `*` for all): only their ScimUsers may assign roles
    /// or adopt existing users, only their ManagedTeams may link existing teams, create teams a
    /// RoleMapping names, or add users they do not own. See the README's security model.
    #[arg(long, env = "SCIM_OPERATOR_TRUSTED_NAMESPACES", value_delimiter = ',', default_value = "")]
    pub trusted_namespaces: Vec<String>,
    /// Identity of this cluster in the ownership markers the operator writes
    /// (`k8s:<cluster>/<namespace>/<uid>`). Default: the uid of the `kube-system` namespace.
    /// Set it when that namespace cannot be read, and keep it stable: changing it disowns every
    /// object the operator created.
    #[arg(long, env = "SCIM_OPERATOR_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Reconciles in flight per controller (at least 1). While several namespaces have work,
    /// each may hold at most an equal share of them; a namespace alone may hold them all.
    #[arg(long, env = "SCIM_OPERATOR_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// SCIM requests per second at most.
    #[arg(long, env = "SCIM_OPERATOR_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,
    /// SCIM requests in flight at most.
    #[arg(long, env = "SCIM_OPERATOR_MAX_IN_FLIGHT", default_value_t = 16)]
    pub max_in_flight: usize,
    /// Seconds between resyncs of a healthy resource (drift detection on the SCIM server, and
    /// the refresh of `status.effectiveRoles`); jittered by up to 20%. Every resync costs SCIM
    /// requests: 10,000 ScimUsers every 300 s would be 33 reconciles a second, forever.
    #[arg(long, env = "SCIM_OPERATOR_RESYNC_SECONDS", default_value_t = 3600)]
    pub resync_seconds: u64,
    /// Address of the health and metrics endpoints.
    #[arg(long, env = "SCIM_OPERATOR_METRICS_LISTEN", default_value = "0.0.0.0:8081")]
    pub metrics_listen: SocketAddr,
    /// Elect a leader with a coordination.k8s.io Lease, so several replicas can run.
    #[arg(long, env = "SCIM_OPERATOR_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "SCIM_OPERATOR_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity of this replica in the Lease (default: host name and process id).
    #[arg(long, env = "SCIM_OPERATOR_IDENTITY")]
    pub identity: Option<String>,
    /// Secret holding the bootstrap key (key `token`) in the operator's namespace
    /// (`--operator-namespace`), made by the operator with a random token
    /// when it is missing, so that no manifest carries a generated value (Argo CD renders charts
    /// with `helm template`, which would make a new key at every sync). Unset: the token file is
    /// provided by other means.
    #[arg(long, env = "SCIM_OPERATOR_BOOTSTRAP_KEY_SECRET")]
    pub bootstrap_key_secret: Option<String>,
    /// Any new value replaces the token in `--bootstrap-key-secret` once (recorded on the Secret
    /// as `scim.dev/key-rotation`); the server revokes the key it replaces after its grace period.
    #[arg(long, env = "SCIM_OPERATOR_BOOTSTRAP_KEY_ROTATION", default_value = "")]
    pub bootstrap_key_rotation: String,
    /// Namespace a ClusterScimTarget reads its Secrets from (default: the namespace the
    /// operator runs in, else the kubeconfig's).
    #[arg(long, env = "SCIM_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,
    /// Seconds between probes of a ScimTarget or ClusterScimTarget (discovery and one
    /// authenticated query, two requests); jittered by up to 10%.
    #[arg(long, env = "SCIM_OPERATOR_TARGET_PROBE_SECONDS", default_value_t = 60)]
    pub target_probe_seconds: u64,
    #[command(flatten)]
    pub lease: LeaseArgs,
}

impl ControllerArgs {
    /// The operator's own namespace (ClusterScimTargets' and the bootstrap key's Secrets):
    /// `--operator-namespace`, else the client's default (the namespace the operator runs in, or
    /// the kubeconfig's).
    pub fn operator_namespace(&self, kube: &Client) -> String {
        self.operator_namespace.clone().unwrap_or_else(|| kube.default_namespace().to_string())
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub kube: Client,
    pub scim: ScimClient,
    pub args: ControllerArgs,
    pub metrics: Arc<OperatorMetrics>,
    pub recorder: Recorder,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// ScimUsers as the watch sees them (the facts teams read, see [`user_cache`]), for team
    /// member resolution.
    pub users: reflector::Store<CachedUser>,
    /// ManagedTeams and RoleMappings as the watches see them, for the roles users hold on
    /// targets other than the default ([`target_roles`]).
    pub teams: reflector::Store<ManagedTeam>,
    /// RoleMappings as the watch sees them (see `teams`).
    pub mappings: reflector::Store<RoleMapping>,
    /// The cluster identity in ownership markers.
    pub cluster: String,
    /// Fair shares of the ScimUser workers among namespaces.
    pub user_shares: Arc<fairness::Shares>,
    /// Fair shares of the ManagedTeam workers among namespaces.
    pub team_shares: Arc<fairness::Shares>,
    /// The targets other than the default: one client per target (shared with the target
    /// controller) and the ownership records.
    pub targets: Arc<targets::Targets>,
    /// The ScimUsers' syncs on targets other than the default, one task per user and target.
    pub user_work: Arc<target_work::TargetWork<targets::Outcome>>,
    /// The ManagedTeams' syncs on targets other than the default.
    pub team_work: Arc<target_work::TargetWork<managed_team::TargetSynced>>,
    /// Wakes the ScimUser controller for a user whose target task ended.
    pub wake_user: futures::channel::mpsc::UnboundedSender<ObjectRef<CachedUser>>,
    /// Wakes the ManagedTeam controller for a team whose target task ended.
    pub wake_team: futures::channel::mpsc::UnboundedSender<ObjectRef<ManagedTeam>>,
}

impl Context {
    /// Whether `namespace` is trusted (see [`ControllerArgs::trusted_namespaces`]).
    pub fn trusted(&self, namespace: &str) -> bool {
        self.args.trusted_namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// The owner identity of `obj` on the SCIM server.
    pub fn owner<K: Resource>(&self, obj: &K) -> ownership::Owner {
        let meta = obj.meta();
        ownership::Owner::new(&self.cluster, meta.namespace.as_deref().unwrap_or(""), meta.uid.as_deref().unwrap_or(""))
    }

    /// Delay before retrying a failing object: 1 s doubling to 5 min, or what the server asked.
    pub fn backoff(&self, key: &str, retry_after: Option<Duration>) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
        retry_after.unwrap_or(exp)
    }

    /// Forgets the failures of an object that reconciled.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// The resync interval with jitter, so resources do not resync in lockstep.
    pub fn resync(&self) -> Action {
        Action::requeue(self.resync_wait())
    }

    /// [`Context::resync`] as a duration.
    pub fn resync_wait(&self) -> Duration {
        let base = self.args.resync_seconds.max(1);
        let jitter = rand::random::<u64>() % (base / 5 + 1);
        Duration::from_secs(base + jitter)
    }

    /// When to look again at a refused resource (the owner may have changed): the resync
    /// interval, doubling with each refusal in a row, at most `limit`; a success resets it.
    pub fn refused_retry(&self, key: &str, limit: Duration) -> Action {
        Action::requeue(self.refused_wait(key, limit))
    }

    /// [`Context::refused_retry`] as a duration.
    pub fn refused_wait(&self, key: &str, limit: Duration) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let base = Duration::from_secs(self.args.resync_seconds.max(1));
        base.saturating_mul(1 << (*n - 1).min(8)).min(limit)
    }

    /// Publishes an event about `obj`; failures to publish are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish an event");
        }
    }
}

impl Context {
    /// A Warning event when the Ready reason changed to a failure (once per new reason).
    pub async fn warn_on_new_reason<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        current: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    ) {
        let new = conditions::ready_reason(current);
        if new != conditions::ready_reason(previous) && new != Some(conditions::reason::PROVISIONED) {
            let message =
                current.iter().find(|c| c.type_ == conditions::READY).map(|c| c.message.clone()).unwrap_or_default();
            self.event(obj, true, new.unwrap_or("Failed"), message).await;
        }
    }
}

/// Now, as a Kubernetes timestamp.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Key of an object for backoff bookkeeping: kind, namespace and name (a ScimUser and a
/// ManagedTeam of one name keep separate counts).
pub fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let meta = obj.meta();
    format!("{}/{}/{}", K::kind(&()), meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// The namespace of a namespaced resource (ScimUser, ManagedTeam). The API server always sets
/// it: an object without one is an error, never the namespace "" (whose trust and targets
/// would be judged as if it were a namespace).
pub fn namespace_of<K: Resource<DynamicType = ()>>(obj: &K) -> Result<String, ReconcileError> {
    obj.meta()
        .namespace
        .clone()
        .ok_or_else(|| ReconcileError::Invalid(format!("{} {} has no namespace", K::kind(&()), obj.name_any())))
}

/// The cluster identity: the flag, else the uid of `kube-system`.
async fn cluster_id(kube: &Client, flag: Option<&str>) -> Result<String> {
    if let Some(id) = flag.filter(|s| !s.trim().is_empty()) {
        return Ok(id.trim().to_string());
    }
    let ns: k8s_openapi::api::core::v1::Namespace = Api::all(kube.clone())
        .get("kube-system")
        .await
        .context("reading the uid of namespace kube-system as the cluster identity (or set --cluster-id)")?;
    ns.uid().context("namespace kube-system has no uid; set --cluster-id")
}

/// Errors that end a reconcile without a status (Kubernetes API failures).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("SCIM: {0}")]
    Scim(#[from] crate::client::ClientError),
    #[error("{0}")]
    Invalid(String),
}

impl ReconcileError {
    /// Metric label.
    pub fn class(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kube",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Scim(e) => e.class(),
            ReconcileError::Invalid(_) => "invalid",
        }
    }
}

fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    err: &ReconcileError,
    ctx: Arc<Context>,
    kind: &'static str,
) -> Action {
    ctx.metrics.error(kind, err.class());
    tracing::warn!(kind, object = %key(obj.as_ref()), error = %err, "reconcile failed");
    let retry_after = match err {
        ReconcileError::Scim(e) => conditions::failure(e).retry_after,
        _ => None,
    };
    Action::requeue(ctx.backoff(&key(obj.as_ref()), retry_after))
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(args: ControllerArgs, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    let kube_config =
        kube::Config::infer().await.context("reading the Kubernetes configuration (kubeconfig or in-cluster)")?;
    let kube = Client::try_from(kube_config.clone()).context("connecting to Kubernetes")?;
    let metrics = Arc::new(OperatorMetrics::default());
    let timing = args.lease.timing().map_err(anyhow::Error::msg)?;
    let scim = ScimClient::new(ClientConfig {
        base_url: args.scim_url.clone(),
        token_file: args.token_file.clone(),
        timeout: timing.request_timeout(),
        max_concurrency: args.max_in_flight,
        rate_limit: args.rate_limit,
    })?
    .with_observer(metrics.clone());
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "scim-operator".into()), std::process::id())
    });
    let cluster = cluster_id(&kube, args.cluster_id.as_deref()).await?;
    if let Some(name) = &args.bootstrap_key_secret {
        let namespace = args.operator_namespace(&kube);
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(kube.clone(), &namespace);
        let outcome = bootstrap_secret::ensure(&secrets, name, &args.bootstrap_key_rotation)
            .await
            .with_context(|| format!("making sure the bootstrap key Secret {namespace}/{name} exists"))?;
        tracing::info!(secret = %name, ?outcome, "bootstrap key Secret");
    }
    let health = metrics::serve(args.metrics_listen, metrics.clone()).await?;
    // Ready means able to take over: a standby is Ready as well, or a rolling update of two
    // replicas would wait forever for the one that does not lead.
    metrics.set_ready(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown_task = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let (fence, mut renewal): (crate::client::Fence, _) = if args.leader_election {
        let mut elector = leader::Elector::new(kube.clone(), &args.lease_namespace, "scim-operator", &identity, timing);
        tracing::info!(%identity, "standing by for the leader lease");
        let mut stop = stop_rx.clone();
        tokio::select! {
            _ = elector.acquire() => {},
            _ = stop.changed() => {
                health.abort();
                return Ok(());
            }
        }
        tracing::info!(%identity, "leading");
        // Every SCIM request first checks that the renew deadline has not passed.
        let leadership = elector.leadership();
        let renewal = elector.lead_until(async {
            let _ = release_rx.await;
        });
        (Arc::new(move || leadership.is_leading()), renewal)
    } else {
        (Arc::new(|| true), tokio::spawn(std::future::pending::<Option<leader::Lost>>()))
    };
    let scim = scim.with_fence(fence.clone());
    let ctx_fence = scim.fence();
    // Status, finalizer and event writes are fenced like SCIM requests, within the same timeout
    // (the elector keeps the unfenced client: it must renew).
    let kube = kube::client::ClientBuilder::try_from(kube_config)
        .context("connecting to Kubernetes")?
        .with_layer(&leader::FenceLayer::new(fence, timing.request_timeout()))
        .build();
    metrics.set_leader(true);
    let reporter = Reporter { controller: "scim-operator".into(), instance: Some(identity.clone()) };
    let recorder = Recorder::new(kube.clone(), reporter);
    let users_api: Api<CachedUser> = Api::all(kube.clone());
    // One watch and one store of ScimUsers feed both the ScimUser controller and the teams
    // (their triggers and member resolution). The store holds only the facts these read
    // (`CachedUser`): every ScimUser of the cluster is in it, so whole objects would make the
    // operator's memory grow by several KiB a user. The ScimUser controller reads the whole
    // object when it reconciles one.
    let (users_store, users_writer) = reflector::store_shared(SHARED_BUFFER);
    let own_changes = users_writer.subscribe().context("subscribing to the ScimUser store")?;
    let member_events = users_writer.subscribe().context("subscribing to the ScimUser store")?;
    let users_root = spawn_watch(users_api, users_writer, "ScimUser");
    // ManagedTeams and RoleMappings: one watch and one store each, feeding their controllers
    // and the ScimUsers' roles on other targets (their triggers and computation).
    let (teams_store, teams_writer) = reflector::store_shared(SHARED_BUFFER);
    let team_events = teams_writer.subscribe().context("subscribing to the ManagedTeam store")?;
    let team_role_events = teams_writer.subscribe().context("subscribing to the ManagedTeam store")?;
    let teams_root = spawn_watch(Api::<ManagedTeam>::all(kube.clone()), teams_writer, "ManagedTeam");
    let (mappings_store, mappings_writer) = reflector::store_shared(SHARED_BUFFER);
    let mapping_events = mappings_writer.subscribe().context("subscribing to the RoleMapping store")?;
    let mapping_role_events = mappings_writer.subscribe().context("subscribing to the RoleMapping store")?;
    let mappings_root = spawn_watch(Api::<RoleMapping>::all(kube.clone()), mappings_writer, "RoleMapping");
    // ClusterScimTargets, ScimTargets and the namespaces' labels (metadata only): one watch and
    // one store each, read by the resolution of every resource's targets and by the target
    // controller, so that a reconcile reads no target from the API server.
    let (clusters_store, clusters_writer) = reflector::store_shared(SHARED_BUFFER);
    let cluster_events = clusters_writer.subscribe().context("subscribing to the ClusterScimTarget store")?;
    let cluster_role_events = clusters_writer.subscribe().context("subscribing to the ClusterScimTarget store")?;
    let (scoped_store, scoped_writer) = reflector::store_shared(SHARED_BUFFER);
    let scoped_events = scoped_writer.subscribe().context("subscribing to the ScimTarget store")?;
    let (namespaces_store, namespaces_writer) = reflector::store_shared(SHARED_BUFFER);
    let namespace_user_events = namespaces_writer.subscribe().context("subscribing to the Namespace store")?;
    let namespace_team_events = namespaces_writer.subscribe().context("subscribing to the Namespace store")?;
    let target_stores =
        targets::TargetStores { clusters: clusters_store, scoped: scoped_store, namespaces: namespaces_store };
    let targets = Arc::new(targets::Targets::new(
        kube.clone(),
        target_stores.clone(),
        args.operator_namespace(&kube),
        timing.request_timeout(),
        ctx_fence,
    ));
    // A target deleted: its client forgotten, and (ClusterScimTargets) the users provisioned
    // there reconciled (a shared store's subscribers hear of no deletion).
    let (target_gone, targets_gone) = futures::channel::mpsc::unbounded::<String>();
    let forget = targets.clone();
    let clusters_root =
        spawn_watch_then(Api::<ClusterScimTarget>::all(kube.clone()), clusters_writer, "ClusterScimTarget", move |t| {
            forget.forget(&targets::cache_key(t));
            let _ = target_gone.unbounded_send(t.name_any());
        });
    let forget = targets.clone();
    let scoped_root = spawn_watch_then(Api::<ScimTarget>::all(kube.clone()), scoped_writer, "ScimTarget", move |t| {
        forget.forget(&targets::cache_key(t))
    });
    let namespaces_root = spawn_watch(
        Api::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>::all(kube.clone()),
        namespaces_writer,
        "Namespace",
    );
    // Target tasks that ended wake their resource (see [`target_work`]).
    let (wake_user, user_wakes) = futures::channel::mpsc::unbounded();
    let (wake_team, team_wakes) = futures::channel::mpsc::unbounded();
    let user_work: Arc<target_work::TargetWork<targets::Outcome>> = Arc::default();
    // The controller is triggered only by changes it acts on, not by its own writes.
    let own = ChangeFilter::new(users_store.clone());
    let user_shares = fairness::Shares::new(usize::from(args.concurrency));
    let noted = user_shares.clone();
    // A user's roles on targets other than the default follow its teams, the RoleMappings and
    // who each target trusts: a change of these reconciles the users it may concern, their
    // syncs on those targets due at once.
    let roles = Arc::new(target_roles::RoleTriggers::new(
        users_store.clone(),
        teams_store.clone(),
        mappings_store.clone(),
        user_work.clone(),
    ));
    let (by_team, by_mapping, by_target, by_gone, by_labels) =
        (roles.clone(), roles.clone(), roles.clone(), roles.clone(), roles);
    let team_roles = ChangeFilter::new(teams_store.clone());
    let team_changes = team_role_events.filter(move |t| {
        futures::future::ready(team_roles.changed(t.as_ref(), target_roles::team_trigger(t.as_ref())))
    });
    let mapping_roles = ChangeFilter::new(mappings_store.clone());
    let mapping_changes = mapping_role_events
        .filter(move |m| futures::future::ready(mapping_roles.changed(m.as_ref(), resource_trigger(m.as_ref()))));
    let target_roles = ChangeFilter::new(target_stores.clusters.clone());
    let target_changes = cluster_role_events
        .filter(move |t| futures::future::ready(target_roles.changed(t.as_ref(), resource_trigger(t.as_ref()))));
    let relabelled = user_work.clone();
    let users_controller = Controller::for_shared_stream(
        own_changes.filter(move |u| {
            let changed = own.changed(u.as_ref(), user_trigger(u.as_ref()));
            if changed {
                noted.note(&u.namespace().unwrap_or_default(), std::time::Instant::now());
                // A change of labels alone shows in no generation: the syncs on other targets
                // (whose roles may follow a member selector) are due at once.
                if let Some(uid) = u.uid() {
                    relabelled.expire(&uid);
                }
            }
            futures::future::ready(changed)
        }),
        users_store.clone(),
    )
    .watches_shared_stream(team_changes, move |t: Arc<ManagedTeam>| by_team.of_team(&t))
    .watches_shared_stream(mapping_changes, move |m: Arc<RoleMapping>| by_mapping.of_mapping(&m))
    .watches_shared_stream(target_changes, move |t: Arc<ClusterScimTarget>| by_target.of_target(&t.name_any()))
    .reconcile_on(targets_gone.flat_map(move |name| futures::stream::iter(by_gone.of_target(&name))))
    // A namespace's labels that move its standing on a target (its selectors): the namespace's
    // users naming that target, and the members of its teams naming it (roles may come through
    // them), reconciled at once.
    .watches_shared_stream(namespace_user_events, {
        let changes =
            namespace_labels::LabelChanges::new(target_stores.clusters.clone(), target_stores.namespaces.clone());
        let (users, teams) = (users_store.clone(), teams_store.clone());
        move |n: Arc<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>| {
            let (ns, changed) = changes.of(&n);
            if changed.is_empty() {
                return Vec::new();
            }
            let users = users.state();
            let mut out = by_labels
                .wake(namespace_labels::users_concerned(&ns, &changed, &users).into_iter().map(ObjectRef::from_obj));
            for team in namespace_labels::teams_concerned(&ns, &changed, &teams.state()) {
                out.extend(by_labels.of_team(team));
            }
            out
        }
    });
    let ctx = Arc::new(Context {
        kube: kube.clone(),
        scim,
        args: args.clone(),
        metrics: metrics.clone(),
        recorder,
        failures: Mutex::new(HashMap::new()),
        users: users_store,
        teams: teams_store.clone(),
        mappings: mappings_store.clone(),
        cluster,
        user_shares,
        team_shares: fairness::Shares::new(usize::from(args.concurrency)),
        targets,
        user_work,
        team_work: Arc::default(),
        wake_user,
        wake_team,
    });
    // No target may look missing, nor a namespace unlabelled, because its watch has not listed
    // it yet: the controllers start once the target stores hold their first list.
    let mut stop = stop_rx.clone();
    tokio::select! {
        r = async {
            listed(&target_stores.clusters, "ClusterScimTarget").await?;
            listed(&target_stores.scoped, "ScimTarget").await?;
            listed(&target_stores.namespaces, "Namespace").await
        } => r?,
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    let config = controller::Config::default().concurrency(args.concurrency);
    let stopped = |rx: tokio::sync::watch::Receiver<bool>| async move {
        let mut rx = rx;
        let _ = rx.wait_for(|s| *s).await;
    };

    let users = users_controller
        .with_config(config.clone())
        .reconcile_on(user_wakes)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(scim_user::reconcile, |o, e, c| error_policy(o, e, c, "ScimUser"), ctx.clone())
        .for_each(|_| async {});

    let own_teams = ChangeFilter::new(teams_store.clone());
    let teams_controller = Controller::for_shared_stream(
        team_events
            .filter(move |t| futures::future::ready(own_teams.changed(t.as_ref(), resource_trigger(t.as_ref())))),
        teams_store.clone(),
    );
    // A ScimUser that becomes ready or not (or changes labels or userName, or is deleted, or
    // its entry on a target does) reconciles the teams that may name it, on whichever target
    // (see managed_team::wakes); its other changes do not concern teams.
    let members = ChangeFilter::new(ctx.users.clone());
    let member_changes = member_events
        .filter(move |u| futures::future::ready(members.changed(u.as_ref(), managed_team::member_trigger(u.as_ref()))));
    let trust = ctx.clone();
    let relabelled = ctx.clone();
    let label_changes =
        namespace_labels::LabelChanges::new(target_stores.clusters.clone(), target_stores.namespaces.clone());
    let labelled_teams = teams_store.clone();
    let teams = teams_controller
        // Users of one team often become ready within moments of each other: reconcile the team
        // once they settle rather than once per user.
        .with_config(config.clone().debounce(TEAM_DEBOUNCE))
        .reconcile_on(team_wakes)
        .watches_shared_stream(member_changes, move |user: Arc<CachedUser>| {
            teams_store
                .state()
                .into_iter()
                .filter(|t| {
                    let default_trusted = t.meta().namespace.as_deref().is_some_and(|ns| trust.trusted(ns));
                    managed_team::wakes(t, default_trusted, user.as_ref())
                })
                .map(|t| {
                    // The team's syncs on other targets read the member's record there: due now.
                    if let Some(uid) = t.uid() {
                        trust.team_work.expire(&uid);
                    }
                    ObjectRef::from_obj(t.as_ref())
                })
                .collect::<Vec<_>>()
        })
        // A namespace's labels that move its standing on a target: its teams naming that target,
        // their syncs there due at once.
        .watches_shared_stream(namespace_team_events, move |n| {
            let (ns, changed) = label_changes.of(&n);
            namespace_labels::teams_concerned(&ns, &changed, &labelled_teams.state())
                .into_iter()
                .map(|t| {
                    if let Some(uid) = t.uid() {
                        relabelled.team_work.expire(&uid);
                    }
                    ObjectRef::from_obj(t)
                })
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(managed_team::reconcile, |o, e, c| error_policy(o, e, c, "ManagedTeam"), ctx.clone())
        .for_each(|_| async {});

    let mappings = Controller::for_shared_stream(mapping_events, mappings_store)
        .with_config(config)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(role_mapping::reconcile, |o, e, c| error_policy(o, e, c, "RoleMapping"), ctx.clone())
        .for_each(|_| async {});

    let targets = scim_target::run(ctx.clone(), scoped_events, cluster_events, || stopped(stop_rx.clone()));

    tracing::info!(scim = %args.scim_url, "controllers running");
    tokio::select! {
        _ = futures::future::join4(users, teams, mappings, targets) => {}
        lost = &mut renewal => {
            // The fence is closed already; stop at once (the Deployment restarts the pod as a
            // standby) so that no two replicas write.
            metrics.set_leader(false);
            let why = match lost {
                Ok(Some(lost)) => lost.to_string(),
                Ok(None) => "the lease was released".to_string(),
                Err(e) => format!("the renewal task failed: {e}"),
            };
            anyhow::bail!("stopped leading: {why}");
        }
    }
    // Released only once the controllers have stopped, so a standby never overlaps them.
    let _ = release_tx.send(());
    if tokio::time::timeout(timing.renew_deadline, &mut renewal).await.is_err() {
        renewal.abort();
    }
    shutdown_task.abort();
    users_root.abort();
    teams_root.abort();
    mappings_root.abort();
    clusters_root.abort();
    scoped_root.abort();
    namespaces_root.abort();
    health.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crd::ScimUser;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn user() -> ScimUser {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "scim.dev/v1alpha1", "kind": "ScimUser",
            "metadata": {"name": "alice", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
            "spec": {"userName": "alice@example.com"}
        }))
        .expect("a valid ScimUser")
    }

    fn ready(u: &mut ScimUser, id: &str) {
        u.status = Some(crd::ScimUserStatus {
            scim_id: Some(id.into()),
            conditions: vec![Condition {
                type_: conditions::READY.into(),
                status: "True".into(),
                reason: conditions::reason::PROVISIONED.into(),
                message: String::new(),
                observed_generation: Some(1),
                last_transition_time: now(),
            }],
            ..Default::default()
        });
    }

    #[test]
    fn own_writes_do_not_trigger_a_reconcile() {
        let base = user();
        let mut written = base.clone();
        ready(&mut written, "1");
        written.metadata.finalizers = Some(vec![FINALIZER.into()]);
        written.metadata.resource_version = Some("2".into());
        written.metadata.managed_fields = Some(vec![Default::default()]);
        assert_eq!(resource_trigger(&base), resource_trigger(&written), "status and finalizer writes");

        let mut spec = base.clone();
        spec.metadata.generation = Some(2);
        assert_ne!(resource_trigger(&base), resource_trigger(&spec), "a spec change");
        let mut deleting = base.clone();
        deleting.metadata.deletion_timestamp = Some(now());
        assert_ne!(resource_trigger(&base), resource_trigger(&deleting), "deletion");
        let mut released = base.clone();
        released.metadata.annotations = Some([(RELEASE_ANNOTATION.to_string(), "true".to_string())].into());
        assert_ne!(resource_trigger(&base), resource_trigger(&released), "the release annotation");
    }

    #[test]
    fn teams_hear_of_readiness_labels_and_deletion_only() {
        let pending = user();
        let mut provisioned = pending.clone();
        ready(&mut provisioned, "1");
        assert_ne!(
            managed_team::member_trigger(&user_cache::of(&pending)),
            managed_team::member_trigger(&user_cache::of(&provisioned))
        );
        let mut rewritten = provisioned.clone();
        if let Some(s) = rewritten.status.as_mut() {
            s.effective_roles = vec!["Standard".into()];
        }
        rewritten.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert_eq!(
            managed_team::member_trigger(&user_cache::of(&provisioned)),
            managed_team::member_trigger(&user_cache::of(&rewritten))
        );
        let mut labelled = provisioned.clone();
        labelled.metadata.labels = Some([("team".to_string(), "sre".to_string())].into());
        assert_ne!(
            managed_team::member_trigger(&user_cache::of(&provisioned)),
            managed_team::member_trigger(&user_cache::of(&labelled))
        );
        let mut deleting = provisioned.clone();
        deleting.metadata.deletion_timestamp = Some(now());
        assert_ne!(
            managed_team::member_trigger(&user_cache::of(&provisioned)),
            managed_team::member_trigger(&user_cache::of(&deleting))
        );
    }

    #[test]
    fn change_filter_lets_through_changes_and_new_incarnations_only() {
        let (store, mut writer) = reflector::store::<ScimUser>();
        let filter = ChangeFilter::new(store);
        let mut a = user();
        a.metadata.uid = Some("uid-1".into());
        writer.apply_watcher_event(&watcher::Event::Apply(a.clone()));
        assert!(filter.changed(&a, Some(1)), "first sight");
        assert!(!filter.changed(&a, Some(1)), "nothing changed");
        assert!(filter.changed(&a, Some(2)), "what matters changed");
        // Deleted and made again under the same name: a new uid, so a new object.
        let mut again = a.clone();
        again.metadata.uid = Some("uid-2".into());
        assert!(filter.changed(&again, Some(2)), "a new incarnation with the same hash");
        let mut other = a.clone();
        other.metadata.namespace = Some("other".into());
        assert!(filter.changed(&other, Some(2)), "same name and uid in another namespace");
        assert!(filter.changed(&a, None), "no hash: always through");
    }

    #[test]
    fn the_finalizer_patch_adds_ours_at_the_version_read_and_only_when_missing() {
        let meta = |finalizers: Option<Vec<&str>>, deleting: bool| ObjectMeta {
            resource_version: Some("42".into()),
            finalizers: finalizers.map(|f| f.into_iter().map(String::from).collect()),
            deletion_timestamp: deleting.then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..ObjectMeta::default()
        };
        let added = serde_json::json!({"metadata": {"finalizers": [FINALIZER], "resourceVersion": "42"}});
        let kept = serde_json::json!({"metadata": {"finalizers": ["other/x", FINALIZER], "resourceVersion": "42"}});
        let cases = [
            (meta(None, false), Some(added.clone())),
            (meta(Some(vec![]), false), Some(added)),
            (meta(Some(vec!["other/x"]), false), Some(kept)),
            (meta(Some(vec![FINALIZER]), false), None),
            (meta(None, true), None),
        ];
        for (m, want) in cases {
            assert_eq!(finalizer_patch(&m), want, "{m:?}");
        }
    }

    #[test]
    fn slim_drops_what_is_never_read() {
        let mut u = user();
        u.metadata.managed_fields = Some(vec![Default::default()]);
        u.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{}".to_string()),
                (RELEASE_ANNOTATION.to_string(), "true".to_string()),
            ]
            .into(),
        );
        slim(&mut u);
        assert!(u.metadata.managed_fields.is_none());
        assert_eq!(u.annotations().keys().collect::<Vec<_>>(), [RELEASE_ANNOTATION]);
    }
}
