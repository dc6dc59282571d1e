//! Operator metrics (labelled by kind and error class, never by object) and health endpoints.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    resource: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The `status` label of a SCIM answer: the statuses an on-call engineer acts on by name (401 and
/// 403 a key, 429 the server's rate limit), every other one by class, `none` without an answer.
fn status_label(status: Option<u16>) -> &'static str {
    match status {
        None => "none",
        Some(401) => "401",
        Some(403) => "403",
        Some(404) => "404",
        Some(409) => "409",
        Some(412) => "412",
        Some(429) => "429",
        Some(s) if (200..300).contains(&s) => "2xx",
        Some(s) if (400..500).contains(&s) => "4xx",
        Some(s) if (500..600).contains(&s) => "5xx",
        Some(_) => "other",
    }
}

/// Metrics of the controllers and of their SCIM requests.
pub struct OperatorMetrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    requests: Family<RequestLabels, Histogram>,
    responses: Family<StatusLabels, Counter>,
    leader: Gauge,
    ready: AtomicBool,
}

impl Default for OperatorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("scim_operator");
        let buckets = || Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(buckets);
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(buckets);
        let responses = Family::<StatusLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles by kind", reconciles.clone());
        registry.register("reconcile_errors", "Reconcile failures by kind and error class", errors.clone());
        registry.register("reconcile_duration_seconds", "Reconcile durations by kind", durations.clone());
        registry.register(
            "scim_request_duration_seconds",
            "SCIM request latency by method, resource and outcome",
            requests.clone(),
        );
        registry.register(
            "scim_responses",
            "SCIM answers by HTTP status (401, 403, 404, 409, 412, 429 by name, others by class; none without an answer)",
            responses.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        Self { registry, reconciles, errors, durations, requests, responses, leader, ready: AtomicBool::new(false) }
    }
}

impl OperatorMetrics {
    /// One reconcile of `kind` took `elapsed`.
    pub fn reconciled(&self, kind: &str, elapsed: Duration) {
        let l = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&l).inc();
        self.durations.get_or_create(&l).observe(elapsed.as_secs_f64());
    }
    /// A reconcile of `kind` failed with `class`.
    pub fn error(&self, kind: &str, class: &str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.into(), class: class.into() }).inc();
    }
    /// Sets the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(leading as i64);
    }
    /// Marks the controllers running.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl crate::client::RequestObserver for OperatorMetrics {
    fn observe(&self, method: &str, resource: &str, outcome: &str, status: Option<u16>, elapsed: Duration) {
        let l = RequestLabels { method: method.into(), resource: resource.into(), outcome: outcome.into() };
        self.requests.get_or_create(&l).observe(elapsed.as_secs_f64());
        self.responses.get_or_create(&StatusLabels { status: status_label(status) }).inc();
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics`.
pub async fn serve(addr: SocketAddr, metrics: Arc<OperatorMetrics>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let m1 = metrics.clone();
    let m2 = metrics;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let m = m1.clone();
                async move {
                    if m.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = m2.clone();
                async move { m.encode() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "health server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::RequestObserver as _;

    #[test]
    fn answers_are_counted_by_a_bounded_status() {
        let m = OperatorMetrics::default();
        for status in [Some(401), Some(429), Some(429), Some(201), Some(418), Some(503), None, Some(999)] {
            m.observe("POST", "Users", "x", status, Duration::ZERO);
        }
        let text = m.encode();
        for line in [
            "scim_operator_scim_responses_total{status=\"401\"} 1",
            "scim_operator_scim_responses_total{status=\"429\"} 2",
            "scim_operator_scim_responses_total{status=\"2xx\"} 1",
            "scim_operator_scim_responses_total{status=\"4xx\"} 1",
            "scim_operator_scim_responses_total{status=\"5xx\"} 1",
            "scim_operator_scim_responses_total{status=\"none\"} 1",
            "scim_operator_scim_responses_total{status=\"other\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
