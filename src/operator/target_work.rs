//! The sync of a resource on each target other than the default runs as its own task, so that a
//! slow or throttled target holds back only its own entries: the resource's reconcile starts the
//! task, writes what it knows and frees its worker; the task, when it ends, keeps its result here
//! and wakes the resource, whose next reconcile reports it.
//!
//! - One task per (resource, target) at a time. A target's tasks queue in its own lane (as many
//!   at once as its budget's `maxConcurrency`), first come first served, so resources are served
//!   in the order their reconciles started them (fair across namespaces, as the workers are).
//! - A result is reported once ("fresh"); after that the reconcile shows it again, as it was,
//!   until the task is due again: after the resync interval, or after its own backoff when it
//!   failed (each target counts its failures apart, with Retry-After honoured), or at once when
//!   the spec changed.
//! - Aborting a task (the target was taken out of the spec, the resource is going) is as safe as
//!   a crash of the operator: each pipeline claims before it creates, so the next one finds what
//!   the aborted one made.
//!
//! [`decide`] is the pure decision; [`TargetWork`] keeps the tasks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use super::targets::Outcome;

/// What a finished task left for its resource.
pub trait Finished: Clone + Send + 'static {
    /// The target's outcome.
    fn outcome(&self) -> &Outcome;
}

impl Finished for Outcome {
    fn outcome(&self) -> &Outcome {
        self
    }
}

/// A task as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Running for the spec of `generation`.
    Running { generation: Option<i64> },
    /// Ended for the spec of `generation`; `reported`: a reconcile has shown its result; `due`:
    /// when it should run again.
    Done { generation: Option<i64>, reported: bool, due: Instant },
}

/// What the reconcile does about one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start a task (none ran for this spec yet, or it is due again).
    Start,
    /// Report the result just finished (and remember it was reported); the task is due again at
    /// `due`.
    Report { due: Instant },
    /// Nothing to do until `until` (`None`: a task is running and will wake the resource); show
    /// the last result, if any, as it was.
    Wait { until: Option<Instant> },
}

/// The decision for one (resource, target), from what the task table holds, the resource's
/// generation and the time.
pub fn decide(seen: Option<&Seen>, generation: Option<i64>, now: Instant) -> Step {
    match seen {
        None => Step::Start,
        // A task for an older spec still runs: its result is not this spec's; when it ends the
        // resource is woken and a task for the current spec starts.
        Some(Seen::Running { .. }) => Step::Wait { until: None },
        Some(Seen::Done { generation: g, .. }) if *g != generation => Step::Start,
        Some(Seen::Done { reported: false, due, .. }) => Step::Report { due: *due },
        Some(Seen::Done { due, .. }) if now >= *due => Step::Start,
        Some(Seen::Done { due, .. }) => Step::Wait { until: Some(*due) },
    }
}

/// One task's entry.
struct Task<T> {
    generation: Option<i64>,
    state: State,
    /// The last result of this (resource, target), kept across runs to show meanwhile.
    last: Option<(Option<i64>, T)>,
    /// Something the running task read changed meanwhile: it is due again as soon as it ends.
    stale: bool,
}

enum State {
    Running(AbortHandle),
    Done {
        reported: bool,
        due: Instant,
    },
    /// Registered, being spawned.
    Starting,
}

impl<T> Task<T> {
    fn seen(&self) -> Seen {
        match &self.state {
            State::Running(_) | State::Starting => Seen::Running { generation: self.generation },
            State::Done { reported, due } => Seen::Done { generation: self.generation, reported: *reported, due: *due },
        }
    }
}

/// What the reconcile knows of one target after [`TargetWork::poll`].
#[derive(Debug, Clone)]
pub struct Polled<T> {
    /// What to do.
    pub step: Step,
    /// The result to show: fresh when `step` is [`Step::Report`], else the last one (of this
    /// spec only), if any.
    pub result: Option<T>,
}

/// A task to start: whose, where, for which spec, and how many of that target's tasks may run
/// at once.
#[derive(Debug, Clone)]
pub struct Job {
    /// The resource's uid.
    pub uid: String,
    /// The target id.
    pub target: String,
    pub generation: Option<i64>,
    /// The target's lane width (its budget's `maxConcurrency`).
    pub width: usize,
}

