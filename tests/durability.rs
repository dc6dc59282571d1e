//! A server process killed with SIGKILL in the middle of a load loses nothing it acknowledged
//! and leaves nothing half-written (SQLite in WAL mode; transactions around every change).

mod common;

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scim-operator")
}

fn serve(db: &str, port: u16) -> Child {
    Command::new(bin())
        .args(["serve", "--db", db, "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server")
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    for _ in 0..100 {
        if http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not become ready");
}

/// A database file in a new directory (kept while the directory lives), a SCIM key made in it
/// with the command line, and a free port for the server.
fn new_database_with_key() -> (tempfile::TempDir, String, String, u16) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scim.db").to_string_lossy().into_owned();
    let out = Command::new(bin()).args(["keys", "create", "--db", &db, "--name", "load"]).output().unwrap();
    assert!(out.status.success(), "keys create: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    (dir, db, token, port)
}

/// Every acknowledged user is in the database at `db`, and nothing is half-written: each stored
/// user has exactly its creation event.
async fn assert_all_kept(db: &str, acknowledged: &[String]) {
    let store = scim_operator::store::open(db).await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    for name in acknowledged {
        assert!(tx.user_by_name(name).await.unwrap().is_some(), "{name} was acknowledged but is lost");
    }
    let events = tx
        .list_audit(&scim_operator::store::AuditQuery { action: Some("user.create".into()), ..Default::default() })
        .await
        .unwrap();
    let users = common::count_users(tx.as_mut()).await;
    // Nothing half-written: each stored user has exactly its creation event.
    assert_eq!(events.len() as u64, users, "users and their audit events disagree");
    assert!(users as usize >= acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_load_loses_nothing_acknowledged() {
    let (_dir, db, token, port) = new_database_with_key();
    let mut server = serve(&db, port);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    wait_ready(&http, port).await;

    // Eight clients create users until the server dies under them (bounded: 400 each).
    let mut tasks = Vec::new();
    for c in 0..8 {
        let http = http.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..400 {
                let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("load-{c}-{i}")});
                match http.post(format!("http://127.0.0.1:{port}/scim/v2/Users")).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => acknowledged.push(format!("load-{c}-{i}")),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    assert!(acknowledged.len() > 10, "the load did not run before the kill ({} users)", acknowledged.len());

    // Restart on the same file: every acknowledged user is there, with its audit event.
    let mut server = serve(&db, port);
    wait_ready(&http, port).await;
    assert_all_kept(&db, &acknowledged).await;
    let _ = server.kill();
    let _ = server.wait();
}

/// Value of an OpenMetrics counter in a scrape.
fn counter(scrape: &str, name: &str) -> u64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in the scrape:\n{scrape}"))
}

/// Sixteen clients create users while the server is killed three times at moments unrelated
/// to its group commits: every create that was answered 201 is in the database after each
/// restart, and the writer did group transactions (more transactions than commits), so the
/// kills fell between and inside groups, not between single commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_between_group_commits_loses_no_acknowledged_write() {
    let (_dir, db, token, port) = new_database_with_key();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut acknowledged = Vec::new();
    let (mut commits, mut transactions) = (0, 0);
    for round in 0..3 {
        let mut server = serve(&db, port);
        wait_ready(&http, port).await;
        let mut tasks = Vec::new();
        for c in 0..16 {
            let (http, token) = (http.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in 0..2000 {
                    let name = format!("r{round}-c{c}-{i}");
                    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
                    let sent =
                        http.post(format!("http://127.0.0.1:{port}/scim/v2/Users")).bearer_auth(&token).json(&body);
                    match sent.send().await {
                        Ok(r) if r.status() == reqwest::StatusCode::CREATED => ok.push(name),
                        Ok(r) => panic!("create answered {}", r.status()),
                        Err(_) => break,
                    }
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_millis(600 + 170 * round)).await;
        let scrape = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
        commits += counter(&scrape, "scim_store_commits");
        transactions += counter(&scrape, "scim_store_committed_transactions");
        server.kill().expect("SIGKILL");
        let _ = server.wait();
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
    }
    assert!(acknowledged.len() > 100, "the load did not run before the kills ({} users)", acknowledged.len());
    assert!(transactions > commits, "no group commit happened: {transactions} transactions in {commits} commits");

    assert_all_kept(&db, &acknowledged).await;
}
