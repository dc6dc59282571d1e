//! The target controller: `ScimTarget` (namespaced) and `ClusterScimTarget` (cluster-scoped).
//!
//! Each reconcile is a pipeline:
//! 1. **check** (pure): the credentials may name Secrets of one namespace only, the target's own
//!    for a `ScimTarget` and the operator's for a `ClusterScimTarget`; a reference to any other
//!    is refused (`SecretNotAllowed`) before anything is read or sent. A `ClusterScimTarget`'s
//!    namespace selectors must be readable (`InvalidSpec`).
//! 2. **fetch**: the referenced Secret keys, a client built from them (kept while neither the
//!    spec nor the Secrets change, so OAuth tokens are reused), and a probe of the target:
//!    `/ServiceProviderConfig`, then one authenticated one-result query.
//! 3. **decide** (pure): the conditions and capabilities that outcome means.
//! 4. **status**: written only when it says something new (transition times aside).
//!
//! Targets are probed again every `--target-probe-seconds` (a target that went down turns
//! `ScimUnavailable` and recovers by itself) and whenever a Secret they reference changes.
//! Secrets are watched metadata-only and without a cache: the watch carries names and resource
//! versions (never a Secret's data) and only maps a change to the targets naming that Secret;
//! the data is read with one GET of the named Secret when a target reconciles. Secret values
//! and tokens never reach logs, Events or the status: they are hidden from every message that
//! quotes a server's answer.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use super::conditions::{self, Desired, reason};
use super::crd::{ClusterScimTarget, ScimTarget, TargetAccess, TargetEndpoint, TargetStatus, secret_namespace};
use super::targets::{Connection, FetchError};
use super::{ChangeFilter, Context, ReconcileError, now, resource_trigger};
use crate::client::{Capabilities, ClientError, Health};

/// What the two target kinds have in common for this controller.
pub trait TargetKind:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind, for metrics and logs.
    const KIND: &'static str;
    /// Where the target is and how to authenticate.
    fn endpoint(&self) -> &TargetEndpoint;
    /// The status as last written.
    fn target_status(&self) -> Option<&TargetStatus>;
    /// Which namespaces may use the target (cluster targets only).
    fn access(&self) -> Option<&TargetAccess>;
    /// The API of the target's kind where `self` lives.
    fn api_of(&self, client: Client) -> Api<Self>;
}

impl TargetKind for ScimTarget {
    const KIND: &'static str = "ScimTarget";
    fn endpoint(&self) -> &TargetEndpoint {
        &self.spec.endpoint
    }
    fn target_status(&self) -> Option<&TargetStatus> {
        self.status.as_ref()
    }
    fn access(&self) -> Option<&TargetAccess> {
        None
    }
    fn api_of(&self, client: Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
}

impl TargetKind for ClusterScimTarget {
    const KIND: &'static str = "ClusterScimTarget";
    fn endpoint(&self) -> &TargetEndpoint {
        &self.spec.endpoint
    }
    fn target_status(&self) -> Option<&TargetStatus> {
        self.status.as_ref()
    }
    fn access(&self) -> Option<&TargetAccess> {
        Some(&self.spec.namespaces)
    }
    fn api_of(&self, client: Client) -> Api<Self> {
        Api::all(client)
    }
}

/// Shared state of the target controllers.
pub struct TargetContext {
    ctx: Arc<Context>,
    /// The namespace a `ClusterScimTarget` reads its Secrets from.
    operator_namespace: String,
}

// ---- step 1: check (pure)

/// Why a target is refused before anything is read or sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The Ready reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// Checks the spec: every Secret reference may name only `readable` (the one namespace this
/// target reads Secrets from), and a cluster target's selectors must be readable.
pub fn check(endpoint: &TargetEndpoint, access: Option<&TargetAccess>, readable: &str) -> Result<(), Refusal> {
    for r in endpoint.secret_refs() {
        if let Some(ns) = r.namespace.as_deref().filter(|ns| *ns != readable) {
            return Err(Refusal {
                reason: reason::SECRET_NOT_ALLOWED,
                message: format!(
                    "the credentials name Secret {ns}/{}, but this target may read Secrets of namespace {readable} \
                     only; nothing was read and no request was sent",
                    r.name
                ),
            });
        }
    }
    if let Some(access) = access {
        access.check().map_err(|message| Refusal { reason: reason::INVALID_SPEC, message })?;
    }
    Ok(())
}

// ---- step 2: fetch

/// What the fetch step found.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// Refused by the check: nothing read or sent.
    Refused(Refusal),
    /// A referenced Secret or key is missing (or may not be read).
    SecretMissing(String),
    /// The spec cannot make a client (a CA bundle that is not PEM, say).
    Invalid(String),
    /// The target was probed.
    Probed(Health),
}

