//! Several `scim-operator serve` processes on one PostgreSQL database, raced by many clients:
//! every accepted change is present exactly once (uniqueness by the database, no lost update,
//! every concurrent membership change kept, one audit event per change), and a replica killed
//! with SIGKILL mid-load loses nothing it acknowledged while the others keep serving.
//!
//! Needs `SCIM_TEST_DATABASE_URL` (`tests/env/postgres.sh start DIR`); skips with a message
//! without it unless `SCIM_PG_REQUIRED` is set. The SQLite counterpart of the fault test (one
//! process killed and restarted on the same file) is `tests/durability.rs`, which always runs.
//! Everything listens on 127.0.0.1; every loop is bounded.

mod common;

use common::replicas::{Client, Cluster, Replica, join_all, postgres};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn version(etag: &str) -> u64 {
    etag.trim_start_matches("W/").trim_matches('"').parse().unwrap_or_else(|_| panic!("ETag {etag}"))
}

/// Audit events of one action, through the store.
async fn audit_targets(store: &scim_operator::store::SharedStore, action: &str) -> Vec<String> {
    let mut tx = store.begin_read().await.unwrap();
    let q = scim_operator::store::AuditQuery { action: Some(action.into()), ..Default::default() };
    tx.list_audit(&q).await.unwrap().into_iter().map(|e| e.target_id).collect()
}

