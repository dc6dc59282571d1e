//! The cost of one PATCH is bounded and paid outside the write transaction: a PATCH adding
//! 30,000 e-mail values (within the body, value and operation limits) completes, and creates
//! sent while it runs are not held up behind it. Real HTTP on loopback, a real database.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Values per operation and operations: 30,000 values in all, each operation under the value
/// limit, the request under the operation limit. Many operations on one attribute is what made
/// duplicate removal quadratic (every `add` compared with all values added before it).
const PER_OP: usize = 30;
const OPS: usize = 1_000;

/// How long a create may take while the big PATCH runs; generous (a create takes milliseconds),
/// yet far below what a create waited behind a PATCH evaluated inside the write transaction.
const CREATE_BOUND: Duration = Duration::from_secs(2);

fn big_patch() -> Value {
    let ops: Vec<Value> = (0..OPS)
        .map(|o| {
            let values: Vec<Value> =
                (0..PER_OP).map(|i| json!({"value": format!("{}@x.test", o * PER_OP + i)})).collect();
            json!({"op": "add", "path": "emails", "value": values})
        })
        .collect();
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_30000_value_patch_completes_and_does_not_hold_up_creates() {
    let s = TestServer::start().await;
    let id = s.create_user("many-emails@example.com").await;
    let body = big_patch().to_string();
    let limits = scim_operator::server::ServerConfig::default();
    assert!(body.len() < limits.max_body_bytes, "the request must be within the body limit: {} bytes", body.len());

    let patch = {
        let (http, url, token) = (s.http.clone(), format!("{}/Users/{id}", s.base), s.token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = http
                .patch(url)
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(body)
                .send()
                .await
                .expect("patch");
            let status = resp.status();
            let answer: Value = resp.json().await.expect("patch answer");
            (status, answer, started.elapsed())
        })
    };

    // Creates one after another while the PATCH is in flight; each must answer in time.
    let mut creates = Vec::new();
    let mut n = 0;
    while !patch.is_finished() {
        n += 1;
        let started = Instant::now();
        let (status, body) =
            s.post("/Users", json!({"schemas": [USER], "userName": format!("concurrent-{n}@example.com")})).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        creates.push((took, patch.is_finished()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer, took) = patch.await.expect("join");
    assert_eq!(status, StatusCode::OK, "{}", &answer.to_string()[..300.min(answer.to_string().len())]);
    assert_eq!(answer["emails"].as_array().map(Vec::len), Some(OPS * PER_OP), "every value was added");
    eprintln!("PATCH of {} values took {took:?}; creates meanwhile: {creates:?}", OPS * PER_OP);

    // At least one create was answered while the PATCH was still running, and none was slow.
    assert!(creates.iter().any(|(_, patch_done)| !patch_done), "no create ran during the PATCH: {creates:?}");
    let slowest = creates.iter().map(|(t, _)| *t).max().expect("creates");
    assert!(slowest < CREATE_BOUND, "a create waited {slowest:?} behind the PATCH (bound {CREATE_BOUND:?})");

    // The stored user has them all, once each: a repeat of the same PATCH adds nothing.
    let (status, again) = s.patch(&format!("/Users/{id}"), big_patch()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["emails"].as_array().map(Vec::len), Some(OPS * PER_OP));
    assert_eq!(again["meta"]["version"], answer["meta"]["version"], "a PATCH that changes nothing keeps the version");
    s.stop().await;
}
