//! Leader election with a coordination.k8s.io/v1 Lease: one replica reconciles, the others
//! wait (and report Ready: readiness is not leadership).
//!
//! Expiry is judged the way client-go judges it: a candidate keeps the holder's record as it
//! last read it and the instant, on its own monotonic clock, at which that record last changed;
//! the lease is free once the record has not changed for the holder's `leaseDurationSeconds`.
//! The holder's `renewTime` is never compared with the local wall clock, so skewed clocks on
//! different nodes cannot make two replicas lead at once.
//!
//! The leader in turn leads only until `renew_deadline` (shorter than the lease duration) after
//! the start of its last successful renewal, measured on its monotonic clock: every SCIM request
//! and every Kubernetes write is fenced by [`Leadership::is_leading`], and once the deadline has
//! passed the process stops.
//!
//! The fence is checked before a request is sent, so a request must also be over before a
//! standby may take over: every SCIM request and Kubernetes write runs under
//! [`Timing::request_timeout`], shorter than the margin between the renew deadline and the
//! lease duration. A request sent just before the deadline thus ends (or is abandoned) before
//! the earliest takeover. The SCIM client also tells the server that instant (see
//! [`crate::scim::DEADLINE_HEADER`]), so a request held up on the network is refused by the
//! server rather than applied after the client gave up on it.
//!
//! A Lease that is missing is treated like a record nobody renews: a candidate creates it only
//! once it has seen it missing for a lease duration, because a deleted Lease says nothing
//! about whether its last holder has stopped. Only a replica that leads re-creates it at once.
//!
//! Written by hand because the maintained crates do not fit: kube-lease-manager 0.13 (built for
//! kube 5) and kubert 0.25 (built for kube 1.1, so not even usable here) both call a lease
//! expired when `renewTime + leaseDurationSeconds` is before the local wall clock.

use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Flags of the election's timing (`scim-operator controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// Seconds a standby waits, after the leader's Lease record stopped changing, before it
    /// takes over (measured on the standby's own clock).
    #[arg(long, env = "SCIM_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Seconds the leader goes on reconciling without a successful renewal before it stops
    /// (the process exits); shorter than the lease duration. Every SCIM request and Kubernetes
    /// write times out after three quarters of the difference between the two.
    #[arg(long, env = "SCIM_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub lease_renew_deadline_seconds: u64,
    /// Seconds between attempts to acquire or renew the Lease; shorter than the renew deadline.
    #[arg(long, env = "SCIM_OPERATOR_LEASE_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    pub lease_retry_period_seconds: u64,
}

impl Default for LeaseArgs {
    fn default() -> Self {
        Self { lease_duration_seconds: 15, lease_renew_deadline_seconds: 10, lease_retry_period_seconds: 2 }
    }
}

impl LeaseArgs {
    /// The checked timing.
    pub fn timing(&self) -> Result<Timing, String> {
        Timing::new(
            Duration::from_secs(self.lease_duration_seconds),
            Duration::from_secs(self.lease_renew_deadline_seconds),
            Duration::from_secs(self.lease_retry_period_seconds),
        )
    }
}

/// Durations of the election, checked to be safe together (see [`Timing::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long candidates wait after the holder's record stopped changing.
    pub lease_duration: Duration,
    /// How long the leader keeps leading after the start of its last successful renewal.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Timing {
    /// Checks `lease_duration > renew_deadline > retry_period > 0`: a leader must stop before
    /// any candidate may take over, and must get more than one attempt to renew in time.
    pub fn new(lease_duration: Duration, renew_deadline: Duration, retry_period: Duration) -> Result<Self, String> {
        if retry_period.is_zero() {
            return Err("the lease retry period must be positive".into());
        }
        if renew_deadline <= retry_period {
            return Err(format!(
                "the lease renew deadline ({renew_deadline:?}) must be longer than the retry period ({retry_period:?})"
            ));
        }
        if lease_duration <= renew_deadline {
            return Err(format!(
                "the lease duration ({lease_duration:?}) must be longer than the renew deadline ({renew_deadline:?})"
            ));
        }
        if lease_duration.as_secs() == 0 || lease_duration.as_secs() > i32::MAX as u64 {
            return Err(format!("the lease duration ({lease_duration:?}) must be a whole number of seconds"));
        }
        Ok(Self { lease_duration, renew_deadline, retry_period })
    }

    /// Timeout of every SCIM request and Kubernetes write of the leader: three quarters of the
    /// margin between the renew deadline and the lease duration. A request that passed the fence
    /// just before the renew deadline is over before a standby may take over (the last quarter
    /// is slack for clock rates and the instants between the check and the send).
    pub fn request_timeout(&self) -> Duration {
        (self.lease_duration - self.renew_deadline) * 3 / 4
    }

    /// Timeout of one Lease API call: half the renew deadline, so at least two attempts fit in
    /// it (a leader further caps it by the time it has left, see [`Leadership::remaining`]).
    pub fn call_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// The holder's record as a candidate last read it, and when (on the candidate's monotonic
