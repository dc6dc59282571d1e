//! Delivers queued outbox messages (invitations) by SMTP. Without an SMTP server configured,
//! messages stay in the outbox, listed by `scim-operator invites list`.
//!
//! Several replicas may deliver from one database: each claims a few due messages for a lease
//! before sending them, so a message is sent by one replica (a replica that dies mid-send
//! leaves its claim to expire, and another sends the message then). A failed attempt is retried
//! after a capped exponential backoff, and after the maximum number of attempts the message is
//! parked with its last error; neither holds up the messages behind it.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, format_time};
use crate::server::metrics::{Metrics, OutboxLabels};
use crate::store::{OutboxMessage, SharedStore, StoreError};

/// Longest one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Most claims (batches) one delivery round makes, so that a round ends even when messages
/// keep failing with a zero backoff.
const MAX_BATCHES_PER_ROUND: usize = 50;

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
        f.debug_struct("SmtpConfig")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("from", &self.from)
            .finish()
    }
}

/// How often the outbox is read, how many messages one claim takes, and how failures are
/// retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Pause between delivery rounds.
    pub poll_interval: Duration,
    /// Messages claimed at once.
    pub batch: u64,
    /// Attempts after which a message is parked.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_max: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        // 1 min, 2, 4, ... 32 min, then hourly: the 12th failure, about six hours after the
        // first, parks the message (a relay outage of a few hours delays invitations, no more).
        Self {
            poll_interval: Duration::from_secs(5),
            batch: 20,
            max_attempts: 12,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
        }
    }
}

impl DeliveryPolicy {
    /// How long a claim holds: enough to send a whole batch at the SMTP timeout.
    pub fn lease(&self) -> Duration {
        SMTP_TIMEOUT.saturating_mul(u32::try_from(self.batch).unwrap_or(u32::MAX).saturating_add(1))
    }

    /// What follows the `failed`-th failed attempt (1 for the first): the wait before the next
    /// attempt, or `None` when the message is to be parked.
    pub fn after_failure(&self, failed: u32) -> Option<Duration> {
        (failed < self.max_attempts).then(|| retry_delay(failed, self.retry_base, self.retry_max))
    }
}

/// Capped exponential backoff: `base` after the first failure, doubled after each further
/// one, never more than `max`. (Written out rather than taken from a backoff crate: the
/// schedule must be a pure function of the attempt count stored with each message, since any
/// replica may make the next attempt.)
pub fn retry_delay(failed: u32, base: Duration, max: Duration) -> Duration {
    let doublings = failed.saturating_sub(1).min(31);
    base.saturating_mul(1u32 << doublings).min(max)
}

/// Errors of a delivery round.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid SMTP settings: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub sent: usize,
    /// Failed attempts that will be retried.
    pub retried: usize,
    /// Messages parked after their last allowed attempt.
    pub parked: usize,
}

/// Sends queued messages.
pub struct Deliverer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    store: SharedStore,
    clock: Arc<dyn Clock>,
    policy: DeliveryPolicy,
    metrics: Option<Arc<Metrics>>,
}

