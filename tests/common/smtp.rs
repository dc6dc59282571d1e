//! A minimal SMTP server on loopback for delivery tests: it keeps every message it accepts and
//! refuses recipients the test marks as undeliverable, counting each refusal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Recipients as given in `RCPT TO`.
    pub to: Vec<String>,
    /// The DATA, lines joined with `\n`.
    pub data: String,
}

impl Mail {
    /// The message with a quoted-printable body decoded (soft line breaks joined, `=XX`
    /// escapes replaced), as a mail client shows it; other bodies as they came.
    pub fn text(&self) -> String {
        if !self.data.to_ascii_lowercase().contains("content-transfer-encoding: quoted-printable") {
            return self.data.clone();
        }
        let joined = self.data.replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = (bytes[i] == b'=')
                .then(|| bytes.get(i + 1..i + 3))
                .flatten()
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// What the sink saw.
#[derive(Debug, Default)]
pub struct SinkLog {
    pub mails: Vec<Mail>,
    /// Refused `RCPT TO` addresses and how often each was refused.
    pub refused: BTreeMap<String, usize>,
}

/// A running sink.
#[derive(Clone)]
pub struct SmtpSink {
    /// `smtp://127.0.0.1:PORT`.
    pub url: String,
    pub log: Arc<Mutex<SinkLog>>,
}

impl SmtpSink {
    /// Accepted messages so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.log.lock().unwrap().mails.clone()
    }
    /// Refusals so far, by address.
    pub fn refused(&self) -> BTreeMap<String, usize> {
        self.log.lock().unwrap().refused.clone()
    }
}

/// Starts a sink that accepts every recipient.
pub async fn smtp_sink() -> SmtpSink {
    smtp_sink_refusing(|_| false).await
}

/// Starts a sink that answers `550` to every recipient for which `refuse` is true.
pub async fn smtp_sink_refusing(refuse: fn(&str) -> bool) -> SmtpSink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(SinkLog::default()));
    let shared = log.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let log = shared.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink ESMTP\r\n").await.ok();
                let mut data: Option<String> = None;
                let mut to: Vec<String> = Vec::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(buf) = data.as_mut() {
                        if line == "." {
                            let mail = Mail { to: std::mem::take(&mut to), data: std::mem::take(buf) };
                            log.lock().unwrap().mails.push(mail);
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
                        "RCPT" => {
                            let address = line
                                .split_once(':')
                                .map(|(_, a)| a.trim().trim_start_matches('<').split('>').next().unwrap_or(""))
                                .unwrap_or("")
                                .to_string();
                            if refuse(&address) {
                                *log.lock().unwrap().refused.entry(address).or_default() += 1;
                                b"550 5.1.1 mailbox unavailable\r\n"
                            } else {
                                to.push(address);
                                b"250 ok\r\n"
                            }
                        }
                        "RSET" => {
                            to.clear();
                            b"250 ok\r\n"
                        }
                        "HELO" | "MAIL" | "NOOP" => b"250 ok\r\n",
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
    SmtpSink { url: format!("smtp://{addr}"), log }
}
