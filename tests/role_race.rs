//! Role recomputation on PostgreSQL with several replicas cannot leave a stale role: a role
//! mapping created or deleted while a member joins one of its teams (through another replica)
//! ends with that member's roles as the committed mappings say.
//!
//! The race is made deterministic, not hoped for: the test holds a row lock on the team's
//! existing member, so the mapping change stops in the middle of its recomputation (after it
//! has read the team's members); the membership change then runs through another replica. A
//! server that recomputes without serialising mapping and membership changes lets the
//! membership change commit against the mapping state it saw before; this one makes it wait.
//!
//! Needs `SCIM_TEST_DATABASE_URL`; skips without it unless `SCIM_PG_REQUIRED` is set.

mod common;

use common::replicas::{Client, Cluster, postgres};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, Row};
use std::time::{Duration, Instant};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ROLE_MAPPING: &str = "urn:scim-operator:params:scim:schemas:core:1.0:RoleMapping";

/// Which mapping change races the membership change.
#[derive(Debug, Clone, Copy)]
enum MappingChange {
    /// The team's mapping is deleted: the joining member must end without its role.
    Delete,
    /// A mapping for the team is created: the joining member must end with its role.
    Create,
}

/// Role names a user effectively has, through replica 0.
async fn effective(c: &Client, root: &str, user: &str) -> Vec<String> {
    let resp =
        c.http.get(format!("{root}/api/v1/users/{user}/access")).bearer_auth(c.token.as_str()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let access: Value = resp.json().await.unwrap();
    access["effectiveRoles"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

/// Wait events of the other sessions of this database that wait for a lock.
async fn lock_waits(observer: &mut PgConnection) -> Vec<String> {
    sqlx::query(
        "SELECT wait_event FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
    )
    .fetch_all(observer)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

/// Polls until at least `n` other sessions wait for a lock, or `finished` says there is no
/// need any more, or `limit` passes; returns whether one of the first two happened.
async fn wait_for_lock_waits(
    observer: &mut PgConnection,
    n: usize,
    limit: Duration,
    finished: impl Fn() -> bool,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if finished() || lock_waits(observer).await.len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn mapping_body() -> Value {
    json!({"schemas": [ROLE_MAPPING], "displayName": "ops readers", "roles": [{"value": "Read Only"}],
           "teams": [{"value": "Ops"}]})
}

async fn race(change: MappingChange) {
    let cluster = Cluster::start(2).await;
    cluster.admin(&["roles", "default", "--none"]);
    let c = cluster.client();
    let root = cluster.replicas[0].root();
    let (s, _, existing) = c.create_user(0, "existing@x.test").await;
    assert_eq!(s, 201, "{existing}");
    let existing = existing["id"].as_str().unwrap().to_string();
    let (s, _, joiner) = c.create_user(0, "joiner@x.test").await;
    assert_eq!(s, 201, "{joiner}");
    let joiner = joiner["id"].as_str().unwrap().to_string();
    let group = json!({"schemas": [GROUP], "displayName": "Ops", "members": [{"value": existing}]});
    let (s, _, g) = c.call(0, Method::POST, "/Groups", Some(group), None).await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let mapping = match change {
        MappingChange::Delete => {
            let (s, _, m) = c.call(0, Method::POST, "/RoleMappings", Some(mapping_body()), None).await;
            assert_eq!(s, 201, "{m}");
            assert_eq!(effective(&c, &root, &existing).await, ["Read Only"]);
            Some(m["id"].as_str().unwrap().to_string())
        }
        MappingChange::Create => None,
    };

    // Hold the existing member's row: the mapping change stops when it recomputes that member.
    let mut holder = PgConnection::connect(&cluster.db).await.unwrap();
    let mut observer = PgConnection::connect(&cluster.db).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE").bind(&existing).execute(&mut holder).await.unwrap();

    let mapping_task = {
        let c = c.clone();
        tokio::spawn(async move {
            match mapping {
                Some(id) => c.call(1, Method::DELETE, &format!("/RoleMappings/{id}"), None, None).await,
                None => c.call(1, Method::POST, "/RoleMappings", Some(mapping_body()), None).await,
            }
        })
    };
    assert!(
        wait_for_lock_waits(&mut observer, 1, Duration::from_secs(10), || mapping_task.is_finished()).await,
        "the mapping change never reached the held row"
    );
    assert!(!mapping_task.is_finished(), "the mapping change did not wait for the held row");
    let member_task = {
        let c = c.clone();
        let op = json!([{"op": "add", "path": "members", "value": [{"value": joiner}]}]);
        tokio::spawn(async move { c.patch(0, &format!("/Groups/{gid}"), op, None).await })
    };
    // Either the membership change completes (it did not wait for the mapping change) or it
    // waits for a lock too; then let the mapping change go on.
    let settled = wait_for_lock_waits(&mut observer, 2, Duration::from_secs(10), || member_task.is_finished()).await;
    assert!(settled, "the membership change neither finished nor waited");
    let membership_waited = !member_task.is_finished();
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let (s, _, body) = mapping_task.await.unwrap();
    assert!(s == 201 || s == 204, "mapping change: {s} {body}");
    let (s, _, body) = member_task.await.unwrap();
    assert_eq!(s, 204, "membership change (answered without the group, as identity providers send it): {s} {body}");

    let expected: Vec<String> = match change {
        MappingChange::Delete => Vec::new(),
        MappingChange::Create => vec!["Read Only".to_string()],
    };
    assert_eq!(effective(&c, &root, &existing).await, expected, "the existing member after {change:?}");
    assert_eq!(
        effective(&c, &root, &joiner).await,
        expected,
        "the member who joined while the mapping was {change:?}d (the membership change waited: {membership_waited})"
    );
    println!("role race {change:?}: settled, membership change waited for the mapping change: {membership_waited}");
    let _ = holder.close().await;
    let _ = observer.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_deleted_while_a_member_joins_leaves_no_stale_role() {
    let Some(_) = postgres() else { return };
    race(MappingChange::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_created_while_a_member_joins_grants_the_role() {
    let Some(_) = postgres() else { return };
    race(MappingChange::Create).await;
}