/// The tasks of one resource kind, keyed by (resource uid, target id).
pub struct TargetWork<T: Finished> {
    /// By resource uid, then target id: a resource's tasks are found without a scan of all.
    tasks: Mutex<HashMap<String, HashMap<String, Task<T>>>>,
    lanes: Mutex<HashMap<String, (usize, Arc<Semaphore>)>>,
}

impl<T: Finished> Default for TargetWork<T> {
    fn default() -> Self {
        Self { tasks: Mutex::new(HashMap::new()), lanes: Mutex::new(HashMap::new()) }
    }
}

impl<T: Finished> TargetWork<T> {
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Task<T>>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lane of `target`, `width` tasks at once (a new width makes a new lane).
    fn lane(&self, target: &str, width: usize) -> Arc<Semaphore> {
        let width = width.max(1);
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(target.to_string()).or_insert_with(|| (width, Arc::new(Semaphore::new(width))));
        if lane.0 != width {
            *lane = (width, Arc::new(Semaphore::new(width)));
        }
        lane.1.clone()
    }

    /// The decision for `target` of the resource `uid` at `generation`; a fresh result is marked
    /// reported.
    pub fn poll(&self, uid: &str, target: &str, generation: Option<i64>, now: Instant) -> Polled<T> {
        let mut tasks = self.tasks();
        let Some(task) = tasks.get_mut(uid).and_then(|t| t.get_mut(target)) else {
            return Polled { step: Step::Start, result: None };
        };
        let step = decide(Some(&task.seen()), generation, now);
        if matches!(step, Step::Report { .. })
            && let State::Done { reported, .. } = &mut task.state
        {
            *reported = true;
        }
        let result = task.last.as_ref().filter(|(g, _)| *g == generation).map(|(_, r)| r.clone());
        Polled { step, result }
    }

    /// Starts `job`: `work` runs in the target's lane; `due` says, from its result, how long
    /// until it should run again; `wake` is called once the result is kept. Nothing starts while
    /// a task of that (resource, target) runs.
    pub fn start<W, D, F>(self: &Arc<Self>, job: Job, work: W, due: D, wake: F)
    where
        W: Future<Output = T> + Send + 'static,
        D: FnOnce(&T) -> Duration + Send + 'static,
        F: FnOnce() + Send + 'static,
    {
        let Job { uid, target, generation, width } = job;
        {
            let mut tasks = self.tasks();
            let of_resource = tasks.entry(uid.clone()).or_default();
            match of_resource.get_mut(&target) {
                Some(task) if matches!(task.state, State::Running(_) | State::Starting) => return,
                Some(task) => {
                    task.generation = generation;
                    task.state = State::Starting;
                }
                None => {
                    let task = Task { generation, state: State::Starting, last: None, stale: false };
                    of_resource.insert(target.clone(), task);
                }
            }
        }
        let lane = self.lane(&target, width);
        let this = self.clone();
        let (finish_uid, finish_target) = (uid.clone(), target.clone());
        let handle = tokio::spawn(async move {
            // A closed semaphore is never closed here; without a permit the task still runs.
            let _permit = lane.acquire_owned().await.ok();
            let result = work.await;
            let after = due(&result);
            {
                let mut tasks = this.tasks();
                // Aborted (the entry was removed) while finishing: keep nothing.
                if let Some(task) = tasks.get_mut(&finish_uid).and_then(|t| t.get_mut(&finish_target)) {
                    task.last = Some((task.generation, result));
                    let now = Instant::now();
                    let due = if std::mem::take(&mut task.stale) { now } else { now + after };
                    task.state = State::Done { reported: false, due };
                }
            }
            wake();
        });
        let mut tasks = self.tasks();
        match tasks.get_mut(&uid).and_then(|t| t.get_mut(&target)) {
            // Still starting: it is running now (a task that already finished stays Done).
            Some(task) if matches!(task.state, State::Starting) => task.state = State::Running(handle.abort_handle()),
            Some(_) => {}
            // Aborted in between: stop it.
            None => handle.abort(),
        }
    }

