//! Hostile and odd input over real HTTP, on a real database (SQLite, or PostgreSQL when
//! `SCIM_TEST_DATABASE_URL` is set): every request gets a precise answer, never a 5xx, and
//! nothing is half-applied.

mod common;

use common::{TestServer, assert_scim_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn user(name: &str) -> Value {
    json!({"schemas": [USER], "userName": name})
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn search(filter: &str) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter})
}

fn encode(filter: &str) -> String {
    serde_urlencoded::to_string([("filter", filter)]).expect("encode")
}

/// Sends raw bytes as the body of a request.
async fn send_bytes(s: &TestServer, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let resp = s
        .http
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(&s.token)
        .header("content-type", "application/scim+json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Sends a request over a bare TCP connection (the body written concurrently, and abandoned if
/// the server stops reading) and returns what the server answered up to the end of its body or
/// 5 seconds.
async fn raw_request(s: &TestServer, method: &str, path: &str, extra_headers: &str, body: Vec<u8>) -> String {
    let addr = s.base.trim_start_matches("http://").split('/').next().expect("address").to_string();
    let conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut rd, mut wr) = conn.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json\r\n{extra_headers}\r\n",
        s.token
    );
    wr.write_all(head.as_bytes()).await.expect("write head");
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
        let text = String::from_utf8_lossy(&answer);
        if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
    }
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The limits served at `/api/v1/limits` (SCIM's ServiceProviderConfig has no place for them).
async fn api_limits(s: &TestServer) -> Value {
    let resp = s.http.get(format!("{}/api/v1/limits", s.root())).bearer_auth(&s.token).send().await.expect("limits");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("limits JSON")
}

#[tokio::test]
async fn odd_path_spellings_reach_the_same_endpoints() {
    let s = TestServer::start().await;
    let id = s.create_user("spelling@example.com").await;
    let filter = encode("userName eq \"spelling@example.com\"");
    for path in [
        format!("/users?{filter}"),
        format!("/Users/?{filter}"),
        format!("/USERS/?{filter}&unknownParameter=1&another"),
        format!("/uSeRs?{filter}&count=5"),
    ] {
        let (status, body) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["totalResults"], 1, "{path}: {body}");
    }
    for path in [format!("/users/{id}"), format!("/Users/{id}/"), format!("/USERS/{id}")] {
        let (status, body) = s.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["id"], id.as_str());
    }
    for path in [
        "/serviceproviderconfig",
        "/ServiceProviderConfig/",
        "/SCHEMAS",
        "/schemas/",
        "/resourcetypes",
        "/ResourceTypes/",
        "/resourcetypes/User",
        "/groups",
        "/Groups/",
        "/rolemappings/",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // The whole prefix too, and searches.
    let resp = s.http.get(format!("{}/SCIM/V2/Users/", s.root())).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = s.post("/users/.SEARCH", search("userName eq \"spelling@example.com\"")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1);
    // Ids keep their case: a different id is another (absent) resource.
    let (status, body) = s.get(&format!("/Users/{}", id.to_uppercase())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Creation through an odd spelling works as well.
    let (status, body) = s.post("/users/", user("created-lowercase@example.com")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn control_characters_are_refused_everywhere() {
    let s = TestServer::start().await;
    for name in ["nul\u{0}inside", "bell\u{7}", "line\nbreak", "c1\u{85}control", "\u{1b}[31mred"] {
        let (status, body) = s.post("/Users", user(name)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_scim_error(&body, 400, Some("invalidValue"));
        assert!(body["detail"].as_str().unwrap().contains("control character"), "{body}");
    }
    let (status, body) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "team\u{0}"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidValue"));
    // Multi-line text is fine where an address has lines.
    let (status, body) = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "lines@example.com",
                   "addresses": [{"streetAddress": "1 Main St\nApt 2", "formatted": "1 Main St\r\nApt 2\tX"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // PATCH and PUT go through the same validation, and refuse the whole request.
    let (status, body) = s
        .patch(
            &format!("/Users/{id}"),
            patch(json!([{"op": "replace", "path": "displayName", "value": "ok"},
                         {"op": "replace", "path": "name.givenName", "value": "x\u{0}"}])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidValue"));
    let (status, body) = s.put(&format!("/Users/{id}"), json!({"schemas": [USER], "userName": "x\u{0}y"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, after) = s.get(&format!("/Users/{id}")).await;
    assert_eq!(after["userName"], "lines@example.com");
    assert!(after.get("displayName").is_none(), "nothing of the refused PATCH applied: {after}");
    // In filters, and in paths (percent-encoded), a control character is refused, not sent to SQL.
    let (status, body) = s.get(&format!("/Users?{}", encode("userName eq \"a\\u0000b\""))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidFilter"));
    let (status, body) = s.get("/Users/abc%00def").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_scim_error(&body, 404, None);
    let (status, body) = s.delete("/Groups/%01").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn invalid_utf8_and_broken_json_are_syntax_errors() {
    let s = TestServer::start().await;
    let mut body = br#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "caf"#.to_vec();
    body.extend_from_slice(&[0xC3, 0x28, b'"', b'}']);
    let (status, resp) = send_bytes(&s, Method::POST, "/Users", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_scim_error(&resp, 400, Some("invalidSyntax"));
    assert!(resp["detail"].as_str().unwrap().contains("UTF-8"), "{resp}");
    let (status, resp) = send_bytes(&s, Method::POST, "/Users", vec![0xFF, 0xFE, b'{', b'}']).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&resp, 400, Some("invalidSyntax"));
    // A lone surrogate escape is not a character.
    let (status, resp) = send_bytes(
        &s,
        Method::POST,
        "/Users",
        br#"{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "\ud800"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_scim_error(&resp, 400, Some("invalidSyntax"));
    let (status, resp) = send_bytes(&s, Method::PATCH, "/Users/x", b"[[[[[[".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
    assert_scim_error(&resp, 400, Some("invalidSyntax"));
    let (status, resp) = send_bytes(&s, Method::POST, "/Users", "[".repeat(100_000).into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "deep nesting: {resp}");
    s.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let s = TestServer::start().await;
    let limit = scim_operator::server::ServerConfig::default().max_body_bytes;
    let padding = "x".repeat(limit + 1);
    let big = json!({"schemas": [USER], "userName": "big@example.com", "displayName": padding});
    // With Content-Length (reqwest sets it for a complete body).
    let (status, body) = s.post("/Users", big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_scim_error(&body, 413, None);
    assert!(body["detail"].as_str().unwrap().contains(&limit.to_string()), "the limit is named: {body}");
    // Without Content-Length: chunked, refused while reading.
    let text = big.to_string().into_bytes();
    let mut chunked = Vec::new();
    for c in text.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        chunked.extend_from_slice(c);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_request(&s, "POST", "/scim/v2/Users", "Transfer-Encoding: chunked\r\n", chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"status\":\"413\""), "a SCIM error: {answer}");
    let (status, body) = s.get("/Users?filter=userName%20eq%20%22big%40example.com%22").await;
    assert_eq!((status, &body["totalResults"]), (StatusCode::OK, &json!(0)), "nothing was created: {body}");
    s.stop().await;
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_sent() {
    let s = TestServer::start().await;
    // 11 MiB announced, not a byte of it sent: the answer must come from the head alone.
    let started = Instant::now();
    let answer =
        raw_request(&s, "POST", "/scim/v2/Users", &format!("Content-Length: {}\r\n", 11 * 1024 * 1024), Vec::new())
            .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"status\":\"413\""), "a SCIM error: {answer}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered without the body");
    // Unauthenticated and to any endpoint: the size is judged first.
    let resp = s
        .http
        .put(format!("{}/Groups/whatever", s.base))
        .header("content-length", "999999999")
        .body(vec![b'{'; 10])
        .send()
        .await;
    // The server may close the connection before reqwest finishes writing: either a 413 or a
    // reset, never anything else.
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    s.stop().await;
}

#[tokio::test]
async fn long_and_deep_filters_run_or_are_invalid_filters() {
    let s = TestServer::start().await;
    s.create_user("needle@example.com").await;
    // A long `or` chain within the length limit runs (it is balanced, not 1000 levels deep).
    let mut terms: Vec<String> = (0..700).map(|i| format!("userName eq \"u{i}\"")).collect();
    terms.push("userName eq \"needle@example.com\"".into());
    let chain = terms.join(" or ");
    assert!(chain.len() > 8192, "longer than the limit: {}", chain.len());
    let (status, body) = s.get(&format!("/Users?{}", encode(&chain))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidFilter"));
    assert!(body["detail"].as_str().unwrap().contains("8192"), "{body}");
    let chain: String = terms[terms.len() - 300..].join(" or ");
    let (status, body) = s.post("/Users/.search", search(&chain)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1);
    // The longest chains the length allows, with `and` and `or` mixed and on both resource types.
    let short_or = vec!["id pr"; 8192 / 9].join(" or ");
    let short_and = vec!["id pr"; 8192 / 10].join(" and ");
    for (path, f) in [("/Users", &short_or), ("/Users", &short_and), ("/Groups", &short_or), ("/Groups", &short_and)] {
        let (status, body) = s.post(&format!("{path}/.search"), search(f)).await;
        assert_eq!(status, StatusCode::OK, "{path} chain of {}: {body}", f.len());
    }
    // Nesting: within the depth it runs, beyond it is refused.
    let nested = |depth: usize, open: &str| format!("{}userName pr{}", open.repeat(depth), ")".repeat(depth));
    for (depth, ok) in [(60, true), (65, false), (2000, false)] {
        for open in ["(", "not ("] {
            let f = nested(depth, open);
            let (status, body) = s.post("/Users/.search", search(&f)).await;
            if ok {
                assert_eq!(status, StatusCode::OK, "depth {depth} {open}: {body}");
            } else {
                assert_eq!(status, StatusCode::BAD_REQUEST, "depth {depth} {open}: {body}");
                assert_scim_error(&body, 400, Some("invalidFilter"));
            }
        }
    }
    // Deep nesting made of chains in parentheses counts the chains too.
    let mut f = "userName pr".to_string();
    for _ in 0..70 {
        f = format!("({f}) and userName pr and (userName pr or id pr)");
    }
    let (status, body) = s.post("/Users/.search", search(&f)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidFilter"));
    // Value filters, nested `not`, many parameters: run.
    let vf = vec!["emails[value co \"x\" or type eq \"work\"]"; 150].join(" or ");
    let (status, body) = s.post("/Users/.search", search(&vf)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn huge_patches_are_refused_by_the_limits_quickly() {
    let s = TestServer::start().await;
    let id = s.create_user("patched@example.com").await;
    let limits = scim_operator::server::ServerConfig::default();
    // 30,000 e-mail values in one PATCH: over the value limit, refused fast and whole.
    let emails: Vec<Value> = (0..30_000).map(|i| json!({"value": format!("e{i}@x.test")})).collect();
    let started = Instant::now();
    let (status, body) =
        s.patch(&format!("/Users/{id}"), patch(json!([{"op": "add", "path": "emails", "value": emails}]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidValue"));
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("emails") && detail.contains(&limits.max_values.to_string()), "{detail}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    // At the limit the PATCH is processed, in linear time.
    let emails: Vec<Value> = (0..limits.max_values).map(|i| json!({"value": format!("e{i}@x.test")})).collect();
    let started = Instant::now();
    let (status, body) =
        s.patch(&format!("/Users/{id}"), patch(json!([{"op": "add", "path": "emails", "value": emails}]))).await;
    assert_eq!(status, StatusCode::OK, "{}", &body.to_string()[..200.min(body.to_string().len())]);
    assert_eq!(body["emails"].as_array().unwrap().len(), limits.max_values);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    // Too many operations.
    let ops: Vec<Value> = (0..limits.max_patch_operations + 1)
        .map(|i| json!({"op": "replace", "path": "displayName", "value": format!("n{i}")}))
        .collect();
    let (status, body) = s.patch(&format!("/Users/{id}"), patch(Value::Array(ops))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidValue"));
    assert!(body["detail"].as_str().unwrap().contains(&limits.max_patch_operations.to_string()), "{body}");
    // Group members count as values too.
    let members: Vec<Value> = (0..limits.max_values + 1).map(|i| json!({"value": format!("m{i}")})).collect();
    let (status, body) =
        s.post("/Groups", json!({"schemas": [GROUP], "displayName": "huge", "members": members})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_scim_error(&body, 400, Some("invalidValue"));
    // The limits are advertised.
    let ext = api_limits(&s).await;
    assert_eq!(ext["maxPatchOperations"], limits.max_patch_operations);
    assert_eq!(ext["maxValuesPerAttribute"], limits.max_values);
    assert_eq!(ext["maxPayloadSize"], limits.max_body_bytes);
    assert_eq!(ext["maxFilterDepth"], 64);
    s.stop().await;
}

#[tokio::test]
async fn limits_follow_the_server_settings() {
    let config = scim_operator::server::ServerConfig {
        max_values: 3,
        max_patch_operations: 2,
        max_body_bytes: 4096,
        ..Default::default()
    };
    let s = TestServer::start_with(config).await;
    let emails: Vec<Value> = (0..4).map(|i| json!({"value": format!("e{i}@x.test")})).collect();
    let (status, body) =
        s.post("/Users", json!({"schemas": [USER], "userName": "few@example.com", "emails": emails})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("at most 3"), "{body}");
    let id = s.create_user("few@example.com").await;
    let ops = json!([{"op": "replace", "path": "displayName", "value": "a"},
                     {"op": "replace", "path": "displayName", "value": "b"},
                     {"op": "replace", "path": "displayName", "value": "c"}]);
    let (status, body) = s.patch(&format!("/Users/{id}"), patch(ops)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("at most 2"), "{body}");
    let (status, _) = s.post("/Users", json!({"schemas": [USER], "userName": "x".repeat(5000)})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api_limits(&s).await["maxPayloadSize"], 4096);
    s.stop().await;
}

#[tokio::test]
async fn unicode_case_pairs_match_on_every_store() {
    let s = TestServer::start().await;
    let (status, body) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Ärzte"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group_id = body["id"].as_str().unwrap().to_string();
    for f in ["displayName eq \"ärzte\"", "displayName eq \"ÄRZTE\"", "displayName sw \"är\"", "displayName co \"RZT\""]
    {
        let (status, body) = s.get(&format!("/Groups?{}", encode(f))).await;
        assert_eq!(status, StatusCode::OK, "{f}: {body}");
        assert_eq!(body["totalResults"], 1, "{f}: {body}");
    }
    let (status, body) = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "Straße@example.com", "title": "İstanbul Müdürü",
                   "name": {"givenName": "E\u{301}mile", "familyName": "ΣΊΣΥΦΟΣ"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let user_id = body["id"].as_str().unwrap().to_string();
    let (status, _) = s
        .patch(
            &format!("/Groups/{group_id}"),
            patch(json!([{"op": "add", "path": "members", "value": [{"value": user_id}]}])),
        )
        .await;
    assert!(status.is_success());
    for (f, n) in [
        ("userName eq \"STRASSE@EXAMPLE.COM\"", 1),
        ("userName eq \"straße@example.com\"", 1),
        ("userName sw \"STRAS\"", 1),
        ("name.givenName eq \"émile\"", 1),
        ("name.givenName eq \"ÉMILE\"", 1),
        ("name.familyName eq \"σίσυφος\"", 1),
        ("title sw \"i\u{307}stanbul\"", 1),
        ("title sw \"istanbul\"", 0),
        ("title co \"MÜDÜRÜ\"", 1),
        ("groups.display eq \"ärzte\"", 1),
        ("groups[display eq \"ÄRZTE\"]", 1),
        ("userName eq \"😀\"", 0),
    ] {
        let (status, body) = s.get(&format!("/Users?{}", encode(f))).await;
        assert_eq!(status, StatusCode::OK, "{f}: {body}");
        assert_eq!(body["totalResults"], n, "{f}: {body}");
    }
    // Uniqueness follows the same folding.
    let (status, body) = s.post("/Users", user("STRASSE@example.com")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_scim_error(&body, 409, Some("uniqueness"));
    // Sorting orders folded text by code point on both stores.
    for name in ["émile", "Zoe", "adam", "Ölaf"] {
        s.create_user(name).await;
    }
    let (status, body) = s.get("/Users?sortBy=userName&count=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> =
        body["Resources"].as_array().unwrap().iter().map(|r| r["userName"].as_str().unwrap()).collect();
    assert_eq!(names, ["adam", "Straße@example.com", "Zoe", "émile", "Ölaf"]);
    s.stop().await;
}

#[tokio::test]
async fn no_hostile_request_gets_a_5xx() {
    let s = TestServer::start().await;
    let id = s.create_user("target@example.com").await;
    let filters = [
        "userName eq",
        "((((",
        "userName eq \"\\",
        "emails[type eq \"work\"",
        "emails[emails[value eq \"x\"]]",
        "userName gt 1e999",
        "meta.created gt \"not a date\"",
        "active gt true",
        "name co \"x\"",
        "emails.value eq 12345678901234567890123",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq \"x\"",
        "members[value eq \"x\"] and not (members pr)",
        "x.y.z eq 1",
        "id eq \"\u{10FFFF}\"",
    ];
    for f in filters {
        for path in ["/Users", "/Groups", "/RoleMappings"] {
            let (status, body) = s.get(&format!("{path}?{}", encode(f))).await;
            assert!(status.is_success() || status == StatusCode::BAD_REQUEST, "{path} {f}: {status} {body}");
        }
    }
    for (path, q) in [
        ("/Users", "sortBy=emails.value&sortOrder=sideways"),
        ("/Users", "startIndex=-5&count=99999999999999999999"),
        ("/Users", "attributes=%00&excludedAttributes=name..x"),
        ("/Groups", "sortBy=members.value"),
    ] {
        let (status, body) = s.get(&format!("{path}?{q}")).await;
        assert!(status.is_success() || status == StatusCode::BAD_REQUEST, "{path}?{q}: {status} {body}");
    }
    let weird = [
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "emails[type eq \"x\"].value", "value": "a"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "emails[value pr]"}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"emails": [{"primary": true}, {"primary": true}]}}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "name", "value": 5}]}),
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "\u{0}"}]}),
        json!({"schemas": [PATCH_OP], "Operations": "nope"}),
    ];
    for p in weird {
        let (status, body) = s.patch(&format!("/Users/{id}"), p.clone()).await;
        assert!(status.is_success() || status.is_client_error(), "{p}: {status} {body}");
    }
    s.stop().await;
}

/// A database written before the folded columns existed is filled at startup: old rows match
/// Unicode case pairs like new ones.
#[tokio::test]
async fn rows_from_before_the_folded_columns_are_backfilled() {
    use scim_operator::scim::filter::parse_filter;
    use scim_operator::scim::list::SortOrder;
    use scim_operator::scim::schema::{group_resource_type, user_resource_type};
    use scim_operator::store::ListSpec;
    use sqlx::any::AnyPoolOptions;
    sqlx::any::install_default_drivers();
    let (url, _dir) = common::fresh_database().await;
    let postgres = url.starts_with("postgres");
    let pool_url = if postgres { url.clone() } else { format!("sqlite://{url}?mode=rwc") };
    let pool = AnyPoolOptions::new().max_connections(1).connect(&pool_url).await.expect("connect");
    let dir = if postgres { "migrations/postgres" } else { "migrations/sqlite" };
    let mut migrator = sqlx::migrate::Migrator::new(std::path::Path::new(dir)).await.expect("migrations");
    migrator.migrations = std::borrow::Cow::Owned(migrator.migrations[..1].to_vec());
    migrator.run(&pool).await.expect("migration 0001 only");
    let json = if postgres { "$2::jsonb" } else { "$2" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (id, user_name, user_name_key, active, data, created, last_modified) \
         VALUES ('u1', 'ÄRZTE', 'Ärzte', 1, {json}, $1, $1)"
    )))
    .bind("2024-01-01T00:00:00.000Z")
    .bind(json!({"userName": "ÄRZTE", "name": {"familyName": "Müller"}}).to_string())
    .execute(&pool)
    .await
    .expect("old user row");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO teams (id, name, handle, scim_id, data, created, last_modified) \
         VALUES ('t1', 'Ärzte', 'aerzte', 'g1', {json}, $1, $1)"
    )))
    .bind("2024-01-01T00:00:00.000Z")
    .bind(json!({"displayName": "Ärzte"}).to_string())
    .execute(&pool)
    .await
    .expect("old team row");
    pool.close().await;

    let store = scim_operator::store::open(&url).await.expect("open runs 0002 and the backfill");
    let users = user_resource_type();
    let groups = group_resource_type();
    for (text, rt, n) in [
        ("userName eq \"ärzte\"", &users, 1),
        ("name.familyName eq \"MÜLLER\"", &users, 1),
        ("displayName eq \"ärzte\"", &groups, 1),
        ("displayName eq \"other\"", &groups, 0),
    ] {
        let filter = parse_filter(text).unwrap();
        let spec = ListSpec {
            resource_type: rt,
            filter: Some(&filter),
            sort_by: None,
            sort_order: SortOrder::Ascending,
            offset: 0,
            limit: 10,
        };
        let mut tx = store.begin_read().await.unwrap();
        let total = if std::ptr::eq(rt, &users) {
            tx.list_users(&spec).await.unwrap().0
        } else {
            tx.list_groups(&spec).await.unwrap().0
        };
        assert_eq!(total, n, "{text}");
    }
    let mut tx = store.begin_read().await.unwrap();
    assert!(tx.user_by_name("ärzte").await.unwrap().is_some(), "the uniqueness key is refolded");
    drop(tx);
    store.close().await;
    common::drop_database(&url).await;
}
