//! The console in real headless Chromium (driven over WebDriver by `chromedriver`), signing in
//! through a real Keycloak as the OpenID Connect provider, against the real server.
//!
//! Needs `chromium` and `chromium-driver` and a Keycloak started by `tests/env/keycloak.sh`
//! (its `env` file sourced: `KEYCLOAK_URL`, `KEYCLOAK_REALM`, `KEYCLOAK_ISSUER`,
//! `KEYCLOAK_CONSOLE_CLIENT_ID`, `KEYCLOAK_CONSOLE_CLIENT_SECRET`, `KEYCLOAK_ADMIN_USER`,
//! `KEYCLOAK_ADMIN_PASSWORD`). Without them the test says so and passes, unless
//! `SCIM_BROWSER_REQUIRED=1`, which makes their absence a failure. With
//! `SCIM_SCREENSHOTS_DIR=docs/screenshots` it saves a screenshot of each page.

mod common;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use common::console::{ConsoleServer as Server, Keycloak};
use scim_operator::clock::SystemClock;

/// Whether the prerequisites are here; `None` means skip (or fail when required).
fn prerequisites() -> Option<(Keycloak, String)> {
    const TEST: &str = "the browser test";
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string);
    let Some(driver) = driver else {
        let required = std::env::var("SCIM_BROWSER_REQUIRED").is_ok_and(|v| v == "1");
        assert!(!required, "SCIM_BROWSER_REQUIRED=1 but chromedriver is missing (tests/env/chromium.sh)");
        eprintln!("skipping {TEST}: chromedriver is missing (tests/env/chromium.sh)");
        return None;
    };
    Some((Keycloak::from_env(TEST)?, driver))
}

/// A chromedriver of our own on a free port, in a process group of its own that the browsers
/// it starts join; the whole group is killed when dropped, so a failing test (which never
/// closes its browsers) leaves no browser behind.
struct Driver {
    url: String,
    child: tokio::process::Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

impl Driver {
    async fn start(path: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let child = tokio::process::Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/status")).await.is_ok() {
                return Self { url, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer on {url}");
    }

    /// A fresh browser (its own profile: no cookies, no identity-provider session).
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"]}),
        );
        ClientBuilder::rustls().expect("tls").capabilities(caps).connect(&self.url).await.expect("a WebDriver session")
    }
}

