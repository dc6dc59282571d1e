//! The console over real HTTP against a real server and database (SQLite, or PostgreSQL with
//! `SCIM_TEST_DATABASE_URL`): sign-in links, sessions and their timeouts, what each role may
//! do (and that forged forms change nothing), CSRF, resend, keys and the audit CSV; and single
//! sign-on against the real Keycloak of `tests/env/keycloak.sh start DIR` (its env sourced;
//! without it that test says so and passes, unless `SCIM_KEYCLOAK_REQUIRED=1` or
//! `SCIM_BROWSER_REQUIRED=1`). The same in a real browser is `console_browser.rs`.

mod common;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;
use std::sync::Arc;

use scim_operator::clock::{Clock, ManualClock, SystemClock};
use scim_operator::provisioning::RequestContext;
use scim_operator::provisioning::console::{SessionPolicy, SigninError};

use common::console::{ConsoleServer, Keycloak, cookie_pairs};

/// The console's server, with what these tests do through it.
struct Console(ConsoleServer);

impl std::ops::Deref for Console {
    type Target = ConsoleServer;
    fn deref(&self) -> &ConsoleServer {
        &self.0
    }
}

impl Console {
    async fn start(clock: Arc<dyn Clock>) -> Self {
        Self(ConsoleServer::start(clock, None).await)
    }

    async fn stop(self) {
        self.0.stop().await
    }

    /// Signs `user` in through a sign-in link; returns the session cookie (`name=value`).
    async fn sign_in(&self, user: &str) -> String {
        let ctx = RequestContext::trusted("cli:test");
        let (_, token) =
            self.directory.create_login_link(&ctx, user, chrono::Duration::minutes(15)).await.expect("login link");
        let link = format!("{}/console/link/{}", self.root, token.expose());
        let page = self.http.get(&link).send().await.expect("link page");
        assert_eq!(page.status(), StatusCode::OK);
        let resp = self.http.post(&link).send().await.expect("use link");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{:?}", resp.text().await);
        let to = resp.headers()[LOCATION].to_str().expect("location").to_string();
        assert!(to == "/console" || to == "/console/users", "on to the console: {to}");
        session_cookie(&resp).expect("a session cookie")
    }

    async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        Self::page_of(self, cookie, path).await
    }

    /// A console page of server `c` with the session `cookie`.
    async fn page_of(c: &ConsoleServer, cookie: &str, path: &str) -> (StatusCode, String) {
        let resp = c.http.get(format!("{}{path}", c.root)).header(COOKIE, cookie).send().await.expect("console page");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    async fn form(&self, cookie: &str, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.root))
            .header(COOKIE, cookie)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(fields).expect("form"))
            .send()
            .await
            .expect("console form")
    }
}

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("scimop_console=") && !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().expect("value").to_string()
}

