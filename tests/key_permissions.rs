//! Key permissions end to end: keys made with `scim-operator keys create` (the real binary),
//! used against a real `serve` process on a real database, over HTTP on loopback.

mod common;

use common::replicas::{Replica, bin};
use common::{assert_scim_error, fresh_database};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::process::Command;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ROLE_MAPPING: &str = "urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Runs `scim-operator ARGS --db DB`; returns (success, stdout, stderr).
fn cli(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).args(["--db", db]).output().expect("run scim-operator");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a key with `keys create --name NAME EXTRA...`; returns its secret (the last line).
fn key(db: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["keys", "create", "--name", name];
    args.extend_from_slice(extra);
    let (ok, out, err) = cli(db, &args);
    assert!(ok, "keys create {name} {extra:?}: {err}");
    out.lines().last().expect("the secret line").to_string()
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/scim+json").body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// A key made the way an identity provider's key is made (`keys create --name okta`, nothing
/// more) provisions users and groups, and cannot grant Admin through a RoleMapping nor squat
/// the operator's ownership marker.
#[tokio::test]
async fn an_identity_providers_key_provisions_but_cannot_grant_admin_through_a_role_mapping() {
    let (db, _dir) = fresh_database().await;
    let okta = key(&db, "okta", &[]);
    let logs = tempfile::tempdir().unwrap();
    let server = Replica::start(&db, logs.path(), 0).await;
    let http = reqwest::Client::new();
    let base = server.base.clone();

    // What Okta and Entra ID do keeps working.
    let (s, user) = call(
        &http,
        &base,
        &okta,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "ada@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let uid = user["id"].as_str().unwrap().to_string();
    let (s, group) = call(
        &http,
        &base,
        &okta,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "SRE", "members": [{"value": uid}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{group}");
    let (s, _) =
        call(&http, &base, &okta, Method::GET, "/Users?filter=userName%20eq%20%22ada@example.com%22", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &http,
        &base,
        &okta,
        Method::PATCH,
        &format!("/Users/{uid}"),
        Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "Ada"}]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // A RoleMapping granting Admin to the team: refused, nothing written.
    let mapping = json!({"schemas": [ROLE_MAPPING], "displayName": "sre-admins", "roles": [{"value": "Admin"}], "teams": [{"value": "SRE"}]});
    let (s, b) = call(&http, &base, &okta, Method::POST, "/RoleMappings", Some(mapping)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an identity provider's key created a RoleMapping: {b}");
    assert_scim_error(&b, 403, None);
    let (_, audit, _) = cli(&db, &["audit", "--action", "rolemapping.create"]);
    assert!(audit.trim().is_empty(), "a refused mapping was audited as created: {audit}");
    let access: Value = http
        .get(format!("{}/api/v1/users/{uid}/access", server.root()))
        .bearer_auth(&okta)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles: Vec<&str> =
        access["effectiveRoles"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(!roles.contains(&"Admin"), "{access}");

    // Nor may it read the mappings, or squat the operator's ownership marker.
    let (s, b) = call(&http, &base, &okta, Method::GET, "/RoleMappings", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let squat = json!({"schemas": [USER], "userName": "eve@example.com", "externalId": "k8s:c/platform/uid-1"});
    let (s, b) = call(&http, &base, &okta, Method::POST, "/Users", Some(squat)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an identity provider's key wrote an ownership marker: {b}");
    assert_scim_error(&b, 403, None);
    drop(server);
}

/// The operator's key (the `operator` preset) owns what it marks; an identity provider's key
/// may change such a user's attributes and deactivate it (offboarding), but not delete it, nor
/// move or drop its marker, nor delete or re-mark the operator's teams.
#[tokio::test]
async fn operator_owned_users_and_teams_are_the_operators() {
    let (db, _dir) = fresh_database().await;
    let okta = key(&db, "okta", &[]);
    let operator = key(&db, "operator", &["--preset", "operator"]);
    let logs = tempfile::tempdir().unwrap();
    let server = Replica::start(&db, logs.path(), 0).await;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let marker = "k8s:cluster/platform/uid-1";

    let (s, user) = call(
        &http,
        &base,
        &operator,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "grace@example.com", "externalId": marker})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let uid = user["id"].as_str().unwrap().to_string();
    let (s, group) = call(
        &http,
        &base,
        &operator,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP], "displayName": "Platform", "externalId": marker, "members": [{"value": uid}]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{group}");
    let gid = group["id"].as_str().unwrap().to_string();
    let mapping = json!({"schemas": [ROLE_MAPPING], "displayName": "platform", "roles": [{"value": "Standard"}], "teams": [{"value": "Platform"}]});
    let (s, b) = call(&http, &base, &operator, Method::POST, "/RoleMappings", Some(mapping)).await;
    assert_eq!(s, StatusCode::CREATED, "the operator's key maintains RoleMappings: {b}");

    let user_path = format!("/Users/{uid}");
    let group_path = format!("/Groups/{gid}");
    let patch = |ops: Value| Some(json!({"schemas": [PATCH_OP], "Operations": ops}));
    let refusals = [
        (Method::DELETE, user_path.clone(), None),
        (
            Method::PATCH,
            user_path.clone(),
            patch(json!([{"op": "replace", "path": "externalId", "value": "00u-okta"}])),
        ),
        (Method::PATCH, user_path.clone(), patch(json!([{"op": "remove", "path": "externalId"}]))),
        (Method::PUT, user_path.clone(), Some(json!({"schemas": [USER], "userName": "grace@example.com"}))),
        (Method::DELETE, group_path.clone(), None),
        (
            Method::PATCH,
            group_path.clone(),
            patch(json!([{"op": "replace", "path": "externalId", "value": "okta-group"}])),
        ),
    ];
    for (method, path, body) in refusals {
        let (s, b) = call(&http, &base, &okta, method.clone(), &path, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path} with the identity provider's key: {b}");
        assert_scim_error(&b, 403, None);
        assert!(b["detail"].as_str().unwrap().contains("kubernetes_owned_manage"), "{b}");
    }
    let (_, after) = call(&http, &base, &operator, Method::GET, &user_path, None).await;
    assert_eq!(after["externalId"], marker, "nothing was changed: {after}");
    let (s, _) = call(&http, &base, &operator, Method::GET, &group_path, None).await;
    assert_eq!(s, StatusCode::OK);

    // Offboarding by the identity provider still works: attributes and `active`.
    let (s, b) = call(
        &http,
        &base,
        &okta,
        Method::PATCH,
        &user_path,
        patch(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["externalId"], marker);
    // The owner deletes what it owns.
    let (s, b) = call(&http, &base, &operator, Method::DELETE, &user_path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    drop(server);
}

/// `keys create`: permissions by preset and by name (repeated or comma-separated), refused
/// names, what `keys list` and the audit trail record, and `keys --help`.
#[tokio::test]
async fn keys_create_takes_presets_and_permissions() {
    use scim_operator::provisioning::access::{Permission, Preset};
    let (db, _dir) = fresh_database().await;
    let names = |line: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(line).unwrap();
        v["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
    };
    key(&db, "okta", &[]);
    key(&db, "op", &["--preset", "operator", "--permission", "audit_logs_read"]);
    key(&db, "two", &["--permission", "teams_manage,audit_logs_read", "--permission", "keys_manage"]);
    key(&db, "all", &["--preset", "admin"]);
    let (ok, list, err) = cli(&db, &["keys", "list"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(
        names(lines[0]),
        Preset::IdentityProvider.permissions().names(),
        "the default is the identity-provider preset"
    );
    let mut op = Preset::Operator.permissions().names();
    op.push("audit_logs_read".into());
    assert_eq!(names(lines[1]), op);
    assert_eq!(names(lines[2]), ["teams_manage", "keys_manage", "audit_logs_read"]);
    assert_eq!(names(lines[3]).len(), Permission::ALL.len());

    let (ok, _, err) = cli(&db, &["keys", "create", "--name", "bad", "--permission", "user_access_manage,everything"]);
    assert!(!ok, "an unknown permission must be refused");
    assert!(err.contains("unknown permission 'everything'") && err.contains("role_mappings_manage"), "{err}");
    let (_, list_after, _) = cli(&db, &["keys", "list"]);
    assert_eq!(list_after.lines().count(), 4, "nothing was created");

    let (_, audit, _) = cli(&db, &["audit", "--action", "key.create"]);
    let first: Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
    assert_eq!(first["details"]["permissions"], json!(Preset::IdentityProvider.permissions().names()), "{first}");

    for help in [vec!["keys", "--help"], vec!["keys", "create", "--help"]] {
        let out = Command::new(bin()).args(&help).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for p in Permission::ALL {
            assert!(text.contains(p.as_str()), "{help:?} does not name {p}:\n{text}");
        }
        for p in Preset::ALL {
            assert!(text.contains(p.as_str()), "{help:?} does not name the preset {}:\n{text}", p.as_str());
        }
    }
}

/// Upgrading a database whose keys predate permissions (every key carried
/// `user_access_invite,user_access_manage` and could make every request): bootstrap keys get
/// the `operator` preset, every other key the `identity-provider` preset, and a key that could
/// make no request gets no permission. The migration is undone and run again on a database
/// holding keys in the old form.
#[tokio::test]
async fn the_upgrade_gives_existing_keys_conservative_permissions() {
    use scim_operator::provisioning::access::Preset;
    use scim_operator::store::{ApiKeyRecord, KeyOwner};
    use sqlx::Connection;
    let (db, _dir) = fresh_database().await;
    let old = |name: &str, permissions: &[&str]| ApiKeyRecord {
        id: format!("id-{name}"),
        name: name.into(),
        owner: KeyOwner::ServiceAccount,
        owner_user_id: None,
        secret_hash: format!("hash-{name}"),
        hint: String::new(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        created: "2026-01-01T00:00:00.000Z".into(),
        revoked_at: None,
        revoked_reason: None,
        last_used_at: None,
    };
    {
        let store = scim_operator::store::open(&db).await.unwrap();
        let mut tx = store.begin_write().await.unwrap();
        for k in [
            old("okta", &["user_access_invite", "user_access_manage"]),
            old("bootstrap-0123abcd", &["user_access_invite", "user_access_manage"]),
            old("invite-only", &["user_access_invite"]),
        ] {
            tx.insert_key(&k).await.unwrap();
        }
        tx.commit().await.unwrap();
        store.close().await;
    }
    // Forget that 0004 ran, as on a database of the previous release.
    sqlx::any::install_default_drivers();
    let url = if db.starts_with("postgres") { db.clone() } else { format!("sqlite://{db}") };
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 4").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let store = scim_operator::store::open(&db).await.unwrap();
    let keys = store.begin_read().await.unwrap().list_keys().await.unwrap();
    let of = |name: &str| keys.iter().find(|k| k.name == name).unwrap().permissions.clone();
    assert_eq!(of("okta"), Preset::IdentityProvider.permissions().names());
    assert_eq!(of("bootstrap-0123abcd"), Preset::Operator.permissions().names());
    assert!(of("invite-only").is_empty(), "{:?}", of("invite-only"));
    store.close().await;
    common::drop_database(&db).await;
}
