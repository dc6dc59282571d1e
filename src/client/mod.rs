//! A SCIM 2.0 client (RFC 7644) on reqwest with rustls: what the operator uses to talk to the
//! SCIM server. Users and groups work against any RFC 7644 server; role mappings and effective
//! roles are this server's extensions and degrade gracefully elsewhere.
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::scim::ScimType;

pub mod credentials;
pub mod discovery;
mod execute;
pub mod plan;
pub mod probe;
pub mod profile;

pub use credentials::{AccessToken, ClientCredentialsGrant, Credentials, SecretSource};
pub use discovery::Capabilities;
pub use execute::{Executed, Health};
use profile::ErrorDetail;
pub use profile::{Dialect, Profile};

/// Schema URNs the client sends.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// PATCH message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// This server's RoleMapping schema.
pub const ROLE_MAPPING_SCHEMA: &str = "urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping";

/// What went wrong talking to the SCIM server, by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The object changed since it was read (412 to an `If-Match`): read it again.
    #[error("the object changed on the server since it was read: {0}")]
    Changed(String),
    #[error("bad request ({scim_type:?}): {detail}")]
    BadRequest { scim_type: Option<ScimType>, detail: String },
    /// The server is down, overloaded or unreachable; retry after `retry_after` if given.
    #[error("SCIM server unavailable: {message}")]
    Unavailable { message: String, retry_after: Option<Duration> },
    #[error("unexpected answer: {0}")]
    Other(String),
}

impl ClientError {
    /// Stable label for metrics and condition reasons.
    pub fn class(&self) -> &'static str {
        match self {
            ClientError::NotFound => "not_found",
            ClientError::Conflict(_) => "conflict",
            ClientError::Unauthorized(_) => "unauthorized",
            ClientError::Changed(_) => "changed",
            ClientError::BadRequest { .. } => "bad_request",
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::Other(_) => "other",
        }
    }
}

/// Result alias.
pub type ClientResult<T> = Result<T, ClientError>;

/// A SCIM resource as the server answered it: its `id` (always present: a reply without one is
/// an error), its version (the ETag to send as `If-Match`), its `externalId` and the whole body.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimObject {
    pub id: String,
    pub version: Option<String>,
    pub external_id: Option<String>,
    pub body: Value,
}

impl ScimObject {
    /// Reads the fields the operator relies on from a reply.
    pub fn from_reply(body: Value) -> ClientResult<Self> {
        let id = match body.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => return Err(ClientError::Other(format!("the server answered a resource without an id: {body}"))),
        };
        let version = body.pointer("/meta/version").and_then(Value::as_str).map(str::to_string);
        let external_id = body.get("externalId").and_then(Value::as_str).map(str::to_string);
        Ok(Self { id, version, external_id, body })
    }

    /// A reply that may carry no resource at all (PATCH may answer 204 No Content): `None`
    /// then; a body without an `id` is still an error.
    pub fn from_optional_reply(body: Value) -> ClientResult<Option<Self>> {
        if body.is_null() { Ok(None) } else { Self::from_reply(body).map(Some) }
    }
}

/// A precondition sent with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition<'a> {
    /// None.
    None,
    /// `If-Match`: the object is still at this version (412 otherwise).
    Version(&'a str),
    /// `If-None-Match: *` on a create: create only, never link or reuse what exists (409 otherwise).
    Absent,
}

/// Observes request latencies (for metrics).
pub trait RequestObserver: Send + Sync {
    /// One request finished, with the HTTP status of its answer (`None` when none came).
    fn observe(&self, method: &str, resource: &str, outcome: &str, status: Option<u16>, elapsed: Duration);
}

/// Client settings of the default target (this project's server, `--scim-url`).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL of the SCIM API, e.g. `http://scim:8080/scim/v2`.
    pub base_url: String,
    /// File holding the bearer token; re-read when it changes (key rotation).
    pub token_file: PathBuf,
    /// Timeout of every request; also sent as its deadline ([`crate::scim::deadline`]).
    pub timeout: Duration,
    /// Requests in flight at most.
    pub max_concurrency: usize,
    /// Requests per second at most.
    pub rate_limit: u32,
}