impl TargetContext {
    /// Builds (or reuses) the target's client through the client cache the resource controllers
    /// share, reading its Secrets again, and probes the target. Also returns the Secret values,
    /// to hide them from messages.
    async fn fetch<K: TargetKind>(&self, obj: &K) -> Result<(Fetched, Vec<String>), FetchError> {
        Ok(match self.ctx.targets.connect(obj, true).await? {
            Connection::Client { client, secrets } => (Fetched::Probed(client.probe().await), secrets.to_vec()),
            Connection::Refused(r) => (Fetched::Refused(r), Vec::new()),
            Connection::SecretMissing(m) => (Fetched::SecretMissing(m), Vec::new()),
            Connection::Invalid(m) => (Fetched::Invalid(m), Vec::new()),
        })
    }
}

// ---- step 3: decide (pure)

/// What the status should say.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Ready, and Reachable and CredentialsValid when the target was probed.
    pub conditions: Vec<Desired>,
    /// What discovery found this time.
    pub capabilities: Option<Capabilities>,
    /// What the target asked for (Retry-After), if anything.
    pub retry_after: Option<Duration>,
    /// Whether to probe again on the timer: not for a refusal of the spec, which only a change
    /// of the spec ends.
    pub recheck: bool,
}

/// The reason of a failed probe step: a refused credential is `CredentialsRejected`, the rest
/// as for every other SCIM request.
fn probe_reason(e: &ClientError) -> &'static str {
    match e {
        ClientError::Unauthorized(_) => reason::CREDENTIALS_REJECTED,
        e => conditions::failure(e).reason,
    }
}