#[tokio::test]
async fn an_admin_signs_in_by_link_and_resend_refuses_the_old_invitation_link() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    let bob = c.provision("bob@example.com", None).await;
    let cookie = c.sign_in("ANN@example.com").await;
    let cookie_line = cookie.clone();
    let (s, html) = c.page(&cookie_line, "/console/users").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("bob@example.com") && html.contains("ann@example.com"), "{html}");
    let (s, html) = c.page(&cookie_line, "/console/users?q=BOB").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("bob@example.com") && !html.contains(">ann@example.com<"), "search narrows: {html}");

    let old = c.pending_link(&bob).await;
    let token_of = |link: &str| link.rsplit('/').next().expect("token").to_string();
    let (s, html) = c.page(&cookie_line, &format!("/console/users/{bob}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Resend invitation") && html.contains("Standard"), "{html}");
    assert!(html.contains("the default role"), "the role's path is shown: {html}");
    let resp = c.form(&cookie_line, &format!("/console/users/{bob}/resend"), &[("csrf", &csrf(&html))]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let new = c.pending_link(&bob).await;
    assert_ne!(new, old);
    let old_page = c.http.get(format!("{}/invitations/{}", c.root, token_of(&old))).send().await.expect("old");
    assert_eq!(old_page.status(), StatusCode::GONE, "the old link is refused");
    let new_page = c.http.get(format!("{}/invitations/{}", c.root, token_of(&new))).send().await.expect("new");
    assert_eq!(new_page.status(), StatusCode::OK, "the new link works");
    assert_eq!(
        c.audit_actors("invitation.resend").await,
        ["console:ann@example.com"],
        "audited with the person as actor"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused_and_changes_nothing() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    let bob = c.provision("bob@example.com", None).await;
    let cookie = c.sign_in("ann@example.com").await;
    for fields in [vec![], vec![("csrf", "scimop_forged")]] {
        let resp = c.form(&cookie, &format!("/console/users/{bob}/resend"), &fields).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.text().await.expect("body").contains("CSRF"));
        let mut with_name = fields.clone();
        with_name.push(("name", "sneaky"));
        with_name.push(("preset", "admin"));
        let resp = c.form(&cookie, "/console/keys", &with_name).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let resp = c.form(&cookie, "/console/teams", &with_name).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(c.audit_count("invitation.resend").await, 0);
    assert!(c.directory.keys().await.expect("keys").iter().all(|k| k.name != "sneaky"));
    assert!(c.directory.teams().await.expect("teams").is_empty(), "no team was made");
    c.stop().await;
}

/// What the store holds that a forged console form could change: keys, invitations (with
/// their state), teams with their members, and the audit trail's length.
async fn changeable_state(c: &Console) -> String {
    let mut tx = c.store.begin_read().await.expect("read");
    let keys: Vec<String> = tx.list_keys().await.expect("keys").into_iter().map(|k| format!("{k:?}")).collect();
    let invitations: Vec<String> =
        tx.invitations(None).await.expect("invitations").into_iter().map(|i| format!("{i:?}")).collect();
    let mut teams = Vec::new();
    for t in tx.list_teams().await.expect("teams") {
        let members = tx.team_members(&t.id).await.expect("members");
        teams.push(format!("{t:?} {members:?}"));
    }
    drop(tx);
    let audit = c.directory.audit_events(&Default::default()).await.expect("audit").len();
    format!("{keys:?}\n{invitations:?}\n{teams:?}\n{audit}")
}

#[tokio::test]
async fn a_plain_user_sees_only_their_own_page_and_forged_forms_change_nothing() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    // A role the console did not define: it grants only the person's own page.
    let cli = RequestContext::trusted("cli:test");
    c.directory.create_role(&cli, "Contractor", "an organisation's own role").await.expect("custom role");
    let sam = c.provision("sam@example.com", Some("Contractor")).await;
    let (s, b) = c
        .scim(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Platform",
                "members": [{"value": ann}]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let team = b["id"].as_str().expect("team id").to_string();
    let cookie = c.sign_in("sam@example.com").await;
    let (s, html) = c.page(&cookie, &format!("/console/users/{sam}")).await;
    assert_eq!(s, StatusCode::OK, "their own page");
    assert!(html.contains("sam@example.com") && html.contains("Contractor") && html.contains("read only"), "{html}");
    assert!(!html.contains("Resend invitation"), "no resend, not even their own: {html}");
    let token = csrf(&html);
    let ann_page = format!("/console/users/{ann}");
    let team_page = format!("/console/teams/{team}");
    for path in ["/console/users", ann_page.as_str(), "/console/teams", team_page.as_str(), "/console/keys"] {
        let (s, html) = c.page(&cookie, path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {html}");
        assert!(!html.contains("ann@example.com") && !html.contains("Platform"), "{path} leaks nothing: {html}");
    }
    for path in ["/console/audit", "/console/audit.csv"] {
        assert_eq!(c.page(&cookie, path).await.0, StatusCode::FORBIDDEN, "{path}");
    }

    // Forged forms with the session's own valid CSRF token: refused, nothing changed.
    let before = changeable_state(&c).await;
    let forged: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/console/users/{ann}/resend"), vec![("csrf", &token)]),
        (format!("/console/users/{sam}/resend"), vec![("csrf", &token)]),
        ("/console/keys".into(), vec![("csrf", &token), ("name", "mine"), ("preset", "admin")]),
        (
            "/console/keys".into(),
            vec![("csrf", &token), ("name", "mine"), ("user", "sam@example.com"), ("permission", "audit_logs_read")],
        ),
        ("/console/teams".into(), vec![("csrf", &token), ("name", "Sneaky")]),
        (format!("/console/teams/{team}/members"), vec![("csrf", &token), ("op", "add"), ("user", "sam@example.com")]),
        (format!("/console/teams/{team}/members"), vec![("csrf", &token), ("op", "remove"), ("user", ann.as_str())]),
    ];
    for (path, fields) in &forged {
        let resp = c.form(&cookie, path, fields).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(changeable_state(&c).await, before, "no forged form changed anything");
    c.stop().await;
}

#[tokio::test]
async fn a_read_only_user_reads_users_teams_and_the_audit_trail_but_changes_nothing() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    c.provision("rita@example.com", Some("Read Only")).await;
    let admin_key = c.key.clone();
    let cookie = c.sign_in("rita@example.com").await;
    let ann_page = format!("/console/users/{ann}");
    for path in ["/console/users", ann_page.as_str(), "/console/teams", "/console/audit", "/console/audit.csv"] {
        let (s, html) = c.page(&cookie, path).await;
        assert_eq!(s, StatusCode::OK, "{path}");
        assert!(!html.contains("Resend invitation") && !html.contains("Create a key"), "{path}: no change forms");
    }
    let (_, html) = c.page(&cookie, "/console/users").await;
    assert!(html.contains("read only"), "the header says so");
    let token = csrf(&html);
    assert_eq!(c.page(&cookie, "/console/keys").await.0, StatusCode::FORBIDDEN, "keys are the admins'");
    let before = changeable_state(&c).await;
    let resp = c.form(&cookie, &format!("/console/users/{ann}/resend"), &[("csrf", &token)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = c.form(&cookie, "/console/keys", &[("csrf", &token), ("name", "mine"), ("preset", "admin")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = c.form(&cookie, "/console/teams", &[("csrf", &token), ("name", "Sneaky")]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let key = c.directory.keys().await.expect("keys").into_iter().next().expect("the test key");
    let resp = c.form(&cookie, &format!("/console/keys/{}/revoke", key.id), &[("csrf", &token)]).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(changeable_state(&c).await, before, "nothing changed");
    let (s, _) = c.scim(reqwest::Method::GET, "/Users", None).await;
    assert_eq!(s, StatusCode::OK, "the key {admin_key:.8} still works");
    c.stop().await;
}

#[tokio::test]
async fn deactivation_or_role_loss_over_scim_takes_effect_on_the_next_request() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    let cookie = c.sign_in("ann@example.com").await;
    assert_eq!(c.page(&cookie, "/console/users").await.0, StatusCode::OK);
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let (s, b) = c.scim(reqwest::Method::PATCH, &format!("/Users/{ann}"), Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, html) = c.page(&cookie, "/console/users").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(html.contains("deactivated"), "{html}");
    let (s, _) = c.page(&cookie, "/console/users").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the session is gone for good");
    assert_eq!(c.audit_count("console.session.end").await, 1);

    // Role loss: no default role, and the explicit role taken away.
    let carl = c.provision("carl@example.com", Some("Read Only")).await;
    let cookie = c.sign_in("carl@example.com").await;
    let ctx = RequestContext::trusted("cli:test");
    c.directory.set_default_role(&ctx, None).await.expect("no default role");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": "roles"}]});
    let (s, b) = c.scim(reqwest::Method::PATCH, &format!("/Users/{carl}"), Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, html) = c.page(&cookie, "/console/teams").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("no role"), "{html}");
    c.stop().await;
}

#[tokio::test]
async fn only_provisioned_people_sign_in_and_a_link_works_once() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let policy = SessionPolicy::default();
    let refused = c.directory.console_sign_in("nobody@example.com", &policy, None).await.map(|_| ());
    assert_eq!(refused, Err(SigninError::NotProvisioned("nobody@example.com".into())));
    assert_eq!(c.audit_count("console.signin.refused").await, 1);
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    let signed = c.directory.console_sign_in("Ann@Example.com", &policy, None).await;
    assert_eq!(signed.map(|(_, p)| p.user_id).ok().as_deref(), Some(ann.as_str()), "matched as userName folds");

    let ctx = RequestContext::trusted("cli:test");
    let err = c.directory.create_login_link(&ctx, "nobody@example.com", chrono::Duration::minutes(5)).await;
    assert_eq!(err.map(|_| ()).map_err(|e| e.status), Err(404));
    let (_, token) = c.directory.create_login_link(&ctx, &ann, chrono::Duration::minutes(5)).await.expect("link");
    let link = format!("{}/console/link/{}", c.root, token.expose());
    assert_eq!(c.http.post(&link).send().await.expect("first").status(), StatusCode::SEE_OTHER);
    let again = c.http.post(&link).send().await.expect("second");
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "single use");
    assert!(session_cookie(&again).is_none());
    assert_eq!(c.http.get(&link).send().await.expect("page").status(), StatusCode::GONE);
    let unknown = c.http.post(format!("{}/console/link/scimop_nope", c.root)).send().await.expect("unknown");
    assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
    assert_eq!(c.audit_count("console.link.create").await, 1);
    c.stop().await;
}

#[tokio::test]
async fn sessions_end_after_the_idle_and_the_absolute_timeout() {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let c = Console::start(clock.clone()).await;
    c.provision("ann@example.com", Some("Admin")).await;
    let cookie = c.sign_in("ann@example.com").await;
    clock.advance(chrono::Duration::minutes(29));
    assert_eq!(c.page(&cookie, "/console/users").await.0, StatusCode::OK);
    clock.advance(chrono::Duration::minutes(29));
    assert_eq!(c.page(&cookie, "/console/users").await.0, StatusCode::OK, "use keeps it alive");
    clock.advance(chrono::Duration::minutes(31));
    let (s, _) = c.page(&cookie, "/console/users").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "idle for more than 30 minutes");

    let cookie = c.sign_in("ann@example.com").await;
    for _ in 0..30 {
        clock.advance(chrono::Duration::minutes(29));
        if c.page(&cookie, "/console/users").await.0 != StatusCode::OK {
            break;
        }
    }
    let (s, _) = c.page(&cookie, "/console/users").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "12 hours after sign-in, however busy");
    c.stop().await;
}

