//! Delivers queued outbox messages (invitations) by SMTP. Without an SMTP server configured,
//! messages stay in the outbox, listed by `scim-operator invites list`.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

use crate::clock::{Clock, format_time};
use crate::store::{SharedStore, StoreError};

/// SMTP delivery settings.
#[derive(Clone)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain, for local relays), `smtp://...?tls=required` or `smtps://...`,
    /// optionally with `user:password@`.
    pub url: String,
    /// Sender address.
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig").field("url", &crate::cli::redact_url(&self.url)).field("from", &self.from).finish()
    }
}

/// Errors of a delivery round.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid SMTP settings: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends queued messages.
pub struct Deliverer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    store: SharedStore,
    clock: std::sync::Arc<dyn Clock>,
}

impl Deliverer {
    /// Builds a deliverer; fails on a malformed URL or sender.
    pub fn new(
        config: &SmtpConfig,
        store: SharedStore,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Result<Self, DeliveryError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| DeliveryError::Config(format!("SMTP URL: {e}")))?
            .timeout(Some(Duration::from_secs(15)))
            .build();
        let from = config.from.parse().map_err(|e| DeliveryError::Config(format!("sender '{}': {e}", config.from)))?;
        Ok(Self { transport, from, store, clock })
    }

    /// Sends every pending message once; returns how many were sent.
    pub async fn deliver_pending(&self) -> Result<usize, DeliveryError> {
        let pending = self.store.begin_read().await?.pending_outbox(100).await?;
        let mut sent = 0;
        for m in pending {
            let result = match m.recipient.parse::<Mailbox>() {
                Ok(to) => match Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(m.subject.clone())
                    .body(m.body.clone())
                {
                    Ok(email) => self.transport.send(email).await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(format!("recipient '{}': {e}", m.recipient)),
            };
            let mut tx = self.store.begin_write().await?;
            match result {
                Ok(()) => {
                    tx.mark_outbox_sent(&m.id, &format_time(self.clock.now())).await?;
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(message = %m.id, error = %e, "outbox delivery failed; will retry");
                    tx.mark_outbox_failed(&m.id, &e).await?;
                }
            }
            tx.commit().await?;
        }
        Ok(sent)
    }

    /// Delivers every `every` until `stop` resolves.
    pub async fn run(self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop;
        loop {
            if let Err(e) = self.deliver_pending().await {
                tracing::warn!(error = %e, "outbox delivery round failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }
}