    /// Stops the task of `target` (or every task, with `None`) of the resource `uid` and forgets
    /// them.
    pub fn abort(&self, uid: &str, target: Option<&str>) {
        let mut tasks = self.tasks();
        let Some(of_resource) = tasks.get_mut(uid) else { return };
        of_resource.retain(|t, task| {
            let hit = target.is_none_or(|x| x == t);
            if hit && let State::Running(h) = &task.state {
                h.abort();
            }
            !hit
        });
        if of_resource.is_empty() {
            tasks.remove(uid);
        }
    }

    /// Makes the tasks of the resource `uid` due now, or as soon as they end if they run:
    /// something they read changed (a team's member became ready on a target, say), which no
    /// generation shows.
    pub fn expire(&self, uid: &str) {
        let now = Instant::now();
        let mut tasks = self.tasks();
        for task in tasks.get_mut(uid).into_iter().flat_map(|t| t.values_mut()) {
            match &mut task.state {
                State::Done { due, .. } => *due = now,
                State::Running(_) | State::Starting => task.stale = true,
            }
        }
    }

    /// The targets with a task (running or ended) for the resource `uid`.
    pub fn targets_of(&self, uid: &str) -> Vec<String> {
        self.tasks().get(uid).map(|t| t.keys().cloned().collect()).unwrap_or_default()
    }
}

