//! Invitation e-mails go out through the outbox to a real SMTP server (a local sink).

mod common;

use common::TestServer;
use reqwest::StatusCode;
use scim_operator::clock::SystemClock;
use scim_operator::delivery::{Deliverer, SmtpConfig};
use serde_json::json;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A minimal SMTP server on loopback that accepts every message and keeps its DATA.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.ok();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(buf) = data.as_mut() {
                        if line == "." {
                            store.lock().unwrap().push(std::mem::take(buf));
                            data = None;
                            w.write_all(b"250 queued\r\n").await.ok();
                        } else {
                            buf.push_str(&line);
                            buf.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n").await.ok();
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    w.write_all(reply).await.ok();
                }
            });
        }
    });
    (format!("smtp://{addr}"), received)
}

#[tokio::test]
async fn invitations_are_delivered_by_smtp_and_marked_sent() {
    let (url, received) = smtp_sink().await;
    let s = TestServer::start().await;
    let (status, _) = s
        .post("/Users", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "mail@x.test"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let config = SmtpConfig { url, from: "scim-operator <noreply@x.test>".into() };
    let deliverer = Deliverer::new(&config, s.store.clone(), Arc::new(SystemClock)).unwrap();
    assert_eq!(deliverer.deliver_pending().await.unwrap(), 1);
    let mails = received.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("To: mail@x.test"), "{}", mails[0]);
    assert!(mails[0].contains("/invitations/scimop_"), "{}", mails[0]);
    // Sent messages are not sent again.
    assert_eq!(deliverer.deliver_pending().await.unwrap(), 0);
    let outbox = s.store.begin_read().await.unwrap().outbox(10).await.unwrap();
    assert!(outbox[0].sent_at.is_some());
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
    assert_eq!(deliverer.deliver_pending().await.unwrap(), 0);
    let outbox = s.store.begin_read().await.unwrap().outbox(10).await.unwrap();
    assert!(outbox[0].sent_at.is_none());
    assert_eq!(outbox[0].attempts, 1);
    assert!(outbox[0].last_error.is_some());
}