/// clock) the record last changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    record: LeaseSpec,
    changed_at: Instant,
}

impl Observation {
    /// Notes `record` read at `now`: the clock restarts only when the record differs from the
    /// one observed before (any field: holder, renewTime, duration, transitions).
    pub fn observe(previous: Option<Observation>, record: LeaseSpec, now: Instant) -> Observation {
        match previous {
            Some(p) if p.record == record => p,
            _ => Observation { record, changed_at: now },
        }
    }
}

/// What a replica may do with the lease as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The record names this replica: renew it.
    Ours,
    /// No holder, or the holder's record has not changed for its lease duration: take it.
    Free,
    /// Someone else holds it; look again no later than this instant.
    Held { holder: String, until: Instant },
}

/// The expiry judgement: pure, with time passed in. A record without a duration counts with
/// `fallback` (this replica's own lease duration).
pub fn judge(observed: &Observation, identity: &str, fallback: Duration, now: Instant) -> Verdict {
    let holder = observed.record.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() {
        return Verdict::Free;
    }
    if holder == identity {
        return Verdict::Ours;
    }
    let duration = observed
        .record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(fallback, Duration::from_secs);
    let until = observed.changed_at + duration;
    if now >= until { Verdict::Free } else { Verdict::Held { holder: holder.to_string(), until } }
}

/// Whether this replica leads, as every SCIM request asks before it is sent. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Leadership {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Leadership {
    fn extend_to(&self, until: Instant) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    fn end(&self) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Time left before the renew deadline, or `None` when not (or no longer) leading.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        let until = (*self.until.lock().unwrap_or_else(|e| e.into_inner()))?;
        (now < until).then(|| until - now)
    }

    /// True while the renew deadline has not passed.
    pub fn is_leading(&self) -> bool {
        self.remaining(Instant::now()).is_some()
    }
}

/// Why the leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error("the lease was not renewed within the renew deadline ({0:?})")]
    DeadlinePassed(Duration),
    #[error("the lease is held by {0}")]
    TakenBy(String),
}

/// Outcome of one attempt.
enum Attempt {
    Leading,
    Held {
        holder: String,
        until: Instant,
    },
    /// Someone wrote the lease between our read and our write: read again.
    Raced,
}

/// One replica's side of the election for one Lease.
pub struct Elector {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observation>,
    /// When this replica first found the Lease missing (since it last saw one).
    missing_since: Option<Instant>,
    leadership: Leadership,
}

/// What to do about a Lease that does not exist: the leader re-creates it at once (it holds the
/// lease by right until its deadline); a candidate waits until it has seen it missing for a lease
/// duration, as it would wait for a record that stopped changing.
fn missing_lease(leading: bool, missing_since: Instant, lease_duration: Duration, now: Instant) -> Verdict {
    let until = missing_since + lease_duration;
    if leading || now >= until { Verdict::Free } else { Verdict::Held { holder: "(no Lease)".into(), until } }
}

