//! Test support: a real SCIM server on loopback over a real database, and an HTTP client.
#![allow(dead_code)]

pub mod console;
pub mod replicas;
pub mod smtp;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

use scim_operator::clock::{Clock, SystemClock, format_time};
use scim_operator::provisioning::Directory;
use scim_operator::provisioning::access::Permissions;
use scim_operator::provisioning::keys::{Secret, new_key_record};
use scim_operator::server::{AppState, ServerConfig, metrics::Metrics};
use scim_operator::store::{KeyOwner, ListSpec, ReadTx, SharedStore, UserRecord};

pub mod k8s;

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    pub directory: Directory,
    pub base: String,
    pub token: String,
    pub store: SharedStore,
    pub http: reqwest::Client,
    pub db_url: String,
    _dir: Option<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Serves `state` on `listener` in a task until the returned sender is used (or dropped).
pub fn spawn_server(
    listener: tokio::net::TcpListener,
    state: AppState,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        scim_operator::server::serve(listener, state, async {
            let _ = rx.await;
        })
        .await
        .expect("server");
    });
    (tx, task)
}

/// The database the tests run on: a fresh database (`test_<random>`) on the PostgreSQL server
/// of `SCIM_TEST_DATABASE_URL` when it is set (created through a connection to the URL's own
/// database; the URL's query string is kept), else a fresh SQLite file.
pub async fn fresh_database() -> (String, Option<tempfile::TempDir>) {
    if let Ok(url) = std::env::var("SCIM_TEST_DATABASE_URL") {
        use sqlx::Connection;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        let _ = admin.close().await;
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, format!("?{q}")),
            None => (url.as_str(), String::new()),
        };
        let server = path.rsplit_once('/').map(|(b, _)| b).unwrap_or(path);
        return (format!("{server}/{name}{query}"), None);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scim.db");
    (path.to_string_lossy().into_owned(), Some(dir))
}

/// Drops a PostgreSQL database made by [`fresh_database`] (best effort; SQLite files go with
/// their temporary directory).
pub async fn drop_database(db_url: &str) {
    use sqlx::Connection;
    let Ok(admin_url) = std::env::var("SCIM_TEST_DATABASE_URL") else { return };
    let path = db_url.split_once('?').map_or(db_url, |(p, _)| p);
    let Some((_, name)) = path.rsplit_once('/') else { return };
    if !name.starts_with("test_") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return;
    }
    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
    }
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with a fresh database and one service-account key.
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    /// Same, with server settings.
    pub async fn start_with(config: ServerConfig) -> Self {
        Self::start_full(config, Arc::new(SystemClock), None).await
    }

    /// Same, with a clock the test controls and, optionally, a StatsD address.
    pub async fn start_full(config: ServerConfig, clock: Arc<dyn Clock>, statsd: Option<String>) -> Self {
        let (db_url, dir) = fresh_database().await;
        let store = scim_operator::store::open(&db_url).await.expect("open store");
        let token = create_key(&store, "test", None).await;
        let metrics = Arc::new(Metrics::default());
        let statsd = statsd.map(|a| scim_operator::server::metrics::statsd_client(&a).expect("statsd"));
        let observer = Arc::new(scim_operator::server::metrics::MetricsObserver { metrics: metrics.clone(), statsd });
        let directory = Directory::new(store.clone(), clock).with_observer(observer);
        let state = AppState::new(directory.clone(), metrics, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, task) = spawn_server(listener, state);
        Self {
            directory,
            base: format!("http://{addr}/scim/v2"),
            token,
            store,
            http: reqwest::Client::new(),
            db_url,
            _dir: dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Root URL (without `/scim/v2`).
    pub fn root(&self) -> String {
        self.base.trim_end_matches("/scim/v2").to_string()
    }

    /// Sends a SCIM request with the test key; returns status, headers and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// Same, with another bearer token.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, headers, json)
    }

    /// The access view of a user (`/api/v1/users/{id}/access`): its effective roles and why.
    pub async fn access(&self, id: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/api/v1/users/{id}/access", self.root()))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("access view");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("access JSON")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, b) = self.call(Method::GET, path, None).await;
        (s, b)
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self.call(Method::POST, path, Some(body)).await;
        (s, b)
    }
    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self.call(Method::PUT, path, Some(body)).await;
        (s, b)
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self.call(Method::PATCH, path, Some(body)).await;
        (s, b)
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let (s, _, b) = self.call(Method::DELETE, path, None).await;
        (s, b)
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let (s, b) = self
            .post(
                "/Users",
                serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create {user_name}: {b}");
        b["id"].as_str().expect("id").to_string()
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        // Bounded: a test still holding a transaction must not hang here.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.store.close()).await;
        drop_database(&self.db_url).await;
    }
}

/// Creates an application key with every permission directly in the store and returns its secret.
pub async fn create_key(store: &SharedStore, name: &str, user_id: Option<String>) -> String {
    create_key_with(store, name, user_id, &Permissions::all()).await
}

/// Same, with these permissions.
pub async fn create_key_with(
    store: &SharedStore,
    name: &str,
    user_id: Option<String>,
    permissions: &Permissions,
) -> String {
    let secret = Secret::generate();
    let owner = if user_id.is_some() { KeyOwner::User } else { KeyOwner::ServiceAccount };
    let rec = new_key_record(&secret, name, owner, user_id, permissions, &format_time(SystemClock.now()));
    let mut tx = store.begin_write().await.expect("tx");
    tx.insert_key(&rec).await.expect("insert key");
    tx.commit().await.expect("commit");
    secret.expose().to_string()
}

/// A user record for tests at the store's interface: `id` and `name`, nothing else set.
pub fn user_record(id: &str, name: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        user_name: name.into(),
        external_id: None,
        display_name: None,
        active: true,
        data: serde_json::Map::new(),
        created: "2026-01-01T00:00:00.000Z".into(),
        last_modified: "2026-01-01T00:00:00.000Z".into(),
        version: 1,
    }
}

/// How many users the store holds, as a read handle sees them (a page of none still counts).
pub async fn count_users(tx: &mut dyn ReadTx) -> u64 {
    let spec = ListSpec {
        resource_type: &scim_operator::scim::schema::user_resource_type(),
        filter: None,
        sort_by: None,
        sort_order: Default::default(),
        offset: 0,
        limit: 0,
    };
    tx.list_users(&spec).await.expect("count users").0
}

/// The SCIM error body's fields, asserting the shape of RFC 7644 §3.12.
pub fn assert_scim_error(body: &Value, status: u16, scim_type: Option<&str>) {
    assert_eq!(body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error", "not a SCIM error: {body}");
    assert_eq!(body["status"], Value::String(status.to_string()), "status in {body}");
    match scim_type {
        Some(t) => assert_eq!(body["scimType"], t, "scimType in {body}"),
        None => assert!(body.get("scimType").is_none(), "unexpected scimType in {body}"),
    }
}