fn retry_after(e: &ClientError) -> Option<Duration> {
    match e {
        ClientError::Unavailable { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// What the outcome of the fetch step means.
pub fn decide(fetched: &Fetched) -> Decision {
    let only_ready = |reason, message: String, recheck| Decision {
        conditions: vec![Desired::not_ready(reason, message)],
        capabilities: None,
        retry_after: None,
        recheck,
    };
    let health = match fetched {
        Fetched::Refused(r) => return only_ready(r.reason, r.message.clone(), false),
        // A Secret may appear (its watch triggers too) or become readable.
        Fetched::SecretMissing(m) => return only_ready(reason::SECRET_MISSING, m.clone(), true),
        Fetched::Invalid(m) => return only_ready(reason::INVALID_SPEC, m.clone(), false),
        Fetched::Probed(h) => h,
    };
    let condition = |type_, status, reason, message: String| Desired { type_, status, reason, message };
    let (reachable, credentials, ready) = match (&health.reachable, &health.credentials) {
        (Err(e), _) => {
            let why = format!("the base URL does not answer as a SCIM server: {e}");
            (
                condition(conditions::REACHABLE, false, probe_reason(e), why.clone()),
                condition(
                    conditions::CREDENTIALS_VALID,
                    false,
                    probe_reason(e),
                    "not checked: the base URL does not answer".into(),
                ),
                Desired::not_ready(probe_reason(e), why),
            )
        }
        (Ok(()), Err(e)) => {
            let why = match e {
                ClientError::Unauthorized(_) => format!("the target refused the credentials: {e}"),
                e => format!("an authenticated query failed: {e}"),
            };
            (
                condition(conditions::REACHABLE, true, reason::ANSWERED, String::new()),
                condition(conditions::CREDENTIALS_VALID, false, probe_reason(e), why.clone()),
                Desired::not_ready(probe_reason(e), why),
            )
        }
        (Ok(()), Ok(())) => (
            condition(conditions::REACHABLE, true, reason::ANSWERED, String::new()),
            condition(conditions::CREDENTIALS_VALID, true, reason::ACCEPTED, String::new()),
            Desired {
                type_: conditions::READY,
                status: true,
                reason: reason::CONNECTED,
                message: "the target answers and accepts the credentials".into(),
            },
        ),
    };
    let retry_after = health.reachable.as_ref().err().or(health.credentials.as_ref().err()).and_then(retry_after);
    Decision {
        conditions: vec![ready, reachable, credentials],
        capabilities: health.capabilities.clone(),
        retry_after,
        recheck: true,
    }
}

// ---- step 4: status

/// The status to write: the decision's conditions merged into the previous ones (transition
/// times kept), with capabilities from this probe, else the last known ones of the same
/// generation. Messages are cleared of `secrets`.
fn status_of(
    decision: Decision,
    previous: &TargetStatus,
    generation: Option<i64>,
    secrets: &[String],
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> TargetStatus {
    let mut wanted = decision.conditions;
    for d in &mut wanted {
        d.message = crate::redact::hide_secrets(&d.message, secrets.iter().map(String::as_str));
    }
    let kept = previous.capabilities.clone().filter(|_| previous.observed_generation == generation);
    TargetStatus {
        observed_generation: generation,
        capabilities: decision.capabilities.or(kept),
        conditions: conditions::merge(&previous.conditions, &wanted, generation, now),
    }
}

/// Whether two statuses say the same, transition times aside.
fn same(a: &TargetStatus, b: &TargetStatus) -> bool {
    a.observed_generation == b.observed_generation
        && a.capabilities == b.capabilities
        && conditions::same(&a.conditions, &b.conditions)
}

/// When to probe again: the probe interval (jittered by up to 10 %, so targets do not probe in
/// lockstep), at least what the target asked for; a refusal waits for a change of the spec.
fn next(decision: &Decision, interval: Duration) -> Action {
    if !decision.recheck {
        return Action::await_change();
    }
    let jitter = Duration::from_millis(rand::random::<u64>() % (interval.as_millis() as u64 / 10 + 1));
    Action::requeue((interval + jitter).max(decision.retry_after.unwrap_or_default()))
}

/// Reconciles one target.
async fn reconcile<K: TargetKind>(obj: Arc<K>, tc: Arc<TargetContext>) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    let namespace = obj.namespace();
    let readable = secret_namespace(namespace.as_deref(), &tc.operator_namespace).to_string();
    // Checked here as well as when connecting: a refused spec never reaches the client cache.
    let (fetched, secrets) = match check(obj.endpoint(), obj.access(), &readable) {
        Err(refusal) => (Fetched::Refused(refusal), Vec::new()),
        Ok(()) => tc.fetch(obj.as_ref()).await.map_err(|e| ReconcileError::Invalid(e.to_string()))?,
    };
    let decision = decide(&fetched);
    let action = next(&decision, Duration::from_secs(tc.ctx.args.target_probe_seconds.max(1)));
    let previous = obj.target_status().cloned().unwrap_or_default();
    let status = status_of(decision, &previous, obj.meta().generation, &secrets, &now());
    let new_reason = conditions::ready_reason(&status.conditions);
    if new_reason != conditions::ready_reason(&previous.conditions)
        && let Some(r) = new_reason.filter(|r| conditions::progress(r) != conditions::Progress::Done)
    {
        let message = status.conditions.iter().find(|c| c.type_ == conditions::READY).map(|c| c.message.clone());
        tc.ctx.event(obj.as_ref(), true, r, message.unwrap_or_default()).await;
    }
    if !same(&previous, &status) {
        let api = obj.api_of(tc.ctx.kube.clone());
        let patch = json!({"status": status});
        api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    tc.ctx.metrics.reconciled(K::KIND, started.elapsed());
    Ok(action)
}

fn error_policy<K: TargetKind>(obj: Arc<K>, err: &ReconcileError, tc: Arc<TargetContext>) -> Action {
    super::error_policy(obj, err, tc.ctx.clone(), K::KIND)
}

/// The targets of `store` that read the Secret `namespace`/`name`.
fn naming<K: TargetKind>(
    store: &reflector::Store<K>,
    operator_ns: &str,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<K>> {
    store
        .state()
        .iter()
        .filter(|t| secret_namespace(t.namespace().as_deref(), operator_ns) == namespace)
        .filter(|t| t.endpoint().secret_refs().iter().any(|r| r.name == name))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// One controller of `K`: the operator's store of `K` (shared with the resolution of resources'
/// targets, see [`super::targets::TargetStores`]) and its `events`, reconciled on spec changes,
/// not its own status writes; Secret changes of `secrets` mapped to the targets naming them;
/// probes on a timer.
fn controller<K: TargetKind>(
    tc: Arc<TargetContext>,
    store: reflector::Store<K>,
    events: ReflectHandle<K>,
    secrets: Api<PartialObjectMeta<Secret>>,
    stop: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    let own = ChangeFilter::new(store.clone());
    let changes = events.filter(move |t| futures::future::ready(own.changed(t.as_ref(), resource_trigger(t.as_ref()))));
    let operator_ns = tc.operator_namespace.clone();
    let targets = store.clone();
    let secret_changes = watcher(secrets, watcher::Config::default()).default_backoff().touched_objects();
    Controller::for_shared_stream(changes, store)
        .watches_stream(secret_changes, move |s: PartialObjectMeta<Secret>| {
            naming(&targets, &operator_ns, &s.namespace().unwrap_or_default(), &s.name_any())
        })
        .with_config(controller::Config::default().concurrency(4))
        .graceful_shutdown_on(stop)
        .run(reconcile::<K>, error_policy::<K>, tc)
        .for_each(|_| async {})
}

/// Runs both target controllers until `stop` resolves, on the target stores of `ctx` and these
/// subscriptions to them. Secrets are watched metadata-only: across the cluster for
/// `ScimTarget`s, in the operator's namespace for `ClusterScimTarget`s.
pub async fn run<S>(
    ctx: Arc<Context>,
    scoped: ReflectHandle<ScimTarget>,
    clusters: ReflectHandle<ClusterScimTarget>,
    stop: impl Fn() -> S,
) where
    S: std::future::Future<Output = ()> + Send + Sync + 'static,
{
    let operator_namespace = ctx.targets.operator_namespace().to_string();
    let kube = ctx.kube.clone();
    let stores = ctx.targets.stores.clone();
    let tc = Arc::new(TargetContext { ctx, operator_namespace });
    let namespaced = controller(tc.clone(), stores.scoped, scoped, Api::all(kube.clone()), stop());
    let cluster =
        controller(tc.clone(), stores.clusters, clusters, Api::namespaced(kube, &tc.operator_namespace), stop());
    futures::future::join(namespaced, cluster).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Profile;
    use crate::operator::crd::{NamespaceSet, OAuthClientCredentials, SecretKeyRef, TargetCredentials};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, Time};

    fn key(name: &str, namespace: Option<&str>) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: "token".into(), namespace: namespace.map(str::to_string) }
    }

    fn bearer(r: SecretKeyRef) -> TargetEndpoint {
        TargetEndpoint {
            base_url: "https://scim.example/scim/v2".into(),
            profile: Profile::Generic,
            credentials: TargetCredentials { bearer_token: Some(r), oauth2: None },
            ..Default::default()
        }
    }

    fn oauth(id: SecretKeyRef, secret: SecretKeyRef) -> TargetEndpoint {
        let grant = OAuthClientCredentials {
            token_url: "https://sso.example/token".into(),
            client_id: id,
            client_secret: secret,
            ..Default::default()
        };
        TargetEndpoint {
            credentials: TargetCredentials { bearer_token: None, oauth2: Some(grant) },
            ..bearer(key("unused", None))
        }
    }

    #[test]
    fn secrets_of_another_namespace_are_refused_before_anything_is_read() {
        let bad_selector = TargetAccess {
            allowed: NamespaceSet {
                names: vec![],
                selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "tier".into(),
                        operator: "Near".into(),
                        values: None,
                    }]),
                    ..Default::default()
                }),
            },
            trusted: NamespaceSet::default(),
        };
        let cases: Vec<(TargetEndpoint, Option<&TargetAccess>, Option<&str>)> = vec![
            (bearer(key("t", None)), None, None),
            (bearer(key("t", Some("team-a"))), None, None),
            (bearer(key("t", Some("kube-system"))), None, Some(reason::SECRET_NOT_ALLOWED)),
            (oauth(key("kc", None), key("kc", Some("prod"))), None, Some(reason::SECRET_NOT_ALLOWED)),
            (oauth(key("kc", Some("team-a")), key("kc", None)), None, None),
            (bearer(key("t", None)), Some(&bad_selector), Some(reason::INVALID_SPEC)),
        ];
        for (endpoint, access, want) in cases {
            let got = check(&endpoint, access, "team-a");
            assert_eq!(got.as_ref().err().map(|r| r.reason), want, "{endpoint:?}");
            if let Err(r) = got
                && r.reason == reason::SECRET_NOT_ALLOWED
            {
                assert!(r.message.contains("may read Secrets of namespace team-a only"), "{}", r.message);
            }
        }
    }

    fn brief(d: &Decision) -> Vec<(&'static str, bool, &'static str)> {
        d.conditions.iter().map(|c| (c.type_, c.status, c.reason)).collect()
    }

    #[test]
    fn each_outcome_has_its_conditions() {
        use conditions::{CREDENTIALS_VALID as C, REACHABLE as A, READY as R};
        let down = ClientError::Unavailable { message: "connection refused".into(), retry_after: None };
        let busy = ClientError::Unavailable { message: "429".into(), retry_after: Some(Duration::from_secs(90)) };
        let refused = ClientError::Unauthorized("401 Unauthorized: bad token".into());
        let caps = Capabilities::assumed();
        let health = |reachable, credentials, capabilities| Health { reachable, credentials, capabilities };
        let not_allowed = Refusal { reason: reason::SECRET_NOT_ALLOWED, message: "x".into() };
        type Brief = (&'static str, bool, &'static str);
        let cases: Vec<(Fetched, Vec<Brief>, Option<Duration>)> = vec![
            (Fetched::Refused(not_allowed), vec![(R, false, reason::SECRET_NOT_ALLOWED)], None),
            (Fetched::SecretMissing("no key".into()), vec![(R, false, reason::SECRET_MISSING)], None),
            (Fetched::Invalid("not PEM".into()), vec![(R, false, reason::INVALID_SPEC)], None),
            (
                Fetched::Probed(health(Ok(()), Ok(()), Some(caps.clone()))),
                vec![(R, true, reason::CONNECTED), (A, true, reason::ANSWERED), (C, true, reason::ACCEPTED)],
                None,
            ),
            (
                Fetched::Probed(health(Ok(()), Err(refused.clone()), None)),
                vec![
                    (R, false, reason::CREDENTIALS_REJECTED),
                    (A, true, reason::ANSWERED),
                    (C, false, reason::CREDENTIALS_REJECTED),
                ],
                None,
            ),
            (
                Fetched::Probed(health(Err(down.clone()), Err(down), None)),
                vec![
                    (R, false, reason::SCIM_UNAVAILABLE),
                    (A, false, reason::SCIM_UNAVAILABLE),
                    (C, false, reason::SCIM_UNAVAILABLE),
                ],
                None,
            ),
            (
                Fetched::Probed(health(Ok(()), Err(busy), Some(caps))),
                vec![
                    (R, false, reason::SCIM_UNAVAILABLE),
                    (A, true, reason::ANSWERED),
                    (C, false, reason::SCIM_UNAVAILABLE),
                ],
                Some(Duration::from_secs(90)),
            ),
        ];
        for (fetched, want, retry) in cases {
            let d = decide(&fetched);
            assert_eq!(brief(&d), want, "{fetched:?}");
            assert_eq!(d.retry_after, retry, "{fetched:?}");
        }
    }

    #[test]
    fn refusals_wait_for_a_change_and_the_rest_is_probed_again() {
        let interval = Duration::from_secs(60);
        let refused = decide(&Fetched::Refused(Refusal { reason: reason::SECRET_NOT_ALLOWED, message: "x".into() }));
        assert_eq!(next(&refused, interval), Action::await_change());
        let missing = decide(&Fetched::SecretMissing("x".into()));
        assert_ne!(next(&missing, interval), Action::await_change(), "a Secret may appear; its watch also triggers");
        let invalid = decide(&Fetched::Invalid("the CA bundle is not PEM".into()));
        assert_eq!(next(&invalid, interval), Action::await_change());
        // A 400 to the probe stalls (kstatus) but is the target's answer: probed again.
        let bad = ClientError::BadRequest { scim_type: None, detail: "no".into() };
        let rejected =
            decide(&Fetched::Probed(Health { reachable: Ok(()), credentials: Err(bad), capabilities: None }));
        assert_ne!(next(&rejected, interval), Action::await_change());
        let busy = ClientError::Unavailable { message: "429".into(), retry_after: Some(Duration::from_secs(600)) };
        let limited = decide(&Fetched::Probed(Health {
            reachable: Err(busy.clone()),
            credentials: Err(busy),
            capabilities: None,
        }));
        assert_eq!(next(&limited, interval), Action::requeue(Duration::from_secs(600)), "Retry-After is honoured");
    }

    #[test]
    fn the_status_hides_secrets_and_keeps_what_discovery_found() {
        let t = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(1_767_225_600 + s).unwrap());
        let up = Health { reachable: Ok(()), credentials: Ok(()), capabilities: Some(Capabilities::assumed()) };
        let first = status_of(decide(&Fetched::Probed(up)), &TargetStatus::default(), Some(1), &[], &t(0));
        assert_eq!(first.capabilities, Some(Capabilities::assumed()));
        let echoed = ClientError::Unauthorized("401: token s3cr3t is not valid".into());
        let rejected = Health { reachable: Ok(()), credentials: Err(echoed), capabilities: None };
        let second = status_of(decide(&Fetched::Probed(rejected)), &first, Some(1), &["s3cr3t".into()], &t(5));
        assert!(second.conditions.iter().all(|c| !c.message.contains("s3cr3t")), "{:?}", second.conditions);
        assert!(second.conditions.iter().any(|c| c.message.contains("token *** is not valid")));
        assert_eq!(second.capabilities, Some(Capabilities::assumed()), "kept from the last probe of this generation");
        let reachable = |s: &TargetStatus| s.conditions.iter().find(|c| c.type_ == conditions::REACHABLE).cloned();
        assert_eq!(reachable(&second).map(|c| c.last_transition_time), Some(t(0)), "Reachable held since t0");
        let kinds: Vec<&str> = second.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            kinds,
            [
                conditions::READY,
                conditions::REACHABLE,
                conditions::CREDENTIALS_VALID,
                conditions::RECONCILING,
                conditions::STALLED
            ]
        );
        let respec = status_of(decide(&Fetched::SecretMissing("x".into())), &second, Some(2), &[], &t(9));
        assert_eq!(respec.capabilities, None, "a new generation may name another server");
        assert!(
            same(
                &second,
                &status_of(
                    decide(&Fetched::Probed(Health {
                        reachable: Ok(()),
                        credentials: Err(ClientError::Unauthorized("401: token s3cr3t is not valid".into())),
                        capabilities: None
                    })),
                    &second,
                    Some(1),
                    &["s3cr3t".into()],
                    &t(60)
                )
            ),
            "only time passed"
        );
    }

    #[test]
    fn secret_changes_reach_the_targets_that_read_them() {
        let (store, mut writer) = reflector::store::<ScimTarget>();
        let target = |ns: &str, name: &str, secret: &str| {
            let mut t =
                ScimTarget::new(name, super::super::crd::ScimTargetSpec { endpoint: bearer(key(secret, None)) });
            t.metadata.namespace = Some(ns.into());
            t
        };
        for t in [target("a", "one", "tok"), target("a", "two", "other"), target("b", "three", "tok")] {
            writer.apply_watcher_event(&watcher::Event::Apply(t));
        }
        let names = |ns: &str, secret: &str| -> Vec<String> {
            naming(&store, "ops", ns, secret).into_iter().map(|r| r.name).collect()
        };
        assert_eq!(names("a", "tok"), ["one"]);
        assert_eq!(names("b", "tok"), ["three"]);
        assert!(names("ops", "tok").is_empty(), "a namespaced target never reads the operator's namespace");
        let (cstore, mut cwriter) = reflector::store::<ClusterScimTarget>();
        let cluster = ClusterScimTarget::new(
            "default",
            super::super::crd::ClusterScimTargetSpec {
                endpoint: bearer(key("tok", None)),
                namespaces: TargetAccess::default(),
            },
        );
        cwriter.apply_watcher_event(&watcher::Event::Apply(cluster));
        assert_eq!(naming(&cstore, "ops", "ops", "tok").len(), 1);
        assert!(naming(&cstore, "ops", "a", "tok").is_empty());
    }
}
