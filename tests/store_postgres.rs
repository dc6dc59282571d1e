//! PostgreSQL specifics of the store: writers of one row queue behind each other (the row is
//! locked as a write transaction reads it), reads see one snapshot, and the statement timeout and
//! pool settings taken from the URL apply. Needs `SCIM_TEST_DATABASE_URL` (skips without it
//! unless `SCIM_PG_REQUIRED` is set).

mod common;

use scim_operator::store::StoreError;
use std::time::{Duration, Instant};

use common::user_record as user;

fn postgres() -> bool {
    if std::env::var_os("SCIM_TEST_DATABASE_URL").is_some() {
        return true;
    }
    assert!(
        std::env::var_os("SCIM_PG_REQUIRED").is_none(),
        "SCIM_PG_REQUIRED is set but SCIM_TEST_DATABASE_URL is not"
    );
    eprintln!("SKIPPED: SCIM_TEST_DATABASE_URL is not set (start PostgreSQL with tests/env/postgres.sh)");
    false
}

fn with_params(url: &str, params: &str) -> String {
    if url.contains('?') { format!("{url}&{params}") } else { format!("{url}?{params}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_one_row_queue_and_the_statement_timeout_applies() {
    if !postgres() {
        return;
    }
    let (db, _) = common::fresh_database().await;
    let store =
        scim_operator::store::open(&with_params(&db, "max_connections=4&statement_timeout=300ms")).await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_user(&user("u1", "queue@example.com")).await.unwrap();
    tx.commit().await.unwrap();

    // A second writer of the same user waits for the first, then reads its version.
    let mut first = store.begin_write().await.unwrap();
    let mut u = first.user("u1").await.unwrap().unwrap();
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            let seen = tx.user("u1").await.unwrap().unwrap().version;
            let before = tx.user("u1").await.unwrap().unwrap();
            let mut u = before.clone();
            u.version += 1;
            tx.update_user(&before, &u).await.unwrap();
            tx.commit().await.unwrap();
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "the second writer must wait for the row lock");
    let before = u.clone();
    u.version += 1;
    first.update_user(&before, &u).await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), 2, "the second writer read the first one's version");

    // A lock held longer than the statement timeout: the waiter is cancelled, not stuck.
    let mut holder = store.begin_write().await.unwrap();
    holder.user("u1").await.unwrap().unwrap();
    let mut waiter = store.begin_write().await.unwrap();
    let t = Instant::now();
    let err = waiter.user("u1").await.expect_err("the statement timeout cancels the wait");
    assert!(
        matches!(&err, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("57014")),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "cancelled after {:?}", t.elapsed());
    drop(waiter);
    drop(holder);

    // Readers never wait for writers, and see one snapshot.
    let mut writer = store.begin_write().await.unwrap();
    let mut u = writer.user("u1").await.unwrap().unwrap();
    let mut reader = store.begin_read().await.unwrap();
    assert_eq!(reader.user("u1").await.unwrap().unwrap().version, 3);
    let before = u.clone();
    u.version += 1;
    writer.update_user(&before, &u).await.unwrap();
    writer.commit().await.unwrap();
    assert_eq!(reader.user("u1").await.unwrap().unwrap().version, 3, "a read transaction keeps its snapshot");
    drop(reader);
    assert_eq!(store.begin_read().await.unwrap().user("u1").await.unwrap().unwrap().version, 4);

    // Uniqueness is the database's: a second live user of the same name is a conflict.
    let mut tx = store.begin_write().await.unwrap();
    let err = tx.insert_user(&user("u2", "QUEUE@example.com")).await.expect_err("taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    drop(tx);
    store.close().await;
    common::drop_database(&db).await;
}

#[tokio::test]
async fn bad_pool_settings_in_the_url_are_refused_before_connecting() {
    let Err(err) = scim_operator::store::open("postgres://scim:secret@127.0.0.1:1/x?max_connections=none").await else {
        panic!("opened with a bad setting")
    };
    let text = err.to_string();
    assert!(text.contains("max_connections"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}
