//! The retry worker: leases due deliveries, runs them through a [`Target`] with bounded
//! concurrency and circuit breakers, and settles each in the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use nexus_event::Timestamp;
use nexus_store::{
    BreakerLog, Consumer, DeliveryQueue, Failure, Lease, QueueStats, SubscriptionPatch,
    Subscriptions, Success,
};
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};

use crate::backoff::Schedule;
use crate::breaker::{Admission, CallResult, Gate};
use crate::breakers::Breakers;
use crate::clock::{Clock, later};
use crate::error::ConfigError;
use crate::metric_names;
use crate::reason::Reason;

/// Why an attempt failed, as the target saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// The class of failure; its label is the metrics' `reason`.
    pub reason: Reason,
    /// What went wrong, for operators.
    pub message: String,
    /// The HTTP status, when the target answered.
    pub status: Option<u16>,
    /// A `Retry-After` the target asked for.
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    /// An error with a reason and a message, no status, no `Retry-After`.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        AttemptError {
            reason,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered (any 2xx): the delivery leaves the queue. Carries the HTTP status the target
    /// answered, when the attempt was an HTTP call; the delivery's history shows it.
    Delivered(Option<u16>),
    /// Failed: retried per the schedule, then dead-lettered.
    Failed(AttemptError),
    /// The target said the subscription is gone for good (`410 Gone`): the subscription is
    /// disabled and this and later deliveries wait, held, until it is enabled again. For a
    /// reactor it is an ordinary failure.
    Gone(AttemptError),
    /// The delivery can never succeed (a reactor cycle, say): it becomes a dead letter at once,
    /// no retry. The breaker does not count it (the target's health is not in question).
    Refused(AttemptError),
}

/// Where deliveries go: the HTTP client in production, fakes in tests.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// Makes one attempt at a leased delivery.
    async fn attempt(&self, lease: &Lease) -> Outcome;

    /// Called before a delivery becomes a dead letter, its retries spent or its attempt refused
    /// (a reactor emits its `emit_on_failure` event here). An error does not keep the delivery
    /// alive (that would call the target again and again): it is logged and added to the dead
    /// letter's error, and a redrive runs the delivery again. The default does nothing.
    async fn dead_lettering(
        &self,
        lease: &Lease,
        error: &AttemptError,
    ) -> Result<(), AttemptError> {
        let _ = (lease, error);
        Ok(())
    }
}

/// Retry worker settings, each with its default.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The lease owner name; default `worker-<uuid>`, unique per worker.
    pub owner: String,
    /// Attempts in flight at once. Default 256. The worker leases in batches of half of it, so
    /// a small value costs throughput (64: about half of 256's rate on the bench).
    pub concurrency: usize,
    /// How long a lease holds; longer than the slowest attempt. Default 60 s.
    pub lease_for: Duration,
    /// The retry schedule. Default 2, 4, 8, 16, 32 s with 10 % jitter.
    pub schedule: Schedule,
    /// How often the breakers adopt what other instances on the same store saved
    /// ([`Breakers::sync`]); more than 0. Default 500 ms, so a trip or a reset reaches every
    /// instance within the 1 s of API.md section 13.
    pub breaker_sync: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            owner: format!("worker-{}", nexus_event::EventId::new_v7()),
            concurrency: 256,
            lease_for: Duration::from_secs(60),
            schedule: Schedule::default(),
            breaker_sync: Duration::from_millis(500),
        }
    }
}

/// What a worker is doing, as it last said: an explicit signal that tests (and health checks)
/// wait for, instead of sleeping and hoping nothing happens meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Looking at the queue, or waiting for attempts in flight.
    Busy,
    /// Nothing in flight; asleep until this due time (by its clock) or new work, whichever
    /// comes first. Moving the clock to an earlier time does not wake it.
    IdleUntil(Timestamp),
    /// Nothing in flight and nothing due: asleep until new work. The clock does not wake it.
    Idle,
    /// The worker has stopped; it will never lease again.
    Stopped,
}

