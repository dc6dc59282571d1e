//! Records every answered request to `/scim/v2` and `/api/v1` for the console's "Recent
//! provisioning requests" page, off the request path: the [`observe`](super::observe)
//! middleware hands a [`RequestRecord`] to a bounded channel (never waiting), and one task per
//! process drains it, writing what gathered in [`LINGER`] in one transaction (which also prunes
//! the table to the newest rows). Under load the batches grow instead of the writes; when the
//! channel is full (the database far behind) records are dropped and counted, never a request
//! slowed.

use std::sync::Arc;
use tokio::sync::mpsc;

use super::metrics::Metrics;
use crate::provisioning::Directory;
use crate::store::RequestRecord;

/// Records queued at most before new ones are dropped.
const QUEUE: usize = 4096;
/// Records written in one transaction at most.
const BATCH: usize = 500;
/// How long the task lets records gather after the first one before writing them: at most a
/// few transactions a second whatever the request rate (each one a commit of the database),
/// and a page at most this much behind.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// The prefixes of the paths recorded: the provisioning APIs, never `/console` or
/// `/invitations/{token}` (whose path is a secret).
const RECORDED: [&str; 2] = ["/scim/v2", "/api/v1"];

/// Whether a request to `path` is recorded.
pub fn recorded(path: &str) -> bool {
    RECORDED.iter().any(|p| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// The sending end of the request log.
#[derive(Clone)]
pub struct RequestLog {
    tx: mpsc::Sender<RequestRecord>,
    metrics: Arc<Metrics>,
}

impl RequestLog {
    /// Starts the task that writes records through `directory`, keeping the newest `keep`;
    /// `None` (nothing recorded) when `keep` is zero or there is no Tokio runtime to run it.
    /// The task ends once every sender is dropped and what they queued is written.
    pub fn start(directory: Directory, keep: u64, metrics: Arc<Metrics>) -> Option<Self> {
        if keep == 0 {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(drain(directory, keep, rx));
        Some(Self { tx, metrics })
    }

    /// Queues a record; drops it (counted) when the queue is full.
    pub fn record(&self, record: RequestRecord) {
        if self.tx.try_send(record).is_err() {
            self.metrics.request_log_dropped.inc();
        }
    }
}

async fn drain(directory: Directory, keep: u64, mut rx: mpsc::Receiver<RequestRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH
                && let Ok(record) = rx.try_recv()
            {
                batch.push(record);
            }
        }
        if let Err(e) = directory.record_requests(&batch, keep).await {
            tracing::warn!(error = %e.detail, records = batch.len(), "writing the request log failed; those records are lost");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_provisioning_apis_are_recorded() {
        for path in ["/scim/v2", "/scim/v2/Users/abc", "/api/v1/users/x/access"] {
            assert!(recorded(path), "{path}");
        }
        for path in ["/console/users", "/invitations/secret", "/scim/v2x", "/healthz", "/metrics", "/api/v10"] {
            assert!(!recorded(path), "{path}");
        }
    }
}
