//! The HTTP layer: routes, authentication, limits and metrics around the directory. Handlers
//! only translate between HTTP and `crate::provisioning`.

mod access_review;
mod auth;
mod deadline;
mod discovery;
mod handlers;
mod invitations;
pub mod metrics;
mod normalize;
mod request_log;
mod response;

pub use response::SCIM_MEDIA_TYPE;

use axum::Router;
use axum::ServiceExt;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::normalize_path::NormalizePath;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::provisioning::Directory;
use crate::scim::ScimError;
use metrics::{HttpLabels, Metrics, RouteLabels};
use response::ApiError;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public base URL of the SCIM API (e.g. `https://scim.example.com/scim/v2`); derived from
    /// the Host header when unset.
    pub base_url: Option<String>,
    /// Page size when a list request names none.
    pub default_count: u64,
    /// Largest page served (`filter.maxResults`).
    pub max_count: u64,
    /// Largest request body accepted; a larger `Content-Length` is refused before the body is read.
    pub max_body_bytes: usize,
    /// Most values one multi-valued attribute may carry in one request (and most elements of
    /// any array in a request body).
    pub max_values: usize,
    /// Most operations in one PATCH request.
    pub max_patch_operations: usize,
    /// Time after which a request is abandoned (its transaction rolled back).
    pub request_timeout: Duration,
    /// How long a verified key is trusted without reading the key table again (zero: always
    /// read). Revocations committed by this process take effect at once regardless.
    pub key_cache_ttl: Duration,
    /// Whether `/metrics` is served beside the API; off when [`serve_metrics`] serves it on a
    /// port of its own (`--metrics-listen`), so that the public port does not expose it.
    pub metrics_on_api_port: bool,
    /// Whether invitation e-mails are sent (SMTP configured): then invitation links that point at
    /// a loopback address are a readiness warning.
    pub sends_invitation_email: bool,
    /// How many recent requests to `/scim/v2` and `/api/v1` the database keeps for the
    /// console's "Recent provisioning requests" page (all replicas together; zero: none).
    pub request_log_size: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            default_count: 100,
            max_count: 1000,
            max_body_bytes: 1 << 20,
            max_values: 10_000,
            max_patch_operations: 1_000,
            request_timeout: Duration::from_secs(30),
            key_cache_ttl: Duration::from_secs(1),
            metrics_on_api_port: true,
            sends_invitation_email: false,
            request_log_size: 1000,
        }
    }
}