impl Deliverer {
    /// Builds a deliverer with the default policy; fails on a malformed URL or sender.
    pub fn new(config: &SmtpConfig, store: SharedStore, clock: Arc<dyn Clock>) -> Result<Self, DeliveryError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .map_err(|e| DeliveryError::Config(format!("SMTP URL: {e}")))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        let from = config.from.parse().map_err(|e| DeliveryError::Config(format!("sender '{}': {e}", config.from)))?;
        Ok(Self { transport, from, store, clock, policy: DeliveryPolicy::default(), metrics: None })
    }

    /// Uses this policy.
    pub fn with_policy(mut self, policy: DeliveryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Counts sent, retried and parked messages in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends every message that is due, claiming a batch at a time, each message once.
    pub async fn deliver_pending(&self) -> Result<Round, DeliveryError> {
        let mut round = Round::default();
        for _ in 0..MAX_BATCHES_PER_ROUND {
            let now = self.clock.now();
            let until = now + chrono::Duration::from_std(self.policy.lease()).unwrap_or(chrono::Duration::hours(1));
            let claim = uuid::Uuid::new_v4().to_string();
            let mut tx = self.store.begin_write().await?;
            let batch = tx.claim_outbox(&format_time(now), &format_time(until), &claim, self.policy.batch).await?;
            tx.commit().await?;
            if batch.is_empty() {
                break;
            }
            for m in &batch {
                self.deliver(m, &claim, &mut round).await?;
            }
        }
        Ok(round)
    }

    /// Sends one claimed message and records the outcome.
    async fn deliver(&self, m: &OutboxMessage, claim: &str, round: &mut Round) -> Result<(), DeliveryError> {
        let result = match m.recipient.parse::<Mailbox>() {
            Ok(to) => {
                match Message::builder()
                    .from(self.from.clone())
                    .to(to)
                    .subject(m.subject.clone())
                    .body(m.rendered_body())
                {
                    Ok(email) => self.transport.send(email).await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(format!("recipient '{}': {e}", m.recipient)),
        };
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let (kept, outcome) = match result {
            Ok(()) => {
                // What stays at rest: the body without any link (a message queued before links
                // were kept apart still has one in its text).
                let body = crate::provisioning::invitations::redact_links(&m.body);
                round.sent += 1;
                (tx.outbox_sent(&m.id, claim, &format_time(now), &body).await?, "sent")
            }
            Err(error) => {
                let failed = u32::try_from(m.attempts).unwrap_or(u32::MAX).saturating_add(1);
                match self.policy.after_failure(failed) {
                    Some(wait) => {
                        let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
                        tracing::warn!(message = %m.id, attempt = failed, retry_at = %format_time(at), %error, "outbox delivery failed; will retry");
                        round.retried += 1;
                        let retry_at = format_time(at);
                        (tx.outbox_failed(&m.id, claim, &error, &format_time(now), Some(&retry_at)).await?, "retry")
                    }
                    None => {
                        tracing::warn!(message = %m.id, attempts = failed, %error, "outbox delivery failed for the last time; message parked");
                        round.parked += 1;
                        (tx.outbox_failed(&m.id, claim, &error, &format_time(now), None).await?, "parked")
                    }
                }
            }
        };
        tx.commit().await?;
        if !kept {
            tracing::warn!(message = %m.id, "the claim on this message expired before its outcome was recorded; another replica may send it again");
        }
        if let Some(metrics) = &self.metrics {
            metrics.outbox.get_or_create(&OutboxLabels { outcome: outcome.into() }).inc();
        }
        Ok(())
    }

    /// Delivers every poll interval until `stop` changes.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        let mut stop = stop;
        loop {
            if let Err(e) = self.deliver_pending().await {
                tracing::warn!(error = %e, "outbox delivery round failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.policy.poll_interval) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let schedule: Vec<u64> = (1..=9).map(|n| retry_delay(n, base, max).as_secs()).collect();
        assert_eq!(schedule, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        // No overflow however many attempts were made, and a zero base stays zero.
        assert_eq!(retry_delay(u32::MAX, base, max), max);
        assert_eq!(retry_delay(0, base, max), base);
        assert_eq!(retry_delay(40, Duration::ZERO, max), Duration::ZERO);
        assert_eq!(retry_delay(3, Duration::from_millis(200), Duration::from_millis(500)), Duration::from_millis(500));
    }

    #[test]
    fn the_last_allowed_attempt_parks_the_message() {
        let policy = DeliveryPolicy { max_attempts: 3, ..DeliveryPolicy::default() };
        assert_eq!(policy.after_failure(1), Some(Duration::from_secs(60)));
        assert_eq!(policy.after_failure(2), Some(Duration::from_secs(120)));
        assert_eq!(policy.after_failure(3), None);
        assert_eq!(policy.after_failure(4), None);
        let once = DeliveryPolicy { max_attempts: 1, ..DeliveryPolicy::default() };
        assert_eq!(once.after_failure(1), None);
    }

    #[test]
    fn the_default_schedule_parks_after_about_six_hours() {
        let policy = DeliveryPolicy::default();
        let waits: Duration = (1..policy.max_attempts).filter_map(|n| policy.after_failure(n)).sum();
        assert_eq!(waits, Duration::from_secs(60 * (1 + 2 + 4 + 8 + 16 + 32) + 3600 * 5));
        assert!(policy.lease() >= SMTP_TIMEOUT * 20, "a claim outlasts sending its batch");
    }
}