/// How often a failing breaker sync logs its warning.
const SYNC_WARNING_EVERY: Duration = Duration::from_secs(60);

const ACTIVITY_BUSY: i64 = i64::MIN;
const ACTIVITY_IDLE: i64 = i64::MAX;
const ACTIVITY_STOPPED: i64 = i64::MIN + 1;

/// Counters of a running worker, for tests, benches and the health endpoint.
#[derive(Debug)]
pub struct WorkerStats {
    /// Times the worker loop woke up to look for work.
    pub wakeups: AtomicU64,
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Deliveries acknowledged.
    pub delivered: AtomicU64,
    /// Deliveries scheduled for a retry.
    pub retried: AtomicU64,
    /// Deliveries dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Deliveries parked behind an open breaker.
    pub parked: AtomicU64,
    /// [`Activity`], encoded: see [`WorkerStats::activity`].
    activity: AtomicI64,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            wakeups: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            activity: AtomicI64::new(ACTIVITY_BUSY),
        }
    }
}

impl WorkerStats {
    /// What the worker is doing now.
    pub fn activity(&self) -> Activity {
        match self.activity.load(Ordering::Acquire) {
            ACTIVITY_BUSY => Activity::Busy,
            ACTIVITY_IDLE => Activity::Idle,
            ACTIVITY_STOPPED => Activity::Stopped,
            ms => Timestamp::from_unix_millis(ms).map_or(Activity::Busy, Activity::IdleUntil),
        }
    }

    fn set_activity(&self, activity: Activity) {
        let encoded = match activity {
            Activity::Busy => ACTIVITY_BUSY,
            Activity::Idle => ACTIVITY_IDLE,
            Activity::Stopped => ACTIVITY_STOPPED,
            Activity::IdleUntil(due) => due.as_unix_millis(),
        };
        self.activity.store(encoded, Ordering::Release);
    }
}

/// A queue the worker can run: deliveries, the subscriptions a `410` disables, and the breaker
/// states kept across restarts and shared by the instances of one store.
pub trait WorkQueue: DeliveryQueue + Subscriptions + BreakerLog {}
impl<T: DeliveryQueue + Subscriptions + BreakerLog> WorkQueue for T {}

/// The retry worker. Build it, then [`RetryWorker::spawn`] it on a tokio runtime.
///
/// It sleeps until the next due time or until the queue reports new work (no fixed-interval
/// polling), leases what is due, asks each target's breaker, and runs at most `concurrency`
/// attempts at once. While a target's breaker is open its deliveries are parked in the queue:
/// no attempt is made or counted, and they are never dead-lettered for it. Parked deliveries
/// are not leased by time: when a trial is due the worker lets the oldest go (the trial), and
/// when the breaker closes all of them, so a target that stays down costs one lease and one
/// park per delivery, however long it stays down.
///
/// It keeps the breakers in the store: it restores them at start, saves every transition, and
/// every `breaker_sync` adopts what other instances saved, releasing the parked deliveries of a
/// breaker closed elsewhere (API.md section 13).
pub struct RetryWorker {
    queue: Arc<dyn WorkQueue>,
    target: Arc<dyn Target>,
    clock: Arc<dyn Clock>,
    breakers: Arc<Breakers>,
    config: WorkerConfig,
    stats: Arc<WorkerStats>,
    /// Targets with parked deliveries, each with when its last trial was let go (`None`: none
    /// in the breaker's current trial window).
    parked: Mutex<HashMap<String, Option<Timestamp>>>,
    /// Wakes the loop when a target with parked deliveries becomes known.
    wake: Notify,
}

/// Controls a spawned worker.
pub struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<StopReport>,
    stats: Arc<WorkerStats>,
}

/// What a graceful stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StopReport {
    /// Attempts that finished within the grace period.
    pub finished: usize,
    /// Attempts cut off at the deadline; their deliveries were released for a restart to pick up.
    pub released: usize,
}

impl WorkerHandle {
    /// The worker's counters.
    pub fn stats(&self) -> &Arc<WorkerStats> {
        &self.stats
    }