/// Settings of a client for any SCIM target.
#[derive(Debug)]
pub struct TargetConfig {
    /// Base URL of the SCIM API (`/Users` is appended to it).
    pub base_url: String,
    /// What kind of server it is.
    pub profile: Profile,
    /// What the client presents.
    pub credentials: Credentials,
    /// PEM certificates to trust for this target instead of the system's roots (private TLS).
    pub ca_bundle: Option<String>,
    /// Timeout of every request; also sent as its deadline.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub max_concurrency: usize,
    /// Requests per second at most.
    pub rate_limit: u32,
}

/// The SCIM client. Cheap to clone.
#[derive(Clone)]
pub struct ScimClient {
    http: reqwest::Client,
    /// For the token endpoint: the same trust, no redirects.
    token_http: reqwest::Client,
    base_url: Arc<str>,
    credentials: Arc<Credentials>,
    dialect: Arc<dyn Dialect>,
    capabilities: Arc<std::sync::RwLock<Option<Capabilities>>>,
    limiter: Arc<DefaultDirectRateLimiter>,
    in_flight: Arc<Semaphore>,
    observer: Option<Arc<dyn RequestObserver>>,
    fence: Option<Fence>,
    /// Timeout of every request; also sent as its deadline ([`crate::scim::deadline`]).
    timeout: Duration,
}

/// Asked before every request is sent; a request is refused while it answers false (a replica
/// that no longer leads).
pub type Fence = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimClient")
            .field("base_url", &self.base_url)
            .field("profile", &self.dialect.profile())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// The error an answer means, read in the target's dialect.
