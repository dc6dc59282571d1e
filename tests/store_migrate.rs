//! `scim-operator migrate`: a SQLite database copied into PostgreSQL keeps every row.

mod common;

use scim_operator::clock::SystemClock;
use scim_operator::provisioning::{Directory, RequestContext};
use scim_operator::scim::declared_by::DeclaredBy;
use scim_operator::scim::list::ListQuery;
use scim_operator::scim::projection::Projection;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_copied_into_postgres_keeps_everything() {
    if std::env::var_os("SCIM_TEST_DATABASE_URL").is_none() {
        assert!(
            std::env::var_os("SCIM_PG_REQUIRED").is_none(),
            "SCIM_PG_REQUIRED is set but SCIM_TEST_DATABASE_URL is not"
        );
        eprintln!("SKIPPED: SCIM_TEST_DATABASE_URL is not set (start tests/env/postgres.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("source.db").to_string_lossy().into_owned();
    let store = scim_operator::store::open(&sqlite).await.unwrap();
    let token = common::create_key(&store, "carried-over", None).await;
    let d = Directory::new(store.clone(), Arc::new(SystemClock));
    let ctx = RequestContext { base_url: "http://x/scim/v2".into(), ..RequestContext::trusted("test") };
    d.create_role(&ctx, "Billing", "").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let u = d
            .create_user(
                &ctx,
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("m{i}@x.test"),
            "emails": [{"value": format!("m{i}@x.test"), "type": "work", "primary": true}],
            "roles": [{"value": "Billing"}]}),
            )
            .await
            .unwrap();
        ids.push(u.id);
    }
    // A version above 1 and a soft-deleted user travel too.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "Moved"}]});
    d.patch_user(&ctx, &ids[1], &patch, None).await.unwrap();
    let gone = d
        .create_user(
            &ctx,
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "gone@x.test"}),
        )
        .await
        .unwrap();
    d.delete_user(&ctx, &gone.id, None).await.unwrap();
    d.create_role_mapping(
        &ctx,
        &json!({"schemas": ["urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping"], "displayName": "copied-mapping",
            "roles": [{"value": "Billing"}], "teams": [{"value": "Copied"}]}),
    )
    .await
    .unwrap();
    let members: Vec<_> = ids.iter().map(|i| json!({"value": i})).collect();
    d.create_group(&ctx, &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Copied", "members": members}), &Projection::default())
        .await
        .unwrap();
    // A team the operator declares keeps the ManagedTeam's namespace/name (migration 0009).
    let operator = RequestContext { declared_by: Some(DeclaredBy::parse("payments/billing").unwrap()), ..ctx.clone() };
    d.create_group(&operator, &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Declared", "externalId": "k8s:prod/payments/uid-1"}), &Projection::default())
        .await
        .unwrap();
    let before_user = d.get_user(&ctx, &ids[1], &Projection::default()).await.unwrap().json;
    store.close().await;

    let (pg, _) = common::fresh_database().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["migrate", "--from", &sqlite, "--to", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("users: 21 rows"), "20 live users and a deleted one: {report}");
    assert!(report.contains("team_members: 20 rows"), "{report}");

    assert!(report.contains("row counts verified"), "{report}");
    // Every table holds as many rows on both sides.
    {
        use sqlx::{Connection, Row};
        let mut a = sqlx::SqliteConnection::connect(&format!("sqlite://{sqlite}")).await.unwrap();
        let mut b = sqlx::PgConnection::connect(&pg).await.unwrap();
        let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' AND name NOT LIKE 'console_%' AND name != 'provisioning_requests'")
            .fetch_all(&mut a)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The console's sign-in state (sessions, sign-ins under way, sign-in links) is
        // short-lived and not copied: people sign in again (migration 0006). Nor is the log of
        // recent provisioning requests (migration 0008), a diagnostic view that refills.
        assert!(tables.len() >= 13, "{tables:?}");
        for t in &tables {
            let sql = format!("SELECT COUNT(*) FROM {t}");
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).fetch_one(&mut a).await.unwrap().get(0);
            let m: i64 = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_one(&mut b).await.unwrap().get(0);
            assert_eq!(n, m, "{t}");
            assert!(report.contains(&format!("{t}: {n} rows")), "{t} in {report}");
        }
        for t in ["audit_events", "invitations", "outbox", "role_mappings", "role_mapping_teams", "user_roles"] {
            assert!(!report.contains(&format!("\n{t}: 0 rows")), "the fixture should exercise {t}: {report}");
        }
        // The audit trail keeps its order.
        let order = "SELECT id FROM audit_events ORDER BY seq";
        let ids_a: Vec<String> = sqlx::query(order).fetch_all(&mut a).await.unwrap().iter().map(|r| r.get(0)).collect();
        let ids_b: Vec<String> = sqlx::query(order).fetch_all(&mut b).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(ids_a, ids_b);
    }

    let target = scim_operator::store::open(&pg).await.unwrap();
    let d2 = Directory::new(target.clone(), Arc::new(SystemClock));
    let q = ListQuery::from_query(&[("filter".into(), "userName sw \"m\"".into())], 100, 1000).unwrap();
    let (total, users) = d2.list_users(&ctx, &q, &Projection::default()).await.unwrap();
    assert_eq!(total, 20);
    assert_eq!(users[0].json["roles"][0]["value"], "Billing");
    let q = ListQuery::from_query(&[], 100, 1000).unwrap();
    let (_, groups) = d2.list_groups(&ctx, &q, &Projection::default()).await.unwrap();
    assert_eq!(groups[0].json["members"].as_array().unwrap().len(), 20);
    let declared: Vec<_> = d2.teams().await.unwrap().into_iter().map(|(t, _)| (t.name, t.declared_by)).collect();
    assert!(declared.contains(&("Declared".to_string(), Some("payments/billing".to_string()))), "{declared:?}");
    assert!(declared.contains(&("Copied".to_string(), None)), "{declared:?}");
    let key = target
        .begin_read()
        .await
        .unwrap()
        .key_by_hash(&scim_operator::provisioning::keys::hash_secret(&token))
        .await
        .unwrap();
    assert!(key.is_some(), "keys keep working after the move");
    let after_user = d2.get_user(&ctx, &ids[1], &Projection::default()).await.unwrap().json;
    assert_eq!(after_user, before_user, "same document, same version (ETag)");
    assert!(d2.get_user(&ctx, &gone.id, &Projection::default()).await.is_err(), "deleted users stay deleted");
    // A second copy into the same (now full) database is refused.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["migrate", "--from", &sqlite, "--to", &pg])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));
}

#[tokio::test]
async fn migrate_refuses_a_missing_source_and_wrong_directions() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db").to_string_lossy().into_owned();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["migrate", "--from", &missing, "--to", "postgres://scim:secret@127.0.0.1:1/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains("secret"), "the password must not be printed: {err}");
    assert!(!std::path::Path::new(&missing).exists(), "a missing source must not be created");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["migrate", "--from", "postgres://a@127.0.0.1:1/x", "--to", &missing])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("copies a SQLite database"));
}