#[tokio::test]
async fn a_key_created_in_the_console_is_shown_once_works_and_stops_when_revoked() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    let cookie = c.sign_in("ann@example.com").await;
    let (_, html) = c.page(&cookie, "/console/keys").await;
    let none = c.form(&cookie, "/console/keys", &[("csrf", &csrf(&html)), ("name", "bare")]).await;
    assert_eq!(none.status(), StatusCode::BAD_REQUEST, "a key needs a permission");
    assert!(none.text().await.expect("body").contains("Choose a preset or at least one permission"));
    let resp = c
        .form(
            &cookie,
            "/console/keys",
            &[("csrf", &csrf(&html)), ("name", "okta-prod"), ("preset", "identity-provider")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let html = resp.text().await.expect("body");
    let marker = "id=\"secret\" readonly value=\"";
    let at = html.find(marker).expect("the secret is shown") + marker.len();
    let secret = html[at..].split('"').next().expect("secret").to_string();
    assert!(secret.starts_with("scimop_"), "{secret}");
    let (_, again) = c.page(&cookie, "/console/keys").await;
    assert!(!again.contains(&secret), "shown once");
    let users = |key: String| {
        let http = c.http.clone();
        let url = format!("{}/Users", c.scim);
        async move { http.get(url).bearer_auth(key).send().await.expect("scim").status() }
    };
    assert_eq!(users(secret.clone()).await, StatusCode::OK);
    let key = c.directory.keys().await.expect("keys").into_iter().find(|k| k.name == "okta-prod").expect("key");
    let q = scim_operator::store::AuditQuery { target_id: Some(key.id.clone()), ..Default::default() };
    assert_eq!(c.directory.audit_events(&q).await.expect("audit")[0].actor, "console:ann@example.com");
    let resp = c.form(&cookie, &format!("/console/keys/{}/revoke", key.id), &[("csrf", &csrf(&again))]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(users(secret).await, StatusCode::UNAUTHORIZED);

    // Chosen permissions are exactly what the key may do: an auditor's key reads, changes nothing.
    let resp = c
        .form(
            &cookie,
            "/console/keys",
            &[
                ("csrf", &csrf(&again)),
                ("name", "auditor"),
                ("permission", "directory_read"),
                ("permission", "audit_logs_read"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let html = resp.text().await.expect("body");
    assert!(html.contains("Permissions: audit_logs_read, directory_read"), "{html}");
    let at = html.find(marker).expect("the secret is shown") + marker.len();
    let auditor = html[at..].split('"').next().expect("secret").to_string();
    assert_eq!(users(auditor.clone()).await, StatusCode::OK);
    let create = c
        .http
        .post(format!("{}/Users", c.scim))
        .bearer_auth(&auditor)
        .header("content-type", "application/scim+json")
        .body(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x@example.com"}).to_string(),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(create.status(), StatusCode::FORBIDDEN, "directory_read creates nothing");
    assert_eq!(c.directory.keys().await.expect("keys").iter().filter(|k| k.name == "auditor").count(), 1);

    // A key tied to a person carries the warning.
    let resp = c
        .form(
            &cookie,
            "/console/keys",
            &[("csrf", &csrf(&again)), ("name", "personal"), ("user", "ann@example.com"), ("preset", "admin")],
        )
        .await;
    let html = resp.text().await.expect("body");
    assert!(html.contains("belongs to a person"), "{html}");

    // Each key shows when it was made and when it last authenticated: the two keys that called
    // /Users show the recorded time, the personal key that never did shows "never".
    let (_, page) = c.page(&cookie, "/console/keys").await;
    let stored = c.directory.keys().await.expect("keys");
    for name in ["okta-prod", "auditor", "personal"] {
        let k = stored.iter().find(|k| k.name == name).expect("key");
        let row = key_row(&page, &k.id);
        assert!(row.contains(&format!("<td>{}</td>", k.created)), "{name} shows when it was made: {row}");
        let used = if name == "personal" {
            assert!(k.last_used_at.is_none(), "{k:?}");
            "never".to_string()
        } else {
            k.last_used_at.clone().expect("a key that authenticated has a last use")
        };
        assert!(row.contains(&format!("<td>{used}</td>")), "{name} last used {used}: {row}");
    }
    c.stop().await;
}

/// The row of the keys page for key `id`.
fn key_row<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<tr id=\"key-{id}\"")).expect("the key has a row");
    let len = html[start..].find("</tr>").expect("the row ends");
    &html[start..start + len]
}

#[tokio::test]
async fn the_audit_filter_and_csv_agree_with_the_audit_command() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    c.provision("bob@example.com", None).await;
    let cookie = c.sign_in("ann@example.com").await;
    let (s, html) = c.page(&cookie, "/console/audit?action=user.create").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("2 event(s)"), "{html}");
    let resp = c
        .http
        .get(format!("{}/console/audit.csv?action=user.create&actor=&since=2000-01-01", c.root))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("csv");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().expect("type").starts_with("text/csv"));
    let csv = resp.text().await.expect("csv");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args([
            "audit",
            "--db",
            &c.db_url,
            "--action",
            "user.create",
            "--since",
            "2000-01-01T00:00:00Z",
            "--format",
            "csv",
        ])
        .output()
        .expect("run the audit command");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), csv, "the command and the console export agree");

    let (s, html) = c.page(&cookie, "/console/audit?since=yesterday").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("is not a time"));
    let anon = c.http.get(format!("{}/console/audit.csv", c.root)).send().await.expect("anonymous");
    assert_eq!(anon.status(), StatusCode::SEE_OTHER, "the export needs a session");
    c.stop().await;
}

