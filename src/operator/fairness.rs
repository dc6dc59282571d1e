//! Fair shares of the controllers' workers among namespaces. The reconcile queue is first come,
//! first served: a namespace that declares 10,000 ScimUsers at once would hold every worker
//! until its backlog drains, and another namespace's one new user would wait behind it all.
//! Here a namespace may hold at most its share of the workers while other namespaces are active
//! (a change arrived or a reconcile started within [`ACTIVE_WINDOW`]: the watch notes it as it
//! arrives, before the reconcile reaches the head of the queue); above it, its reconcile is
//! deferred at once (requeued behind what is due now),
//! without any request, which frees the worker for the next namespace in the queue. A namespace
//! alone may use every worker, so one tenant's bulk run is not slowed down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a namespace counts as active after its last reconcile started.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(5);

/// How long a deferred reconcile waits before it asks again, at first; the wait grows with the
/// namespace's deferrals in a row (a large backlog), so that deferring costs little CPU.
pub const DEFER: Duration = Duration::from_millis(500);

/// The longest wait of a deferred reconcile.
pub const MAX_DEFER: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Usage {
    /// Reconciles of the namespace running now.
    running: usize,
    /// When the namespace last started (or asked to start) a reconcile.
    seen: Option<Instant>,
    /// Reconciles deferred since the namespace last got a worker.
    deferred: u32,
}

/// The workers' shares, one per controller pool.
#[derive(Debug)]
pub struct Shares {
    workers: usize,
    usage: Mutex<HashMap<String, Usage>>,
}

/// A worker held by a namespace; dropping it gives the worker back.
#[derive(Debug)]
pub struct Slot {
    shares: Arc<Shares>,
    namespace: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut usage = self.shares.usage.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = usage.get_mut(&self.namespace) {
            u.running = u.running.saturating_sub(1);
        }
    }
}

impl Shares {
    /// Shares of `workers` workers (the controllers' concurrency).
    pub fn new(workers: usize) -> Arc<Self> {
        Arc::new(Self { workers: workers.max(1), usage: Mutex::new(HashMap::new()) })
    }

    /// Notes that `namespace` has work queued (a change of one of its objects arrived), so that
    /// busier namespaces yield to it before its reconciles reach the head of the queue.
    pub fn note(&self, namespace: &str, now: Instant) {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        usage.entry(namespace.to_string()).or_default().seen = Some(now);
    }

    /// A worker for a reconcile of `namespace` at `now`, or, when the namespace holds its share
    /// already while others are active, how long to defer the reconcile.
    pub fn enter(self: &Arc<Self>, namespace: &str, now: Instant) -> Result<Slot, Duration> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        // Namespaces idle for long are forgotten, so the map holds only the active ones.
        usage.retain(|ns, u| ns == namespace || u.running > 0 || u.seen.is_some_and(|s| now - s < ACTIVE_WINDOW));
        let active = usage.len() + usize::from(!usage.contains_key(namespace));
        let share = (self.workers / active).max(1);
        let mine = usage.entry(namespace.to_string()).or_default();
        mine.seen = Some(now);
        if mine.running >= share {
            mine.deferred = mine.deferred.saturating_add(1);
            let rounds = mine.deferred / u32::try_from(self.workers).unwrap_or(u32::MAX);
            return Err(DEFER.saturating_mul(rounds.saturating_add(1)).min(MAX_DEFER));
        }
        mine.running += 1;
        mine.deferred = 0;
        Ok(Slot { shares: Arc::clone(self), namespace: namespace.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_alone_uses_every_worker() {
        let shares = Shares::new(4);
        let t = Instant::now();
        let held: Vec<Slot> = (0..4).map(|_| shares.enter("bulk", t).expect("a worker")).collect();
        assert_eq!(held.len(), 4);
    }

    #[test]
    fn a_busy_namespace_yields_to_a_newcomer_and_takes_back_when_it_leaves() {
        let shares = Shares::new(4);
        let t = Instant::now();
        let mut bulk: Vec<Slot> = (0..3).map(|_| shares.enter("bulk", t).expect("a worker")).collect();
        // A second namespace arrives: it gets a worker although bulk holds three.
        let small = shares.enter("small", t).expect("the newcomer is served");
        // Two namespaces active: bulk's share is 2 and it holds 3, so it waits.
        assert!(shares.enter("bulk", t).is_err(), "bulk above its share");
        bulk.truncate(1);
        assert!(shares.enter("bulk", t).is_ok(), "below its share again");
        drop(small);
        // small stays active for the window, then bulk has every worker again.
        let later = t + ACTIVE_WINDOW + Duration::from_millis(1);
        let more: Vec<Slot> = (0..2).filter_map(|_| shares.enter("bulk", later).ok()).collect();
        assert_eq!(more.len(), 2, "small is idle: bulk may fill the pool");
    }

    #[test]
    fn every_namespace_gets_at_least_one_worker() {
        let shares = Shares::new(2);
        let t = Instant::now();
        let slots: Vec<Result<Slot, Duration>> = ["a", "b", "c", "d"].iter().map(|ns| shares.enter(ns, t)).collect();
        assert!(slots.iter().all(Result::is_ok), "one each, even past the pool size");
        assert!(shares.enter("a", t).is_err(), "a second one for a waits");
    }

    #[test]
    fn a_change_noted_from_the_watch_makes_the_busy_namespace_yield_at_once() {
        let shares = Shares::new(4);
        let t = Instant::now();
        let _bulk: Vec<Slot> = (0..2).map(|_| shares.enter("bulk", t).expect("a worker")).collect();
        shares.note("small", t);
        assert!(shares.enter("bulk", t).is_err(), "small's change is queued: bulk holds its share of 2");
    }

    #[test]
    fn the_deferral_grows_with_the_backlog_and_is_bounded() {
        let shares = Shares::new(2);
        let t = Instant::now();
        let _held: Vec<Slot> = (0..2).map(|_| shares.enter("bulk", t).expect("a worker")).collect();
        shares.note("small", t);
        let waits: Vec<Duration> = (0..100).filter_map(|_| shares.enter("bulk", t).err()).collect();
        assert_eq!(waits.len(), 100, "bulk stays above its share of 1");
        assert_eq!(waits[0], DEFER);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "never shorter than the last");
        assert_eq!(waits[99], MAX_DEFER);
    }

    #[test]
    fn a_dropped_slot_gives_the_worker_back() {
        let shares = Shares::new(1);
        let t = Instant::now();
        let slot = shares.enter("a", t).expect("a worker");
        assert!(shares.enter("a", t).is_err());
        drop(slot);
        assert!(shares.enter("a", t).is_ok());
    }
}
