//! Several `scim-operator serve` processes on one PostgreSQL database, raced by many clients:
//! every accepted change is present exactly once, and a replica killed mid-load loses nothing
//! it acknowledged. Needs `SCIM_TEST_DATABASE_URL` (tests/env/postgres.sh); skips without it
//! unless `SCIM_PG_REQUIRED` is set.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct Replica {
    child: Child,
    base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scim-operator")
}

async fn start(db: &str) -> Replica {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin())
        .args(["serve", "--db", db, "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // From here the Replica owns the process: dropping it kills and reaps it.
    let replica = Replica { child, base: format!("http://127.0.0.1:{port}/scim/v2") };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return replica;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replica did not start");
}

async fn call(
    http: &reqwest::Client,
    token: &str,
    method: Method,
    url: String,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            let etag = r.headers().get("etag").and_then(|h| h.to_str().ok()).map(str::to_string);
            let body = r.json().await.unwrap_or(Value::Null);
            (status, etag, body)
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, None, Value::Null),
    }
}

fn user(name: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_database_keep_every_accepted_change_once() {
    if std::env::var_os("SCIM_TEST_DATABASE_URL").is_none() {
        assert!(
            std::env::var_os("SCIM_PG_REQUIRED").is_none(),
            "SCIM_PG_REQUIRED is set but SCIM_TEST_DATABASE_URL is not"
        );
        eprintln!("SKIPPED: SCIM_TEST_DATABASE_URL is not set (start tests/env/postgres.sh)");
        return;
    }
    let (db, _) = common::fresh_database().await;
    let out = Command::new(bin()).args(["keys", "create", "--db", &db, "--name", "race"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = Arc::new(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string());
    let replicas = vec![start(&db).await, start(&db).await, start(&db).await];
    let bases: Arc<Vec<String>> = Arc::new(replicas.iter().map(|r| r.base.clone()).collect());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();

    // 1. The same userName from every replica at once: exactly one 201.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (http, token, bases) = (http.clone(), token.clone(), bases.clone());
        tasks.push(tokio::spawn(async move {
            call(&http, &token, Method::POST, format!("{}/Users", bases[i % 3]), Some(user("Race@Example.com")), None)
                .await
                .0
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 1, "uniqueness enforced across replicas");

    // 2. Concurrent membership PATCHes to one group through every replica: all kept.
    let (_, _, g) = call(
        &http,
        &token,
        Method::POST,
        format!("{}/Groups", bases[0]),
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Racers"})),
        None,
    )
    .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..45 {
        let (s, _, u) = call(
            &http,
            &token,
            Method::POST,
            format!("{}/Users", bases[i % 3]),
            Some(user(&format!("member{i}@x"))),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (http, token, bases, gid, id) = (http.clone(), token.clone(), bases.clone(), gid.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]});
            call(&http, &token, Method::PATCH, format!("{}/Groups/{gid}?excludedAttributes=members", bases[i % 3]), Some(body), None).await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let (_, _, g) = call(&http, &token, Method::GET, format!("{}/Groups/{gid}", bases[1]), None, None).await;
    let mut members: Vec<String> =
        g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_string()).collect();
    members.sort();
    ids.sort();
    assert_eq!(members, ids, "no membership change lost");
    assert_eq!(g["meta"]["version"], format!("W/\"{}\"", ids.len() + 1));

    // 3. Conditional updates of one user: each version is won by exactly one writer.
    let target = ids[0].clone();
    let mut tasks = Vec::new();
    for c in 0..9 {
        let (http, token, bases, target) = (http.clone(), token.clone(), bases.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for round in 0..6 {
                let url = format!("{}/Users/{target}", bases[c % 3]);
                let (_, etag, _) = call(&http, &token, Method::GET, url.clone(), None, None).await;
                let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": format!("c{c}r{round}")}]});
                let (s, new_etag, _) = call(&http, &token, Method::PATCH, url, Some(body), etag.as_deref()).await;
                match s {
                    StatusCode::OK => won.push((etag.unwrap_or_default(), new_etag.unwrap_or_default())),
                    StatusCode::PRECONDITION_FAILED => {}
                    other => panic!("unexpected {other}"),
                }
            }
            won
        }));
    }
    let mut wins = Vec::new();
    for t in tasks {
        wins.extend(t.await.unwrap());
    }
    let mut bases_won: Vec<&String> = wins.iter().map(|(b, _)| b).collect();
    bases_won.sort();
    let before = bases_won.len();
    bases_won.dedup();
    assert_eq!(before, bases_won.len(), "two writers won the same version: a lost update");
    let (_, etag, _) = call(&http, &token, Method::GET, format!("{}/Users/{target}", bases[2]), None, None).await;
    let final_version: usize = etag.unwrap().trim_start_matches("W/\"").trim_end_matches('"').parse().unwrap();
    assert_eq!(final_version, 1 + wins.len(), "every accepted update is one version");

    // 4. Audit events: exactly one per accepted change.
    let store = scim_operator::store::open(&db).await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    let count = |a: &str| scim_operator::store::AuditQuery { action: Some(a.into()), ..Default::default() };
    assert_eq!(tx.list_audit(&count("user.create")).await.unwrap().len(), 1 + ids.len());
    assert_eq!(tx.list_audit(&count("group.patch")).await.unwrap().len(), ids.len());
    assert_eq!(tx.list_audit(&count("user.patch")).await.unwrap().len(), wins.len());
    drop(tx);

    // 5. A replica killed mid-load loses nothing it acknowledged; the others go on.
    let mut replicas = replicas;
    let mut tasks = Vec::new();
    for c in 0..6 {
        let (http, token, bases) = (http.clone(), token.clone(), bases.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..150 {
                let name = format!("fault-{c}-{i}");
                let (s, _, _) =
                    call(&http, &token, Method::POST, format!("{}/Users", bases[(c + i) % 3]), Some(user(&name)), None)
                        .await;
                if s == StatusCode::CREATED {
                    acked.push(name);
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    replicas[0].child.kill().unwrap();
    let _ = replicas[0].child.wait();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 100, "load ran on the surviving replicas ({} acknowledged)", acked.len());
    let mut tx = store.begin_read().await.unwrap();
    for name in &acked {
        assert!(tx.user_by_name(name).await.unwrap().is_some(), "{name} acknowledged but lost");
    }
}
