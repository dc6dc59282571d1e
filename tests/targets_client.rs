//! The target client, its profiles and the fetch → decide → execute pipeline against real,
//! independent SCIM service providers: the Python `scim2-server` (Generic profile, bearer token
//! rotated without a new client) and Keycloak 26.7 (Keycloak profile, OAuth client credentials
//! with 60 s tokens, so that tokens are renewed and revoked during the test).
//!
//! Each test skips when its server is not available, unless `SCIM_TARGETS_REQUIRED=1`:
//! `SCIM_CONFORMANCE_BIN` is the tools environment (`tests/env/python-tools.sh`), and the
//! `KEYCLOAK_*` variables come from `tests/env/keycloak.sh start`.

use scim_operator::client::plan::{self, DesiredGroup, DesiredUser, Target, UserRemoval};
use scim_operator::client::{
    ClientCredentialsGrant, ClientError, Credentials, Profile, ScimClient, SecretSource, TargetConfig,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// Skips (returns `None`) when `var` is unset, unless the targets are required.
fn required_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(std::env::var_os("SCIM_TARGETS_REQUIRED").is_none(), "{var} is required (SCIM_TARGETS_REQUIRED)");
            eprintln!("SKIPPED: {var} is not set");
            None
        }
    }
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(base_url: &str, profile: Profile, credentials: Credentials) -> ScimClient {
    ScimClient::for_target(TargetConfig {
        base_url: base_url.to_string(),
        profile,
        credentials,
        ca_bundle: None,
        timeout: Duration::from_secs(20),
        max_concurrency: 4,
        rate_limit: 200,
    })
    .expect("client")
}

/// A secret whose value the test changes, as a rotated Kubernetes Secret would.
fn rotating(initial: &str) -> (Arc<Mutex<String>>, Arc<dyn SecretSource>) {
    let value = Arc::new(Mutex::new(initial.to_string()));
    let v = value.clone();
    (value, Arc::new(move || Ok(v.lock().unwrap().clone())))
}

fn person(user_name: &str, family: &str, title: Option<&str>) -> DesiredUser {
    let mut document = json!({"schemas": [USER], "userName": user_name,
        "name": {"givenName": "Test", "familyName": family},
        "emails": [{"value": format!("{user_name}@example.com"), "type": "work", "primary": true}]});
    if let Some(t) = title {
        document["title"] = json!(t);
    }
    DesiredUser { document, marker: Some(format!("k8s:test/ns/{user_name}")), external_id: None }
}

/// Fetch → decide → execute for a user; the number of requests the plan sent.
async fn sync_user(c: &ScimClient, desired: &DesiredUser) -> usize {
    let caps = c.capabilities();
    let user_name = desired.document["userName"].as_str().unwrap();
    let held = c.fetch_user(user_name).await.expect("fetch");
    let plan = plan::user(Target::new(c.dialect(), &caps, None), desired, held.as_ref()).expect("plan");
    c.execute(&plan).await.expect("execute").requests
}

async fn remove_user(c: &ScimClient, user_name: &str, policy: UserRemoval) -> usize {
    let caps = c.capabilities();
    let held = c.fetch_user(user_name).await.expect("fetch").expect("the user exists");
    let plan = plan::user_removal(Target::new(c.dialect(), &caps, None), policy, &held).expect("plan");
    c.execute(&plan).await.expect("execute").requests
}

async fn sync_group(c: &ScimClient, name: &str, members: &[&str], max_ops: Option<usize>) -> usize {
    let caps = c.capabilities();
    let held = c.fetch_group(name).await.expect("fetch group");
    let desired = DesiredGroup {
        display_name: name.to_string(),
        marker: Some(format!("k8s:test/ns/{name}")),
        members: members.iter().map(|m| m.to_string()).collect(),
        authoritative: true,
    };
    let plan = plan::group(Target::new(c.dialect(), &caps, max_ops), &desired, held.as_ref()).expect("plan");
    c.execute(&plan).await.expect("execute").requests
}

