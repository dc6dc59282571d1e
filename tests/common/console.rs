//! The console's test server (the real server and database, console under `/console`,
//! optionally with single sign-on through Keycloak) and the Keycloak that
//! `tests/env/keycloak.sh start` runs, shared by every console test of a run.

use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use scim_operator::clock::Clock;
use scim_operator::console::oidc::{OidcConfig, SubjectClaim};
use scim_operator::console::{ConsoleConfig, ConsoleState, redirect_uri};
use scim_operator::provisioning::Directory;
use scim_operator::provisioning::console::SessionPolicy;
use scim_operator::server::{AppState, ServerConfig, metrics::Metrics};
use scim_operator::store::SharedStore;

/// The Keycloak of `tests/env/keycloak.sh start DIR`, from the `DIR/env` the test command
/// sourced: one instance for every console test of a run (a start takes about a minute).
pub struct Keycloak {
    pub url: String,
    pub realm: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    admin_user: String,
    admin_password: String,
}

impl Keycloak {
    /// The Keycloak of the environment, or `None` when it is not there (the test then skips:
    /// it says so, and fails instead when `SCIM_KEYCLOAK_REQUIRED=1` or
    /// `SCIM_BROWSER_REQUIRED=1`).
    pub fn from_env(test: &str) -> Option<Self> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let found = (|| {
            Some(Self {
                url: var("KEYCLOAK_URL")?,
                realm: var("KEYCLOAK_REALM")?,
                issuer: var("KEYCLOAK_ISSUER")?,
                client_id: var("KEYCLOAK_CONSOLE_CLIENT_ID")?,
                client_secret: var("KEYCLOAK_CONSOLE_CLIENT_SECRET")?,
                admin_user: var("KEYCLOAK_ADMIN_USER")?,
                admin_password: var("KEYCLOAK_ADMIN_PASSWORD")?,
            })
        })();
        if found.is_none() {
            let required = ["SCIM_KEYCLOAK_REQUIRED", "SCIM_BROWSER_REQUIRED"]
                .iter()
                .any(|n| std::env::var(n).is_ok_and(|v| v == "1"));
            assert!(
                !required,
                "{test}: Keycloak is required but KEYCLOAK_* is not set (source the env of tests/env/keycloak.sh start DIR)"
            );
            eprintln!("skipping {test}: no Keycloak (source the env of tests/env/keycloak.sh start DIR)");
        }
        found
    }

    /// Creates a realm user with a password and a verified e-mail (its username).
    pub async fn create_user(&self, http: &reqwest::Client, email: &str, password: &str) {
        let token: Value = http
            .post(format!("{}/realms/master/protocol/openid-connect/token", self.url))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", self.admin_user.as_str()),
                    ("password", self.admin_password.as_str()),
                ])
                .expect("form"),
            )
            .send()
            .await
            .expect("admin token")
            .json()
            .await
            .expect("admin token json");
        let token = token["access_token"].as_str().expect("access_token");
        let resp = http
            .post(format!("{}/admin/realms/{}/users", self.url, self.realm))
            .bearer_auth(token)
            .json(&json!({
                "username": email, "email": email, "emailVerified": true, "enabled": true,
                "firstName": "Test", "lastName": email.split('@').next().unwrap_or("user"),
                "credentials": [{"type": "password", "value": password, "temporary": false}],
            }))
            .send()
            .await
            .expect("create realm user");
        assert_eq!(resp.status(), StatusCode::CREATED, "creating {email} in Keycloak: {:?}", resp.text().await);
    }

    /// Logs `email` in on Keycloak's own login page over plain HTTP, starting at the
    /// authorization URL the console redirected to; returns where Keycloak sends the browser
    /// back (the console's callback with `code` and `state`).
    pub async fn log_in(&self, http: &reqwest::Client, authorize_url: &str, email: &str, password: &str) -> String {
        let page = http.get(authorize_url).send().await.expect("Keycloak's login page");
        assert_eq!(page.status(), StatusCode::OK, "the login page");
        let cookies = cookie_pairs(&page);
        let html = page.text().await.expect("login page");
        let marker = "id=\"kc-form-login\"";
        let form = &html[html.find(marker).expect("Keycloak's login form")..];
        let at = form.find("action=\"").expect("the form's action") + "action=\"".len();
        let action = form[at..].split('"').next().expect("action").replace("&amp;", "&");
        let resp = http
            .post(action)
            .header(reqwest::header::COOKIE, cookies)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string([("username", email), ("password", password)]).expect("form"))
            .send()
            .await
            .expect("log in at Keycloak");
        assert_eq!(resp.status(), StatusCode::FOUND, "Keycloak accepts the password: {:?}", resp.text().await);
        resp.headers()[reqwest::header::LOCATION].to_str().expect("location").to_string()
    }
}