fn members_of(group: &Value) -> BTreeSet<String> {
    group["members"]
        .as_array()
        .map(|a| a.iter().map(|m| m["value"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_database_keep_every_accepted_change_once() {
    let Some(_) = postgres() else { return };
    let cluster = Cluster::start(3).await;
    let c = cluster.client();
    let started = Instant::now();

    // 1. Contested userNames: 4 names, each POSTed by 12 clients at once through all
    //    replicas (and in different letter cases): exactly one 201 per name, the rest 409.
    let barrier = Arc::new(tokio::sync::Barrier::new(48));
    let mut tasks = Vec::new();
    for i in 0..48 {
        let (c, barrier) = (c.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let name =
                if i % 2 == 0 { format!("race{}@example.com", i % 4) } else { format!("RACE{}@Example.com", i % 4) };
            barrier.wait().await;
            let (s, _, body) = c.create_user(i, &name).await;
            (i % 4, s, body)
        }));
    }
    let mut winners: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut conflicts = 0;
    for (name, status, body) in join_all(tasks).await {
        match status {
            201 => winners.entry(name).or_default().push(body["id"].as_str().unwrap().to_string()),
            409 => {
                assert_eq!(body["scimType"], "uniqueness", "{body}");
                conflicts += 1;
            }
            other => panic!("creating a contested user: {other} {body}"),
        }
    }
    assert_eq!(winners.len(), 4, "every contested name created once: {winners:?}");
    assert!(winners.values().all(|w| w.len() == 1), "a userName created twice: {winners:?}");
    assert_eq!(conflicts, 44);

    // 2. Group membership: 60 users added one PATCH each, while 10 of the group's 20 initial
    //    members are removed one PATCH each, all at once through all replicas: all kept.
    let mut tasks = Vec::new();
    for i in 0..80 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let (s, _, u) = c.create_user(i, &format!("member{i}@example.com")).await;
            assert_eq!(s, 201, "{u}");
            u["id"].as_str().unwrap().to_string()
        }));
    }
    let users = join_all(tasks).await;
    let (initial, joining) = users.split_at(20);
    let members: Vec<Value> = initial.iter().map(|id| json!({"value": id})).collect();
    let (s, _, g) = c
        .call(
            0,
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Racers", "members": members})),
            None,
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    let leaving: Vec<String> = initial[..10].to_vec();
    let barrier = Arc::new(tokio::sync::Barrier::new(joining.len() + leaving.len()));
    let mut tasks = Vec::new();
    for (i, id) in joining.iter().chain(leaving.iter()).enumerate() {
        let (c, barrier, gid, id) = (c.clone(), barrier.clone(), gid.clone(), id.clone());
        let op = if i < joining.len() {
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}])
        } else {
            json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}])
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            c.patch(i, &format!("/Groups/{gid}?excludedAttributes=members"), op, None).await.0
        }));
    }
    let statuses = join_all(tasks).await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 204), "membership PATCHes: {statuses:?}");
    let membership_changes = statuses.len();
    let (_, etag, g) = c.call(1, Method::GET, &format!("/Groups/{gid}"), None, None).await;
    let expected: BTreeSet<String> = initial[10..].iter().chain(joining.iter()).cloned().collect();
    assert_eq!(members_of(&g), expected, "no membership change lost");
    assert_eq!(version(&etag.unwrap()), 1 + membership_changes as u64, "one group version per change");

    // 3. Unconditional PATCHes adding distinct e-mail addresses to one user, all at once through
    //    all replicas: every address kept (the server serialises writers of one row).
    let target = users[0].clone();
    let (_, etag, _) = c.call(0, Method::GET, &format!("/Users/{target}"), None, None).await;
    let start_version = version(&etag.unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (c, barrier, target) = (c.clone(), barrier.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let op = json!([{"op": "add", "path": "emails", "value": [{"value": format!("alias{i}@example.com"), "type": "other"}]}]);
            c.patch(i, &format!("/Users/{target}"), op, None).await.0
        }));
    }
    let statuses = join_all(tasks).await;
    assert!(statuses.iter().all(|s| *s == 200), "unconditional PATCHes: {statuses:?}");
    let (_, etag, u) = c.call(2, Method::GET, &format!("/Users/{target}"), None, None).await;
    let emails: BTreeSet<&str> = u["emails"].as_array().unwrap().iter().map(|e| e["value"].as_str().unwrap()).collect();
    assert_eq!(emails.len(), 30, "an e-mail address was lost: {emails:?}");
    let mut user_patches = 30;
    assert_eq!(version(&etag.unwrap()), start_version + 30, "one user version per accepted PATCH");

    // 4. Conditional PATCHes (If-Match) of one user by 9 clients, 6 rounds each, through all
    //    replicas: each version is won by exactly one writer (a 412 for the others), and the
    //    stored value is the last winner's.
    let target = users[1].clone();
    let mut tasks = Vec::new();
    for client in 0..9 {
        let (c, target) = (c.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut refused = 0;
            for round in 0..6 {
                let path = format!("/Users/{target}");
                let (_, etag, _) = c.call(client, Method::GET, &path, None, None).await;
                let etag = etag.unwrap();
                let title = format!("c{client}r{round}");
                let op = json!([{"op": "replace", "path": "title", "value": title}]);
                let (s, new_etag, body) = c.patch(client + round, &path, op, Some(&etag)).await;
                match s {
                    200 => won.push((version(&etag), version(&new_etag.unwrap()), title)),
                    412 => refused += 1,
                    other => panic!("conditional PATCH: {other} {body}"),
                }
            }
            (won, refused)
        }));
    }
    let mut wins = Vec::new();
    let mut refused = 0;
    for (w, r) in join_all(tasks).await {
        wins.extend(w);
        refused += r;
    }
    wins.sort();
    let based_on: Vec<u64> = wins.iter().map(|w| w.0).collect();
    let distinct: BTreeSet<u64> = based_on.iter().copied().collect();
    assert_eq!(distinct.len(), wins.len(), "two writers won the same version (a lost update): {based_on:?}");
    assert!(wins.iter().all(|(from, to, _)| *to == from + 1), "{wins:?}");
    let (_, etag, u) = c.call(0, Method::GET, &format!("/Users/{target}"), None, None).await;
    let last = wins.last().unwrap();
    assert_eq!(version(&etag.unwrap()), last.1, "every accepted update is exactly one version");
    assert_eq!(u["title"], last.2, "the stored value is the last accepted one");
    user_patches += wins.len();

    // 5. The audit trail: exactly one event per accepted change, none for refused ones.
    let store = scim_operator::store::open(&cluster.db).await.unwrap();
    let created = audit_targets(&store, "user.create").await;
    let distinct: BTreeSet<&String> = created.iter().collect();
    assert_eq!(created.len(), 4 + users.len(), "user.create events");
    assert_eq!(distinct.len(), created.len(), "a user.create event recorded twice");
    assert!(winners.values().flatten().chain(users.iter()).all(|id| distinct.contains(id)));
    assert_eq!(audit_targets(&store, "group.patch").await.len(), membership_changes, "group.patch events");
    assert_eq!(audit_targets(&store, "user.patch").await.len(), user_patches, "user.patch events");
    store.close().await;

    let elapsed = started.elapsed();
    println!(
        "multi_replica race: {} replicas, {} requests in {:.2}s ({:.0}/s); {} contested creates -> 4 created, {} refused (409); \
         {} concurrent membership changes all kept; 30 concurrent unconditional user PATCHes all kept; \
         conditional PATCHes: {} accepted, {} refused (412); answers by status: {}",
        cluster.replicas.len(),
        c.tally.total(),
        elapsed.as_secs_f64(),
        c.tally.total() as f64 / elapsed.as_secs_f64(),
        48,
        conflicts,
        membership_changes,
        wins.len(),
        refused,
        c.tally.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_killed_mid_load_loses_nothing_acknowledged() {
    let Some(_) = postgres() else { return };
    let mut cluster = Cluster::start(3).await;
    let c = cluster.client();
    let (s, _, g) =
        c.call(1, Method::POST, "/Groups", Some(json!({"schemas": [GROUP], "displayName": "Survivors"})), None).await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();

    // Eight clients each create users and add them to one group, spreading their requests over
    // all replicas, 120 iterations each. After enough acknowledgements, replica 0 is killed.
    let acked = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..8 {
        let (c, acked, killed, gid) = (c.clone(), acked.clone(), killed.clone(), gid.clone());
        tasks.push(tokio::spawn(async move {
            let mut users = Vec::new(); // (userName, id, acknowledged before the kill)
            let mut memberships = Vec::new(); // (user id, acknowledged before the kill)
            let mut after_kill = 0;
            for i in 0..120 {
                let name = format!("load-{client}-{i}@example.com");
                let (s, _, u) = c.create_user(client + i, &name).await;
                if s != 201 {
                    continue;
                }
                let before = !killed.load(Ordering::SeqCst);
                let id = u["id"].as_str().unwrap().to_string();
                users.push((name, id.clone(), before));
                acked.fetch_add(1, Ordering::SeqCst);
                after_kill += usize::from(!before);
                let op = json!([{"op": "add", "path": "members", "value": [{"value": id}]}]);
                let (s, _, _) =
                    c.patch(client + i + 1, &format!("/Groups/{gid}?excludedAttributes=members"), op, None).await;
                if s == 200 || s == 204 {
                    memberships.push((id, !killed.load(Ordering::SeqCst)));
                    after_kill += usize::from(killed.load(Ordering::SeqCst));
                }
            }
            (users, memberships, after_kill)
        }));
    }
    for _ in 0..200 {
        if acked.load(Ordering::SeqCst) >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Mark first, then kill: anything counted "before" was answered before the SIGKILL.
    killed.store(true, Ordering::SeqCst);
    let acked_at_kill = acked.load(Ordering::SeqCst);
    cluster.replicas[0].child.kill().expect("SIGKILL replica 0");
    let _ = cluster.replicas[0].child.wait();
    let killed_at = started.elapsed();
    let mut users = Vec::new();
    let mut memberships = Vec::new();
    let mut acked_after_kill = 0;
    for (u, m, a) in join_all(tasks).await {
        users.extend(u);
        memberships.extend(m);
        acked_after_kill += a;
    }
    let elapsed = started.elapsed();
    assert!(acked_at_kill >= 20, "the load did not run before the kill ({acked_at_kill} acknowledged)");
    assert!(acked_after_kill > 0, "the surviving replicas served nothing after the kill");

    // Every acknowledged user is there exactly once, with exactly one creation event; every
    // acknowledged membership is there; nothing is half-written (no event without its user).
    let store = scim_operator::store::open(&cluster.db).await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    for (name, id, _) in &users {
        let found =
            tx.user_by_name(name).await.unwrap().unwrap_or_else(|| panic!("{name} was acknowledged but is lost"));
        assert_eq!(&found.id, id, "{name}");
    }
    let stored_members: BTreeSet<String> = {
        let team = tx.group(&gid).await.unwrap().unwrap();
        tx.team_members(&team.id).await.unwrap().into_iter().collect()
    };
    let all_users = common::count_users(tx.as_mut()).await;
    drop(tx);
    for (id, _) in &memberships {
        assert!(stored_members.contains(id), "membership of {id} was acknowledged but is lost");
    }
    let created = audit_targets(&store, "user.create").await;
    let distinct: BTreeSet<&String> = created.iter().collect();
    assert_eq!(distinct.len(), created.len(), "a user.create event recorded twice");
    assert_eq!(created.len() as u64, all_users, "users and their creation events disagree");
    assert!(users.iter().all(|(_, id, _)| distinct.contains(id)));
    let group_events = audit_targets(&store, "group.patch").await.len();
    assert_eq!(group_events, stored_members.len(), "one group.patch event per stored membership");
    store.close().await;

    // The killed replica comes back on the same database and serves what the others wrote.
    let logs = tempfile::tempdir().unwrap();
    let back = Replica::start(&cluster.db, logs.path(), 9).await;
    let probe = Client { bases: Arc::new(vec![back.base.clone()]), ..c.clone() };
    let (s, _, g) = probe.call(0, Method::GET, &format!("/Groups/{gid}"), None, None).await;
    assert_eq!(s, 200);
    assert_eq!(members_of(&g), stored_members);

    let before = users.iter().filter(|u| u.2).count() + memberships.iter().filter(|m| m.1).count();
    println!(
        "multi_replica fault: {} requests in {:.2}s, replica 0 SIGKILLed at {:.2}s; acknowledged: {} users + {} memberships \
         ({} before the kill, {} after), all durable; {} users stored (in-flight creates may land unacknowledged); \
         answers by status: {}",
        c.tally.total(),
        elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        users.len(),
        memberships.len(),
        before,
        users.len() + memberships.len() - before,
        all_users,
        c.tally.summary()
    );
    assert_eq!(c.tally.get(500), 0, "no request may fail with a server error");
}