    /// Stops leasing, lets attempts in flight finish for up to `grace`, then releases the rest
    /// back to the queue (no attempt counted) so a restart picks them up.
    pub async fn stop(self, grace: Duration) -> StopReport {
        let _ = self.stop.send(Some(grace));
        match self.task.await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "retry worker panicked");
                StopReport::default()
            }
        }
    }
}

fn consumer_type(c: &Consumer) -> &'static str {
    match c {
        Consumer::Subscription(_) => "webhook",
        Consumer::Reactor(_) => "reactor",
    }
}

/// Sets the queue-size gauges from fresh stats.
pub fn record_queue_gauges(stats: &QueueStats) {
    metrics::gauge!(metric_names::RETRY_QUEUE_SIZE).set((stats.pending + stats.in_flight) as f64);
    metrics::gauge!(metric_names::DEAD_LETTER_QUEUE_SIZE).set(stats.dead_letters as f64);
}

impl RetryWorker {
    /// A worker over `queue`, delivering through `target`, with its own breakers.
    pub fn new(
        queue: Arc<dyn WorkQueue>,
        target: Arc<dyn Target>,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Result<Self, ConfigError> {
        if config.concurrency == 0 {
            return Err(ConfigError::Worker {
                field: "concurrency",
            });
        }
        if config.lease_for.is_zero() {
            return Err(ConfigError::Worker { field: "lease_for" });
        }
        if config.breaker_sync.is_zero() {
            return Err(ConfigError::Worker {
                field: "breaker_sync",
            });
        }
        Ok(RetryWorker {
            queue,
            target,
            clock,
            breakers: Arc::new(Breakers::default()),
            config,
            stats: Arc::default(),
            parked: Mutex::default(),
            wake: Notify::new(),
        })
    }

    /// Shares `breakers` (several workers, the admin API and metrics see the same ones).
    pub fn breakers(mut self, breakers: Arc<Breakers>) -> Self {
        self.breakers = breakers;
        self
    }

    /// Starts the worker on the current tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stop_rx) = watch::channel(None);
        let stats = Arc::clone(&self.stats);
        let task = tokio::spawn(self.run(stop_rx));
        WorkerHandle { stop, task, stats }
    }