/// The `name=value` pairs a response sets, as one `Cookie` header value.
pub fn cookie_pairs(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .filter(|pair| !pair.ends_with('='))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The console's server: the real HTTP server over a fresh database, console under `/console`.
pub struct ConsoleServer {
    pub root: String,
    pub scim: String,
    /// A key with every permission (made at the store, unaudited).
    pub key: String,
    pub directory: Directory,
    pub store: SharedStore,
    pub db_url: String,
    /// A client that follows no redirect.
    pub http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ConsoleServer {
    /// Starts it on `clock`, with single sign-on through `keycloak` when given (matching the
    /// `email` claim).
    pub async fn start(clock: Arc<dyn Clock>, keycloak: Option<&Keycloak>) -> Self {
        let (db_url, dir) = super::fresh_database().await;
        let store = scim_operator::store::open(&db_url).await.expect("open store");
        let key = super::create_key(&store, "idp", None).await;
        let directory = Directory::new(store.clone(), clock);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let root = format!("http://{}", listener.local_addr().expect("addr"));
        let public_url = format!("{root}/console");
        let oidc = keycloak.map(|kc| OidcConfig {
            issuer: kc.issuer.clone(),
            client_id: kc.client_id.clone(),
            client_secret: Some(kc.client_secret.clone()),
            redirect_uri: redirect_uri(&public_url),
            claim: SubjectClaim::Email,
        });
        let config = ConsoleConfig { public_url, oidc, secure_cookies: false, policy: SessionPolicy::default() };
        let console = ConsoleState::new(directory.clone(), config).expect("console");
        let state = AppState::new(directory.clone(), Arc::new(Metrics::default()), ServerConfig::default())
            .with_console(console);
        let (tx, task) = super::spawn_server(listener, state);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self {
            scim: format!("{root}/scim/v2"),
            root,
            key,
            directory,
            store,
            db_url,
            http,
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.store.close()).await;
        super::drop_database(&self.db_url).await;
    }

    /// A SCIM request with the test's key: the status and the body (JSON, or the text).
    pub async fn scim(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.scim)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        let resp = req.send().await.expect("scim request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Provisions a user over SCIM with an e-mail (so it is invited) and, optionally, a role;
    /// returns its id.
    pub async fn provision(&self, user_name: &str, role: Option<&str>) -> String {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "active": true,
            "emails": [{"value": user_name, "primary": true}],
        });
        if let Some(role) = role {
            body["roles"] = json!([{"value": role}]);
        }
        let (s, b) = self.scim(reqwest::Method::POST, "/Users", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().expect("id").to_string()
    }

    /// The unsent invitation link of a user's newest message (the outbox keeps it until sent).
    pub async fn pending_link(&self, user_id: &str) -> String {
        let mut tx = self.store.begin_read().await.expect("read");
        let inv = tx.invitations(Some(user_id)).await.expect("invitations");
        let newest = inv.first().expect("an invitation");
        let outbox = tx.outbox(100).await.expect("outbox");
        let msg = outbox.iter().find(|m| m.invitation_id.as_deref() == Some(&newest.id)).expect("its message");
        msg.link.clone().expect("an unsent link")
    }

    /// The actor of each audit event with this action, oldest first.
    pub async fn audit_actors(&self, action: &str) -> Vec<String> {
        let q = scim_operator::store::AuditQuery { action: Some(action.into()), ..Default::default() };
        self.directory.audit_events(&q).await.expect("audit").into_iter().map(|e| e.actor).collect()
    }

    /// How many audit events have this action.
    pub async fn audit_count(&self, action: &str) -> usize {
        self.audit_actors(action).await.len()
    }
}