/// The ids of the form fields of `html` (inputs but hidden ones, selects, text areas) that no
/// `<label for=...>` names.
fn unlabelled_fields(html: &str) -> Vec<String> {
    let mut unlabelled = Vec::new();
    for tag in ["<input", "<select", "<textarea"] {
        for part in html.split(tag).skip(1) {
            let element = &part[..part.find('>').unwrap_or(part.len())];
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = element.split("id=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
            if id.is_empty() || !html.contains(&format!("<label for=\"{id}\"")) {
                unlabelled.push(format!("{tag} {element}"));
            }
        }
    }
    unlabelled
}

#[tokio::test]
async fn every_console_response_carries_the_strict_policy_and_no_cache() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    let (s, b) = c
        .scim(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Platform"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let team = format!("/console/teams/{}", b["id"].as_str().expect("team id"));
    let user = format!("/console/users/{ann}");
    let cookie = c.sign_in("ann@example.com").await;
    let policy = scim_operator::console::CONTENT_SECURITY_POLICY;
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe"), "no inline script or style, no eval: {policy}");
    let pages = [
        "/console/signin",
        "/console/users",
        "/console/users?q=ann",
        user.as_str(),
        "/console/teams",
        team.as_str(),
        "/console/keys",
        "/console/audit",
        "/console/audit.csv",
        "/console/access-review",
        "/console/access-review.csv",
        "/console/requests",
        "/console/connect",
        "/console/nope",
    ];
    for path in pages {
        for signed_in in [true, false] {
            let mut req = c.http.get(format!("{}{path}", c.root));
            if signed_in {
                req = req.header(COOKIE, &cookie);
            }
            let resp = req.send().await.expect("page");
            let h = resp.headers().clone();
            assert_eq!(h["content-security-policy"], policy, "{path}");
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
            assert_eq!(h["cache-control"], "no-store", "{path}");
            let html = resp.text().await.expect("body");
            if signed_in && !path.ends_with(".csv") {
                assert!(!html.contains("<script>") && !html.contains(" style="), "{path}: nothing inline: {html}");
                assert!(html.contains("<main id=\"main\">"), "{path}");
                assert_eq!(unlabelled_fields(&html), Vec::<String>::new(), "{path}: every field has a label");
            }
        }
    }
    let css = c.http.get(format!("{}/console/static/console.css", c.root)).send().await.expect("css");
    assert_eq!(css.status(), StatusCode::OK);
    // htmx from the binary itself, cached for a year under a path that names its version.
    let (_, html) = c.page(&cookie, "/console/users").await;
    let src = format!("<script src=\"{}\" defer></script>", scim_operator::console::HTMX_PATH);
    assert!(html.contains(&src) && !html.contains("https://"), "{html}");
    let js = c.http.get(format!("{}{}", c.root, scim_operator::console::HTMX_PATH)).send().await.expect("htmx");
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(js.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(js.headers()["content-type"].to_str().expect("type").starts_with("text/javascript"));
    assert_eq!(js.headers()["content-security-policy"], policy);
    assert!(js.text().await.expect("js").contains(scim_operator::console::HTMX_VERSION));
    c.stop().await;
}

/// Starts single sign-on at the console: its redirect to the identity provider and the flow
/// cookie that binds the sign-in to this browser.
async fn start_sso(c: &ConsoleServer) -> (String, String) {
    let resp = c.http.get(format!("{}/console/login", c.root)).send().await.expect("login");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let to = resp.headers()[LOCATION].to_str().expect("location").to_string();
    (to, cookie_pairs(&resp))
}

/// The query of a URL, `key=value` pairs.
fn query_of(url: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(url.split_once('?').map_or("", |(_, q)| q)).expect("query")
}

/// Single sign-on over plain HTTP with the real Keycloak: a provisioned Admin signs in; a
/// replayed callback, a callback with a changed state, one from another browser (no flow
/// cookie) and a person never provisioned are refused, and none of them gets a session.
#[tokio::test]
async fn single_sign_on_with_keycloak_and_its_refusals() {
    let Some(kc) = Keycloak::from_env("single_sign_on_with_keycloak_and_its_refusals") else { return };
    let c = ConsoleServer::start(Arc::new(SystemClock), Some(&kc)).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (ann, nobody, password) = (format!("ann-{run}@example.com"), format!("nobody-{run}@example.com"), "Sso-test-1");
    kc.create_user(&c.http, &ann, password).await;
    kc.create_user(&c.http, &nobody, password).await;
    c.provision(&ann, Some("Admin")).await;
    let callback = |url: String, cookie: String| {
        let http = c.http.clone();
        async move { http.get(url).header(COOKIE, cookie).send().await.expect("callback") }
    };

    let (authorize, flow) = start_sso(&c).await;
    assert!(authorize.starts_with(&kc.issuer), "{authorize}");
    let params = query_of(&authorize);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(param("code_challenge_method"), Some("S256"), "PKCE");
    assert!(param("nonce").is_some() && param("state").is_some());
    let back = kc.log_in(&c.http, &authorize, &ann, password).await;
    assert!(back.starts_with(&format!("{}/console/callback?", c.root)), "{back}");
    let resp = callback(back.clone(), flow.clone()).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{:?}", resp.text().await);
    let session = session_cookie(&resp).expect("a session");
    let (s, html) = Console::page_of(&c, &session, "/console/users").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(&ann) && html.contains("Admin"), "{html}");
    assert_eq!(c.audit_count("console.signin").await, 1);

    // The same answer again (a replay): the sign-in it finished is gone.
    let replay = callback(back, flow).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(session_cookie(&replay).is_none());

    // A changed state is refused, and the sign-in it belonged to cannot be finished afterwards.
    let (authorize, flow) = start_sso(&c).await;
    let back = kc.log_in(&c.http, &authorize, &ann, password).await;
    let state = query_of(&back).into_iter().find(|(k, _)| k == "state").expect("state").1;
    let forged = back.replace(&format!("state={state}"), "state=forged");
    let resp = callback(forged, flow.clone()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.expect("body").contains("state does not match"));
    let resp = callback(back, flow).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "the flow was used up by the refusal");
    assert!(session_cookie(&resp).is_none());

    // An answer brought to the console by another browser (no flow cookie) is refused.
    let (authorize, _) = start_sso(&c).await;
    let back = kc.log_in(&c.http, &authorize, &ann, password).await;
    let resp = callback(back, String::new()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.expect("body").contains("not started in this browser"));

    // A person Keycloak knows but this server never provisioned.
    let (authorize, flow) = start_sso(&c).await;
    let back = kc.log_in(&c.http, &authorize, &nobody, password).await;
    let resp = callback(back, flow).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(session_cookie(&resp).is_none());
    assert!(resp.text().await.expect("body").contains("no provisioned user"));
    assert_eq!(c.audit_count("console.signin.refused").await, 1);
    assert_eq!(c.audit_count("console.signin").await, 1, "one sign-in in all");
    c.stop().await;
}

