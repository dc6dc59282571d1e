//! The provisioning rules of the product, over real HTTP: roles with fallback, managed teams,
//! offboarding, keys, invitations, audit trail and metrics.

mod common;

use chrono::TimeZone;
use common::{TestServer, assert_scim_error, create_key};
use reqwest::StatusCode;
use scim_operator::clock::ManualClock;
use scim_operator::provisioning::RequestContext;
use scim_operator::server::ServerConfig;
use scim_operator::store::AuditQuery;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ROLE_MAPPING: &str = "urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping";

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn cli() -> RequestContext {
    RequestContext::trusted("cli:test")
}

fn values(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|r| r["value"].as_str().unwrap_or("").to_string()).collect()).unwrap_or_default()
}

/// The roles a user effectively has (derived state, served at `/api/v1/users/{id}/access`).
async fn effective_full(s: &TestServer, user: &Value) -> Value {
    let id = user["id"].as_str().expect("user id");
    let resp = s.http.get(format!("{}/api/v1/users/{id}/access", s.root())).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let access: Value = resp.json().await.unwrap();
    access["effectiveRoles"].clone()
}

async fn effective(s: &TestServer, user: &Value) -> Vec<String> {
    effective_full(s, user)
        .await
        .as_array()
        .map(|a| a.iter().map(|r| r["name"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

/// The roles SCIM assigned (what the identity provider reads back).
fn assigned(user: &Value) -> Vec<String> {
    values(&user["roles"])
}

async fn audit(s: &TestServer, action: &str) -> Vec<scim_operator::store::AuditEvent> {
    let q = AuditQuery { action: Some(action.into()), ..Default::default() };
    s.directory.audit_events(&q).await.unwrap()
}

/// Runs the `scim-operator` command line on the test server's database as administrator
/// `tester` (its audit actor is `cli:tester`).
fn run_cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(args)
        .args(["--db", &s.db_url])
        .env("USER", "tester")
        .output()
        .expect("run scim-operator")
}

/// The standard output of a command that must succeed.
fn cli_ok(s: &TestServer, args: &[&str]) -> String {
    let out = run_cli(s, args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Asserts that a command fails with exit code 1, prints nothing on stdout and reports
/// `expected` (the error the provisioning layer returned for the same request) on stderr.
fn cli_refused(s: &TestServer, args: &[&str], expected: &scim_operator::scim::ScimError) {
    let out = run_cli(s, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?} must be refused: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains(&format!("error: {expected}\n")), "{args:?}: expected '{expected}', got: {stderr}");
}

/// The permissions `keys create` gives by default.
fn idp() -> scim_operator::provisioning::access::Permissions {
    scim_operator::provisioning::access::Preset::IdentityProvider.permissions()
}

fn cli_as_tester() -> RequestContext {
    RequestContext::trusted("cli:tester")
}

#[tokio::test]
async fn unknown_roles_fall_back_to_the_default_and_are_audited() {
    let s = TestServer::start().await;
    let (status, u) =
        s.post("/Users", json!({"schemas": [USER], "userName": "r1", "roles": [{"value": "Wizard"}]})).await;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    assert_eq!(effective(&s, &u).await, ["Standard"]);
    assert_eq!(effective_full(&s, &u).await[0]["source"], "default");
    assert!(assigned(&u).is_empty(), "the unknown role is not assigned: {u}");
    let events = audit(&s, "role.unmatched").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["requestedRole"], "Wizard");
    assert_eq!(events[0].target_id, u["id"]);

    // Matched roles only; unmatched ones are reported.
    let (_, u2) = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "r2", "roles": [{"value": "read only"}, {"value": "Nope"}]}),
        )
        .await;
    assert_eq!(effective(&s, &u2).await, ["Read Only"]);
    assert_eq!(assigned(&u2), ["Read Only"]);
    assert_eq!(audit(&s, "role.unmatched").await.len(), 2);

    let text = s.http.get(format!("{}/metrics", s.root())).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("scim_role_provisioning_total{outcome=\"unmatched\"} 2"), "{text}");
    assert!(text.contains("scim_role_provisioning_total{outcome=\"default\"} 1"), "{text}");
}

