//! What the server exposes without a key: `/metrics` stays bounded whatever requests arrive,
//! can be served on a port of its own, and `/readyz` warns about invitation links that point at
//! a loopback address.

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};

/// Requests with made-up methods (each one new) must not add series: every label of the HTTP
/// metrics takes its values from a fixed set.
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let s = TestServer::start().await;
    let root = s.root();
    s.get("/Users").await;
    let (http, root) = (&s.http, root.as_str());
    let metrics = || async move { http.get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap() };
    let before = metrics().await;
    let send_made_up = |i: usize| {
        let method = Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        async move {
            for path in ["/scim/v2/Users", "/healthz", "/no/such/path"] {
                let status = http.request(method.clone(), format!("{root}{path}")).send().await.unwrap().status();
                assert!(status.is_client_error(), "{method} {path}: {status}");
            }
        }
    };
    // The first made-up method adds its series (as `other`, per route and status); the next 299
    // must add none.
    send_made_up(0).await;
    let first = metrics().await;
    for i in 1..300 {
        send_made_up(i).await;
    }
    let after = metrics().await;
    eprintln!(
        "METRICS before {} bytes, after one method {} bytes, after 300 {} bytes",
        before.len(),
        first.len(),
        after.len()
    );
    assert!(!after.contains("MADEUP"), "a made-up method became a label value");
    assert!(after.contains("method=\"other\""), "made-up methods are counted as other");
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(
        series(&after),
        series(&first),
        "299 more made-up methods added series ({} to {} bytes)",
        first.len(),
        after.len()
    );
    for line in after.lines().filter(|l| l.starts_with("scim_http_request")) {
        let method = line.split("method=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
        assert!(
            ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"].contains(&method),
            "method label outside the fixed set: {line}"
        );
    }
    assert_eq!(s.http.get(format!("{root}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    s.stop().await;
}

/// A server that sends invitation e-mails whose links point at localhost says so on `/readyz`
/// (without naming the URL, a user or a key); one that sends no e-mail does not.
#[tokio::test]
async fn readyz_warns_about_invitation_links_to_localhost_when_mail_is_sent() {
    use scim_operator::server::ServerConfig;
    for sends in [true, false] {
        let s = TestServer::start_with(ServerConfig { sends_invitation_email: sends, ..ServerConfig::default() }).await;
        let ready: serde_json::Value =
            s.http.get(format!("{}/readyz", s.root())).send().await.unwrap().json().await.unwrap();
        assert_eq!(ready["status"], "ready");
        let warnings: Vec<&str> = ready["warnings"].as_array().unwrap().iter().filter_map(|w| w.as_str()).collect();
        let about_links: Vec<&&str> = warnings.iter().filter(|w| w.contains("invitation URL")).collect();
        if sends {
            assert_eq!(about_links.len(), 1, "{ready}");
            assert!(
                about_links[0].contains("--invitation-url") && !about_links[0].contains("localhost:8080"),
                "{ready}"
            );
        } else {
            assert!(about_links.is_empty(), "{ready}");
        }
        s.stop().await;
    }
}

/// `serve --metrics-listen`: `/metrics` moves to its own port (and is gone from the API port);
/// `--smtp-url` with the default invitation URL logs the warning at start.
#[tokio::test]
async fn metrics_on_a_port_of_their_own_and_the_start_warning() {
    use common::replicas::Replica;
    let (db, _dir) = common::fresh_database().await;
    let logs = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra =
        ["--metrics-listen".to_string(), format!("127.0.0.1:{port}"), "--smtp-url".into(), "smtp://127.0.0.1:9".into()];
    let server = Replica::start_with(&db, logs.path(), 0, &extra).await;
    let http = reqwest::Client::new();
    let on_api = http.get(format!("{}/metrics", server.root())).send().await.unwrap();
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND, "the API port must not serve /metrics");
    let metrics = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("scim_http_requests_total"), "{text}");
    assert_eq!(http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("invitation URL points at localhost"), "no start warning in:\n{log}");
    drop(server);
    common::drop_database(&db).await;
}
