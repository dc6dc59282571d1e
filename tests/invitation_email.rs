//! Invitation e-mails go out through the outbox to a real SMTP server (a local sink): each once,
//! failures retried with backoff and parked after the last allowed attempt without holding up
//! later messages, claims that expire taken over, and no usable link left behind.

mod common;

use chrono::TimeZone;
use common::TestServer;
use common::smtp::{smtp_sink, smtp_sink_refusing};
use reqwest::StatusCode;
use scim_operator::clock::{Clock, ManualClock, SystemClock, format_time};
use scim_operator::delivery::{Deliverer, DeliveryPolicy, Round, SmtpConfig};
use scim_operator::server::ServerConfig;
use scim_operator::server::metrics::{Metrics, OutboxLabels};
use scim_operator::store::{OutboxMessage, OutboxState};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn poisoned(address: &str) -> bool {
    address.ends_with("@poison.test")
}

async fn outbox(s: &TestServer) -> Vec<OutboxMessage> {
    s.store.begin_read().await.unwrap().outbox(100).await.unwrap()
}

fn counted(metrics: &Metrics, outcome: &str) -> u64 {
    metrics.outbox.get_or_create(&OutboxLabels { outcome: outcome.into() }).get()
}

#[tokio::test]
async fn invitations_are_delivered_once_and_leave_no_link_behind() {
    let sink = smtp_sink().await;
    let s = TestServer::start().await;
    let (status, _) = s.post("/Users", json!({"schemas": [USER], "userName": "mail@x.test"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let queued = outbox(&s).await;
    let link = queued[0].link.clone().expect("the link waits beside the message");
    assert!(!queued[0].body.contains("scimop_"), "{}", queued[0].body);

    let config = SmtpConfig { url: sink.url.clone(), from: "scim-operator <noreply@x.test>".into() };
    let metrics = Arc::new(Metrics::default());
    let deliverer =
        Deliverer::new(&config, s.store.clone(), Arc::new(SystemClock)).unwrap().with_metrics(metrics.clone());
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round { sent: 1, retried: 0, parked: 0 });
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["mail@x.test"]);
    assert!(mails[0].data.contains("To: mail@x.test"), "{}", mails[0].data);
    assert!(mails[0].text().contains(&link), "the mail carries the link: {}", mails[0].text());
    // Sent messages are not sent again, and keep no link.
    assert_eq!(deliverer.deliver_pending().await.unwrap().sent, 0);
    assert_eq!(sink.mails().len(), 1);
    let sent = outbox(&s).await;
    assert_eq!(sent[0].state(), OutboxState::Sent);
    assert!(sent[0].link.is_none());
    assert!(!sent[0].rendered_body().contains("scimop_"), "{}", sent[0].body);
    assert_eq!(sent[0].attempts, 1);
    assert_eq!(counted(&metrics, "sent"), 1);
    // The link still works (only its hash is kept).
    let token = link.rsplit('/').next().unwrap();
    let page = s.http.get(format!("{}/invitations/{token}", s.root())).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn failures_back_off_then_park_without_holding_up_later_messages() {
    let sink = smtp_sink_refusing(poisoned).await;
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()));
    let s = TestServer::start_full(ServerConfig::default(), clock.clone(), None).await;
    // Undeliverable messages first, at the head of the queue.
    for i in 0..3 {
        s.create_user(&format!("bad{i}@poison.test")).await;
    }
    s.create_user("good@x.test").await;
    let policy = DeliveryPolicy {
        max_attempts: 3,
        retry_base: Duration::from_secs(60),
        retry_max: Duration::from_secs(90),
        batch: 2,
        ..DeliveryPolicy::default()
    };
    let config = SmtpConfig { url: sink.url.clone(), from: "noreply@x.test".into() };
    let metrics = Arc::new(Metrics::default());
    let deliverer = Deliverer::new(&config, s.store.clone(), clock.clone())
        .unwrap()
        .with_policy(policy)
        .with_metrics(metrics.clone());

    // Round 1: every message tried once; the good one goes out despite the three before it.
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round { sent: 1, retried: 3, parked: 0 });
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(sink.mails()[0].to, ["good@x.test"]);
    let retry_at = format_time(clock.now() + chrono::Duration::seconds(60));
    for m in outbox(&s).await.iter().filter(|m| m.recipient.ends_with("@poison.test")) {
        assert_eq!(m.state(), OutboxState::Pending);
        assert_eq!(m.attempts, 1);
        assert_eq!(m.next_attempt_at.as_deref(), Some(retry_at.as_str()));
        assert!(m.last_error.as_deref().is_some_and(|e| e.contains("550")), "{m:?}");
    }
    // Not due yet: nothing is tried.
    clock.advance(chrono::Duration::seconds(59));
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round::default());
    // Due: the second attempt; its wait is capped at 90 s (not 120).
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round { sent: 0, retried: 3, parked: 0 });
    clock.advance(chrono::Duration::seconds(89));
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round::default());
    clock.advance(chrono::Duration::seconds(1));
    // The third attempt is the last: parked, with the error, link cleared.
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round { sent: 0, retried: 0, parked: 3 });
    clock.advance(chrono::Duration::days(1));
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round::default(), "parked messages stay parked");
    for (address, refusals) in sink.refused() {
        assert_eq!(refusals, 3, "{address} attempted exactly the maximum number of times");
    }
    assert_eq!(sink.refused().len(), 3);
    for m in outbox(&s).await.iter().filter(|m| m.recipient.ends_with("@poison.test")) {
        assert_eq!(m.state(), OutboxState::Parked, "{m:?}");
        assert_eq!(m.attempts, 3);
        assert!(m.link.is_none(), "a parked message keeps no link");
        assert!(m.last_error.as_deref().is_some_and(|e| e.contains("550")), "{m:?}");
    }
    assert_eq!((counted(&metrics, "sent"), counted(&metrics, "retry"), counted(&metrics, "parked")), (1, 6, 3));

    // `invites resend` queues a fresh message, delivered with the rest.
    s.directory
        .resend_invitation(&scim_operator::provisioning::RequestContext::trusted("cli:test"), "good@x.test")
        .await
        .unwrap();
    assert_eq!(deliverer.deliver_pending().await.unwrap().sent, 1);
    assert_eq!(sink.mails().len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn a_claim_that_expires_is_taken_over() {
    let sink = smtp_sink().await;
    let clock = Arc::new(ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()));
    let s = TestServer::start_full(ServerConfig::default(), clock.clone(), None).await;
    s.create_user("claimed@x.test").await;
    // A deliverer claims the message and dies before sending it.
    let lease = DeliveryPolicy::default().lease();
    let until = clock.now() + chrono::Duration::from_std(lease).unwrap();
    let mut tx = s.store.begin_write().await.unwrap();
    let claimed = tx.claim_outbox(&format_time(clock.now()), &format_time(until), "dead", 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 1);
    let config = SmtpConfig { url: sink.url.clone(), from: "noreply@x.test".into() };
    let deliverer = Deliverer::new(&config, s.store.clone(), clock.clone()).unwrap();
    assert_eq!(deliverer.deliver_pending().await.unwrap().sent, 0, "claimed by another deliverer");
    clock.advance(chrono::Duration::from_std(lease).unwrap());
    assert_eq!(deliverer.deliver_pending().await.unwrap().sent, 1, "the expired claim is taken over");
    // The dead deliverer's late outcome no longer counts.
    let mut tx = s.store.begin_write().await.unwrap();
    assert!(!tx.outbox_sent(&claimed[0].id, "dead", &format_time(clock.now()), "late").await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(sink.mails().len(), 1);
    assert_ne!(outbox(&s).await[0].body, "late");
    s.stop().await;
}

#[tokio::test]
async fn failed_deliveries_stay_queued_with_the_error() {
    // Nothing listens on this port: the attempt fails and is recorded.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let s = TestServer::start().await;
    s.create_user("queued@x.test").await;
    let config = SmtpConfig { url: format!("smtp://{addr}"), from: "noreply@x.test".into() };
    let deliverer = Deliverer::new(&config, s.store.clone(), Arc::new(SystemClock)).unwrap();
    assert_eq!(deliverer.deliver_pending().await.unwrap(), Round { sent: 0, retried: 1, parked: 0 });
    let queued = outbox(&s).await;
    assert_eq!(queued[0].state(), OutboxState::Pending);
    assert_eq!(queued[0].attempts, 1);
    assert!(queued[0].last_error.is_some());
    assert!(queued[0].next_attempt_at.is_some());
    assert!(queued[0].link.is_some(), "kept for the next attempt");
    s.stop().await;
}

#[tokio::test]
async fn an_upgraded_database_keeps_no_link_of_messages_queued_before_the_upgrade() {
    use sqlx::Connection;
    // A database as the first release left it: migrated to 0001 only, one invitation mail sent
    // and one still queued, both with the link in their body.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    let first = tempfile::tempdir().unwrap();
    let init = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/0001_init.sql");
    std::fs::copy(init, first.path().join("0001_init.sql")).unwrap();
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(first.path()).await.unwrap().run(&mut conn).await.unwrap();
    for (id, token, sent) in
        [("m-sent", "scimop_oldSENT", Some("2026-01-01T00:00:00.000Z")), ("m-queued", "scimop_oldQUEUED", None)]
    {
        sqlx::query(
            "INSERT INTO outbox (id, kind, recipient, subject, body, created, attempts, sent_at) \
             VALUES ($1, 'invitation', 'old@x.test', 'Your invitation', $2, '2026-01-01T00:00:00.000Z', 0, $3)",
        )
        .bind(id)
        .bind(format!("Hello,\n\nhttp://h/invitations/{token}\n"))
        .bind(sent)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = scim_operator::store::open(&file.to_string_lossy()).await.unwrap();
    let read = |store: scim_operator::store::SharedStore| async move {
        store.begin_read().await.unwrap().outbox(10).await.unwrap()
    };
    let before = read(store.clone()).await;
    let sent = before.iter().find(|m| m.id == "m-sent").unwrap();
    assert!(!sent.body.contains("scimop_"), "the upgrade drops a sent message's link: {}", sent.body);
    let sink = smtp_sink().await;
    let config = SmtpConfig { url: sink.url.clone(), from: "noreply@x.test".into() };
    let deliverer = Deliverer::new(&config, store.clone(), Arc::new(SystemClock)).unwrap();
    assert_eq!(deliverer.deliver_pending().await.unwrap().sent, 1);
    assert!(sink.mails()[0].text().contains("scimop_oldQUEUED"), "the queued message still carries its link");
    let after = read(store.clone()).await;
    let queued = after.iter().find(|m| m.id == "m-queued").unwrap();
    assert_eq!(queued.state(), OutboxState::Sent);
    assert!(!queued.body.contains("oldQUEUED"), "sending drops the link from its body: {}", queued.body);
    store.close().await;
}