#[tokio::test]
async fn entra_string_encoded_roles_are_accepted_in_add_only_patches() {
    let s = TestServer::start().await;
    let id = s.create_user("entra-role").await;
    let (status, u) = s
        .patch(
            &format!("/Users/{id}"),
            patch(json!([{"op": "Add", "path": "roles", "value": [
                {"value": "{\"id\":\"8b9c5a8e-1111-4d2e-9f43-abcdefabcdef\",\"value\":\"Admin\",\"displayName\":\"Admin\"}"}
            ]}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(effective(&s, &u).await, ["Admin"]);
    assert_eq!(assigned(&u), ["Admin"], "the JSON-encoded value reads back as the role name");
    let (_, again) = s.get(&format!("/Users/{id}")).await;
    assert_eq!(effective(&s, &again).await, ["Admin"]);
}

#[tokio::test]
async fn without_a_default_role_roles_that_no_longer_apply_are_revoked_and_audited() {
    let s = TestServer::start().await;
    s.directory.set_default_role(&cli(), None).await.unwrap();
    let (_, u) =
        s.post("/Users", json!({"schemas": [USER], "userName": "revoked", "roles": [{"value": "Admin"}]})).await;
    let id = u["id"].as_str().unwrap();
    assert_eq!(effective(&s, &u).await, ["Admin"]);
    // The last SCIM role is replaced by one the catalog does not know: nothing applies any more.
    let (status, u) = s
        .patch(
            &format!("/Users/{id}"),
            patch(json!([{"op": "replace", "path": "roles", "value": [{"value": "Ghost"}]}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert!(effective(&s, &u).await.is_empty(), "the Admin role is revoked");
    let events = audit(&s, "role.revoke").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].target_id, id);
    assert_eq!(events[0].details["previous"], json!(["Admin"]));

    // Removing the roles attribute altogether revokes as well; a user without roles stays so.
    let (_, u2) =
        s.post("/Users", json!({"schemas": [USER], "userName": "revoked2", "roles": [{"value": "Read Only"}]})).await;
    let id2 = u2["id"].as_str().unwrap();
    let (status, u2) = s.patch(&format!("/Users/{id2}"), patch(json!([{"op": "remove", "path": "roles"}]))).await;
    assert_eq!(status, StatusCode::OK, "{u2}");
    assert!(effective(&s, &u2).await.is_empty());
    assert_eq!(audit(&s, "role.revoke").await.len(), 2);
    let (_, fresh) = s.post("/Users", json!({"schemas": [USER], "userName": "noroles"})).await;
    assert!(effective(&s, &fresh).await.is_empty());
    assert_eq!(audit(&s, "role.revoke").await.len(), 2, "nothing to revoke from a user without roles");

    // A team's role mapping removed: its members lose the role it gave them.
    let (_, g) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Ops", "members": [{"value": id}]})).await;
    assert!(g["id"].is_string(), "{g}");
    let (status, m) = s
        .post("/RoleMappings", json!({"schemas": [ROLE_MAPPING], "displayName": "ops", "roles": [{"value": "Read Only"}], "teams": [{"value": "Ops"}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let (_, u) = s.get(&format!("/Users/{id}")).await;
    assert_eq!(effective(&s, &u).await, ["Read Only"]);
    let (status, _) = s.delete(&format!("/RoleMappings/{}", m["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(effective(&s, &u).await.is_empty(), "the mapped role is revoked with its mapping");
    assert_eq!(audit(&s, "role.revoke").await.len(), 3);
    let text = s.http.get(format!("{}/metrics", s.root())).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("scim_role_provisioning_total{outcome=\"revoked\"} 3"), "{text}");
    s.stop().await;
}

#[tokio::test]
async fn linking_by_exact_name_and_unlinking_keeps_the_team() {
    let s = TestServer::start().await;
    let team = s.directory.create_team(&cli(), "Identity Team").await.unwrap();
    let a = s.create_user("a@x.test").await;
    let b = s.create_user("b@x.test").await;
    s.directory.change_team_member(&cli(), "Identity Team", "a@x.test", true).await.unwrap();

    // Another case is another name: a new team is created, nothing is linked.
    let (status, other) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "identity team"})).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    // The exact name links the existing team; its membership becomes the request's.
    let (status, g) =
        s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Identity Team", "members": [{"value": b}]})).await;
    assert_eq!(status, StatusCode::CREATED, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let members: Vec<&str> = g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap()).collect();
    assert_eq!(members, [b.as_str()]);
    let teams = s.directory.teams().await.unwrap();
    let linked = teams.iter().find(|(t, _)| t.id == team.id).unwrap();
    assert_eq!(linked.0.scim_id.as_deref(), Some(gid.as_str()));
    assert_eq!(teams.len(), 2);

    // Already linked: 409.
    let (status, body) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Identity Team"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_scim_error(&body, 409, Some("uniqueness"));

    // While managed, the command line may not change membership.
    let err = s.directory.change_team_member(&cli(), "Identity Team", "a@x.test", true).await.unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.detail.contains("managed by an identity provider"), "{}", err.detail);

    // Unlink: the team stays, without members, unmanaged; the group id is gone.
    let (status, _) = s.delete(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let teams = s.directory.teams().await.unwrap();
    let (kept, count) = teams.iter().find(|(t, _)| t.id == team.id).unwrap();
    assert!(kept.scim_id.is_none());
    assert_eq!(*count, 0);
    assert_eq!(kept.handle, "identity-team");

    // And it can be linked again by exact name.
    let (status, again) =
        s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Identity Team", "members": [{"value": a}]})).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_ne!(again["id"], gid);
    let teams = s.directory.teams().await.unwrap();
    assert_eq!(teams.iter().find(|(t, _)| t.id == team.id).unwrap().1, 1);
    assert_eq!(audit(&s, "group.link").await.len(), 2);
    assert_eq!(audit(&s, "group.unlink").await.len(), 1);
}

/// POST /Groups with `If-None-Match: *` creates only: an existing team of that name is a 409,
/// never linked, and stays as it was.
#[tokio::test]
async fn create_only_never_links_an_existing_team() {
    let s = TestServer::start().await;
    let team = s.directory.create_team(&cli(), "Admins").await.unwrap();
    s.create_user("a@x.test").await;
    let b = s.create_user("b@x.test").await;
    s.directory.change_team_member(&cli(), "Admins", "a@x.test", true).await.unwrap();
    let post = |name: &str, condition: &str| {
        s.http
            .post(format!("{}/Groups", s.base))
            .bearer_auth(&s.token)
            .header("content-type", "application/scim+json")
            .header("if-none-match", condition)
            .body(json!({"schemas": [GROUP], "displayName": name, "members": [{"value": b}]}).to_string())
            .send()
    };
    let resp = post("Admins", "*").await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_scim_error(&resp.json().await.unwrap(), 409, Some("uniqueness"));
    let teams = s.directory.teams().await.unwrap();
    let (kept, count) = teams.iter().find(|(t, _)| t.id == team.id).unwrap();
    assert!(kept.scim_id.is_none(), "not linked");
    assert_eq!(*count, 1, "its members are untouched");
    assert!(audit(&s, "group.link").await.is_empty());

    let resp = post("Admins", "\"v1\"").await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "only * is meaningful on a create");
    let resp = post("Brand new", "*").await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(s.directory.teams().await.unwrap().len(), 2);
}

#[tokio::test]
async fn deactivation_revokes_the_users_keys_and_reactivation_does_not_restore_them() {
    let s = TestServer::start().await;
    let id = s.create_user("owner@x.test").await;
    let user_key = create_key(&s.store, "personal", Some(id.clone())).await;
    let (status, _, _) = s.call_as(&user_key, reqwest::Method::GET, "/Users", None).await;
    assert_eq!(status, StatusCode::OK);
    // The server warns about a SCIM key owned by a user.
    let ready: Value = s.http.get(format!("{}/readyz", s.root())).send().await.unwrap().json().await.unwrap();
    assert!(ready["warnings"][0].as_str().unwrap().contains("1 SCIM key(s) belong to a user"), "{ready}");
    assert!(!ready.to_string().contains(&id), "unauthenticated readiness names no user: {ready}");

    let (status, u) =
        s.patch(&format!("/Users/{id}"), patch(json!([{"op": "replace", "value": {"active": false}}]))).await;
    assert_eq!(status, StatusCode::OK, "{u}");
    let (status, _, body) = s.call_as(&user_key, reqwest::Method::GET, "/Users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_scim_error(&body, 401, None);
    let events = audit(&s, "user.deactivate").await;
    assert_eq!(events[0].details["revokedKeys"].as_array().unwrap().len(), 1);

    let (status, _) =
        s.patch(&format!("/Users/{id}"), patch(json!([{"op": "replace", "path": "active", "value": true}]))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = s.call_as(&user_key, reqwest::Method::GET, "/Users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked key stays revoked");
    // The service-account key was never affected.
    assert_eq!(s.get("/Users").await.0, StatusCode::OK);
}

/// `keys create` and `keys revoke` are the provisioning layer's: a key the command line makes
/// is audited exactly as the library audits one, works over HTTP, is revoked by offboarding
/// its owner, and `keys list` and `audit` show what the library reads.
#[tokio::test]
async fn the_cli_creates_lists_and_revokes_keys_through_the_provisioning_rules() {
    let s = TestServer::start().await;
    let owner = s.create_user("owner@cli.test").await;
    let out = cli_ok(&s, &["keys", "create", "--name", "cli-personal", "--user", "owner@cli.test"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let cli_id = lines[0].split_whitespace().nth(2).expect("key id").to_string();
    // Without --preset or --permission a key gets the identity-provider preset.
    assert_eq!(
        lines[0],
        format!("created key {cli_id} (cli-personal) for user with user_access_invite,user_access_manage,teams_manage")
    );
    let cli_secret = lines[1];
    assert!(cli_secret.starts_with("scimop_"), "{out}");
    assert_eq!(s.call_as(cli_secret, reqwest::Method::GET, "/Users", None).await.0, StatusCode::OK);

    let (lib, _) = s.directory.create_key(&cli_as_tester(), "lib-personal", Some(&owner), &idp()).await.unwrap();
    let created = audit(&s, "key.create").await;
    let event = |id: &str| created.iter().find(|e| e.target_id == id).cloned().expect("a key.create event");
    let (by_cli, by_lib) = (event(&cli_id), event(&lib.id));
    let idp_permissions = json!(["user_access_invite", "user_access_manage", "teams_manage"]);
    assert_eq!(
        by_cli.details,
        json!({"name": "cli-personal", "owner": "user", "ownerUserId": owner, "permissions": idp_permissions})
    );
    assert_eq!(
        by_lib.details,
        json!({"name": "lib-personal", "owner": "user", "ownerUserId": owner, "permissions": idp_permissions})
    );
    for e in [&by_cli, &by_lib] {
        assert_eq!((e.actor.as_str(), e.action.as_str(), e.target_type.as_str()), ("cli:tester", "key.create", "key"));
    }

    // The listings print what the provisioning layer reads, never a secret.
    let printed = cli_ok(&s, &["audit", "--action", "key.create"]);
    let printed: Vec<Value> = printed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(printed, created.iter().map(|e| serde_json::to_value(e).unwrap()).collect::<Vec<_>>());
    let listed = cli_ok(&s, &["keys", "list"]);
    assert!(!listed.contains(cli_secret), "keys list never prints a secret");
    let listed: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys = s.directory.keys().await.unwrap();
    assert_eq!(listed.len(), keys.len());
    for (line, key) in listed.iter().zip(&keys) {
        assert_eq!(line["id"], key.id.as_str());
        assert_eq!(line["owner"], key.owner.as_str());
        assert_eq!(line["ownerUserId"], json!(key.owner_user_id));
        assert_eq!(line["permissions"], json!(key.permissions));
    }
    let listed_cli = listed.iter().find(|l| l["id"] == cli_id.as_str()).expect("the CLI's key is listed");
    assert_eq!(listed_cli["permissions"], idp_permissions);
    assert_eq!(listed_cli["revoked"], Value::Null);

    // Offboarding the owner revokes the keys the command line made, like any other.
    let (status, u) =
        s.patch(&format!("/Users/{owner}"), patch(json!([{"op": "replace", "path": "active", "value": false}]))).await;
    assert_eq!(status, StatusCode::OK, "{u}");
    assert_eq!(s.call_as(cli_secret, reqwest::Method::GET, "/Users", None).await.0, StatusCode::UNAUTHORIZED);
    let deactivated = audit(&s, "user.deactivate").await;
    assert_eq!(deactivated[0].details["revokedKeys"], json!([cli_id, lib.id]));

    // `keys revoke` by name: audited against the key's id, and the key stops working.
    let out = cli_ok(&s, &["keys", "create", "--name", "cli-service"]);
    assert!(
        out.starts_with("created key ")
            && out
                .lines()
                .next()
                .unwrap()
                .ends_with("(cli-service) for service_account with user_access_invite,user_access_manage,teams_manage"),
        "{out}"
    );
    let service_secret = out.lines().last().unwrap();
    let service_id = out.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(s.call_as(service_secret, reqwest::Method::GET, "/Users", None).await.0, StatusCode::OK);
    assert_eq!(cli_ok(&s, &["keys", "revoke", "cli-service"]), "revoked cli-service\n");
    let (lib_service, _) = s.directory.create_key(&cli_as_tester(), "lib-service", None, &idp()).await.unwrap();
    s.directory.revoke_key(&cli_as_tester(), "lib-service").await.unwrap();
    let revoked = audit(&s, "key.revoke").await;
    assert_eq!(revoked.len(), 2, "{revoked:?}");
    for (e, id, name) in [(&revoked[0], &service_id, "cli-service"), (&revoked[1], &lib_service.id, "lib-service")] {
        assert_eq!(
            (e.actor.as_str(), e.target_type.as_str(), e.target_id.as_str()),
            ("cli:tester", "key", id.as_str())
        );
        assert_eq!(e.details, json!({"name": name, "reason": "revoked by administrator"}));
    }
    // Revoked by another process: this server notices within its key cache's time to live.
    tokio::time::sleep(ServerConfig::default().key_cache_ttl + Duration::from_millis(200)).await;
    assert_eq!(s.call_as(service_secret, reqwest::Method::GET, "/Users", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get("/Users").await.0, StatusCode::OK, "other keys keep working");
}

/// What the rules refuse, the command line is refused with the provisioning layer's own error,
/// and nothing of it is stored or audited.
#[tokio::test]
async fn the_cli_is_refused_what_the_rules_refuse_with_the_same_error() {
    let s = TestServer::start().await;
    let ctx = cli_as_tester();
    let member = s.create_user("member@cli.test").await;
    let (status, group) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Synced"})).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(cli_ok(&s, &["roles", "create", "Billing"]).lines().next().unwrap().split(' ').nth(2), Some("Billing"));
    assert_eq!(cli_ok(&s, &["roles", "default", "Billing"]), "default role: Billing\n");
    let default_events = audit(&s, "role.default").await;
    assert_eq!(default_events.len(), 1);
    assert_eq!(default_events[0].actor, "cli:tester");
    assert_eq!(default_events[0].details, json!({"defaultRole": "Billing"}));
    let (roles, _) = s.directory.role_catalog().await.unwrap();
    let builtin = roles.iter().find(|r| r.builtin).expect("a built-in role").name.clone();
    let everything = || async {
        (s.directory.keys().await.unwrap(), s.directory.audit_events(&AuditQuery::default()).await.unwrap())
    };
    let before = everything().await;

    let e = s.directory.create_key(&ctx, "bootstrap-mine", None, &idp()).await.unwrap_err();
    assert_eq!(e.status, 400);
    cli_refused(&s, &["keys", "create", "--name", "bootstrap-mine"], &e);
    let e = s.directory.create_key(&ctx, "k", Some("nobody@cli.test"), &idp()).await.unwrap_err();
    assert_eq!(e.status, 404);
    cli_refused(&s, &["keys", "create", "--name", "k", "--user", "nobody@cli.test"], &e);
    let e = s.directory.revoke_key(&ctx, "no-such-key").await.unwrap_err();
    assert_eq!(e.status, 404);
    cli_refused(&s, &["keys", "revoke", "no-such-key"], &e);
    let e = s.directory.delete_role(&ctx, &builtin).await.unwrap_err();
    assert!(e.detail.contains("built-in"), "{e}");
    cli_refused(&s, &["roles", "delete", &builtin], &e);
    let e = s.directory.delete_role(&ctx, "Billing").await.unwrap_err();
    assert!(e.detail.contains("default role"), "{e}");
    cli_refused(&s, &["roles", "delete", "Billing"], &e);
    let e = s.directory.change_team_member(&ctx, "Synced", &member, true).await.unwrap_err();
    assert!(e.detail.contains("managed by an identity provider"), "{e}");
    // The refused change's transaction locked the team's row (PostgreSQL); its rollback runs on
    // this test's runtime, which the blocking CLI call below would not let run.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    cli_refused(&s, &["teams", "add-member", "Synced", &member], &e);

    assert_eq!(everything().await, before, "a refused command stores and audits nothing");
    let teams = s.directory.teams().await.unwrap();
    assert_eq!(teams.iter().find(|(t, _)| t.name == "Synced").map(|(_, n)| *n), Some(0));
}

#[tokio::test]
async fn two_keys_are_valid_at_once_for_rotation() {
    let s = TestServer::start().await;
    let second = create_key(&s.store, "next", None).await;
    assert_eq!(s.call_as(&second, reqwest::Method::GET, "/Users", None).await.0, StatusCode::OK);
    assert_eq!(s.get("/Users").await.0, StatusCode::OK);
    let mut tx = s.store.begin_write().await.unwrap();
    assert!(tx.revoke_key("test", "2030-01-01T00:00:00.000Z", "rotated").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(s.get("/Users").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.call_as(&second, reqwest::Method::GET, "/Users", None).await.0, StatusCode::OK);
}

/// A key revoked by another process (the `keys revoke` command, another replica) is not seen by
/// this server's key cache at once, but within its time to live; with no cache, at once.
#[tokio::test]
async fn a_key_revoked_elsewhere_stops_working_within_the_key_cache_ttl() {
    for ttl in [Duration::ZERO, Duration::from_millis(300)] {
        let s = TestServer::start_with(ServerConfig { key_cache_ttl: ttl, ..ServerConfig::default() }).await;
        assert_eq!(s.get("/Users").await.0, StatusCode::OK);
        // A second handle on the same database, as the CLI or another replica would hold.
        let elsewhere = scim_operator::store::open(&s.db_url).await.unwrap();
        let mut tx = elsewhere.begin_write().await.unwrap();
        assert!(tx.revoke_key("test", "2030-01-01T00:00:00.000Z", "rotated").await.unwrap());
        tx.commit().await.unwrap();
        elsewhere.close().await;
        if !ttl.is_zero() {
            tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        }
        assert_eq!(s.get("/Users").await.0, StatusCode::UNAUTHORIZED, "ttl {ttl:?}");
    }
}

#[tokio::test]
async fn concurrent_patches_to_one_group_all_land() {
    let s = Arc::new(TestServer::start().await);
    let (_, g) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "Busy"})).await;
    let gid = g["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(s.create_user(&format!("c{i}")).await);
    }
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let s = s.clone();
        let gid = gid.clone();
        tasks.push(tokio::spawn(async move {
            s.patch(
                &format!("/Groups/{gid}"),
                patch(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
            )
            .await
            .0
        }));
    }
    // Membership PATCHes as identity providers send them: 204, none lost to another.
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::NO_CONTENT);
    }
    let (_, g) = s.get(&format!("/Groups/{gid}")).await;
    let mut members: Vec<String> =
        g["members"].as_array().unwrap().iter().map(|m| m["value"].as_str().unwrap().to_string()).collect();
    members.sort();
    ids.sort();
    assert_eq!(members, ids);
    assert_eq!(g["meta"]["version"], "W/\"25\"");
}

#[tokio::test]
async fn invitations_are_valid_two_days_once_and_cancelled_on_deactivation() {
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()));
    let s = TestServer::start_full(ServerConfig::default(), clock.clone(), None).await;
    let (_, u) = s
        .post("/Users", json!({"schemas": [USER], "userName": "inv@x.test", "emails": [{"value": "inv@work.test", "primary": true}]}))
        .await;
    let id = u["id"].as_str().unwrap().to_string();
    let mut tx = s.store.begin_read().await.unwrap();
    let invs = tx.invitations(Some(&id)).await.unwrap();
    assert_eq!(invs.len(), 1);
    assert_eq!(invs[0].email, "inv@work.test");
    assert_eq!(invs[0].expires_at, "2026-01-07T09:00:00.000Z");
    let outbox = tx.outbox(10).await.unwrap();
    drop(tx);
    assert_eq!(outbox[0].recipient, "inv@work.test");
    assert!(!outbox[0].body.contains("scimop_"), "the body at rest holds no link: {}", outbox[0].body);
    let token = newest_token(&s).await;

    // Opening the link shows a page and uses nothing up; the page's form accepts.
    let open = |t: String| {
        let url = format!("{}/invitations/{t}", s.root());
        let http = s.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let accept = |t: String| {
        let url = format!("{}/invitations/{t}", s.root());
        let http = s.http.clone();
        async move { http.post(url).send().await.unwrap().status() }
    };
    for _ in 0..2 {
        let page = open(token.clone()).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        let html = page.text().await.unwrap();
        assert!(html.contains("<form method=\"post\">"), "{html}");
        assert!(html.contains("inv@work.test"), "{html}");
    }
    let invs = s.store.begin_read().await.unwrap().invitations(Some(&id)).await.unwrap();
    assert_eq!(invs[0].status, scim_operator::store::InvitationStatus::Pending, "a GET consumes nothing");

    // Resend: the old link is cancelled, the new one works once.
    s.directory.resend_invitation(&cli(), "inv@x.test").await.unwrap();
    assert_eq!(open(token.clone()).await.status(), StatusCode::GONE);
    assert_eq!(accept(token.clone()).await, StatusCode::GONE);
    let newest = newest_token(&s).await;
    clock.advance(chrono::Duration::hours(47));
    assert_eq!(accept(newest.clone()).await, StatusCode::OK);
    assert_eq!(accept(newest.clone()).await, StatusCode::GONE, "a link works once");
    assert_eq!(open(newest).await.status(), StatusCode::GONE, "a used link's page says so");
    assert_eq!(accept("scimop_unknown".into()).await, StatusCode::NOT_FOUND);
    assert_eq!(open("scimop_unknown".into()).await.status(), StatusCode::NOT_FOUND);

    // An expired link is refused.
    s.directory.resend_invitation(&cli(), &id).await.unwrap();
    let third = newest_token(&s).await;
    clock.advance(chrono::Duration::hours(49));
    assert_eq!(open(third.clone()).await.status(), StatusCode::GONE);
    assert_eq!(accept(third).await, StatusCode::GONE);

    // Deactivation cancels what is pending.
    s.directory.resend_invitation(&cli(), &id).await.unwrap();
    s.patch(&format!("/Users/{id}"), patch(json!([{"op": "replace", "path": "active", "value": false}]))).await;
    let invs = s.store.begin_read().await.unwrap().invitations(Some(&id)).await.unwrap();
    assert!(invs.iter().all(|i| i.status != scim_operator::store::InvitationStatus::Pending), "{invs:?}");
    // ...and withdraws its unsent message, link and all.
    let outbox = s.store.begin_read().await.unwrap().outbox(10).await.unwrap();
    assert_eq!(outbox[0].state(), scim_operator::store::OutboxState::Cancelled);
    assert!(outbox[0].link.is_none());
}

/// The token of the newest queued invitation message (kept beside the body until it is sent).
async fn newest_token(s: &TestServer) -> String {
    let outbox = s.store.begin_read().await.unwrap().outbox(1).await.unwrap();
    let link = outbox[0].link.clone().expect("an unsent invitation keeps its link");
    assert!(outbox[0].rendered_body().contains(&link));
    link.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn role_mappings_grant_roles_through_teams_and_scim_roles_win() {
    let s = TestServer::start().await;
    s.directory.create_role(&cli(), "Billing", "").await.unwrap();
    let alice = s.create_user("alice@x.test").await;
    let (_, bob) =
        s.post("/Users", json!({"schemas": [USER], "userName": "bob@x.test", "roles": [{"value": "Admin"}]})).await;
    let bob = bob["id"].as_str().unwrap().to_string();

    // Unknown roles in a mapping are refused.
    let (status, body) = s
        .post("/RoleMappings", json!({"schemas": [ROLE_MAPPING], "displayName": "bad", "roles": [{"value": "Nope"}], "teams": [{"value": "Finance"}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_scim_error(&body, 400, Some("invalidValue"));

    let (status, m) = s
        .post("/RoleMappings", json!({"schemas": [ROLE_MAPPING], "displayName": "finance-billing", "roles": [{"value": "billing"}], "teams": [{"value": "Finance"}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let mid = m["id"].as_str().unwrap().to_string();
    assert_eq!(m["roles"][0]["value"], "Billing");

    let (_, g) = s
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "displayName": "Finance", "members": [{"value": alice}, {"value": bob}]}),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_string();
    let (_, a) = s.get(&format!("/Users/{alice}")).await;
    assert_eq!(effective(&s, &a).await, ["Billing"]);
    let (_, b) = s.get(&format!("/Users/{bob}")).await;
    assert_eq!(effective(&s, &b).await, ["Admin"], "explicit SCIM roles win over mappings");

    // Leaving the team falls back to the default role.
    s.patch(
        &format!("/Groups/{gid}"),
        patch(json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}])),
    )
    .await;
    let (_, a) = s.get(&format!("/Users/{alice}")).await;
    assert_eq!(effective(&s, &a).await, ["Standard"]);

    // Rejoin, then delete the mapping: default again.
    s.patch(&format!("/Groups/{gid}"), patch(json!([{"op": "add", "path": "members", "value": [{"value": alice}]}])))
        .await;
    assert_eq!(effective(&s, &s.get(&format!("/Users/{alice}")).await.1).await, ["Billing"]);
    let (status, listed) = s.get("/RoleMappings?filter=displayName%20eq%20%22finance-billing%22").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["totalResults"], 1);
    assert_eq!(s.delete(&format!("/RoleMappings/{mid}")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(effective(&s, &s.get(&format!("/Users/{alice}")).await.1).await, ["Standard"]);
    assert_eq!(s.get(&format!("/RoleMappings/{mid}")).await.0, StatusCode::NOT_FOUND);
    // The type is advertised.
    let (_, types) = s.get("/ResourceTypes").await;
    assert!(types["Resources"].as_array().unwrap().iter().any(|t| t["endpoint"] == "/RoleMappings"));
}

#[tokio::test]
async fn role_events_reach_statsd() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let s =
        TestServer::start_full(ServerConfig::default(), Arc::new(scim_operator::clock::SystemClock), Some(addr)).await;
    s.post("/Users", json!({"schemas": [USER], "userName": "statsd", "roles": [{"value": "Sorcerer"}]})).await;
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !seen.contains("outcome:unmatched") && tokio::time::Instant::now() < deadline {
        if let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(500), sock.recv(&mut buf)).await {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("scim.role_provisioning:1|c|#outcome:unmatched"), "{seen}");
}

#[tokio::test]
async fn deleting_a_user_keeps_its_history() {
    let s = TestServer::start().await;
    let id = s.create_user("gone@x.test").await;
    let (_, g) = s.post("/Groups", json!({"schemas": [GROUP], "displayName": "G", "members": [{"value": id}]})).await;
    assert_eq!(s.delete(&format!("/Users/{id}")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/Users/{id}")).await.0, StatusCode::NOT_FOUND);
    let (_, g) = s.get(&format!("/Groups/{}", g["id"].as_str().unwrap())).await;
    assert_eq!(g["members"].as_array().map(Vec::len).unwrap_or(0), 0);
    let q = AuditQuery { target_id: Some(id.clone()), ..Default::default() };
    let history = s.store.begin_read().await.unwrap().list_audit(&q).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"user.create") && actions.contains(&"user.delete"), "{actions:?}");
}

#[tokio::test]
async fn the_role_catalog_is_advertised_as_canonical_values() {
    let s = TestServer::start().await;
    s.directory.create_role(&cli(), "Billing", "").await.unwrap();
    let (_, schema) = s.get(&format!("/Schemas/{USER}")).await;
    let roles = schema["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "roles").unwrap();
    let value = roles["subAttributes"].as_array().unwrap().iter().find(|a| a["name"] == "value").unwrap();
    assert_eq!(value["canonicalValues"], json!(["Admin", "Standard", "Read Only", "Billing"]));
    let unauthenticated = s.http.get(format!("{}/api/v1/users/x/access", s.root())).send().await.unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_without_the_permission_of_a_request_are_forbidden() {
    use scim_operator::provisioning::access::{Permission, Permissions};
    let s = TestServer::start().await;
    let teams_only =
        common::create_key_with(&s.store, "teams-only", None, &Permissions::of(&[Permission::TeamsManage])).await;
    let nothing = common::create_key_with(&s.store, "nothing", None, &Permissions::none()).await;
    for key in [&teams_only, &nothing] {
        let (status, _, body) = s.call_as(key, reqwest::Method::GET, "/Users", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_scim_error(&body, 403, None);
        let (status, _, body) = s
            .call_as(
                key,
                reqwest::Method::POST,
                "/.search",
                Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]})),
            )
            .await;
        if key == &nothing {
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        } else {
            assert_eq!(status, StatusCode::OK, "a search covers what the key may read: {body}");
        }
    }
    let (status, _, body) = s.call_as(&teams_only, reqwest::Method::GET, "/Groups", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Discovery needs a key, not a permission.
    let (status, _, _) = s.call_as(&nothing, reqwest::Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(status, StatusCode::OK);
}