fn scim_error(dialect: &dyn Dialect, status: StatusCode, body: &Value, retry_after: Option<Duration>) -> ClientError {
    let ErrorDetail { detail, scim_type } = dialect.error_detail(body);
    match status {
        StatusCode::NOT_FOUND => ClientError::NotFound,
        StatusCode::CONFLICT => ClientError::Conflict(detail),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Unauthorized(format!("{status}: {detail}")),
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::BAD_GATEWAY
        | StatusCode::GATEWAY_TIMEOUT => {
            ClientError::Unavailable { message: format!("{status}: {detail}"), retry_after }
        }
        s if s.is_server_error() => ClientError::Unavailable { message: format!("{status}: {detail}"), retry_after },
        StatusCode::PRECONDITION_FAILED => ClientError::Changed(detail),
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => ClientError::BadRequest { scim_type, detail },
        s => ClientError::Other(format!("{s}: {detail}")),
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Characters kept as they are in a path segment (RFC 3986 unreserved); every other byte of a
/// server-chosen id is percent-encoded, so that an id can never add a path or a query.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `/{collection}/{id}`, the id percent-encoded.
fn resource_path(collection: &str, id: &str) -> String {
    format!("/{collection}/{}", percent_encoding::utf8_percent_encode(id, SEGMENT))
}

/// A SCIM filter string literal.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Longest filter [`ScimClient::users_with_external_ids`] sends in one request: half of what
/// this project's server accepts (8192 bytes), so that the URL stays under the 8 KiB that
/// proxies commonly allow for a request line.
pub const EXTERNAL_ID_FILTER_LEN: usize = 4096;

/// Filters `attr eq "v1" or attr eq "v2" ...` over `values`, each at most `max_len` bytes (a
/// single term longer than that still gets a filter of its own).
fn or_filters(attr: &str, values: &[&str], max_len: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for v in values {
        let term = format!("{attr} eq {}", quote(v));
        if !current.is_empty() && current.len() + " or ".len() + term.len() > max_len {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str(" or ");
        }
        current.push_str(&term);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The [`crate::scim::declared_by::HEADER`] of a group request, when a Kubernetes object
/// declares the group.
fn declared_header(declared_by: Option<&str>) -> Vec<(&'static str, &str)> {
    declared_by.map(|d| (crate::scim::declared_by::HEADER, d)).into_iter().collect()
}

/// One request as [`ScimClient::send_once`] sends it.
struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    body: Option<&'a Value>,
    precondition: Precondition<'a>,
    extra: &'a [(&'static str, &'a str)],
}

/// An answer: status, `Retry-After`, and the body as JSON (Null when empty, a string when it is
/// not JSON).
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Value,
}

impl ScimClient {
    /// A client of this project's server (the default target); the token file is read on
    /// first use and again whenever it changes.
    pub fn new(config: ClientConfig) -> ClientResult<Self> {
        Self::for_target(TargetConfig {
            base_url: config.base_url,
            profile: Profile::ScimOperator,
            credentials: Credentials::token_file(config.token_file),
            ca_bundle: None,
            timeout: config.timeout,
            max_concurrency: config.max_concurrency,
            rate_limit: config.rate_limit,
        })
    }

    /// A client of any SCIM target.
    pub fn for_target(config: TargetConfig) -> ClientResult<Self> {
        let builder = || {
            let b = reqwest::Client::builder()
                .timeout(config.timeout)
                .user_agent(concat!("scim-operator/", env!("CARGO_PKG_VERSION")));
            match &config.ca_bundle {
                None => Ok(b),
                Some(pem) => reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                    .map(|certs| b.tls_certs_only(certs))
                    .map_err(|e| ClientError::Other(format!("the CA bundle is not PEM certificates: {e}"))),
            }
        };
        let http = builder()?.build().map_err(|e| ClientError::Other(format!("building the HTTP client: {e}")))?;
        let token_http = builder()?
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Other(format!("building the HTTP client: {e}")))?;
        let rate = NonZeroU32::new(config.rate_limit.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            http,
            token_http,
            base_url: config.base_url.trim_end_matches('/').into(),
            credentials: Arc::new(config.credentials),
            dialect: config.profile.dialect(),
            capabilities: Arc::new(std::sync::RwLock::new(None)),
            limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate))),
            in_flight: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            observer: None,
            fence: None,
            timeout: config.timeout,
        })
    }

    /// Reports request latencies to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Sends requests only while `fence` allows it.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The fence requests are sent under, if any (for clients built beside this one).
    pub fn fence(&self) -> Option<Fence> {
        self.fence.clone()
    }

    /// The target's dialect.
    pub fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    /// The credentials (to count token fetches).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Sends one request; JSON in, JSON out (Null for empty bodies).
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> ClientResult<Value> {
        self.request_if(method, path, body, Precondition::None).await
    }

    /// Sends one request with a precondition.
    pub async fn request_if(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        precondition: Precondition<'_>,
    ) -> ClientResult<Value> {
        self.send(method, path, body, precondition, &[]).await
    }

    /// Sends one request with a precondition and extra headers. A 401 is answered by fetching
    /// (or reading) the token anew and sending the request once more, if that gave a different
    /// token.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        precondition: Precondition<'_>,
        extra: &[(&'static str, &str)],
    ) -> ClientResult<Value> {
        let _permit = self.in_flight.acquire().await.map_err(|_| ClientError::Other("client closed".into()))?;
        self.limiter.until_ready().await;
        let start = Instant::now();
        let resource = path.trim_start_matches('/').split(['/', '?']).next().unwrap_or("").to_string();
        let request = Request { method: &method, path, body, precondition, extra };
        let mut token = self.credentials.token(&self.token_http).await?;
        let mut result = self.send_once(&request, &token).await;
        if matches!(&result, Ok(a) if a.status == StatusCode::UNAUTHORIZED) {
            self.credentials.rejected(&token).await;
            let fresh = self.credentials.token(&self.token_http).await?;
            if fresh != token {
                token = fresh;
                result = self.send_once(&request, &token).await;
            }
        }
        let answered = result.as_ref().ok().map(|a| a.status.as_u16());
        let result = result.and_then(|a| {
            if a.status.is_success() {
                Ok(a.body)
            } else {
                Err(scim_error(self.dialect.as_ref(), a.status, &a.body, a.retry_after))
            }
        });
        if let Some(o) = &self.observer {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.class(),
            };
            o.observe(method.as_str(), &resource, outcome, answered, start.elapsed());
        }
        result
    }

    /// Sends one request once with `token`.
    async fn send_once(&self, request: &Request<'_>, token: &AccessToken) -> ClientResult<Answer> {
        let url = format!("{}{}", self.base_url, request.path);
        let mut req = self
            .http
            .request(request.method.clone(), &url)
            .bearer_auth(token.secret())
            .header("accept", "application/scim+json");
        if let Some(b) = request.body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        for (name, value) in request.extra {
            req = req.header(*name, *value);
        }
        req = match request.precondition {
            Precondition::None => req,
            Precondition::Version(v) => req.header(reqwest::header::IF_MATCH, v),
            Precondition::Absent => req.header(reqwest::header::IF_NONE_MATCH, "*"),
        };
        // Checked last before sending: the wait for a permit or the rate limit may have outlasted
        // this replica's leadership.
        if self.fence.as_ref().is_some_and(|allowed| !allowed()) {
            return Err(ClientError::Unavailable {
                message: "this replica no longer leads; request not sent".into(),
                retry_after: None,
            });
        }
        // The server refuses the request once the client no longer waits for it, so a request
        // held up on the network cannot land after this replica's leadership ended.
        let deadline = std::time::SystemTime::now() + self.timeout;
        req = req.header(crate::scim::deadline::HEADER, crate::scim::deadline::encode(deadline));
        let resp =
            req.send().await.map_err(|e| ClientError::Unavailable { message: e.to_string(), retry_after: None })?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, retry_after, body })
    }

    /// Resources of a list response.
    async fn list(&self, path: &str) -> ClientResult<Vec<Value>> {
        let v = self.request(Method::GET, path, None).await?;
        Ok(v.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    fn encode(filter: &str) -> String {
        serde_urlencoded::to_string([("filter", filter)]).unwrap_or_default()
    }

    // ---- users

    /// A user by id.
    pub async fn get_user(&self, id: &str) -> ClientResult<ScimObject> {
        ScimObject::from_reply(self.request(Method::GET, &resource_path("Users", id), None).await?)
    }

    /// The user with this userName (compared without regard to case by the server).
    pub async fn find_user_by_name(&self, user_name: &str) -> ClientResult<Option<ScimObject>> {
        let q = Self::encode(&format!("userName eq {}", quote(user_name)));
        self.list(&format!("/Users?{q}")).await?.into_iter().next().map(ScimObject::from_reply).transpose()
    }

    /// The users whose `externalId` is one of `external_ids` (compared exactly): (id,
    /// externalId). Asked with `eq` terms joined by `or`, as many as fit in
    /// [`EXTERNAL_ID_FILTER_LEN`] a request, so the cost follows the number of ids asked, not the
    /// number of users on the server.
    pub async fn users_with_external_ids(&self, external_ids: &[&str]) -> ClientResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        for filter in or_filters("externalId", external_ids, EXTERNAL_ID_FILTER_LEN) {
            let q = Self::encode(&filter);
            let mut start = 1;
            loop {
                let path = format!("/Users?{q}&attributes=externalId&startIndex={start}&count=1000");
                let mut page = self.request(Method::GET, &path, None).await?;
                let resources = match page.get_mut("Resources").map(Value::take) {
                    Some(Value::Array(resources)) => resources,
                    _ => Vec::new(),
                };
                let read = resources.len() as u64;
                for u in resources {
                    let o = ScimObject::from_reply(u)?;
                    // A server that does not filter exactly is not trusted to: only ids asked for count.
                    if let Some(e) = o.external_id.filter(|e| external_ids.contains(&e.as_str())) {
                        out.push((o.id, e));
                    }
                }
                let total = page.get("totalResults").and_then(Value::as_u64).unwrap_or(0);
                start += read;
                if read == 0 || start > total {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Creates a user.
    /// With `invite: false` the request asks the server to withhold the user's invitation
    /// (see [`crate::scim::invitation`]; a server that does not know the header ignores it).
    pub async fn create_user(&self, user: &Value, invite: bool) -> ClientResult<ScimObject> {
        let hint: &[(&str, &str)] =
            if invite { &[] } else { &[(crate::scim::invitation::HEADER, crate::scim::invitation::WITHHOLD)] };
        ScimObject::from_reply(self.send(Method::POST, "/Users", Some(user), Precondition::None, hint).await?)
    }

    /// Replaces a user.
    pub async fn replace_user(&self, id: &str, user: &Value) -> ClientResult<ScimObject> {
        ScimObject::from_reply(self.request(Method::PUT, &resource_path("Users", id), Some(user)).await?)
    }

    /// Applies PATCH operations to a user, if it is still at `version`; the user as answered
    /// (`None` from a server that answers 204).
    pub async fn patch_user(
        &self,
        id: &str,
        operations: &[Value],
        version: Option<&str>,
    ) -> ClientResult<Option<ScimObject>> {
        self.patch(&resource_path("Users", id), operations, version, &[]).await
    }

    /// PATCH of `path` with `operations` and `extra` headers, if the resource is still at
    /// `version`.
    async fn patch(
        &self,
        path: &str,
        operations: &[Value],
        version: Option<&str>,
        extra: &[(&'static str, &str)],
    ) -> ClientResult<Option<ScimObject>> {
        let body = json!({"schemas": [PATCH_OP], "Operations": operations});
        let pre = version.map_or(Precondition::None, Precondition::Version);
        ScimObject::from_optional_reply(self.send(Method::PATCH, path, Some(&body), pre, extra).await?)
    }

    /// Sets `active`, if the user is still at `version`.
    pub async fn set_active(&self, id: &str, active: bool, version: Option<&str>) -> ClientResult<Option<ScimObject>> {
        self.patch_user(id, &[json!({"op": "replace", "path": "active", "value": active})], version).await
    }

    /// Deletes a user, if it is still at `version`.
    pub async fn delete_user(&self, id: &str, version: Option<&str>) -> ClientResult<()> {
        let pre = version.map_or(Precondition::None, Precondition::Version);
        self.request_if(Method::DELETE, &resource_path("Users", id), None, pre).await.map(|_| ())
    }

    /// Effective roles as this server computes them (`/api/v1/users/{id}/access`); `None` from
    /// servers that do not offer it.
    pub async fn effective_roles(&self, id: &str) -> ClientResult<Option<Vec<String>>> {
        let base = self.base_url.trim_end_matches("/scim/v2");
        let url = format!("{base}/api/v1{}/access", resource_path("users", id));
        let token = self.credentials.token(&self.token_http).await?;
        let resp = self
            .http
            .get(url)
            .bearer_auth(token.secret())
            .send()
            .await
            .map_err(|e| ClientError::Unavailable { message: e.to_string(), retry_after: None })?;
        match resp.status() {
            s if s.is_success() => {}
            // A server without this API: there is nothing to read.
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => return Ok(None),
            // Anything else is a failure to read, not an answer of "no roles".
            status => {
                let ra = retry_after(resp.headers());
                let body = resp.json::<Value>().await.unwrap_or(Value::Null);
                return Err(scim_error(self.dialect.as_ref(), status, &body, ra));
            }
        }
        let v: Value = resp.json().await.map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(v.get("effectiveRoles")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|r| r.get("name").and_then(Value::as_str).map(str::to_string)).collect()))
    }

    // ---- groups

    /// A group by id, without its members.
    pub async fn get_group(&self, id: &str) -> ClientResult<ScimObject> {
        ScimObject::from_reply(
            self.request(Method::GET, &format!("{}?excludedAttributes=members", resource_path("Groups", id)), None)
                .await?,
        )
    }

    /// Member ids of a group.
    pub async fn group_members(&self, id: &str) -> ClientResult<Vec<String>> {
        let g = self.request(Method::GET, &format!("{}?attributes=members", resource_path("Groups", id)), None).await?;
        Ok(g.get("members")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|m| m.get("value").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default())
    }

    /// The group with this displayName.
    pub async fn find_group_by_name(&self, name: &str) -> ClientResult<Option<ScimObject>> {
        let q = Self::encode(&format!("displayName eq {}", quote(name)));
        let found = self.list(&format!("/Groups?{q}&excludedAttributes=members")).await?.into_iter().next();
        found.map(ScimObject::from_reply).transpose()
    }

    /// Creates a group. With `link: false` the request carries `If-None-Match: *`, which asks a
    /// server that links an existing team of the same name (this one does) to answer 409
    /// instead; with `link: true` this server links the unmanaged team of exactly that name.
    /// `declared_by` (`namespace/name` of the declaring Kubernetes object) is sent as
    /// [`crate::scim::declared_by::HEADER`]; a server that does not know it ignores it.
    pub async fn create_group(
        &self,
        display_name: &str,
        external_id: &str,
        members: &[String],
        link: bool,
        declared_by: Option<&str>,
    ) -> ClientResult<ScimObject> {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let body = json!({"schemas": [GROUP_SCHEMA], "displayName": display_name, "externalId": external_id, "members": members});
        let pre = if link { Precondition::None } else { Precondition::Absent };
        let path = "/Groups?excludedAttributes=members";
        ScimObject::from_reply(self.send(Method::POST, path, Some(&body), pre, &declared_header(declared_by)).await?)
    }

    /// Applies PATCH operations to a group (members excluded from the answer), if it is still at
    /// `version`; the group as answered (`None` from a server that answers 204). `declared_by`
    /// as for [`Self::create_group`].
    pub async fn patch_group(
        &self,
        id: &str,
        operations: &[Value],
        version: Option<&str>,
        declared_by: Option<&str>,
    ) -> ClientResult<Option<ScimObject>> {
        let path = format!("{}?excludedAttributes=members", resource_path("Groups", id));
        self.patch(&path, operations, version, &declared_header(declared_by)).await
    }

    /// Adds and removes members with PATCH, only the changes, in chunks; the first chunk only if
    /// the group is still at `version`, each next one at the version the previous answered (read
    /// again from a server that answered 204 without one), so that every chunk carries
    /// `If-Match` whenever the server versions its groups.
    pub async fn change_members(
        &self,
        id: &str,
        add: &[String],
        remove: &[String],
        version: Option<&str>,
    ) -> ClientResult<()> {
        let mut version = version.map(str::to_string);
        let size = self.dialect.max_member_operations();
        let adds = add.chunks(size).map(|chunk| self.dialect.add_members(chunk));
        let removes = remove.chunks(size).map(|chunk| self.dialect.remove_members(chunk));
        // Collected before the first request: the future then holds no closure over the input.
        let chunks: Vec<Vec<Value>> = adds.chain(removes).collect();
        for (i, ops) in chunks.iter().enumerate() {
            if i > 0 && version.is_none() {
                version = self.get_group(id).await?.version;
            }
            let answer = self.patch_group(id, ops, version.as_deref(), None).await?;
            version = answer.and_then(|a| a.version);
        }
        Ok(())
    }

    /// Deletes a group (on this server: unlinks the team and removes its members), if it is
    /// still at `version`.
    pub async fn delete_group(&self, id: &str, version: Option<&str>) -> ClientResult<()> {
        let pre = version.map_or(Precondition::None, Precondition::Version);
        self.request_if(Method::DELETE, &resource_path("Groups", id), None, pre).await.map(|_| ())
    }

    // ---- role mappings

    /// A role mapping by id.
    pub async fn get_role_mapping(&self, id: &str) -> ClientResult<ScimObject> {
        ScimObject::from_reply(self.request(Method::GET, &resource_path("RoleMappings", id), None).await?)
    }

    /// The role mapping with this displayName.
    pub async fn find_role_mapping(&self, name: &str) -> ClientResult<Option<ScimObject>> {
        let q = Self::encode(&format!("displayName eq {}", quote(name)));
        self.list(&format!("/RoleMappings?{q}")).await?.into_iter().next().map(ScimObject::from_reply).transpose()
    }

    /// Every role mapping's team names (lower-cased), to tell whether a team name grants roles.
    pub async fn mapped_team_names(&self) -> ClientResult<std::collections::BTreeSet<String>> {
        let mut names = std::collections::BTreeSet::new();
        let mut start = 1;
        loop {
            let page = self.request(Method::GET, &format!("/RoleMappings?startIndex={start}&count=200"), None).await?;
            let resources = page.get("Resources").and_then(Value::as_array).cloned().unwrap_or_default();
            for m in &resources {
                let teams = m.get("teams").and_then(Value::as_array).into_iter().flatten();
                names.extend(teams.filter_map(|t| t.get("value").and_then(Value::as_str)).map(str::to_lowercase));
            }
            let total = page.get("totalResults").and_then(Value::as_u64).unwrap_or(0);
            start += resources.len() as u64;
            if resources.is_empty() || start > total {
                return Ok(names);
            }
        }
    }

    /// The body of a role mapping.
    pub fn role_mapping_body(name: &str, external_id: &str, roles: &[String], teams: &[String]) -> Value {
        json!({
            "schemas": [ROLE_MAPPING_SCHEMA],
            "displayName": name,
            "externalId": external_id,
            "roles": roles.iter().map(|r| json!({"value": r})).collect::<Vec<_>>(),
            "teams": teams.iter().map(|t| json!({"value": t})).collect::<Vec<_>>(),
        })
    }

    /// Creates a role mapping.
    pub async fn create_role_mapping(&self, body: &Value) -> ClientResult<ScimObject> {
        ScimObject::from_reply(self.request(Method::POST, "/RoleMappings", Some(body)).await?)
    }

    /// Replaces a role mapping.
    pub async fn replace_role_mapping(&self, id: &str, body: &Value) -> ClientResult<ScimObject> {
        ScimObject::from_reply(self.request(Method::PUT, &resource_path("RoleMappings", id), Some(body)).await?)
    }

    /// Deletes a role mapping.
    pub async fn delete_role_mapping(&self, id: &str) -> ClientResult<()> {
        self.request(Method::DELETE, &resource_path("RoleMappings", id), None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(resource_path("Users", "2819c223-7f76-453a-919d"), "/Users/2819c223-7f76-453a-919d");
        assert_eq!(resource_path("Users", "../Groups/x?filter=a b#f"), "/Users/..%2FGroups%2Fx%3Ffilter%3Da%20b%23f");
        assert_eq!(resource_path("Groups", "héllo"), "/Groups/h%C3%A9llo");
    }

    #[test]
    fn errors_are_classified_by_what_to_do() {
        let body = json!({"detail": "taken", "scimType": "uniqueness"});
        let d = &profile::Generic;
        assert!(matches!(scim_error(d, StatusCode::CONFLICT, &body, None), ClientError::Conflict(d) if d == "taken"));
        assert!(matches!(scim_error(d, StatusCode::NOT_FOUND, &Value::Null, None), ClientError::NotFound));
        let e = scim_error(d, StatusCode::TOO_MANY_REQUESTS, &Value::Null, Some(Duration::from_secs(7)));
        assert!(matches!(e, ClientError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(7)));
        assert_eq!(scim_error(d, StatusCode::INTERNAL_SERVER_ERROR, &Value::Null, None).class(), "unavailable");
        let bad = scim_error(d, StatusCode::BAD_REQUEST, &json!({"scimType": "invalidValue", "detail": "x"}), None);
        assert!(matches!(bad, ClientError::BadRequest { scim_type: Some(ScimType::InvalidValue), .. }));
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn or_filters_hold_every_value_once_within_the_length() {
        let values: Vec<String> = (0..100).map(|i| format!("k8s:c/ns/uid-{i:03}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let filters = or_filters("externalId", &refs, 300);
        assert!(filters.len() > 1, "split into several requests");
        let mut seen = Vec::new();
        for f in &filters {
            assert!(f.len() <= 300, "{} bytes: {f}", f.len());
            crate::scim::filter::parse_filter(f).expect("a valid SCIM filter");
            seen.extend(f.split(" or ").map(|t| t.trim_start_matches("externalId eq ").trim_matches('"').to_string()));
        }
        assert_eq!(seen, values);
        assert!(or_filters("externalId", &[], 300).is_empty());
        // One value longer than the limit still gets its own filter.
        let long = "x".repeat(400);
        assert_eq!(or_filters("externalId", &[long.as_str(), "a"], 300).len(), 2);
    }

    #[test]
    fn a_reply_without_an_id_is_an_error() {
        assert!(ScimObject::from_reply(json!({"userName": "a"})).is_err());
        assert!(ScimObject::from_reply(json!({"id": ""})).is_err());
        assert!(ScimObject::from_reply(Value::Null).is_err());
        assert_eq!(ScimObject::from_optional_reply(Value::Null).unwrap(), None, "a 204 to a PATCH");
        assert!(ScimObject::from_optional_reply(json!({"displayName": "x"})).is_err());
        let o = ScimObject::from_reply(json!({"id": "1", "externalId": "x", "meta": {"version": "W/\"2\""}})).unwrap();
        assert_eq!((o.id.as_str(), o.version.as_deref(), o.external_id.as_deref()), ("1", Some("W/\"2\""), Some("x")));
    }
}