/// A SCIM request with the test's key that must succeed; its body.
async fn scim_ok(server: &Server, method: reqwest::Method, path: &str, body: Value) -> Value {
    let (status, body) = server.scim(method, path, Some(body)).await;
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// The token of a user's pending invitation link.
async fn pending_token(server: &Server, user_id: &str) -> String {
    server.pending_link(user_id).await.rsplit('/').next().expect("token").to_string()
}

/// Waits until the browser is on a page whose path is `path`.
async fn wait_path(b: &Client, path: &str) {
    for _ in 0..200 {
        if b.current_url().await.is_ok_and(|u| u.path() == path) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = b.current_url().await.map(|u| u.to_string()).unwrap_or_default();
    let html = b.source().await.unwrap_or_default();
    panic!("the browser did not reach {path}; it is on {now}:\n{html}");
}

/// Waits until the page has the element `locator` finds, and returns it. Errors while the
/// browser navigates (a form's answer loading) are retried.
async fn element(b: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    let mut last = None;
    for _ in 0..300 {
        match b.find(locator).await {
            Ok(e) => return e,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no element {locator:?}: {last:?}\n{}", b.source().await.unwrap_or_default());
}

/// Waits until the page holds `text`.
async fn wait_text(b: &Client, text: &str) {
    wait_until(b, &format!("the page shows {text:?}"), |html| html.contains(text)).await
}

/// Signs in through the console's single sign-on button and Keycloak's login form.
async fn sso(b: &Client, server: &Server, email: &str, password: &str) {
    b.goto(&format!("{}/console", server.root)).await.expect("open the console");
    wait_path(b, "/console/signin").await;
    b.find(Locator::LinkText("Sign in with single sign-on"))
        .await
        .expect("the SSO button")
        .click()
        .await
        .expect("click");
    let user = element(b, Locator::Id("username")).await;
    user.send_keys(email).await.expect("type username");
    b.find(Locator::Id("password")).await.expect("password").send_keys(password).await.expect("type password");
    b.find(Locator::Id("kc-login")).await.expect("login button").click().await.expect("submit");
}

/// Saves a screenshot when `SCIM_SCREENSHOTS_DIR` is set.
async fn screenshot(b: &Client, name: &str) {
    let Ok(dir) = std::env::var("SCIM_SCREENSHOTS_DIR") else { return };
    let png = b.screenshot().await.expect("screenshot");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(format!("{dir}/console-{name}.png"), png).expect("write screenshot");
}

/// The browser's console session cookie as a `Cookie` header value.
async fn cookie_header(b: &Client) -> String {
    b.get_all_cookies()
        .await
        .expect("cookies")
        .iter()
        .filter(|c| c.name().starts_with("scimop_"))
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Leaves a mark on the page's window: gone if the browser loads a page.
async fn mark_page(b: &Client) {
    b.execute("window.scimMark = true; return true;", vec![]).await.expect("mark the page");
}

/// Whether the mark of [`mark_page`] is still there.
async fn page_marked(b: &Client) -> bool {
    b.execute("return window.scimMark === true;", vec![]).await.expect("read the mark") == Value::Bool(true)
}

/// Waits until the page's source satisfies `test`.
async fn wait_until(b: &Client, what: &str, test: impl Fn(&str) -> bool) {
    for _ in 0..200 {
        if b.source().await.is_ok_and(|html| test(&html)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}:\n{}", b.source().await.unwrap_or_default());
}

async fn click_link(b: &Client, text: &str) {
    b.find(Locator::LinkText(text)).await.unwrap_or_else(|e| panic!("link {text}: {e}")).click().await.expect("click");
}

#[tokio::test]
async fn the_console_in_real_chromium_with_keycloak_single_sign_on() {
    let Some((kc, driver_path)) = prerequisites() else { return };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let ann = format!("ann-{run}@example.com");
    let sam = format!("sam-{run}@example.com");
    let rita = format!("rita-{run}@example.com");
    let bob = format!("bob-{run}@example.com");
    let nobody = format!("nobody-{run}@example.com");
    let password = "Console-test-1";
    let server = Server::start(Arc::new(SystemClock), Some(&kc)).await;
    for who in [&ann, &sam, &rita, &nobody] {
        kc.create_user(&server.http, who, password).await;
    }
    server.provision(&ann, Some("Admin")).await;
    let sam_id = server.provision(&sam, None).await;
    server.provision(&rita, Some("Read Only")).await;
    let bob_id = server.provision(&bob, None).await;
    let group = scim_ok(
        &server,
        reqwest::Method::POST,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("Payments {run}"),
                "externalId": "00g-okta-payments", "members": [{"value": bob_id}]}),
    )
    .await;
    let team_name = format!("Payments {run}");
    assert_eq!(group["displayName"], team_name.as_str());
    // What the operator sends for a ManagedTeam: its marker (cluster/namespace/uid) and its
    // namespace/name, sent here by the test's key, which holds kubernetes_owned_manage.
    let declared = format!("Platform {run}");
    let resp = server
        .http
        .post(format!("{}/Groups", server.scim))
        .bearer_auth(&server.key)
        .header("content-type", "application/scim+json")
        .header(scim_operator::scim::declared_by::HEADER, "team-platform/platform")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": declared,
                    "externalId": format!("k8s:kind-test/team-platform/{run}-uid")})
            .to_string(),
        )
        .send()
        .await
        .expect("create the declared team");
    assert!(resp.status().is_success(), "declared team: {}", resp.status());
    let driver = Driver::start(&driver_path).await;

    // A provisioned Admin signs in.
    let b = driver.browser().await;
    sso(&b, &server, &ann, password).await;
    wait_path(&b, "/console/users").await;
    let html = b.source().await.expect("source");
    assert!(html.contains(&bob) && html.contains(&ann), "{html}");
    screenshot(&b, "users").await;

    // With JavaScript, the search narrows the table as one types (htmx), without loading the
    // page again (a mark left on the page's window survives) and without pressing Enter.
    mark_page(&b).await;
    b.find(Locator::Id("q")).await.expect("search box").send_keys(&bob).await.expect("type");
    wait_until(&b, "the table narrows to bob", |html| {
        html.contains(&format!(">{bob}</a>")) && !html.contains(&format!(">{ann}</a>"))
    })
    .await;
    assert!(page_marked(&b).await, "the table was swapped in place, the page not loaded again");
    let url = b.current_url().await.expect("url");
    assert_eq!(url.query_pairs().find(|(k, _)| k == "q").map(|(_, v)| v.to_string()), Some(bob.clone()), "{url}");

    // A team pushed over SCIM shows as managed externally, with its member.
    click_link(&b, "Teams").await;
    wait_path(&b, "/console/teams").await;
    let html = b.source().await.expect("source");
    assert!(html.contains(&team_name) && html.contains("Managed externally"), "{html}");
    assert!(
        html.contains(&declared) && html.contains("Declared in Kubernetes: team-platform/platform (cluster kind-test)"),
        "{html}"
    );
    screenshot(&b, "teams").await;
    click_link(&b, &team_name).await;
    wait_text(&b, &format!("<h1>{team_name}</h1>")).await;
    assert!(b.source().await.expect("source").contains(&bob), "the member is listed");
    screenshot(&b, "team").await;

    // Resend gives a new link, and the old one is refused.
    let old = pending_token(&server, &bob_id).await;
    b.goto(&format!("{}/console/users/{bob_id}", server.root)).await.expect("user page");
    screenshot(&b, "user").await;
    mark_page(&b).await;
    b.find(Locator::Css("form[action$='/resend'] button")).await.expect("Resend").click().await.expect("click");
    // htmx swaps the invitation section in place: the old invitation now cancelled.
    wait_until(&b, "the invitation section shows the new invitation", |html| html.contains(">cancelled<")).await;
    assert!(page_marked(&b).await, "the section was swapped in place");
    let new = pending_token(&server, &bob_id).await;
    assert_ne!(old, new);
    let status = |token: String| {
        let http = server.http.clone();
        let url = format!("{}/invitations/{token}", server.root);
        async move { http.get(url).send().await.expect("invitation").status() }
    };
    assert_eq!(status(old).await, StatusCode::GONE);
    assert_eq!(status(new).await, StatusCode::OK);

    // A key created in the console is shown once, works, and after revocation gets 401.
    click_link(&b, "Service accounts and keys").await;
    wait_path(&b, "/console/keys").await;
    b.find(Locator::Id("name")).await.expect("name").send_keys("okta-prod").await.expect("type");
    b.find(Locator::Id("preset-identity-provider")).await.expect("preset").click().await.expect("choose");
    b.find(Locator::Id("permission-audit_logs_read")).await.expect("permission").click().await.expect("tick");
    screenshot(&b, "keys").await;
    b.find(Locator::Css("form[action='/console/keys'] button")).await.expect("create").click().await.expect("click");
    let secret = element(&b, Locator::Id("secret")).await.prop("value").await.expect("value");
    let secret = secret.expect("a secret");
    let html = b.source().await.expect("source");
    assert!(
        html.contains("Permissions: user_access_invite, user_access_manage, teams_manage, audit_logs_read"),
        "the chosen permissions: {html}"
    );
    screenshot(&b, "key-created").await;
    b.goto(&format!("{}/console/keys", server.root)).await.expect("keys");
    let html = b.source().await.expect("source");
    assert!(html.contains("okta-prod") && !html.contains(&secret), "shown once");
    let scim_status = |key: String| {
        let http = server.http.clone();
        let url = format!("{}/scim/v2/Users", server.root);
        async move { http.get(url).bearer_auth(key).send().await.expect("scim").status() }
    };
    assert_eq!(scim_status(secret.clone()).await, StatusCode::OK);
    b.find(Locator::Css("button[aria-label='Revoke key okta-prod']"))
        .await
        .expect("revoke")
        .click()
        .await
        .expect("click");
    // htmx swaps the key's row for its revoked state.
    wait_until(&b, "the key's row says revoked", |html| html.contains("<span class=\"bad\">revoked ")).await;
    assert_eq!(scim_status(secret).await, StatusCode::UNAUTHORIZED);

    // The audit filter and its CSV agree with `scim-operator audit`.
    click_link(&b, "Audit trail").await;
    wait_path(&b, "/console/audit").await;
    b.find(Locator::Id("action")).await.expect("action").send_keys("invitation.resend").await.expect("type");
    b.find(Locator::Css("form.filters button")).await.expect("filter").click().await.expect("click");
    wait_text(&b, "1 event(s)").await;
    let html = b.source().await.expect("source");
    assert!(html.contains("1 event(s)") && html.contains(&format!("console:{ann}")), "{html}");
    screenshot(&b, "audit").await;
    let cookie = cookie_header(&b).await;
    let csv = server
        .http
        .get(format!("{}/console/audit.csv?action=invitation.resend", server.root))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("csv body");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["audit", "--db", &server.db_url, "--action", "invitation.resend", "--format", "csv"])
        .output()
        .expect("audit command");
    assert_eq!(String::from_utf8_lossy(&cli.stdout), csv);
    assert_eq!(csv.lines().count(), 2, "{csv}");

    // The access review: every account with each role and why, keys included.
    click_link(&b, "Access review").await;
    wait_path(&b, "/console/access-review").await;
    let html = b.source().await.expect("source");
    assert!(html.contains(&bob) && html.contains("the default role") && html.contains("okta-prod"), "{html}");
    screenshot(&b, "access-review").await;

    // The recent provisioning requests show the identity provider's failing push (a user that
    // exists: 409, with the key's name) and the revoked key's refused request.
    let (status, _) = server
        .scim(
            reqwest::Method::POST,
            "/Users",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": bob})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    click_link(&b, "Recent requests").await;
    wait_path(&b, "/console/requests").await;
    b.find(Locator::Css("#status option[value='errors']")).await.expect("errors only").click().await.expect("choose");
    // The log is written off the request path, up to a moment behind (its linger): the filter is
    // submitted again until the page lists the 409 just sent.
    let listed = |html: &str| {
        html.contains(">401<")
            && html.contains("no valid key")
            && html.contains(">409<")
            && html.contains("<td>idp</td>")
    };
    for _ in 0..50 {
        b.find(Locator::Css("form.filters button")).await.expect("filter").click().await.expect("click");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if b.source().await.is_ok_and(|html| listed(&html)) {
            break;
        }
    }
    wait_until(&b, "the failing and the refused request", listed).await;
    screenshot(&b, "requests").await;

    // Connect an identity provider: the discovery test through the server's own URL.
    click_link(&b, "Connect an identity provider").await;
    wait_path(&b, "/console/connect").await;
    b.find(Locator::Id("test-key")).await.expect("key field").send_keys(&server.key).await.expect("type");
    b.find(Locator::Css("form[action='/console/connect/test'] button"))
        .await
        .expect("Test")
        .click()
        .await
        .expect("click");
    wait_text(&b, "Discovery works").await;
    b.execute("document.getElementById('result-heading').scrollIntoView(); return true;", vec![])
        .await
        .expect("scroll to the result");
    screenshot(&b, "connect").await;

    // A form posted without its CSRF token is refused.
    let refused = server
        .http
        .post(format!("{}/console/users/{bob_id}/resend", server.root))
        .header("cookie", &cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("nothing=")
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // A Read Only user (an auditor) reads users, teams and the audit trail, and changes nothing.
    let r = driver.browser().await;
    sso(&r, &server, &rita, password).await;
    wait_path(&r, "/console/users").await;
    r.goto(&format!("{}/console/users/{bob_id}", server.root)).await.expect("user page");
    let html = r.source().await.expect("source");
    assert!(html.contains("read only") && html.contains(&bob) && !html.contains("Resend invitation"), "{html}");
    screenshot(&r, "read-only").await;
    r.goto(&format!("{}/console/keys", server.root)).await.expect("keys");
    assert!(r.source().await.expect("source").contains("Not allowed"), "keys are the admins'");
    r.goto(&format!("{}/console/audit", server.root)).await.expect("audit");
    wait_text(&r, "event(s)").await;
    r.close().await.expect("close");

    // A Standard user sees the pages but cannot change anything.
    let s = driver.browser().await;
    sso(&s, &server, &sam, password).await;
    wait_path(&s, "/console/users").await;
    s.goto(&format!("{}/console/users/{bob_id}", server.root)).await.expect("user page");
    let html = s.source().await.expect("source");
    assert!(html.contains("read only") && html.contains(&bob) && !html.contains("Resend invitation"), "{html}");
    s.goto(&format!("{}/console/users/{sam_id}", server.root)).await.expect("own page");
    let html = s.source().await.expect("source");
    assert!(html.contains("read only") && !html.contains("Resend invitation"), "{html}");
    screenshot(&s, "my-access").await;
    let sam_cookie = cookie_header(&s).await;
    let csrf = s.find(Locator::Css("input[name='csrf']")).await.expect("csrf").prop("value").await.expect("v");
    let forbidden = server
        .http
        .post(format!("{}/console/users/{bob_id}/resend", server.root))
        .header("cookie", &sam_cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("csrf", csrf.expect("token"))]).expect("form"))
        .send()
        .await
        .expect("post");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    s.close().await.expect("close");

    // A user deactivated over SCIM is refused on the next click.
    let ann_id = server.directory.search_users(&ann, 1).await.expect("search").1[0].id.clone();
    scim_ok(
        &server,
        reqwest::Method::PATCH,
        &format!("/Users/{ann_id}"),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .await;
    click_link(&b, "Users").await;
    let html = element(&b, Locator::Css(".error")).await.text().await.expect("text");
    assert!(html.contains("deactivated"), "{html}");
    b.close().await.expect("close");

    // A person never provisioned cannot sign in.
    let n = driver.browser().await;
    sso(&n, &server, &nobody, password).await;
    wait_path(&n, "/console/callback").await;
    let html = n.source().await.expect("source");
    assert!(html.contains("no provisioned user"), "{html}");
    assert!(!cookie_header(&n).await.contains("scimop_console="));
    screenshot(&n, "signin-refused").await;
    n.goto(&format!("{}/console/signin", server.root)).await.expect("signin");
    screenshot(&n, "signin").await;
    n.close().await.expect("close");
    server.stop().await;
}
