//! The SQLite writer's group commit, at the store's interface: requests that share one commit
//! are each all-or-nothing, and one that fails rolls back alone.

mod common;

use common::user_record as user;
use scim_operator::store::StoreError;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_request_in_a_group_rolls_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = scim_operator::store::open(&dir.path().join("g.db").to_string_lossy()).await.unwrap();
    let mut seed = store.begin_write().await.unwrap();
    seed.insert_user(&user("taken", "taken")).await.unwrap();
    seed.commit().await.unwrap();

    // A holds the writer; B and C queue behind it, so A's commit waits for the group.
    let mut a = store.begin_write().await.unwrap();
    a.insert_user(&user("a", "alice")).await.unwrap();
    let s = store.clone();
    let b = tokio::spawn(async move {
        let mut b = s.begin_write().await.unwrap();
        b.insert_user(&user("b", "bob")).await.unwrap();
        // The second insert conflicts: B fails and is dropped, its first insert with it.
        let refused = b.insert_user(&user("b2", "taken")).await;
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    });
    let s = store.clone();
    let c = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = s.begin_write().await.unwrap();
        c.insert_user(&user("c", "carol")).await.unwrap();
        c.commit().await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.commit().await.expect("A commits with its group");
    b.await.unwrap();
    c.await.unwrap().expect("C commits");

    let stats = store.commit_stats();
    let mut r = store.begin_read().await.unwrap();
    assert!(r.user("a").await.unwrap().is_some(), "A's write is durable");
    assert!(r.user("c").await.unwrap().is_some(), "C's write is durable");
    assert!(r.user("b").await.unwrap().is_none(), "B failed: none of its writes remain");
    assert!(stats.transactions > stats.commits, "A and C shared a commit: {stats:?}");
}