async fn id_of(c: &ScimClient, user_name: &str) -> String {
    c.fetch_user(user_name).await.unwrap().expect("user")["id"].as_str().unwrap().to_string()
}

/// The whole user lifecycle and a team against one target; `deletes` says whether a Delete
/// policy removes the user there.
async fn lifecycle(c: &ScimClient, prefix: &str) {
    let ada = format!("{prefix}ada");
    // Create, read back through the target's own API.
    assert_eq!(sync_user(c, &person(&ada, "Lovelace", Some("Countess"))).await, 1, "one create");
    let id = id_of(c, &ada).await;
    let read = c.get_user(&id).await.unwrap().body;
    assert_eq!(read["userName"].as_str().map(str::to_lowercase), Some(ada.to_lowercase()));
    assert_eq!(read["name"]["familyName"], "Lovelace");
    assert_eq!(read["emails"][0]["value"].as_str().map(str::to_lowercase), Some(format!("{ada}@example.com")));
    assert_eq!(read["active"], true, "created enabled");
    assert_eq!(sync_user(c, &person(&ada, "Lovelace", Some("Countess"))).await, 0, "in sync: nothing sent");

    // Update.
    assert_eq!(sync_user(c, &person(&ada, "Byron", Some("Countess"))).await, 1, "one change");
    assert_eq!(c.get_user(&id).await.unwrap().body["name"]["familyName"], "Byron");
    assert_eq!(sync_user(c, &person(&ada, "Byron", Some("Countess"))).await, 0, "converged");

    // A team with members, then a member removed.
    let bob = format!("{prefix}bob");
    sync_user(c, &person(&bob, "Builder", None)).await;
    let bob_id = id_of(c, &bob).await;
    let team = format!("{prefix}Platform");
    sync_group(c, &team, &[id.as_str(), bob_id.as_str()], None).await;
    let held = c.fetch_group(&team).await.unwrap().expect("group created");
    assert_eq!(held.members, BTreeSet::from([id.clone(), bob_id.clone()]));
    assert_eq!(sync_group(c, &team, &[id.as_str(), bob_id.as_str()], None).await, 0, "membership in sync");
    assert_eq!(sync_group(c, &team, &[id.as_str()], None).await, 1, "one PATCH removes bob");
    assert_eq!(c.fetch_group(&team).await.unwrap().unwrap().members, BTreeSet::from([id.clone()]));

    // Deletion policies: deactivate ada, delete bob.
    assert_eq!(remove_user(c, &ada, UserRemoval::Deactivate).await, 1);
    assert_eq!(c.get_user(&id).await.unwrap().body["active"], false);
    assert_eq!(remove_user(c, &ada, UserRemoval::Deactivate).await, 0, "already inactive");
    assert_eq!(remove_user(c, &bob, UserRemoval::Delete).await, 1);
    assert!(matches!(c.get_user(&bob_id).await, Err(ClientError::NotFound)), "bob is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_profile_against_scim2_server_with_a_rotated_bearer_token() {
    let Some(bin) = required_env("SCIM_CONFORMANCE_BIN") else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _peer = Peer(
        Command::new(std::path::Path::new(&bin).join("scim2-server"))
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string(), "--bearer-token", "peer-token"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server"),
    );
    let (secret, source) = rotating("stale-token");
    let c = client(&format!("http://127.0.0.1:{port}"), Profile::Generic, Credentials::bearer(source));
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let h = c.probe().await;
        if h.reachable.is_ok() || Instant::now() > deadline {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(health.reachable, Ok(()), "scim2-server answers");
    assert!(health.credentials.is_err(), "the stale token is refused: {health:?}");
    // The Secret is rotated: the same client uses the new value, no restart.
    *secret.lock().unwrap() = "peer-token".into();
    let health = c.probe().await;
    assert_eq!(health.credentials, Ok(()));
    let caps = health.capabilities.expect("discovered");
    assert!(caps.patch && caps.filter, "scim2-server announces PATCH and filters: {caps:?}");
    lifecycle(&c, "peer.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_profile_with_oauth_client_credentials_and_expiring_tokens() {
    let Some(scim_url) = required_env("KEYCLOAK_SCIM_URL") else { return };
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set with KEYCLOAK_SCIM_URL"));
    let lifespan: u64 = env("KEYCLOAK_TOKEN_LIFESPAN").parse().unwrap();
    let (_, client_id) = rotating(&env("KEYCLOAK_SCIM_CLIENT_ID"));
    let (_, client_secret) = rotating(&env("KEYCLOAK_SCIM_CLIENT_SECRET"));
    let credentials = Credentials::client_credentials(ClientCredentialsGrant {
        token_url: env("KEYCLOAK_TOKEN_URL"),
        client_id,
        client_secret,
        scopes: vec![],
        audience: None,
    });
    let c = client(&scim_url, Profile::Keycloak, credentials);
    let health = c.probe().await;
    assert_eq!((health.reachable.clone(), health.credentials.clone()), (Ok(()), Ok(())), "{health:?}");
    let caps = health.capabilities.unwrap();
    assert!(caps.patch && !caps.etag, "{caps:?}");
    assert_eq!(caps.max_results, Some(100), "Keycloak announces pages of 100");
    assert_eq!(c.credentials().tokens_fetched(), 1, "one token for both probe requests");
    let started = Instant::now();

    lifecycle(&c, "kc.").await;

    // Wait until the first token is within its renewal margin: the next request fetches a new
    // one before the old one expires.
    let fetched = c.credentials().tokens_fetched();
    let renew_after = Duration::from_secs(lifespan - (lifespan / 4).min(30) + 1);
    if let Some(wait) = renew_after.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    sync_user(&c, &person("kc.carol", "Carol", None)).await;
    assert_eq!(c.credentials().tokens_fetched(), fetched + 1, "renewed before expiry");

    // Revoke every token issued so far (the realm's not-before): Keycloak answers 401, the
    // client fetches a new token once and the request succeeds.
    revoke_tokens(
        &env("KEYCLOAK_URL"),
        &env("KEYCLOAK_REALM"),
        &env("KEYCLOAK_ADMIN_USER"),
        &env("KEYCLOAK_ADMIN_PASSWORD"),
    )
    .await;
    let before = c.credentials().tokens_fetched();
    let carol = id_of(&c, "kc.carol").await;
    assert_eq!(c.credentials().tokens_fetched(), before + 1, "a 401 fetched a new token once");
    assert_eq!(c.get_user(&carol).await.unwrap().body["name"]["familyName"], "Carol");

    // Pages: Keycloak answers at most 100; listing everything follows the pages.
    let names: Vec<String> = (0..101).map(|i| format!("kc.page{i:03}")).collect();
    let c = &c;
    futures::future::join_all(names.iter().map(|n| async move { sync_user(c, &person(n, "Page", None)).await })).await;
    let all = c.list_all("Users", None).await.unwrap();
    let listed: BTreeSet<String> = all.iter().filter_map(|u| u["userName"].as_str().map(str::to_string)).collect();
    assert!(names.iter().all(|n| listed.contains(n)), "every page read: {} users listed", listed.len());
}

/// Sets the realm's not-before to now through the admin REST API, which invalidates every
/// access token issued before.
async fn revoke_tokens(url: &str, realm: &str, user: &str, password: &str) {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{url}/realms/master/protocol/openid-connect/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", user),
                ("password", password),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = token["access_token"].as_str().expect("admin token").to_string();
    // Tokens carry whole seconds: make sure "now" is after the last one issued.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let resp = http
        .put(format!("{url}/admin/realms/{realm}"))
        .bearer_auth(admin)
        .json(&json!({"realm": realm, "notBefore": now}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "setting not-before: {}", resp.status());
    tokio::time::sleep(Duration::from_millis(1100)).await;
}