/// The access review's CSV against `/api/v1/users/{id}/access` of every user (roles and their
/// sources, status), and every key with its permissions; an auditor (Read Only) may read it, a
/// user holding only a custom role may not.
#[tokio::test]
async fn the_access_review_csv_agrees_with_the_access_view_of_every_user() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    c.provision("bob@example.com", None).await;
    let carl = c.provision("carl@example.com", None).await;
    let dave = c.provision("dave@example.com", Some("Read Only")).await;
    c.provision("rita@example.com", Some("Read Only")).await;
    let cli = RequestContext::trusted("cli:test");
    c.directory.create_role(&cli, "Contractor", "an organisation's own role").await.expect("custom role");
    c.provision("sam@example.com", Some("Contractor")).await;
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops",
        "members": [{"value": carl}]});
    assert_eq!(c.scim(reqwest::Method::POST, "/Groups", Some(group)).await.0, StatusCode::CREATED);
    let mapping = json!({"schemas": ["urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping"],
        "displayName": "ops-readers", "roles": [{"value": "Read Only"}], "teams": [{"value": "Ops"}]});
    let (s, b) = c.scim(reqwest::Method::POST, "/RoleMappings", Some(mapping)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(c.scim(reqwest::Method::PATCH, &format!("/Users/{dave}"), Some(patch)).await.0, StatusCode::OK);
    let idp = scim_operator::provisioning::access::Preset::IdentityProvider.permissions();
    c.directory.create_key(&cli, "ann-personal", Some(&ann), &idp).await.expect("personal key");
    let (old, _) = c.directory.create_key(&cli, "old", None, &idp).await.expect("key");
    c.directory.revoke_key(&cli, &old.id).await.expect("revoke");

    let sam = c.sign_in("sam@example.com").await;
    for path in ["/console/access-review", "/console/access-review.csv"] {
        assert_eq!(c.page(&sam, path).await.0, StatusCode::FORBIDDEN, "{path}: a custom role's user");
    }
    let rita = c.sign_in("rita@example.com").await;
    let (s, html) = c.page(&rita, "/console/access-review").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("RoleMapping ops-readers through Ops"), "{html}");
    let (s, text) = c.page(&rita, "/console/access-review.csv").await;
    assert_eq!(s, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    assert_eq!(header, scim_operator::provisioning::access_review::CSV_HEADER);
    let rows: Vec<Vec<String>> =
        reader.records().map(|r| r.expect("record").iter().map(str::to_string).collect()).collect();
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    let (kind, id, account, status, access, source, via) = (
        col("account_type"),
        col("account_id"),
        col("Account name"),
        col("Status"),
        col("Role"),
        col("source"),
        col("via"),
    );

    let (_, users) = c.scim(reqwest::Method::GET, "/Users?count=100", None).await;
    let users = users["Resources"].as_array().expect("users").clone();
    assert_eq!(users.len(), 6);
    for user in &users {
        let uid = user["id"].as_str().expect("id");
        let resp = c.http.get(format!("{}/api/v1/users/{uid}/access", c.root)).bearer_auth(&c.key).send().await;
        let view: serde_json::Value = resp.expect("access view").json().await.expect("json");
        let mut expected: Vec<(String, String)> = view["effectiveRoles"]
            .as_array()
            .expect("roles")
            .iter()
            .map(|r| (r["name"].as_str().expect("name").into(), r["source"].as_str().expect("source").into()))
            .collect();
        if expected.is_empty() {
            expected.push((String::new(), "none".into()));
        }
        expected.sort();
        let mine: Vec<&Vec<String>> = rows.iter().filter(|r| r[kind] == "person" && r[id] == uid).collect();
        let mut got: Vec<(String, String)> = mine.iter().map(|r| (r[access].clone(), r[source].clone())).collect();
        got.sort();
        assert_eq!(got, expected, "{}", view["userName"]);
        let state = if view["active"] == true { "Active" } else { "Deactivated" };
        assert!(mine.iter().all(|r| r[status] == state && r[account] == view["userName"]), "{view}");
    }
    let carl_row = rows.iter().find(|r| r[id] == carl).expect("carl");
    assert_eq!((carl_row[source].as_str(), carl_row[via].as_str()), ("mapping", "ops-readers through Ops"));
    assert!(rows.iter().any(|r| r[id] == dave && r[status] == "Deactivated"));

    let keys: Vec<&Vec<String>> = rows.iter().filter(|r| r[kind] == "key").collect();
    let stored = c.directory.keys().await.expect("keys");
    assert_eq!(keys.len(), stored.len());
    for k in &stored {
        let row = keys.iter().find(|r| r[id] == k.id).expect("every key is in the review");
        assert_eq!(row[access], k.permissions.join(";"));
        assert_eq!(row[status], if k.revoked_at.is_some() { "Deactivated" } else { "Active" });
    }
    let personal = keys.iter().find(|r| r[account] == "ann-personal").expect("ann's key");
    assert_eq!(personal[via], "owned by ann@example.com");

    // As of a date (a GET form): before anyone was provisioned there is no one; the CSV link
    // carries the date; a date that is not one is said on the page.
    let (s, html) = c.page(&rita, "/console/access-review?asOf=2020-01-01").await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("name=\"asOf\" value=\"2020-01-01\""), "{html}");
    assert!(html.contains("/console/access-review.csv?asOf=2020-01-01"), "{html}");
    assert!(!html.contains("ann@example.com"), "no one existed then: {html}");
    let (s, text) = c.page(&rita, "/console/access-review.csv?asOf=2020-01-01").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(text.lines().count(), 1, "the header alone: {text}");
    let (s, html) = c.page(&rita, "/console/access-review?asOf=next+week").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("is neither an RFC 3339 time"), "{html}");
    c.stop().await;
}

