//! Several `scim-operator serve` processes on one PostgreSQL database, and an HTTP client that
//! spreads its requests over them.

use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The PostgreSQL test server, or `None` (with the reason printed) when the test must skip.
pub fn postgres() -> Option<String> {
    match std::env::var("SCIM_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("SCIM_PG_REQUIRED").is_none(),
                "SCIM_PG_REQUIRED is set but SCIM_TEST_DATABASE_URL is not (run tests/env/postgres.sh start DIR)"
            );
            eprintln!("SKIPPED: SCIM_TEST_DATABASE_URL is not set (start PostgreSQL with tests/env/postgres.sh)");
            None
        }
    }
}

/// The `scim-operator` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scim-operator")
}

/// One `serve` process. Dropping it kills and reaps the process.
pub struct Replica {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts replica `n` on `db` and waits until it is ready.
    pub async fn start(db: &str, logs: &std::path::Path, n: usize) -> Replica {
        Self::start_with(db, logs, n, &[]).await
    }

    /// Same, with more `serve` arguments.
    pub async fn start_with(db: &str, logs: &std::path::Path, n: usize, extra: &[String]) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = logs.join(format!("replica-{n}.log"));
        let child = Command::new(bin())
            .args(["serve", "--db", db, "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        // From here the Replica owns the process: dropping it kills and reaps it.
        let replica = Replica { child, base: format!("http://127.0.0.1:{port}/scim/v2"), log };
        let http = reqwest::Client::new();
        for _ in 0..150 {
            let ready = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return replica;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("replica {n} did not start: {}", std::fs::read_to_string(&replica.log).unwrap_or_default());
    }

    /// The replica's root URL (without `/scim/v2`).
    pub fn root(&self) -> String {
        self.base.trim_end_matches("/scim/v2").to_string()
    }
}

/// A database, a key and `n` replicas serving it.
pub struct Cluster {
    pub db: String,
    pub token: String,
    pub replicas: Vec<Replica>,
    pub bases: Vec<String>,
    pub logs: tempfile::TempDir,
}

impl Cluster {
    /// A fresh database with a key and `n` replicas.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, &[]).await
    }

    /// Same, with more `serve` arguments for every replica.
    pub async fn start_with(n: usize, extra: &[String]) -> Cluster {
        let (db, _) = super::fresh_database().await;
        let out = Command::new(bin())
            .args(["keys", "create", "--db", &db, "--name", "race", "--preset", "admin"])
            .output()
            .unwrap();
        assert!(out.status.success(), "keys create: {}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
        let logs = tempfile::tempdir().unwrap();
        let mut replicas = Vec::new();
        for i in 0..n {
            replicas.push(Replica::start_with(&db, logs.path(), i, extra).await);
        }
        let bases = replicas.iter().map(|r| r.base.clone()).collect();
        Cluster { db, token, replicas, bases, logs }
    }

    /// A client spreading requests over the replicas.
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            token: Arc::new(self.token.clone()),
            bases: Arc::new(self.bases.clone()),
            tally: Arc::new(Tally::default()),
        }
    }

    /// Runs a `scim-operator` administration command on the cluster's database; returns stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(bin()).args(args).args(["--db", &self.db]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the replicas and drops the database.
    pub async fn stop(self) {
        let db = self.db.clone();
        drop(self);
        super::drop_database(&db).await;
    }
}

/// Counts of answers by status (0: no answer: connection refused or reset).
#[derive(Default)]
pub struct Tally(std::sync::Mutex<BTreeMap<u16, usize>>);

impl Tally {
    pub fn add(&self, status: u16) {
        *self.0.lock().unwrap().entry(status).or_default() += 1;
    }
    pub fn get(&self, status: u16) -> usize {
        self.0.lock().unwrap().get(&status).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
    pub fn summary(&self) -> String {
        let m = self.0.lock().unwrap();
        m.iter()
            .map(|(s, n)| format!("{}: {n}", if *s == 0 { "no answer".into() } else { s.to_string() }))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An HTTP client for the cluster; cheap to clone into tasks.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub token: Arc<String>,
    pub bases: Arc<Vec<String>>,
    pub tally: Arc<Tally>,
}

/// Status (0 when no answer came), ETag and body.
pub type Answer = (u16, Option<String>, Value);

impl Client {
    /// A SCIM request to replica `replica` (modulo the number of replicas).
    pub async fn call(
        &self,
        replica: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.bases[replica % self.bases.len()]);
        let mut req = self.http.request(method, url).bearer_auth(self.token.as_str());
        if let Some(b) = body {
            req = req.header("content-type", "application/scim+json").body(b.to_string());
        }
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        let answer = match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let etag = r.headers().get("etag").and_then(|h| h.to_str().ok()).map(str::to_string);
                match r.text().await {
                    Ok(text) => (status, etag, serde_json::from_str(&text).unwrap_or(Value::Null)),
                    // The answer was cut off: whether the change happened is unknown.
                    Err(_) => (0, None, Value::Null),
                }
            }
            Err(_) => (0, None, Value::Null),
        };
        self.tally.add(answer.0);
        answer
    }

    pub async fn create_user(&self, replica: usize, name: &str) -> Answer {
        self.call(replica, Method::POST, "/Users", Some(json!({"schemas": [USER], "userName": name})), None).await
    }

    pub async fn patch(&self, replica: usize, path: &str, ops: Value, if_match: Option<&str>) -> Answer {
        self.call(replica, Method::PATCH, path, Some(json!({"schemas": [PATCH], "Operations": ops})), if_match).await
    }
}

/// Awaits every task, in order.
pub async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}
