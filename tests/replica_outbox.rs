//! The outbox and invitations with several `serve` replicas on one PostgreSQL database: every
//! invitation mail reaches the SMTP sink exactly once, undeliverable ones are parked after the
//! maximum number of attempts without holding up the rest, and of two racing accepts of one
//! link exactly one wins.
//!
//! Needs `SCIM_TEST_DATABASE_URL`; skips without it unless `SCIM_PG_REQUIRED` is set. The SMTP
//! sink and the replicas listen on 127.0.0.1; every wait is bounded.

mod common;

use common::replicas::{Cluster, join_all, postgres};
use common::smtp::smtp_sink_refusing;
use scim_operator::store::{OutboxState, SharedStore};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOOD: usize = 200;
const POISONED: usize = 20;
const MAX_ATTEMPTS: usize = 3;

fn poisoned(address: &str) -> bool {
    address.ends_with("@poison.test")
}

/// The invitation token in a mail or page (the last path segment of its link).
fn token_in(text: &str) -> Option<String> {
    let at = text.find("/invitations/")? + "/invitations/".len();
    let rest = &text[at..];
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// The sum over replicas of one outbox outcome's counter.
async fn outbox_metric(http: &reqwest::Client, roots: &[String], outcome: &str) -> (u64, Vec<u64>) {
    let needle = format!("scim_outbox_messages_total{{outcome=\"{outcome}\"}} ");
    let mut per_replica = Vec::new();
    for root in roots {
        let text = http.get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
        let n =
            text.lines().find_map(|l| l.strip_prefix(&needle)).map(|v| v.trim().parse::<u64>().unwrap()).unwrap_or(0);
        per_replica.push(n);
    }
    (per_replica.iter().sum(), per_replica)
}

async fn outbox_states(store: &SharedStore) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for m in store.begin_read().await.unwrap().outbox(10_000).await.unwrap() {
        *counts.entry(m.state().as_str()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_deliver_every_invitation_once_and_park_the_undeliverable() {
    let Some(_) = postgres() else { return };
    let sink = smtp_sink_refusing(poisoned).await;
    let args: Vec<String> = [
        "--smtp-url",
        &sink.url,
        "--smtp-poll-millis",
        "100",
        "--smtp-max-attempts",
        &MAX_ATTEMPTS.to_string(),
        "--smtp-retry-base-millis",
        "200",
        "--smtp-retry-max-millis",
        "400",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cluster = Cluster::start_with(3, &args).await;
    let c = cluster.client();
    let started = Instant::now();

    // The undeliverable ones first, at the head of the queue; then 200 good ones, created by 8
    // clients at once through all replicas.
    for i in 0..POISONED {
        let (s, _, body) = c.create_user(i, &format!("bounce{i}@poison.test")).await;
        assert_eq!(s, 201, "{body}");
    }
    let mut tasks = Vec::new();
    for client in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (client..GOOD).step_by(8) {
                let (s, _, body) = c.create_user(i, &format!("person{i}@x.test")).await;
                assert_eq!(s, 201, "{body}");
            }
        }));
    }
    join_all(tasks).await;
    let created = started.elapsed();

    let store = scim_operator::store::open(&cluster.db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let states = outbox_states(&store).await;
        if states.get("sent") == Some(&GOOD) && states.get("parked") == Some(&POISONED) {
            break;
        }
        assert!(Instant::now() < deadline, "delivery did not finish: {states:?}; sink has {}", sink.mails().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = started.elapsed();
    // Give a replica that would send something twice the time to do it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every good address received exactly one mail, with its own working token.
    let mails = sink.mails();
    let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
    let mut tokens = Vec::new();
    for m in &mails {
        assert_eq!(m.to.len(), 1, "{m:?}");
        *per_address.entry(m.to[0].clone()).or_default() += 1;
        tokens.push(token_in(&m.text()).unwrap_or_else(|| panic!("no link in {}", m.text())));
    }
    assert_eq!(mails.len(), GOOD, "one mail per invitation");
    assert_eq!(per_address.len(), GOOD);
    assert!(per_address.values().all(|n| *n == 1), "{per_address:?}");
    // Every undeliverable address was tried exactly the maximum number of times.
    let refused = sink.refused();
    assert_eq!(refused.len(), POISONED);
    assert!(refused.values().all(|n| *n == MAX_ATTEMPTS), "{refused:?}");

    // At rest: no link anywhere; parked messages have their error.
    let messages = store.begin_read().await.unwrap().outbox(10_000).await.unwrap();
    assert!(messages.iter().all(|m| m.link.is_none() && !m.body.contains("scimop_")));
    for m in messages.iter().filter(|m| m.state() == OutboxState::Parked) {
        assert!(poisoned(&m.recipient), "{m:?}");
        assert_eq!(m.attempts, MAX_ATTEMPTS as i64);
        assert!(m.last_error.as_deref().is_some_and(|e| e.contains("550")), "{m:?}");
    }
    // `invites list` shows the parked messages with their error, and no usable link.
    let listing = cluster.admin(&["invites", "list"]);
    let parked: Vec<serde_json::Value> = listing
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["state"] == "parked")
        .collect();
    assert_eq!(parked.len(), POISONED, "{listing}");
    assert!(parked.iter().all(|p| p["lastError"].as_str().is_some_and(|e| e.contains("550"))));
    assert!(tokens.iter().all(|t| !listing.contains(t.as_str())), "invites list printed a link");

    // Counted in each replica's metrics; together, every message once.
    let roots: Vec<String> = cluster.replicas.iter().map(|r| r.root()).collect();
    let (sent, sent_by) = outbox_metric(&c.http, &roots, "sent").await;
    let (parked_total, _) = outbox_metric(&c.http, &roots, "parked").await;
    let (retried, _) = outbox_metric(&c.http, &roots, "retry").await;
    assert_eq!(sent, GOOD as u64);
    assert_eq!(parked_total, POISONED as u64);
    assert_eq!(retried, (POISONED * (MAX_ATTEMPTS - 1)) as u64);

    // A delivered link still works: its page first (consuming nothing), then the accept.
    let link = |t: &str| format!("{}/invitations/{t}", roots[1]);
    let page = c.http.get(link(&tokens[0])).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let accept = c.http.post(link(&tokens[0])).header("accept", "application/json").send().await.unwrap();
    assert_eq!(accept.status(), 200);

    println!(
        "replica outbox: {GOOD} invitations + {POISONED} undeliverable created in {:.2}s through 3 replicas; all \
         delivered once and the undeliverable parked after {MAX_ATTEMPTS} attempts {:.2}s after the start; \
         mails sent per replica: {sent_by:?}",
        created.as_secs_f64(),
        delivered.as_secs_f64()
    );
    store.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_racing_accepts_of_one_link_exactly_one_wins() {
    let Some(_) = postgres() else { return };
    let cluster = Cluster::start(2).await;
    let c = cluster.client();
    const LINKS: usize = 25;
    for i in 0..LINKS {
        let (s, _, body) = c.create_user(i, &format!("racer{i}@x.test")).await;
        assert_eq!(s, 201, "{body}");
    }
    // The links, as the mails would carry them (no SMTP here: they wait in the outbox).
    let store = scim_operator::store::open(&cluster.db).await.unwrap();
    let tokens: Vec<String> = store
        .begin_read()
        .await
        .unwrap()
        .outbox(100)
        .await
        .unwrap()
        .iter()
        .map(|m| token_in(m.link.as_deref().expect("an unsent invitation keeps its link")).unwrap())
        .collect();
    assert_eq!(tokens.len(), LINKS);
    let roots: Vec<String> = cluster.replicas.iter().map(|r| r.root()).collect();

    let barrier = Arc::new(tokio::sync::Barrier::new(2 * LINKS));
    let mut tasks = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        for side in 0..2 {
            let (http, barrier) = (c.http.clone(), barrier.clone());
            let url = format!("{}/invitations/{token}", roots[(i + side) % roots.len()]);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let resp = http.post(url).header("accept", "application/json").send().await.unwrap();
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.unwrap();
                (i, status, body)
            }));
        }
    }
    let mut outcomes: BTreeMap<usize, Vec<(u16, serde_json::Value)>> = BTreeMap::new();
    for (i, status, body) in join_all(tasks).await {
        outcomes.entry(i).or_default().push((status, body));
    }
    for (i, answers) in &outcomes {
        let mut statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
        statuses.sort();
        assert_eq!(statuses, [200, 410], "link {i}: {answers:?}");
        let loser = answers.iter().find(|(s, _)| *s == 410).unwrap();
        assert!(loser.1["detail"].as_str().is_some_and(|d| d.contains("already used")), "link {i}: {answers:?}");
    }
    let q = scim_operator::store::AuditQuery { action: Some("invitation.accept".into()), ..Default::default() };
    let accepted = store.begin_read().await.unwrap().list_audit(&q).await.unwrap();
    assert_eq!(accepted.len(), LINKS, "one acceptance recorded per link");
    println!("invitation accept race: {LINKS} links, each accepted by two replicas at once: one 200 and one 410 each");
    store.close().await;
    cluster.stop().await;
}

#[test]
fn tokens_are_found_in_mail_text() {
    assert_eq!(token_in("a\nhttp://h/invitations/scimop_Ab-9_x\nb").as_deref(), Some("scimop_Ab-9_x"));
    assert_eq!(token_in("no link"), None);
}
