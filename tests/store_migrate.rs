//! `scim-operator migrate`: a SQLite database copied into PostgreSQL keeps every row.

mod common;

use scim_operator::clock::SystemClock;
use scim_operator::provisioning::{Directory, RequestContext};
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
    let ctx = RequestContext { actor: "test".into(), request_id: None, base_url: "http://x/scim/v2".into() };
    d.create_role(&ctx, "Billing", "").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let u = d
            .create_user(
                &ctx,
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("m{i}@x.test"),
            "roles": [{"value": "Billing"}]}),
            )
            .await
            .unwrap();
        ids.push(u.id);
    }
    let members: Vec<_> = ids.iter().map(|i| json!({"value": i})).collect();
    d.create_group(&ctx, &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Copied", "members": members}), &Projection::default())
        .await
        .unwrap();
    store.close().await;

    let (pg, _) = common::fresh_database().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["migrate", "--from", &sqlite, "--to", &pg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("users: 20 rows"), "{report}");
    assert!(report.contains("team_members: 20 rows"), "{report}");

    let target = scim_operator::store::open(&pg).await.unwrap();
    let d2 = Directory::new(target.clone(), Arc::new(SystemClock));
    let q = ListQuery::from_query(&[("filter".into(), "userName sw \"m\"".into())], 100, 1000).unwrap();
    let (total, users) = d2.list_users(&ctx, &q, &Projection::default()).await.unwrap();
    assert_eq!(total, 20);
    assert_eq!(users[0].json["roles"][0]["value"], "Billing");
    let q = ListQuery::from_query(&[], 100, 1000).unwrap();
    let (_, groups) = d2.list_groups(&ctx, &q, &Projection::default()).await.unwrap();
    assert_eq!(groups[0].json["members"].as_array().unwrap().len(), 20);
    let key = target
        .begin_read()
        .await
        .unwrap()
        .key_by_hash(&scim_operator::provisioning::keys::hash_secret(&token))
        .await
        .unwrap();
    assert!(key.is_some(), "keys keep working after the move");
    // A second copy into the same (now full) database is refused.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_scim-operator"))
        .args(["migrate", "--from", &sqlite, "--to", &pg])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));
}
