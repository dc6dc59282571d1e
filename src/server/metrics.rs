//! Prometheus metrics of the SCIM server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics: the route template, never the resource id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of duration histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

/// Labels of authentication failures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub reason: String,
}

/// The server's metrics and the registry that exposes them.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<HttpLabels, Counter>,
    pub durations: Family<RouteLabels, Histogram>,
    pub auth_failures: Family<AuthLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("scim");
        let requests = Family::<HttpLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let auth_failures = Family::<AuthLabels, Counter>::default();
        registry.register("http_requests", "SCIM HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "SCIM HTTP request latency", durations.clone());
        registry.register("auth_failures", "Requests refused for authentication", auth_failures.clone());
        Self { registry, requests, durations, auth_failures }
    }
}

impl Metrics {
    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