impl ServerConfig {
    /// The limits on one request's content.
    pub fn request_limits(&self) -> crate::scim::limits::RequestLimits {
        crate::scim::limits::RequestLimits {
            max_values: self.max_values,
            max_patch_operations: self.max_patch_operations,
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
    pub config: Arc<ServerConfig>,
    /// The web console, served under `/console` when set.
    pub console: Option<crate::console::ConsoleState>,
    /// Where answered provisioning requests are recorded (none when the log is off).
    request_log: Option<request_log::RequestLog>,
}

impl AppState {
    /// The state of a server over `directory`, which trusts verified keys for
    /// `config.key_cache_ttl`.
    pub fn new(directory: Directory, metrics: Arc<Metrics>, config: ServerConfig) -> Self {
        let directory = directory.with_key_cache_ttl(config.key_cache_ttl);
        let request_log = request_log::RequestLog::start(directory.clone(), config.request_log_size, metrics.clone());
        Self { directory, metrics, config: Arc::new(config), console: None, request_log }
    }

    /// Serves the web console under `/console` too, over this state's directory (one directory
    /// per server: the console and the API share its settings and its cache of verified keys).
    pub fn with_console(mut self, mut console: crate::console::ConsoleState) -> Self {
        console.directory = self.directory.clone();
        if let Some(url) = &self.config.base_url {
            console = console.with_scim_url(url);
        }
        self.console = Some(console);
        self
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application: SCIM under `/scim/v2`, health and metrics beside it.
pub fn router(state: AppState) -> Router {
    let scim = Router::new()
        .route("/ServiceProviderConfig", get(discovery::service_provider_config))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{id}", get(discovery::schema))
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/Users", get(handlers::list_users).post(handlers::create_user))
        .route("/Users/.search", axum::routing::post(handlers::search_users))
        .route(
            "/Users/{id}",
            get(handlers::get_user)
                .put(handlers::replace_user)
                .patch(handlers::patch_user)
                .delete(handlers::delete_user),
        )
        .route("/Groups", get(handlers::list_groups).post(handlers::create_group))
        .route("/Groups/.search", axum::routing::post(handlers::search_groups))
        .route(
            "/Groups/{id}",
            get(handlers::get_group)
                .put(handlers::replace_group)
                .patch(handlers::patch_group)
                .delete(handlers::delete_group),
        )
        .route("/RoleMappings", get(handlers::list_role_mappings).post(handlers::create_role_mapping))
        .route("/RoleMappings/.search", axum::routing::post(handlers::search_role_mappings))
        .route(
            "/RoleMappings/{id}",
            get(handlers::get_role_mapping)
                .put(handlers::replace_role_mapping)
                .patch(handlers::patch_role_mapping)
                .delete(handlers::delete_role_mapping),
        )
        .route("/.search", axum::routing::post(handlers::search_all))
        .route("/Bulk", axum::routing::any(handlers::not_implemented))
        .route("/Me", axum::routing::any(handlers::not_implemented))
        .fallback(handlers::unknown_endpoint)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    // Derived state that SCIM has no place for, behind the same keys.
    let api = Router::new()
        .route("/users/{id}/access", get(handlers::user_access))
        .route("/access-review", get(access_review::access_review))
        .route("/limits", get(discovery::limits))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_key));
    let mut app = Router::new();
    if let Some(console) = &state.console {
        app = app.nest_service("/console", crate::console::router(console.clone()));
    }
    app = app
        .nest("/scim/v2", scim)
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/invitations/{token}", get(invitations::show).post(invitations::accept));
    if state.config.metrics_on_api_port {
        app = app.route("/metrics", get(metrics_text));
    }
    app.layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(deadline::enforce))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// Counts, times and bounds every request, and records those to the provisioning APIs in the
/// request log; a request past its deadline is dropped, which rolls back its transaction, and
/// answered 503.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = metrics::method_label(req.method());
    let start = Instant::now();
    // The path only: a query string may carry a filter on e-mail addresses, never stored.
    let logged = state.request_log.as_ref().filter(|_| request_log::recorded(req.uri().path())).map(|log| {
        let request_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_string);
        (log, state.directory.now_text(), crate::provisioning::request_log::recorded_path(req.uri().path()), request_id)
    });
    let resp = match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(%route, %method, "request timed out");
            ApiError(ScimError::new(503, None, "the request took too long and was abandoned; nothing was changed"))
                .into_response()
        }
    };
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    state.metrics.requests.get_or_create(&HttpLabels { method, route: route.clone(), status }).inc();
    state.metrics.durations.get_or_create(&RouteLabels { method, route }).observe(elapsed.as_secs_f64());
    if let Some((log, time, path, request_id)) = logged {
        let key = resp.extensions().get::<crate::provisioning::access::Principal>();
        log.record(crate::store::RequestRecord {
            time,
            method: method.to_string(),
            path,
            status,
            key_id: key.map(|k| k.actor.clone()),
            key_name: key.map(|k| k.name.clone()),
            duration_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
            request_id,
        });
    }
    resp
}

/// The warnings of `/readyz`, which anyone who reaches the port may read: invitation links that
/// cannot work, and the key warnings ([`Directory::key_warnings`]) as counts only, no key names,
/// key ids or user ids (those are in the log, the audit trail and `keys list`).
async fn readiness_warnings(state: &AppState) -> Vec<String> {
    let mut warnings = Vec::new();
    if state.config.sends_invitation_email
        && let Some(w) = state.directory.settings().invitation_link_warning()
    {
        warnings.push(w);
    }
    warnings.extend(key_readiness_warnings(&state.directory).await);
    warnings
}

async fn key_readiness_warnings(directory: &Directory) -> Vec<String> {
    match directory.user_owned_scim_keys().await {
        Ok(keys) if keys.is_empty() => Vec::new(),
        Ok(keys) => vec![format!(
            "{} SCIM key(s) belong to a user: deactivating that user revokes the key and breaks provisioning; use service-account keys (`scim-operator keys list` names them)",
            keys.len()
        )],
        Err(e) => {
            tracing::warn!(error = %e, "could not list keys for the readiness warnings");
            Vec::new()
        }
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.directory.store().ping().await {
        Ok(()) => {
            let warnings = readiness_warnings(&state).await;
            (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready", "database": "ok", "warnings": warnings})))
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    state.metrics.observe_store(state.directory.store().commit_stats());
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}

/// `/metrics` alone, for a port of its own (`--metrics-listen`), with `/healthz` for probes.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics_text)).route("/healthz", get(|| async { "ok" })).with_state(state)
}

/// Serves [`metrics_router`] until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state)).with_graceful_shutdown(shutdown).await
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Before routing: requests refused from their head alone (a declared body over the limit,
    // control characters in the path), and paths put in the router's spelling (trailing slash
    // trimmed, endpoint names in canonical case). Layers on the router itself run after it.
    let guard = middleware::from_fn_with_state(state.clone(), normalize::guard);
    let app = NormalizePath::trim_trailing_slash(tower::Layer::layer(&guard, router(state)));
    let app = ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