impl Elector {
    /// A candidate `identity` for the lease `name` in `namespace`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            observed: None,
            missing_since: None,
            leadership: Leadership::default(),
        }
    }

    /// The fence every SCIM request checks.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Runs one Lease API call with a timeout: the call timeout, or less when leading and the
    /// renew deadline is closer.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> anyhow::Result<T> {
        let mut limit = self.timing.call_timeout();
        if let Some(left) = self.leadership.remaining(Instant::now()) {
            limit = limit.min(left);
        }
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(|e| anyhow::anyhow!("{what} the Lease {}: {e}", self.name)),
            Err(_) => anyhow::bail!("{what} the Lease {} took longer than {limit:?}", self.name),
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(self.identity.as_str()));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_seconds()),
            acquire_time: if ours { previous.and_then(|p| p.acquire_time.clone()) } else { Some(MicroTime(now)) },
            // Written for people and for client-go peers; this implementation never reads it
            // as a time, only as part of the record that must change.
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || previous.is_none() { transitions } else { transitions + 1 }),
            ..Default::default()
        }
    }

    /// Reads the lease and, when it is ours or free, writes it (a compare-and-swap on the
    /// resourceVersion read).
    async fn attempt(&mut self) -> anyhow::Result<Attempt> {
        let Some(mut lease) = self.call("reading", self.api.get_opt(&self.name)).await? else {
            let now = Instant::now();
            self.observed = None;
            let since = *self.missing_since.get_or_insert(now);
            let leading = self.leadership.is_leading();
            if let Verdict::Held { holder, until } = missing_lease(leading, since, self.timing.lease_duration, now) {
                return Ok(Attempt::Held { holder, until });
            }
            let lease = LeaseObject {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                spec: Some(self.spec(None, Timestamp::now())),
            };
            return match self.api_create(&lease).await? {
                true => Ok(Attempt::Leading),
                false => Ok(Attempt::Raced),
            };
        };
        self.missing_since = None;
        // Observed when the answer arrived (as client-go does), not when the request was sent:
        // the holder may have written its renewal while our read was on its way, and a clock
        // started before that write would expire the lease early.
        let now = Instant::now();
        let record = lease.spec.clone().unwrap_or_default();
        let observed = Observation::observe(self.observed.take(), record.clone(), now);
        let verdict = judge(&observed, &self.identity, self.timing.lease_duration, now);
        self.observed = Some(observed);
        if let Verdict::Held { holder, until } = verdict {
            return Ok(Attempt::Held { holder, until });
        }
        lease.spec = Some(self.spec(Some(&record), Timestamp::now()));
        let replaced = self.call("writing", async {
            match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        });
        Ok(if replaced.await? { Attempt::Leading } else { Attempt::Raced })
    }

    async fn api_create(&self, lease: &LeaseObject) -> anyhow::Result<bool> {
        self.call("creating", async {
            match self.api.create(&PostParams::default(), lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Waits until this replica leads; afterwards [`Elector::leadership`] says so.
    pub async fn acquire(&mut self) {
        loop {
            let started = Instant::now();
            let pause = match self.attempt().await {
                Ok(Attempt::Leading) => {
                    self.leadership.extend_to(started + self.timing.renew_deadline);
                    return;
                }
                // Look again when the holder's time runs out, if that comes before the next retry,
                // so a standby takes over within one lease duration of the record's last change
                // plus the delay of observing it.
                Ok(Attempt::Held { until, .. }) => {
                    until.saturating_duration_since(Instant::now()).min(self.timing.retry_period)
                }
                Ok(Attempt::Raced) => self.timing.retry_period,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election");
                    self.timing.retry_period
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Renews every retry period while leading; returns when leadership is lost (the renew
    /// deadline passed without a successful renewal, or another replica holds the lease). The
    /// fence is closed before this returns, and closes by itself at the deadline.
    pub async fn keep_leading(&mut self) -> Lost {
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            // Checked before anything else: after a pause (SIGSTOP, a stalled node) the deadline
            // may have passed long ago, and then a renewal must not be attempted.
            if !self.leadership.is_leading() {
                self.leadership.end();
                return Lost::DeadlinePassed(self.timing.renew_deadline);
            }
            let started = Instant::now();
            match self.attempt().await {
                Ok(Attempt::Leading) => self.leadership.extend_to(started + self.timing.renew_deadline),
                Ok(Attempt::Held { holder, .. }) => {
                    self.leadership.end();
                    return Lost::TakenBy(holder);
                }
                Ok(Attempt::Raced) => {}
                Err(e) => tracing::warn!(error = %e, "renewing the lease"),
            }
        }
    }

    /// Renews in a task of its own until leadership is lost (`Some`) or `stop` resolves; then
    /// the lease is released so a standby takes over at once (`None`).
    pub fn lead_until(
        mut self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Option<Lost>> {
        tokio::spawn(async move {
            tokio::select! {
                lost = self.keep_leading() => Some(lost),
                _ = stop => {
                    self.release().await;
                    None
                }
            }
        })
    }

    /// Gives the lease up on a clean shutdown, so a standby takes over at once.
    async fn release(&mut self) {
        self.leadership.end();
        let Ok(Some(mut lease)) = self.call("reading", self.api.get_opt(&self.name)).await else { return };
        let Some(spec) = lease.spec.as_mut().filter(|s| s.holder_identity.as_deref() == Some(&self.identity)) else {
            return;
        };
        spec.holder_identity = None;
        if let Err(e) = self.call("releasing", self.api.replace(&self.name, &PostParams::default(), &lease)).await {
            tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires");
        }
    }
}

/// Closes the fence on Kubernetes writes: a tower layer for the operator's Kubernetes client
/// that refuses every request but a read (`GET`, `HEAD`) while `fence` answers false, and gives
/// every write `timeout`, so that status, finalizer and event writes are fenced like SCIM
/// requests. Reads (watches included) pass untouched: they change nothing.
#[derive(Clone)]
pub struct FenceLayer {
    fence: crate::client::Fence,
    timeout: Duration,
}

impl FenceLayer {
    /// Fences writes with `fence`, each limited to `timeout`.
    pub fn new(fence: crate::client::Fence, timeout: Duration) -> Self {
        Self { fence, timeout }
    }
}

impl<S> tower::Layer<S> for FenceLayer {
    type Service = Fenced<S>;
    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced { inner, layer: self.clone() }
    }
}

/// The service of [`FenceLayer`].
#[derive(Clone)]
pub struct Fenced<S> {
    inner: S,
    layer: FenceLayer,
}

impl<S, B> tower::Service<http::Request<B>> for Fenced<S>
where
    S: tower::Service<http::Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<tower::BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, tower::BoxError>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures::FutureExt as _;
        let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
        if read {
            return self.inner.call(req).map(|r| r.map_err(Into::into)).boxed();
        }
        if !(self.layer.fence)() {
            let refused = format!("this replica no longer leads; {} {} not sent", req.method(), req.uri().path());
            return futures::future::ready(Err(refused.into())).boxed();
        }
        let (timeout, what) = (self.layer.timeout, format!("{} {}", req.method(), req.uri().path()));
        let sent = self.inner.call(req);
        async move {
            match tokio::time::timeout(timeout, sent).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(format!("{what} took longer than {timeout:?} and was abandoned").into()),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("a valid time"))),
            ..Default::default()
        }
    }

    const OWN: Duration = Duration::from_secs(15);

    #[test]
    fn a_record_that_keeps_changing_never_expires() {
        let t0 = Instant::now();
        let mut obs = Observation::observe(None, record("a", 100), t0);
        for i in 1..=5u64 {
            let now = t0 + Duration::from_secs(8 * i);
            obs = Observation::observe(Some(obs), record("a", 100 + 8 * i as i64), now);
            assert!(matches!(judge(&obs, "b", OWN, now), Verdict::Held { .. }), "renewed at {i}");
        }
    }

    #[test]
    fn expiry_counts_from_when_the_candidate_saw_the_record_change() {
        let t0 = Instant::now();
        let obs = Observation::observe(None, record("a", 100), t0);
        let same = Observation::observe(Some(obs.clone()), record("a", 100), t0 + Duration::from_secs(9));
        assert_eq!(same.changed_at, t0, "an unchanged record keeps its first sighting");
        assert_eq!(
            judge(&same, "b", OWN, t0 + Duration::from_millis(9_999)),
            Verdict::Held { holder: "a".into(), until: t0 + Duration::from_secs(10) }
        );
        assert_eq!(judge(&same, "b", OWN, t0 + Duration::from_secs(10)), Verdict::Free);
    }

    #[test]
    fn the_renew_time_is_never_compared_with_the_wall_clock() {
        // A renewTime decades in the past (a holder whose clock is behind) is as good as a fresh
        // one: only its not changing counts.
        let t0 = Instant::now();
        let obs = Observation::observe(None, record("a", 0), t0);
        assert!(matches!(judge(&obs, "b", OWN, t0 + Duration::from_secs(1)), Verdict::Held { .. }));
        // And one far in the future does not keep a dead holder alive.
        let obs = Observation::observe(None, record("a", 4_000_000_000), t0);
        assert_eq!(judge(&obs, "b", OWN, t0 + Duration::from_secs(10)), Verdict::Free);
    }

    #[test]
    fn a_new_candidate_waits_a_full_duration_and_empty_or_own_records_are_free() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(3600);
        let obs = Observation::observe(None, record("a", 100), late);
        assert!(matches!(judge(&obs, "b", OWN, late), Verdict::Held { .. }), "first sight starts the clock");
        assert_eq!(judge(&obs, "a", OWN, late), Verdict::Ours);
        let released = Observation::observe(None, LeaseSpec::default(), t0);
        assert_eq!(judge(&released, "b", OWN, t0), Verdict::Free);
        let mut no_duration = record("a", 100);
        no_duration.lease_duration_seconds = None;
        let obs = Observation::observe(None, no_duration, t0);
        assert_eq!(
            judge(&obs, "b", OWN, t0 + Duration::from_secs(14)),
            Verdict::Held { holder: "a".into(), until: t0 + OWN }
        );
    }

    #[test]
    fn timings_must_let_the_leader_stop_before_anyone_takes_over() {
        let s = Duration::from_secs;
        assert!(Timing::new(s(15), s(10), s(2)).is_ok());
        assert!(Timing::new(s(10), s(10), s(2)).is_err(), "renew deadline equal to the duration");
        assert!(Timing::new(s(10), s(12), s(2)).is_err(), "renew deadline past the duration");
        assert!(Timing::new(s(15), s(2), s(2)).is_err(), "no second attempt before the deadline");
        assert!(Timing::new(s(15), s(10), s(0)).is_err());
        let t = Timing::new(s(4), s(3), s(1)).expect("valid");
        assert_eq!(t.call_timeout(), Duration::from_millis(1500));
        assert!(t.call_timeout() < t.renew_deadline);
        for t in [t, Timing::new(s(15), s(10), s(2)).expect("valid"), Timing::new(s(11), s(10), s(2)).expect("valid")] {
            let margin = t.lease_duration - t.renew_deadline;
            assert!(!t.request_timeout().is_zero() && t.request_timeout() < margin, "{t:?}");
        }
        assert_eq!(Timing::new(s(15), s(10), s(2)).expect("valid").request_timeout(), Duration::from_millis(3750));
    }

    #[test]
    fn a_missing_lease_is_taken_only_after_a_lease_duration_unless_leading() {
        let t0 = Instant::now();
        let (d, s) = (Duration::from_secs(4), Duration::from_secs);
        assert_eq!(
            missing_lease(false, t0, d, t0 + s(3)),
            Verdict::Held { holder: "(no Lease)".into(), until: t0 + d },
            "a candidate waits"
        );
        assert_eq!(missing_lease(false, t0, d, t0 + d), Verdict::Free);
        assert_eq!(missing_lease(true, t0, d, t0), Verdict::Free, "the leader re-creates its Lease at once");
    }

    #[tokio::test]
    async fn kubernetes_writes_are_fenced_and_timed_out_reads_are_not() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tower::{Layer as _, ServiceExt as _};
        let leading = Arc::new(AtomicBool::new(true));
        let reached = Arc::new(AtomicUsize::new(0));
        let fence: crate::client::Fence = {
            let leading = leading.clone();
            Arc::new(move || leading.load(Ordering::SeqCst))
        };
        let inner = {
            let reached = reached.clone();
            tower::service_fn(move |req: http::Request<()>| {
                reached.fetch_add(1, Ordering::SeqCst);
                async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(()))
                }
            })
        };
        let svc = FenceLayer::new(fence, Duration::from_millis(50)).layer(inner);
        let req =
            |m: http::Method, path: &str| http::Request::builder().method(m).uri(path).body(()).expect("a request");
        assert!(svc.clone().oneshot(req(http::Method::PATCH, "/status")).await.is_ok(), "a leader writes");
        let slow = svc.clone().oneshot(req(http::Method::PATCH, "/slow")).await;
        assert!(slow.expect_err("abandoned").to_string().contains("abandoned"));
        leading.store(false, Ordering::SeqCst);
        let before = reached.load(Ordering::SeqCst);
        for m in [http::Method::PATCH, http::Method::POST, http::Method::PUT, http::Method::DELETE] {
            let err = svc.clone().oneshot(req(m, "/status")).await.expect_err("refused");
            assert!(err.to_string().contains("no longer leads"), "{err}");
        }
        assert_eq!(reached.load(Ordering::SeqCst), before, "no write reached the API server");
        assert!(svc.clone().oneshot(req(http::Method::GET, "/slow")).await.is_ok(), "reads are neither fenced nor cut");
    }

    #[test]
    fn the_fence_closes_at_the_deadline() {
        let l = Leadership::default();
        assert!(!l.is_leading(), "not leading before acquiring");
        let now = Instant::now();
        l.extend_to(now + Duration::from_secs(3));
        assert_eq!(l.remaining(now + Duration::from_secs(1)), Some(Duration::from_secs(2)));
        assert_eq!(l.remaining(now + Duration::from_secs(3)), None, "closed exactly at the deadline");
        assert!(l.is_leading());
        l.end();
        assert!(!l.is_leading());
    }
}