    async fn run(self, mut stop: watch::Receiver<Option<Duration>>) -> StopReport {
        let worker = Arc::new(self);
        match worker.queue.breakers().await {
            Ok(kept) => worker.breakers.restore(kept),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read kept breaker states; starting closed")
            }
        }
        // Parked before a restart, or by another instance: their trials are ours to let go too.
        worker.refresh_parked().await;
        let sync = tokio::spawn(Arc::clone(&worker).sync_breakers(stop.clone()));
        let mut changes = worker.queue.changes();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut in_flight: HashMap<Id, (Lease, bool)> = HashMap::new();
        let mut error_pause = Duration::from_millis(100);
        // Lease in batches: only once at least half the slots are free. Leasing is a write, so
        // one lease per finished attempt would cost a commit per delivery.
        let concurrency = worker.config.concurrency;
        let batch = concurrency.div_ceil(2);
        loop {
            if stop.borrow().is_some() {
                break;
            }
            while let Some(done) = tasks.try_join_next_with_id() {
                worker.finished(done, &mut in_flight).await;
            }
            let free = concurrency - tasks.len().min(concurrency);
            let can_lease = free >= batch;
            let mut next_due = None;
            if can_lease {
                worker.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                // Look at the queue's version before leasing, so work committed while we lease
                // is not missed when we then wait for a change.
                changes.borrow_and_update();
                let now = worker.clock.now();
                let trial_due = worker.tend_parked(now).await;
                match worker
                    .queue
                    .lease_due(&worker.config.owner, now, free, worker.config.lease_for)
                    .await
                {
                    Ok(leases) => {
                        error_pause = Duration::from_millis(100);
                        let leased = leases.len();
                        for lease in leases {
                            worker.dispatch(lease, &mut tasks, &mut in_flight);
                        }
                        if leased == free {
                            // All slots taken, and more may be due: wait for attempts to finish.
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "retry worker cannot lease; pausing");
                        tokio::select! {
                            _ = tokio::time::sleep(error_pause) => {}
                            changed = stop.changed() => if changed.is_err() { break },
                        }
                        error_pause = (error_pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                next_due = match worker.queue.next_due().await {
                    Ok(due) => due,
                    Err(e) => {
                        tracing::error!(error = %e, "retry worker cannot read the next due time");
                        Some(later(worker.clock.now(), Duration::from_secs(1)))
                    }
                };
                next_due = match (next_due, trial_due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            // Only a worker that would lease wakes for new work or due times; a busy one waits
            // for its attempts.
            let waiting_for_work = tasks.len() <= concurrency - batch;
            if waiting_for_work && tasks.is_empty() {
                worker.stats.set_activity(match next_due {
                    Some(due) => Activity::IdleUntil(due),
                    None => Activity::Idle,
                });
            }
            let clock = Arc::clone(&worker.clock);
            let sleep = async move {
                match next_due {
                    Some(due) => clock.sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        // The handle was dropped without a stop: stop now, releasing what runs.
                        break;
                    }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    worker.finished(done, &mut in_flight).await;
                }
                changed = changes.changed(), if waiting_for_work => {
                    if changed.is_err() {
                        tracing::warn!("the queue is gone; retry worker stops");
                        break;
                    }
                }
                _ = sleep, if waiting_for_work => {}
                () = worker.wake.notified(), if waiting_for_work => {}
            }
            worker.stats.set_activity(Activity::Busy);
        }
        // Awaited, not just aborted: the task holds the queue, which a restart may want to open
        // again as soon as this returns.
        sync.abort();
        let _ = sync.await;
        let grace = *stop.borrow();
        let report = worker.drain(tasks, in_flight, grace).await;
        worker.stats.set_activity(Activity::Stopped);
        report
    }

    /// Every `breaker_sync`, adopts the breaker records other instances saved and releases the
    /// parked deliveries of the breakers that closed. A store error keeps the local states and
    /// is logged at most once a minute.
    async fn sync_breakers(self: Arc<Self>, mut stop: watch::Receiver<Option<Duration>>) {
        let mut warned_at: Option<Timestamp> = None;
        let mut failures = 0u64;
        loop {
            let due = later(self.clock.now(), self.config.breaker_sync);
            tokio::select! {
                () = self.clock.sleep_until(due) => {}
                changed = stop.changed() => {
                    if changed.is_err() || stop.borrow().is_some() {
                        return;
                    }
                    continue;
                }
            }
            let now = self.clock.now();
            let closed = match self.breakers.sync(self.queue.as_ref()).await {
                Ok(closed) => closed,
                Err(e) => {
                    failures += 1;
                    if warned_at.is_none_or(|at| now >= later(at, SYNC_WARNING_EVERY)) {
                        tracing::warn!(error = %e, failures, "cannot read the shared breaker states; keeping the local ones");
                        warned_at = Some(now);
                    }
                    continue;
                }
            };
            if failures > 0 {
                tracing::info!(failures, "shared breaker states readable again");
                failures = 0;
                warned_at = None;
            }
            self.refresh_parked().await;
            for target in closed {
                match self.queue.unpark(&target, now).await {
                    Ok(n) if n > 0 => tracing::info!(
                        target,
                        released = n,
                        "breaker closed by another instance; parked deliveries released"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, target, "cannot release parked deliveries")
                    }
                }
            }
        }
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<String, Option<Timestamp>>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `target` has parked deliveries; wakes the loop if it was not known.
    fn note_parked(&self, target: &str) {
        let added = {
            let mut parked = self.parked();
            !parked.contains_key(target) && parked.insert(target.to_owned(), None).is_none()
        };
        if added {
            self.wake.notify_one();
        }
    }

    /// The trial let go for `target` ended (passed without closing the breaker, or was given
    /// back): the next one may go at once.
    fn trial_over(&self, target: &str) {
        if let Some(released) = self.parked().get_mut(target) {
            *released = None;
        }
    }

    /// Adopts the targets the store holds parked deliveries for: those parked before a restart,
    /// by another instance, or while a release here failed.
    async fn refresh_parked(&self) {
        match self.queue.parked_targets().await {
            Ok(targets) => {
                for target in targets {
                    self.note_parked(&target);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot list the targets with parked deliveries"),
        }
    }

    /// Lets the deliveries parked behind each breaker go as far as it allows at `now`: all of
    /// them once it is closed, and the oldest one, to be the trial, once a trial is due. One at
    /// a time: the next goes when that trial ended, or after a reset timeout if it never
    /// started (another instance may have taken it). Returns when to look again: the first
    /// trial time of the breakers still open.
    async fn tend_parked(&self, now: Timestamp) -> Option<Timestamp> {
        let targets: Vec<(String, Option<Timestamp>)> = self
            .parked()
            .iter()
            .map(|(target, released)| (target.clone(), *released))
            .collect();
        let reset_timeout = self.breakers.config().reset_timeout;
        let mut wake: Option<Timestamp> = None;
        let mut wake_at = |at: Timestamp| wake = Some(wake.map_or(at, |w| w.min(at)));
        for (target, released) in targets {
            match self.breakers.gate(&target, now) {
                Gate::Closed => match self.queue.unpark(&target, now).await {
                    Ok(n) => {
                        if n > 0 {
                            tracing::info!(target, released = n, "parked deliveries released");
                        }
                        self.parked().remove(&target);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, target, "cannot release parked deliveries")
                    }
                },
                Gate::Open { until } => {
                    self.trial_over(&target);
                    wake_at(until);
                }
                Gate::TrialRunning => {}
                Gate::TrialDue => {
                    if let Some(again) = released.map(|at| later(at, reset_timeout))
                        && now < again
                    {
                        wake_at(again);
                        continue;
                    }
                    match self.queue.unpark_one(&target, now).await {
                        Ok(true) => {
                            if let Some(r) = self.parked().get_mut(&target) {
                                *r = Some(now);
                            }
                            wake_at(later(now, reset_timeout));
                        }
                        Ok(false) => {
                            self.parked().remove(&target);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, target, "cannot release a parked delivery for a trial")
                        }
                    }
                }
            }
        }
        wake
    }

    /// Forgets a finished task. One that panicked settled nothing: it counts as a failed attempt,
    /// so its breaker trial is not left hanging and its delivery follows the schedule.
    async fn finished(
        &self,
        done: Result<(Id, ()), tokio::task::JoinError>,
        in_flight: &mut HashMap<Id, (Lease, bool)>,
    ) {
        let error = match done {
            Ok((id, ())) => {
                in_flight.remove(&id);
                return;
            }
            Err(e) => e,
        };
        let Some((lease, trial)) = in_flight.remove(&error.id()) else {
            return;
        };
        if error.is_cancelled() {
            return;
        }
        // A panicking target is a failing target: counted, retried, and in the end
        // dead-lettered, rather than released to panic again at once.
        tracing::error!(error = %error, delivery = lease.token.delivery, "a delivery attempt panicked");
        let now = self.clock.now();
        self.breaker_result(&lease.target, trial, CallResult::Failure, now)
            .await;
        let err = AttemptError::new(Reason::Panic, "the delivery attempt panicked");
        // How long it ran before it panicked is not known.
        let took = Took {
            at: now,
            duration_ms: 0,
        };
        if let Err(e) = self.failed(&lease, err, took).await {
            tracing::warn!(error = %e, delivery = lease.token.delivery, "cannot settle a delivery");
        }
    }

    /// Waits for attempts in flight up to the grace period, then releases what is left.
    async fn drain(
        &self,
        mut tasks: JoinSet<()>,
        mut in_flight: HashMap<Id, (Lease, bool)>,
        grace: Option<Duration>,
    ) -> StopReport {
        let mut report = StopReport::default();
        let deadline = tokio::time::Instant::now() + grace.unwrap_or_default();
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(Some(done)) => {
                    self.finished(done, &mut in_flight).await;
                    report.finished += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    tasks.abort_all();
                    // Tasks that finished before the abort took effect are settled: forget them;
                    // the cancelled ones stay in `in_flight` and are released below.
                    while let Some(done) = tasks.join_next_with_id().await {
                        if let Ok((id, ())) = done {
                            in_flight.remove(&id);
                            report.finished += 1;
                        }
                    }
                    break;
                }
            }
        }
        let now = self.clock.now();
        for (_, (lease, trial)) in in_flight {
            self.breakers
                .record(&lease.target, trial, CallResult::Abandoned, now);
            match self.queue.release(&lease.token, now).await {
                Ok(()) => report.released += 1,
                Err(e) => {
                    tracing::warn!(error = %e, delivery = lease.token.delivery, "cannot release a lease at stop")
                }
            }
        }
        tracing::info!(
            finished = report.finished,
            released = report.released,
            "retry worker stopped"
        );
        report
    }

    fn dispatch(
        self: &Arc<Self>,
        lease: Lease,
        tasks: &mut JoinSet<()>,
        in_flight: &mut HashMap<Id, (Lease, bool)>,
    ) {
        let now = self.clock.now();
        let worker = Arc::clone(self);
        match self.breakers.admit(&lease.target, now) {
            Admission::Rejected { until } => {
                let entry = (lease.clone(), false);
                let handle = tasks.spawn(async move {
                    worker.stats.parked.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = worker.queue.park(&lease.token, until).await {
                        tracing::warn!(error = %e, delivery = lease.token.delivery, "cannot park a delivery");
                        return;
                    }
                    // The loop lets it go when its breaker allows, even if the breaker closed
                    // while this parked: this task's end wakes the loop.
                    worker.note_parked(&lease.target);
                });
                // Parking is cheap and not an attempt: at a stop it is released like the rest.
                in_flight.insert(handle.id(), entry);
            }
            Admission::Allowed { trial } => {
                let entry = (lease.clone(), trial);
                let handle = tasks.spawn(async move { worker.attempt(lease, trial).await });
                in_flight.insert(handle.id(), entry);
            }
        }
    }

    async fn attempt(&self, lease: Lease, trial: bool) {
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        // Measured on tokio's clock, so a test with paused time sees the time it advanced.
        let started = tokio::time::Instant::now();
        let outcome = self.target.attempt(&lease).await;
        let took = Took {
            at: self.clock.now(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        let now = took.at;
        let settled = match outcome {
            Outcome::Delivered(status) => {
                self.breaker_result(&lease.target, trial, CallResult::Success, now)
                    .await;
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                let success = Success {
                    status,
                    at: took.at,
                    duration_ms: took.duration_ms,
                };
                self.queue.ack(&lease.token, success).await
            }
            Outcome::Gone(err) if matches!(lease.consumer, Consumer::Subscription(_)) => {
                // The target is up and answered; it just wants no more of this subscription.
                self.breaker_result(&lease.target, trial, CallResult::Success, now)
                    .await;
                self.gone(&lease, err, took).await
            }
            Outcome::Failed(err) | Outcome::Gone(err) => {
                self.breaker_result(&lease.target, trial, CallResult::Failure, now)
                    .await;
                self.failed(&lease, err, took).await
            }
            Outcome::Refused(err) => {
                // The target's health is not in question: a trial is given back, and one of
                // the deliveries parked behind it becomes the next trial.
                self.breakers
                    .record(&lease.target, trial, CallResult::Abandoned, now);
                if trial {
                    self.trial_over(&lease.target);
                }
                self.dead_letter(&lease, err, took).await
            }
        };
        if let Err(e) = settled {
            // Typically a lost lease: another worker has the delivery now.
            tracing::warn!(error = %e, delivery = lease.token.delivery, "cannot settle a delivery");
        }
    }

    async fn breaker_result(&self, target: &str, trial: bool, result: CallResult, now: Timestamp) {
        let change = self.breakers.record(target, trial, result, now);
        if change.is_some()
            && let Err(e) = self.breakers.persist(target, self.queue.as_ref()).await
        {
            tracing::warn!(error = %e, target, "cannot keep a breaker state; the next sync tries again");
        }
        // A good trial lets the next parked delivery go as the next trial, until the breaker
        // closes, and then all of them go.
        if trial && result == CallResult::Success {
            self.trial_over(target);
        }
        if change == Some(crate::breaker::BreakerState::Closed) {
            match self.queue.unpark(target, now).await {
                Ok(n) if n > 0 => tracing::info!(
                    target,
                    released = n,
                    "breaker closed; parked deliveries released"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, target, "cannot release parked deliveries"),
            }
        }
    }

    async fn failed(
        &self,
        lease: &Lease,
        err: AttemptError,
        took: Took,
    ) -> nexus_store::Result<()> {
        let kind = consumer_type(&lease.consumer);
        let now = took.at;
        match self.config.schedule.delay_after(lease.attempt) {
            Some(delay) => {
                let failure = took.failure(err.message.clone(), err.status);
                let delay = self
                    .config
                    .schedule
                    .with_retry_after(delay, err.retry_after);
                metrics::counter!(metric_names::RETRY_QUEUE_ADDITIONS_TOTAL, "type" => kind, "reason" => err.reason.as_str())
                    .increment(1);
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(delivery = lease.token.delivery, attempt = lease.attempt, error = %err.message, "attempt failed; retrying");
                self.queue
                    .retry_at(&lease.token, later(now, delay), failure)
                    .await
            }
            None => self.dead_letter(lease, err, took).await,
        }
    }

    /// Moves a delivery to the dead letters, first telling the target.
    async fn dead_letter(
        &self,
        lease: &Lease,
        mut err: AttemptError,
        took: Took,
    ) -> nexus_store::Result<()> {
        if let Err(e) = self.target.dead_lettering(lease, &err).await {
            tracing::error!(delivery = lease.token.delivery, error = %e.message, "the target could not take note of a dead letter");
            err.message = format!("{} (then, at dead-lettering: {})", err.message, e.message);
        }
        let kind = consumer_type(&lease.consumer);
        metrics::counter!(metric_names::DEAD_LETTER_QUEUE_ADDITIONS_TOTAL, "type" => kind)
            .increment(1);
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(delivery = lease.token.delivery, event_id = %lease.event.id, attempts = lease.attempt, error = %err.message, "delivery dead-lettered");
        let failure = took.failure(err.message, err.status);
        self.queue.dead_letter(&lease.token, failure).await
    }

    async fn gone(&self, lease: &Lease, err: AttemptError, took: Took) -> nexus_store::Result<()> {
        let Consumer::Subscription(id) = &lease.consumer else {
            return self.failed(lease, err, took).await;
        };
        let now = took.at;
        tracing::warn!(subscription = %id, "subscriber answered 410 Gone; subscription disabled");
        let disabled = self
            .queue
            .update_subscription(
                id,
                SubscriptionPatch {
                    enabled: Some(false),
                    ..Default::default()
                },
            )
            .await;
        if let Err(e) = disabled {
            // Still settle the attempt; the next one will meet the 410 again.
            tracing::error!(error = %e, subscription = %id, "cannot disable the subscription");
        }
        // Counted as an attempt; held (never dead-lettered) until the subscription is enabled.
        metrics::counter!(metric_names::RETRY_QUEUE_ADDITIONS_TOTAL, "type" => "webhook", "reason" => Reason::Gone.as_str())
            .increment(1);
        self.queue
            .retry_at(&lease.token, now, took.failure(err.message, err.status))
            .await
    }
}

/// When an attempt ended (by the worker's clock) and how long it took: what its settle keeps in
/// the delivery's history.
#[derive(Debug, Clone, Copy)]
struct Took {
    at: Timestamp,
    duration_ms: u64,
}

impl Took {
    fn failure(self, error: String, status: Option<u16>) -> Failure {
        Failure {
            error,
            status,
            at: self.at,
            duration_ms: self.duration_ms,
        }
    }
}