/// An Admin makes a team and changes its members in the console (audited as them); a team an
/// identity provider pushed is refused (its members change there) and stays as it was.
#[tokio::test]
async fn an_admin_manages_teams_no_identity_provider_manages() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    let bob = c.provision("bob@example.com", None).await;
    let cookie = c.sign_in("ann@example.com").await;
    let (_, html) = c.page(&cookie, "/console/teams").await;
    assert!(html.contains("Make a team"), "{html}");
    let token = csrf(&html);
    let resp = c.form(&cookie, "/console/teams", &[("csrf", &token), ("name", "On-call")]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let at = resp.headers()[LOCATION].to_str().expect("location").to_string();
    let team = at.trim_start_matches("/console/teams/").split('?').next().expect("id").to_string();
    let page = format!("/console/teams/{team}");
    let (_, html) = c.page(&cookie, &page).await;
    assert!(html.contains("Made by an administrator") && html.contains("Add member"), "{html}");
    let members = format!("{page}/members");
    let add = c.form(&cookie, &members, &[("csrf", &token), ("op", "add"), ("user", "bob@example.com")]).await;
    assert_eq!(add.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.page(&cookie, &page).await;
    assert!(html.contains("bob@example.com") && html.contains("Remove bob@example.com"), "{html}");
    assert_eq!(c.audit_actors("team.member.add").await, ["console:ann@example.com"]);
    let remove = c.form(&cookie, &members, &[("csrf", &token), ("op", "remove"), ("user", bob.as_str())]).await;
    assert_eq!(remove.status(), StatusCode::SEE_OTHER);
    let (_, html) = c.page(&cookie, &page).await;
    assert!(!html.contains("bob@example.com"), "{html}");
    let bad = c.form(&cookie, &members, &[("csrf", &token), ("op", "rename"), ("user", "bob@example.com")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // A team pushed over SCIM: managed externally, no form, and a forged one is refused.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Payments"});
    let (s, b) = c.scim(reqwest::Method::POST, "/Groups", Some(group)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let pushed = b["id"].as_str().expect("id");
    let team_id =
        c.directory.teams().await.expect("teams").into_iter().find(|(t, _)| t.name == "Payments").expect("team").0.id;
    let (_, html) = c.page(&cookie, &format!("/console/teams/{team_id}")).await;
    assert!(html.contains("Managed externally") && !html.contains("Add member"), "{html}");
    let resp = c
        .form(
            &cookie,
            &format!("/console/teams/{team_id}/members"),
            &[("csrf", &token), ("op", "add"), ("user", "bob@example.com")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.expect("body").contains("managed by an identity provider"));
    let (_, group) = c.scim(reqwest::Method::GET, &format!("/Groups/{pushed}"), None).await;
    assert!(group.get("members").is_none(), "unchanged: {group}");
    c.stop().await;
}

/// Whoever may manage keys hands out only permissions they hold themselves: a holder of
/// `keys_manage` alone cannot mint an admin key (403, no key, nothing audited).
#[tokio::test]
async fn a_key_never_gets_a_permission_its_maker_lacks() {
    use scim_operator::provisioning::access::{Permission, Permissions, Preset, Principal};
    let c = Console::start(Arc::new(SystemClock)).await;
    let maker = Principal {
        actor: "key-maker".into(),
        name: "key-maker".into(),
        permissions: Permissions::of(&[Permission::KeysManage, Permission::AuditLogsRead]),
    };
    let ctx = RequestContext::for_principal(&maker, None, String::new());
    let before = c.directory.keys().await.expect("keys").len();
    let err =
        c.directory.create_key(&ctx, "escalate", None, &Preset::Admin.permissions()).await.map(|_| ()).unwrap_err();
    assert_eq!(err.status, 403);
    assert!(err.detail.contains("user_access_invite") && !err.detail.contains("audit_logs_read"), "{}", err.detail);
    assert_eq!(c.directory.keys().await.expect("keys").len(), before, "no key was made");
    assert_eq!(c.audit_count("key.create").await, 0);
    let (key, _) = c
        .directory
        .create_key(&ctx, "auditor", None, &Permissions::of(&[Permission::AuditLogsRead]))
        .await
        .expect("a permission it holds");
    assert_eq!(key.permissions, ["audit_logs_read"]);
    c.stop().await;
}

/// The recent-requests page of `cookie`'s session at `query`, once it lists `wanted` (the log
/// is written off the request path, a moment after the answer).
async fn requests_page_with(c: &Console, cookie: &str, query: &str, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, html) = c.page(cookie, &format!("/console/requests{query}")).await;
        assert_eq!(s, StatusCode::OK, "{html}");
        if html.contains(wanted) {
            return html;
        }
        assert!(std::time::Instant::now() < deadline, "{wanted} never showed on the requests page: {html}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_failing_provisioning_request_shows_with_its_key_and_status_and_no_secret() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    c.provision("rita@example.com", Some("Read Only")).await;
    // The identity provider pushes a user that exists (409) and one without a userName (400).
    let user = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
    let (s, b) = c.scim(reqwest::Method::POST, "/Users", Some(user("ann@example.com"))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = c
        .scim(reqwest::Method::POST, "/Users", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // A filter on an address travels in the query string, and a wrong key in a header: neither
    // is kept.
    let (s, _) =
        c.scim(reqwest::Method::GET, "/Users?filter=userName%20eq%20%22query-secret%40example.com%22", None).await;
    assert_eq!(s, StatusCode::OK);
    let refused =
        c.http.get(format!("{}/Users", c.scim)).bearer_auth("scimop_header-secret-text").send().await.expect("401");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let cookie = c.sign_in("rita@example.com").await;
    let errors = requests_page_with(&c, &cookie, "?status=errors", ">401<").await;
    for wanted in [">409<", ">400<", "/scim/v2/Users", "<td>idp</td>", "no valid key", " ms<"] {
        assert!(errors.contains(wanted), "{wanted} on the errors page: {errors}");
    }
    assert!(!errors.contains(">201<") && !errors.contains(">200<"), "errors only: {errors}");
    let all = requests_page_with(&c, &cookie, "", ">201<").await;
    assert!(all.contains(">200<") && all.contains(">409<"), "{all}");
    for secret in ["query-secret", "filter=", "header-secret-text", &c.key] {
        assert!(!all.contains(secret), "{secret} is not kept: {all}");
    }
    let newest_first = |html: &str| html.find(">401<").expect("401") < html.find(">409<").expect("409");
    assert!(newest_first(&all), "newest first: {all}");
    // By key: the refused request alone, or the key's requests without it.
    let none = requests_page_with(&c, &cookie, "?key=none", ">401<").await;
    assert!(!none.contains(">409<") && !none.contains("<td>idp</td>"), "{none}");
    let at = all.find("<option value=\"").expect("key options");
    let key_id = all[at..]
        .split("<option value=\"")
        .filter_map(|o| o.split_once("\">idp</option>").map(|(id, _)| id.to_string()))
        .next()
        .expect("the key idp among the options");
    let by_key = requests_page_with(&c, &cookie, &format!("?key={key_id}&status=4xx"), ">409<").await;
    assert!(!by_key.contains(">401<") && !by_key.contains(">201<"), "{by_key}");
    // An unknown class is a form error, not a guess.
    assert_eq!(c.page(&cookie, "/console/requests?status=teapot").await.0, StatusCode::BAD_REQUEST);
    c.stop().await;
}

#[tokio::test]
async fn the_request_log_keeps_only_the_newest_rows() {
    let c = Console::start(Arc::new(SystemClock)).await;
    let record = |n: i64| scim_operator::store::RequestRecord {
        time: format!("2026-01-01T00:00:{n:02}.000Z"),
        method: "GET".into(),
        path: format!("/scim/v2/Users/{n}"),
        status: 200,
        key_id: None,
        key_name: None,
        duration_us: n,
        request_id: None,
    };
    let records: Vec<_> = (1..=5).map(record).collect();
    c.directory.record_requests(&records, 3).await.expect("record");
    c.directory.record_requests(&[record(6)], 3).await.expect("record");
    let query = scim_operator::store::RequestQuery { limit: 100, ..Default::default() };
    let (kept, _) = c.directory.recent_requests(&query).await.expect("read");
    // Requests the test's own server logged may be among them: only this test's rows count.
    let paths: Vec<String> = kept.into_iter().map(|r| r.path).filter(|p| p.starts_with("/scim/v2/Users/")).collect();
    assert_eq!(paths, ["/scim/v2/Users/6", "/scim/v2/Users/5", "/scim/v2/Users/4"], "the newest three, newest first");
    c.stop().await;
}

#[tokio::test]
async fn connect_shows_the_base_url_and_its_test_runs_discovery_through_it() {
    let c = Console::start(Arc::new(SystemClock)).await;
    c.provision("ann@example.com", Some("Admin")).await;
    let cookie = c.sign_in("ann@example.com").await;
    let (s, html) = c.page(&cookie, "/console/connect").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let base = format!("{}/scim/v2", c.root);
    for wanted in [base.as_str(), "identity-provider", "aadOptscim062020", "href=\"/console/keys\"", "not HTTPS"] {
        assert!(html.contains(wanted), "{wanted}: {html}");
    }
    let token = csrf(&html);
    let test = async |fields: &[(&str, &str)]| {
        let resp = c.form(&cookie, "/console/connect/test", fields).await;
        (resp.status(), resp.text().await.expect("body"))
    };
    // With the identity provider's key: every endpoint answers, with what it advertises.
    let (s, html) = test(&[("csrf", &token), ("key", &c.key)]).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    for wanted in [
        "Discovery works",
        &format!("{base}/ServiceProviderConfig"),
        "PATCH: supported",
        "filter: supported, at most 1000 results per page",
        "User at /Users",
        "Group at /Groups",
        "urn:ietf:params:scim:schemas:core:2.0:Group",
    ] {
        assert!(html.contains(wanted), "{wanted}: {html}");
    }
    assert!(!html.contains(&c.key), "the key is not shown back");
    // Without a key the server refuses, and the page says what that means; a wrong key too.
    let (_, html) = test(&[("csrf", &token)]).await;
    assert!(html.contains(">401<") && html.contains("give the key") && !html.contains("Discovery works"), "{html}");
    let (_, html) = test(&[("csrf", &token), ("key", "scimop_wrong")]).await;
    assert!(html.contains("the key is unknown or revoked") && !html.contains("scimop_wrong"), "{html}");
    // Only with this session's CSRF token.
    let (s, _) = test(&[("key", &c.key)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    c.stop().await;
}

/// A team the operator declares shows its ManagedTeam's namespace/name: the operator's key
/// sends `Scim-Declared-By` with the group's ownership marker and the server keeps it. The same
/// header from an identity provider's key is ignored (its team looks as pushed, and it cannot
/// rename the declaring object of the operator's team), and a malformed one is a 400.
#[tokio::test]
async fn a_team_declared_in_kubernetes_shows_its_namespace_and_name() {
    use scim_operator::provisioning::access::Preset;
    let c = Console::start(Arc::new(SystemClock)).await;
    let ann = c.provision("ann@example.com", Some("Admin")).await;
    let ctx = RequestContext::trusted("cli:test");
    let key = |preset: Preset| {
        let (directory, ctx) = (c.directory.clone(), ctx.clone());
        async move {
            let (_, secret) =
                directory.create_key(&ctx, preset.as_str(), None, &preset.permissions()).await.expect("key");
            secret.expose().to_string()
        }
    };
    let (operator, idp) = (key(Preset::Operator).await, key(Preset::IdentityProvider).await);
    let send = |key: &str, method: reqwest::Method, path: &str, declared: Option<&str>, body: serde_json::Value| {
        let mut req = c
            .http
            .request(method, format!("{}{path}", c.scim))
            .bearer_auth(key)
            .header("content-type", "application/scim+json")
            .body(body.to_string());
        if let Some(d) = declared {
            req = req.header("Scim-Declared-By", d);
        }
        async move {
            let resp = req.send().await.expect("scim request");
            let status = resp.status();
            (status, resp.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let group = |name: &str, marker: Option<&str>| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "externalId": marker});
    let post = reqwest::Method::POST;
    let marker = "k8s:prod/payments/0d1e-uid";

    // A malformed header is refused before anything is written.
    for bad in ["payments", "payments/billing/x", "Payments/billing", "payments/"] {
        let (s, b) = send(&operator, post.clone(), "/Groups", Some(bad), group("Billing", Some(marker))).await;
        assert_eq!((s, b["scimType"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidValue")), "{bad}: {b}");
    }
    assert!(c.directory.teams().await.expect("teams").is_empty(), "nothing was made");

    let (s, b) =
        send(&operator, post.clone(), "/Groups", Some("payments/billing-team"), group("Billing", Some(marker))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let billing = b["id"].as_str().expect("group id").to_string();
    let (s, b) = send(&idp, post.clone(), "/Groups", Some("payments/spoofed"), group("Okta team", None)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The identity provider changes the operator's team's members (it may) and names another
    // declaring object (it may not: ignored).
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": ann}]}]});
    let (s, b) = send(&idp, reqwest::Method::PATCH, &format!("/Groups/{billing}"), Some("evil/spoofed"), add).await;
    assert!(s.is_success(), "{s} {b}");

    let cookie = c.sign_in("ann@example.com").await;
    let (_, html) = c.page(&cookie, "/console/teams").await;
    assert!(html.contains("Declared in Kubernetes: payments/billing-team (cluster prod)"), "{html}");
    assert!(html.contains("Managed externally"), "the identity provider's team: {html}");
    assert!(!html.contains("spoofed"), "no declared name from an identity provider's key: {html}");
    let teams = c.directory.teams().await.expect("teams");
    let declared: Vec<(String, Option<String>)> =
        teams.iter().map(|(t, _)| (t.name.clone(), t.declared_by.clone())).collect();
    assert_eq!(
        declared,
        [("Billing".to_string(), Some("payments/billing-team".to_string())), ("Okta team".to_string(), None)]
    );
    let team_id = &teams[0].0.id;
    let (_, html) = c.page(&cookie, &format!("/console/teams/{team_id}")).await;
    assert!(html.contains("Declared in Kubernetes: payments/billing-team"), "{html}");

    // A replace by the operator names the object that declares the group now; without the
    // header the name is kept, and dropping the marker drops it.
    let put = |declared: Option<&'static str>, marker: Option<&'static str>| {
        send(&operator, reqwest::Method::PUT, &format!("/Groups/{billing}"), declared, group("Billing", marker))
    };
    let declared_now = || async { c.directory.teams().await.expect("teams")[0].0.declared_by.clone() };
    let (s, b) = put(Some("payments/billing-v2"), Some(marker)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(declared_now().await.as_deref(), Some("payments/billing-v2"));
    let (s, b) = put(None, Some(marker)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(declared_now().await.as_deref(), Some("payments/billing-v2"));
    let (s, b) = put(Some("payments/billing-v3"), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(declared_now().await, None, "no marker, no declaring object");
    c.stop().await;
}
