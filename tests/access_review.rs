//! `GET /api/v1/access-review` and `scim-operator access-review` against a real server and
//! database: the review agrees with `/api/v1/users/{id}/access` of every user in JSON and CSV,
//! goes back in time through the audit trail, and refuses what it must.

mod common;

use std::collections::BTreeSet;

use common::{TestServer, assert_scim_error, create_key_with};
use reqwest::StatusCode;
use scim_operator::provisioning::access::{Permission, Permissions};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn review(s: &TestServer, token: &str, query: &str, accept: Option<&str>) -> (StatusCode, String) {
    let mut req = s.http.get(format!("{}/api/v1/access-review{query}", s.root())).bearer_auth(token);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("access review");
    (resp.status(), resp.text().await.expect("body"))
}

async fn review_json(s: &TestServer, query: &str) -> Value {
    let (status, body) = review(s, &s.token, query, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// (account id, role, source) of each person's line.
fn person_roles(review: &Value) -> BTreeSet<(String, String, String)> {
    review["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter(|a| a["accountType"] == "person")
        .map(|a| {
            (
                a["accountId"].as_str().expect("id").into(),
                a["access"].as_str().expect("role").into(),
                a["source"].as_str().expect("source").into(),
            )
        })
        .collect()
}

fn line_of<'r>(review: &'r Value, id: &str) -> &'r Value {
    review["accounts"].as_array().expect("accounts").iter().find(|a| a["accountId"] == id).expect("the account")
}

async fn user(s: &TestServer, name: &str, roles: &[&str]) -> String {
    let roles: Vec<Value> = roles.iter().map(|r| json!({"value": r})).collect();
    let mut body = json!({"schemas": [USER], "userName": name, "emails": [{"value": name, "primary": true}]});
    if !roles.is_empty() {
        body["roles"] = json!(roles);
    }
    let (status, created) = s.post("/Users", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn the_review_agrees_with_the_access_view_and_goes_back_through_the_audit_trail() {
    let s = TestServer::start().await;
    let ann = user(&s, "ann@example.com", &["Admin"]).await;
    let bob = user(&s, "bob@example.com", &[]).await;
    let carl = user(&s, "carl@example.com", &[]).await;
    let dave = user(&s, "dave@example.com", &["Read Only"]).await;
    let (st, b) = s
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Ops", "members": [{"value": carl}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = s
        .post(
            "/RoleMappings",
            json!({"schemas": ["urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping"],
        "displayName": "ops-readers", "roles": [{"value": "Read Only"}], "teams": [{"value": "Ops"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    let (st, b) = s
        .patch(
            &format!("/Users/{dave}"),
            json!({"schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");

    // JSON, CSV by format= and CSV by Accept, against the access view of every user.
    let now = review_json(&s, "").await;
    let mut expected = BTreeSet::new();
    for id in [&ann, &bob, &carl, &dave] {
        let view = s.access(id).await;
        for r in view["effectiveRoles"].as_array().expect("roles") {
            expected.insert((
                id.to_string(),
                r["name"].as_str().expect("name").into(),
                r["source"].as_str().expect("source").into(),
            ));
        }
        let line = line_of(&now, id);
        assert_eq!(line["status"], if view["active"] == true { "active" } else { "deactivated" }, "{line}");
    }
    assert_eq!(person_roles(&now), expected);
    assert_eq!(line_of(&now, &carl)["via"], "ops-readers through Ops");
    assert_eq!(line_of(&now, &carl)["teams"], "Ops");
    assert!(line_of(&now, &dave)["deactivated"].is_string(), "dave's deactivation is dated");
    let (status, by_format) = review(&s, &s.token, "?format=csv", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, by_accept) = review(&s, &s.token, "", Some("text/csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_format.lines().next(), by_accept.lines().next());
    let mut reader = csv::Reader::from_reader(by_format.as_bytes());
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    assert_eq!(header, scim_operator::provisioning::access_review::CSV_HEADER);
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let csv_rows: BTreeSet<(String, String, String)> = reader
        .records()
        .map(|r| r.expect("record"))
        .filter(|r| &r[col("account_type")] == "person")
        .map(|r| (r[col("account_id")].to_string(), r[col("Role")].to_string(), r[col("source")].to_string()))
        .collect();
    assert_eq!(csv_rows, person_roles(&now), "the CSV says what the JSON says");

    // Back in time: bob's explicit role and a key's revocation come after `before`.
    let before = now["asOf"].as_str().expect("asOf").to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, b) = s
        .patch(
            &format!("/Users/{bob}"),
            json!({"schemas": [PATCH],
        "Operations": [{"op": "add", "path": "roles", "value": [{"value": "Admin"}]}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let keys = s.directory.keys().await.expect("keys");
    let test_key = keys.iter().find(|k| k.name == "test").expect("the test key").id.clone();
    let query = |at: &str| format!("?asOf={}", at.replace('+', "%2B"));
    let then = review_json(&s, &query(&before)).await;
    let after = review_json(&s, "").await;
    let bob_then = line_of(&then, &bob);
    assert_eq!((&bob_then["access"], &bob_then["source"]), (&json!("Standard"), &json!("default")), "{then}");
    let bob_now = line_of(&after, &bob);
    assert_eq!((&bob_now["access"], &bob_now["source"]), (&json!("Admin"), &json!("scim")), "{after}");
    assert_eq!(bob_now["grantedBy"], test_key.as_str(), "granted by the key that sent it");
    assert!(bob_now["grantedAt"].as_str().expect("granted at") > before.as_str());
    assert_eq!(person_roles(&then), expected, "as of before the change, the review is what it was then");
    let ann_since = &line_of(&after, &ann)["grantedAt"];
    assert!(ann_since.as_str().is_some_and(|t| t < before.as_str()), "{after}");
    assert_eq!(&line_of(&then, &ann)["grantedAt"], ann_since, "a role kept keeps its grant");
    // The key's use is recorded (the requests above used it).
    let key_line = line_of(&after, &test_key);
    assert!(key_line["lastUsed"].is_string(), "{key_line}");

    // The command line prints the same review.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["access-review", "--db", &s.db_url, "--as-of", &before, "--format", "json"])
        .output()
        .expect("access-review command");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    assert_eq!(cli, then);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["access-review", "--db", &s.db_url, "--as-of", "2999-01-01", "--format", "csv"])
        .output()
        .expect("access-review command");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in the future"), "{}", String::from_utf8_lossy(&out.stderr));
    s.stop().await;
}

#[tokio::test]
async fn the_review_refuses_keys_without_the_permission_and_dates_it_cannot_read() {
    let s = TestServer::start().await;
    let none = create_key_with(&s.store, "none", None, &Permissions::none()).await;
    let audit_only = create_key_with(&s.store, "audit", None, &Permissions::of(&[Permission::AuditLogsRead])).await;
    let reader = create_key_with(&s.store, "reader", None, &Permissions::of(&[Permission::DirectoryRead])).await;
    for token in [&none, &audit_only] {
        let (status, body) = review(&s, token, "", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(review(&s, &reader, "?format=csv", None).await.0, StatusCode::OK, "directory_read reads it");
    for bad in ["?asOf=yesterday", "?asOf=2026-02-30", "?asOf=2999-01-01", "?asOf=2999-01-01T00:00:00Z", "?format=xml"]
    {
        let (status, body) = review(&s, &reader, bad, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let body: Value = serde_json::from_str(&body).expect("SCIM error");
        assert_scim_error(&body, 400, Some("invalidValue"));
        assert!(
            body["detail"].as_str().expect("detail").contains(if bad.contains("format") { "format" } else { "asOf" }),
            "{body}"
        );
    }
    s.stop().await;
}
