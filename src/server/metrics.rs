//! Prometheus metrics of the SCIM server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics. Every value comes from a fixed set, so no request can add
/// series: the method from [`method_label`], the route template of the router (never the path
/// or a resource id; `unmatched` otherwise), the status code the server answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

/// Labels of duration histograms (values as in [`HttpLabels`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: String,
}

/// Labels of authentication failures: `missing`, `malformed` or `invalid`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub reason: &'static str,
}

/// The methods counted by name; any other method, whatever a client invents, is `other`.
const KNOWN_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The `method` label of a request: its method if it is one of the standard methods this
/// server serves or refuses, else `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    KNOWN_METHODS.into_iter().find(|m| *m == method.as_str()).unwrap_or("other")
}

/// Labels of role provisioning events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub outcome: String,
}

/// Labels of outbox delivery outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboxLabels {
    /// `sent`, `retry` (a failed attempt to be retried) or `parked` (the last allowed attempt
    /// failed).
    pub outcome: String,
}

/// The server's metrics and the registry that exposes them.
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<HttpLabels, Counter>,
    pub durations: Family<RouteLabels, Histogram>,
    pub auth_failures: Family<AuthLabels, Counter>,
    pub role_events: Family<RoleLabels, Counter>,
    pub outbox: Family<OutboxLabels, Counter>,
    /// Group commits of the SQLite writer, brought up to date at each scrape.
    pub store_commits: Counter,
    /// Request transactions those commits made durable.
    pub store_transactions: Counter,
    /// Records of the request log dropped because its queue was full.
    pub request_log_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("scim");
        let requests = Family::<HttpLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let auth_failures = Family::<AuthLabels, Counter>::default();
        let role_events = Family::<RoleLabels, Counter>::default();
        let outbox = Family::<OutboxLabels, Counter>::default();
        registry.register(
            "role_provisioning",
            "Role provisioning events by outcome (matched, unmatched, default, mapping, revoked)",
            role_events.clone(),
        );
        registry.register("http_requests", "SCIM HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "SCIM HTTP request latency", durations.clone());
        registry.register("auth_failures", "Requests refused for authentication", auth_failures.clone());
        registry.register(
            "outbox_messages",
            "Outbox delivery attempts by outcome (sent, retry, parked) in this process",
            outbox.clone(),
        );
        let store_commits = Counter::default();
        let store_transactions = Counter::default();
        registry.register(
            "store_commits",
            "Commits of the SQLite writer; each makes the transactions of several requests durable at once",
            store_commits.clone(),
        );
        registry.register(
            "store_committed_transactions",
            "Request transactions made durable by the SQLite writer's commits",
            store_transactions.clone(),
        );
        let request_log_dropped = Counter::default();
        registry.register(
            "request_log_dropped",
            "Records of the recent-requests log dropped because the database fell behind",
            request_log_dropped.clone(),
        );
        Self {
            registry,
            requests,
            durations,
            auth_failures,
            role_events,
            outbox,
            store_commits,
            store_transactions,
            request_log_dropped,
        }
    }
}

impl Metrics {
    /// Brings the store's counters up to `stats` (they only grow).
    pub fn observe_store(&self, stats: crate::store::CommitStats) {
        self.store_commits.inc_by(stats.commits.saturating_sub(self.store_commits.get()));
        self.store_transactions.inc_by(stats.transactions.saturating_sub(self.store_transactions.get()));
    }

    /// Text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Reports role provisioning events to Prometheus and, when configured, to StatsD.
pub struct MetricsObserver {
    pub metrics: std::sync::Arc<Metrics>,
    pub statsd: Option<cadence::StatsdClient>,
}

impl crate::provisioning::observer::Observer for MetricsObserver {
    fn role_event(&self, outcome: crate::provisioning::observer::RoleOutcome, count: u64) {
        if count == 0 {
            return;
        }
        self.metrics.role_events.get_or_create(&RoleLabels { outcome: outcome.as_str().into() }).inc_by(count);
        if let Some(client) = &self.statsd {
            use cadence::prelude::*;
            // Fire and forget: metrics must never fail a provisioning request.
            let _ = client
                .count_with_tags("role_provisioning", count as i64)
                .with_tag("outcome", outcome.as_str())
                .try_send();
        }
    }
}

/// A StatsD client sending UDP datagrams to `addr` (`host:port`).
pub fn statsd_client(addr: &str) -> std::io::Result<cadence::StatsdClient> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.set_nonblocking(true)?;
    let sink = cadence::UdpMetricSink::from(addr, socket).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(cadence::StatsdClient::from_sink("scim", sink))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn methods_outside_the_fixed_set_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"MADEUP1").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"get").unwrap()), "other", "methods are case-sensitive");
        assert_eq!(method_label(&Method::TRACE), "other");
    }
}