/// When the first of `polled` that ended is due again, counted from `now` (`None`: none ended;
/// running tasks wake their resource themselves, started ones are running).
pub fn next_due<T>(polled: &[Polled<T>], now: Instant) -> Option<Duration> {
    polled
        .iter()
        .filter_map(|p| match p.step {
            Step::Wait { until: Some(due) } | Step::Report { due } => Some(due.saturating_duration_since(now)),
            _ => None,
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::conditions::reason;

    #[test]
    fn a_target_is_synced_once_per_spec_and_again_when_due() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let done = |generation, reported, due| Seen::Done { generation, reported, due };
        let cases: Vec<(Option<Seen>, Option<i64>, Step)> = vec![
            (None, Some(1), Step::Start),
            (Some(Seen::Running { generation: Some(1) }), Some(1), Step::Wait { until: None }),
            // The spec changed while a task ran: wait for it, then start one for the new spec.
            (Some(Seen::Running { generation: Some(1) }), Some(2), Step::Wait { until: None }),
            (Some(done(Some(1), true, later)), Some(2), Step::Start),
            (Some(done(Some(1), false, later)), Some(2), Step::Start),
            (Some(done(Some(1), false, later)), Some(1), Step::Report { due: later }),
            (Some(done(Some(1), true, later)), Some(1), Step::Wait { until: Some(later) }),
            (Some(done(Some(1), true, now)), Some(1), Step::Start),
        ];
        for (seen, generation, want) in cases {
            assert_eq!(decide(seen.as_ref(), generation, now), want, "{seen:?} at generation {generation:?}");
        }
    }

    fn job(uid: &str, target: &str) -> Job {
        Job { uid: uid.into(), target: target.into(), generation: Some(1), width: 1 }
    }

    fn ok(t: &str) -> Outcome {
        Outcome::synced(t, Some("1".into()), "ok", true)
    }

    async fn settle(work: &Arc<TargetWork<Outcome>>, uid: &str, target: &str) {
        for _ in 0..200 {
            let done =
                matches!(work.tasks().get(uid).and_then(|t| t.get(target)).map(|t| &t.state), Some(State::Done { .. }));
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the task of {uid} on {target} did not finish");
    }

    #[tokio::test]
    async fn a_result_is_reported_once_then_shown_until_due() {
        let work = Arc::new(TargetWork::<Outcome>::default());
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = woken.clone();
        let first = work.poll("u1", "t", Some(1), Instant::now());
        assert_eq!((first.step, first.result.is_none()), (Step::Start, true));
        work.start(
            job("u1", "t"),
            async { ok("t") },
            |_| Duration::from_secs(300),
            move || {
                w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
        );
        settle(&work, "u1", "t").await;
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1, "the resource is woken once");
        let fresh = work.poll("u1", "t", Some(1), Instant::now());
        assert!(matches!(fresh.step, Step::Report { .. }), "{:?}", fresh.step);
        assert_eq!(fresh.result, Some(ok("t")));
        let due = next_due(std::slice::from_ref(&fresh), Instant::now()).expect("a reported task is due again");
        assert!(due > Duration::from_secs(290), "after the resync: {due:?}");
        let shown = work.poll("u1", "t", Some(1), Instant::now());
        assert!(matches!(shown.step, Step::Wait { until: Some(_) }), "{:?}", shown.step);
        assert_eq!(shown.result, Some(ok("t")), "the last result is shown meanwhile");
        // A new spec: the old result is not shown for it.
        let next = work.poll("u1", "t", Some(2), Instant::now());
        assert_eq!((next.step, next.result), (Step::Start, None));
        let due = work.poll("u1", "t", Some(1), Instant::now() + Duration::from_secs(301));
        assert_eq!(due.step, Step::Start, "due again after the resync");
    }

    #[tokio::test]
    async fn a_change_the_spec_does_not_show_makes_ended_tasks_due() {
        let work = Arc::new(TargetWork::<Outcome>::default());
        work.start(job("u1", "t"), async { ok("t") }, |_| Duration::from_secs(300), || {});
        settle(&work, "u1", "t").await;
        assert!(matches!(work.poll("u1", "t", Some(1), Instant::now()).step, Step::Report { .. }));
        assert!(matches!(work.poll("u1", "t", Some(1), Instant::now()).step, Step::Wait { until: Some(_) }));
        work.expire("u2");
        assert!(matches!(work.poll("u1", "t", Some(1), Instant::now()).step, Step::Wait { .. }), "another's");
        work.expire("u1");
        assert_eq!(work.poll("u1", "t", Some(1), Instant::now()).step, Step::Start);
        // Expired while it runs: due as soon as it ends.
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let run = async move {
            let _ = held.await;
            ok("t")
        };
        work.start(job("u1", "t"), run, |_| Duration::from_secs(300), || {});
        work.expire("u1");
        let _ = release.send(());
        settle(&work, "u1", "t").await;
        let reported = work.poll("u1", "t", Some(1), Instant::now());
        assert!(matches!(reported.step, Step::Report { .. }), "{:?}", reported.step);
        // The reconcile that reports it comes back at once, and starts it again.
        assert_eq!(next_due(&[reported], Instant::now()), Some(Duration::ZERO));
        assert_eq!(work.poll("u1", "t", Some(1), Instant::now()).step, Step::Start, "due at once");
    }

    #[tokio::test]
    async fn a_slow_target_holds_back_only_its_own_lane() {
        let work = Arc::new(TargetWork::<Outcome>::default());
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        // The slow target's one lane is taken by a task that waits.
        work.start(
            job("u1", "slow"),
            async move {
                let _ = held.await;
                ok("slow")
            },
            |_| Duration::from_secs(300),
            || {},
        );
        work.start(job("u2", "slow"), async { ok("slow") }, |_| Duration::from_secs(300), || {});
        work.start(job("u1", "fast"), async { ok("fast") }, |_| Duration::from_secs(300), || {});
        settle(&work, "u1", "fast").await;
        assert!(matches!(work.poll("u1", "fast", Some(1), Instant::now()).step, Step::Report { .. }));
        assert_eq!(work.poll("u2", "slow", Some(1), Instant::now()).step, Step::Wait { until: None });
        let _ = release.send(());
        settle(&work, "u2", "slow").await;
        assert!(matches!(work.poll("u2", "slow", Some(1), Instant::now()).step, Step::Report { .. }));
    }

    #[tokio::test]
    async fn an_aborted_task_leaves_nothing() {
        let work = Arc::new(TargetWork::<Outcome>::default());
        work.start(
            job("u1", "t"),
            async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Outcome::failed("t", None, reason::SCIM_UNAVAILABLE, "never")
            },
            |_| Duration::from_secs(1),
            || panic!("an aborted task wakes nobody"),
        );
        assert_eq!(work.targets_of("u1"), vec!["t".to_string()]);
        work.abort("u1", None);
        assert!(work.targets_of("u1").is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(work.poll("u1", "t", Some(1), Instant::now()).step, Step::Start);
    }
}
