//! The bootstrap key file of a running server (the real binary, over HTTP on loopback): a
//! rotated secret works at once, the one it replaced until the grace period is over and never
//! after (also across a restart), every registration and revocation is audited, and the
//! unauthenticated `/readyz` names no key and no user.

use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scim-operator");
const GRACE: Duration = Duration::from_secs(4);
const CHECK: Duration = Duration::from_secs(1);

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(db: &Path, key_file: &Path, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("server-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--db")
            .arg(db)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--bootstrap-key-file")
            .arg(key_file)
            .args(["--bootstrap-key-grace-seconds", &GRACE.as_secs().to_string()])
            .args(["--bootstrap-key-check-seconds", &CHECK.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the server");
        Self { child, base: format!("http://127.0.0.1:{port}"), log }
    }

    async fn ready(&self, http: &reqwest::Client) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = http.get(format!("{}/readyz", self.base)).send().await
                && resp.status().is_success()
            {
                return resp.json().await.expect("readyz JSON");
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            assert!(Instant::now() < deadline, "the server did not become ready:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn status_with(&self, http: &reqwest::Client, secret: &str) -> StatusCode {
        http.get(format!("{}/scim/v2/Users?count=1", self.base)).bearer_auth(secret).send().await.unwrap().status()
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the file the way the kubelet updates a mounted Secret: a new file renamed over.
fn write_key(path: &Path, secret: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{secret}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().expect("run the CLI");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn audit(db: &str, action: &str) -> Vec<Value> {
    cli(&["audit", "--db", db, "--action", action]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rotated_bootstrap_key_works_at_once_and_the_old_one_stops_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scim.db");
    let db_s = db.to_string_lossy().into_owned();
    let key_file = dir.path().join("token");
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    write_key(&key_file, &a);
    let http = reqwest::Client::new();
    let server = Server::start(&db, &key_file, dir.path());
    server.ready(&http).await;
    assert_eq!(server.status_with(&http, &a).await, StatusCode::OK, "the bootstrap key works");
    assert_eq!(server.status_with(&http, &b).await, StatusCode::UNAUTHORIZED);

    write_key(&key_file, &b);
    let rotated =
        until("the new key to work", CHECK * 5, async || server.status_with(&http, &b).await == StatusCode::OK).await;
    assert_eq!(server.status_with(&http, &a).await, StatusCode::OK, "the old key works during the grace period");
    // The new key was registered at most one check period before it first worked.
    let still_in_grace = rotated + GRACE - CHECK - Duration::from_millis(500);
    tokio::time::sleep_until(still_in_grace.into()).await;
    assert_eq!(server.status_with(&http, &a).await, StatusCode::OK, "the old key works until the grace is over");
    let revoked = until("the old key to stop", GRACE + CHECK * 4, async || {
        server.status_with(&http, &a).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(revoked - rotated >= GRACE - CHECK, "revoked {:?} after the rotation", revoked - rotated);
    assert_eq!(server.status_with(&http, &b).await, StatusCode::OK, "the new key keeps working");

    let created = audit(&db_s, "key.create");
    let revocations = audit(&db_s, "key.revoke");
    assert_eq!(created.len(), 2, "both registrations audited: {created:?}");
    assert!(created.iter().all(|e| e["actor"] == "system" && e["details"]["source"] == "bootstrap file"));
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0]["target_id"], created[0]["target_id"], "the first key is the one revoked");
    assert_eq!(revocations[0]["actor"], "system");

    // The unauthenticated readiness check: a user-owned SCIM key is worth a warning, but not
    // one that names the key or the user.
    let (status, user) = {
        let resp = http
            .post(format!("{}/scim/v2/Users", server.base))
            .bearer_auth(&b)
            .header("content-type", "application/scim+json")
            .body(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"owner@example.com"}"#)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let user_id = user["id"].as_str().unwrap().to_string();
    let out = cli(&["keys", "create", "--db", &db_s, "--name", "personal-key", "--user", "owner@example.com"]);
    let key_id = out.split_whitespace().nth(2).unwrap().to_string();
    let ready = server.ready(&http).await;
    let text = ready.to_string();
    assert_eq!(ready["status"], "ready");
    assert!(text.contains("1 SCIM key"), "the warning is still given: {text}");
    for secret_detail in [&key_id, &user_id, "personal-key", "owner@example.com", "bootstrap-"] {
        assert!(!text.contains(secret_detail), "/readyz reveals {secret_detail}: {text}");
    }
    let reserved =
        Command::new(BIN).args(["keys", "create", "--db", &db_s, "--name", "bootstrap-mine"]).output().unwrap();
    assert!(!reserved.status.success(), "bootstrap- names are reserved");
    server.stop();

    // Restarted with a third key written while it was down: that one works at once, `b` during
    // its grace and not after it, and `a` stays revoked.
    let c = "c".repeat(40);
    write_key(&key_file, &c);
    let server = Server::start(&db, &key_file, dir.path());
    server.ready(&http).await;
    assert_eq!(server.status_with(&http, &c).await, StatusCode::OK);
    assert_eq!(server.status_with(&http, &b).await, StatusCode::OK);
    assert_eq!(server.status_with(&http, &a).await, StatusCode::UNAUTHORIZED);
    until("b to stop", GRACE + CHECK * 4, async || server.status_with(&http, &b).await == StatusCode::UNAUTHORIZED)
        .await;
    server.stop();

    // A revoked key put back into the file is refused with a clear error, not silently revived.
    write_key(&key_file, &a);
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--db")
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"])
        .arg("--bootstrap-key-file")
        .arg(&key_file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("revoked"), "{err}");
}
