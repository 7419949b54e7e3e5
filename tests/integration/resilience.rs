//! The retry worker over the SQLite store, driven by a manual clock: no test sleeps through a
//! retry schedule.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nexus_event::{NewEvent, Timestamp, WellKnown};
use nexus_resilience::{
    Activity, AttemptError, BreakerState, Breakers, Clock, ManualClock, Outcome, Reason,
    RetryWorker, Schedule, Target, WorkerConfig, WorkerStats,
};
use nexus_store::{
    BreakerLog, DeliveryQueue, EventLog, Lease, SqliteStore, SubscriptionPatch, Subscriptions,
};

const TARGET: &str = "http://127.0.0.1:4000";

/// The manual clocks' start: the wall clock when the first test asked, in whole seconds. Not a
/// fixed date: the store counts a lease as in flight only until its expiry by the wall clock, so
/// leases taken on the manual clocks must not look expired to it.
fn t0() -> Timestamp {
    static START: std::sync::OnceLock<Timestamp> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        let now = Timestamp::now().as_unix_millis();
        Timestamp::from_unix_millis(now - now % 1000).expect("in range")
    })
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(t0().as_unix_millis() + ms).expect("in range")
}

#[derive(Debug, Clone)]
struct Call {
    sequence: u64,
    attempt: u32,
    at: Timestamp,
}

type Plan = Box<dyn Fn(&Lease) -> Outcome + Send + Sync>;

/// A target that answers from a plan and records every call.
struct Fake {
    clock: Arc<ManualClock>,
    plan: Mutex<Plan>,
    calls: Mutex<Vec<Call>>,
    /// When set, attempts hang until released (for graceful stop).
    hang: AtomicBool,
    release: tokio::sync::Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Fake {
    fn new(clock: Arc<ManualClock>, plan: Plan) -> Arc<Self> {
        Arc::new(Fake {
            clock,
            plan: Mutex::new(plan),
            calls: Mutex::new(Vec::new()),
            hang: AtomicBool::new(false),
            release: tokio::sync::Notify::new(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    fn set_plan(&self, plan: Plan) {
        // A plan that panicked poisoned the lock; that is what it was for.
        *self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = plan;
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Target for Fake {
    async fn attempt(&self, lease: &Lease) -> Outcome {
        let n = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(n, Ordering::SeqCst);
        self.calls.lock().expect("lock").push(Call {
            sequence: lease.event.sequence,
            attempt: lease.attempt,
            at: self.clock.now(),
        });
        if self.hang.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        let outcome = (self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))(lease);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

fn fail(status: u16) -> Outcome {
    Outcome::Failed(AttemptError {
        reason: Reason::Status,
        message: format!("HTTP {status}"),
        status: Some(status),
        retry_after: None,
    })
}

/// Polls `cond` for up to 10 s of real time; the clock under test never moves by itself.
async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..2000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Waits until the worker sleeps with nothing in flight and nothing due at `clock`'s time: it has
/// seen the clock's last move and done what fell due. From then on only a later move of the
/// clock (to the due time it sleeps until) or new work wakes it, so "nothing happened" can be
/// asserted at once, without sleeping.
async fn settled(stats: &WorkerStats, clock: &ManualClock) {
    wait_for("the worker to settle", async || match stats.activity() {
        Activity::Idle => true,
        Activity::IdleUntil(due) => due > clock.now(),
        Activity::Busy | Activity::Stopped => false,
    })
    .await;
}

struct Fixture {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open"));
    nexus_store::conformance::subscribe_everything(&*store, &format!("{TARGET}/hook")).await;
    Fixture {
        store,
        clock: Arc::new(ManualClock::new(t0())),
        _dir: dir,
    }
}

async fn publish(store: &SqliteStore, n: usize) {
    let batch: Vec<NewEvent> = (0..n)
        .map(|_| NewEvent::new(WellKnown::MintRequested, "nexus").time(t0()))
        .collect();
    store.append(batch).await.expect("append");
}

fn config(owner: &str) -> WorkerConfig {
    WorkerConfig {
        owner: owner.into(),
        concurrency: 16,
        lease_for: Duration::from_secs(60),
        schedule: Schedule::default().without_jitter(),
        breaker_sync: Duration::from_millis(500),
    }
}

fn worker_on(
    store: &Arc<SqliteStore>,
    clock: &Arc<ManualClock>,
    target: &Arc<Fake>,
    owner: &str,
) -> RetryWorker {
    RetryWorker::new(
        Arc::clone(store) as _,
        Arc::clone(target) as _,
        Arc::clone(clock) as _,
        config(owner),
    )
    .expect("valid config")
}

fn worker(f: &Fixture, target: &Arc<Fake>, owner: &str) -> RetryWorker {
    worker_on(&f.store, &f.clock, target, owner)
}

/// Worker `w` with its own retry schedule.
fn worker_with(f: &Fixture, target: &Arc<Fake>, schedule: Schedule) -> RetryWorker {
    RetryWorker::new(
        Arc::clone(&f.store) as _,
        Arc::clone(target) as _,
        Arc::clone(&f.clock) as _,
        WorkerConfig {
            schedule,
            ..config("w")
        },
    )
    .expect("valid")
}

/// Publishes five events, which the failing target fails, and waits for its breaker to open.
async fn trip(f: &Fixture, breakers: &Breakers) {
    publish(&f.store, 5).await;
    wait_for("the breaker to open", async || {
        breakers.get(TARGET).map(|b| b.state) == Some(BreakerState::Open)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_the_exact_schedule_then_dead_letters_and_redrives() {
    let f = fixture().await;
    let target = Fake::new(Arc::clone(&f.clock), Box::new(|_| fail(500)));
    let handle = worker(&f, &target, "w").spawn();
    publish(&f.store, 1).await;
    let mut elapsed = 0;
    for (attempt, step_s) in [2, 4, 8, 16, 32].into_iter().enumerate() {
        let attempt = attempt + 1;
        wait_for("the attempt", async || target.calls().len() == attempt).await;
        let due = at(elapsed + step_s * 1000);
        wait_for("the retry to be scheduled", async || {
            f.store.next_due().await.expect("next_due") == Some(due)
        })
        .await;
        // One millisecond early: nothing happens. The worker sleeps until the due time.
        settled(handle.stats(), &f.clock).await;
        assert_eq!(handle.stats().activity(), Activity::IdleUntil(due));
        f.clock.set(at(elapsed + step_s * 1000 - 1));
        settled(handle.stats(), &f.clock).await;
        assert_eq!(target.calls().len(), attempt, "attempted before its time");
        elapsed += step_s * 1000;
        f.clock.set(at(elapsed));
    }
    wait_for("the dead letter", async || {
        f.store.stats().await.expect("stats").dead_letters == 1
    })
    .await;
    let calls = target.calls();
    assert_eq!(
        calls.iter().map(|c| c.at).collect::<Vec<_>>(),
        [0, 2_000, 6_000, 14_000, 30_000, 62_000].map(at),
        "attempts at exactly 0, +2, +4, +8, +16, +32 s"
    );
    assert_eq!(
        calls.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let dead = f.store.dead_letters(10, None).await.expect("list");
    let d = &dead.items[0];
    assert_eq!((d.attempts, d.last_status), (6, Some(500)));
    assert_eq!(d.last_error, "HTTP 500");
    assert_eq!(d.failed_at, at(62_000));
    assert_eq!(f.store.next_due().await.expect("next_due"), None);

    // The target recovers; an operator redrives: attempts start again from 1.
    target.set_plan(Box::new(|_| Outcome::Delivered(Some(200))));
    f.store
        .redrive(nexus_store::Selection::All, f.clock.now())
        .await
        .expect("redrive");
    // The failed sixth attempt was the half-open breaker's trial (it opened at +30 s), so the
    // breaker opened again at +62 s: the redriven delivery waits, parked, for the trial at +92 s.
    // Parked, it is not due by itself: the worker sleeps until the trial time to let it go.
    wait_for("the redriven delivery to be parked", async || {
        !f.store.parked_targets().await.expect("parked").is_empty()
    })
    .await;
    assert_eq!(f.store.next_due().await.expect("next_due"), None);
    settled(handle.stats(), &f.clock).await;
    assert_eq!(handle.stats().activity(), Activity::IdleUntil(at(92_000)));
    assert_eq!(target.calls().len(), 6);
    f.clock.set(at(92_000));
    wait_for("the redriven delivery", async || {
        let s = f.store.stats().await.expect("stats");
        s.pending + s.in_flight + s.dead_letters == 0
    })
    .await;
    assert_eq!(target.calls().last().map(|c| c.attempt), Some(1));
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_raises_the_next_delay_up_to_the_longest_step() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| {
            Outcome::Failed(AttemptError {
                reason: Reason::Status,
                message: "HTTP 429".into(),
                status: Some(429),
                retry_after: Some(Duration::from_secs(3600)),
            })
        }),
    );
    let handle = worker(&f, &target, "w").spawn();
    publish(&f.store, 1).await;
    wait_for("the retry", async || {
        f.store.next_due().await.expect("next_due") == Some(at(32_000))
    })
    .await;
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_parks_deliveries_without_burning_attempts() {
    let f = fixture().await;
    let target = Fake::new(Arc::clone(&f.clock), Box::new(|_| fail(503)));
    let breakers = Arc::new(Breakers::default());
    let handle = worker(&f, &target, "w")
        .breakers(Arc::clone(&breakers))
        .spawn();
    // Five failures open the breaker; three more deliveries are then parked without an attempt.
    trip(&f, &breakers).await;
    publish(&f.store, 3).await;
    wait_for("everything to settle", async || {
        let s = f.store.stats().await.expect("stats");
        s.in_flight == 0 && s.pending == 8
    })
    .await;
    let attempted = target.calls().len();
    assert_eq!(attempted, 5, "calls stop at the threshold");
    // Retries fall due at +2 s and on, but the breaker is open until +30 s: they are parked.
    for s in [2, 4, 10, 20, 29] {
        f.clock.set(at(s * 1000));
        settled(handle.stats(), &f.clock).await;
    }
    wait_for("nothing in flight", async || {
        f.store.stats().await.expect("stats").in_flight == 0
    })
    .await;
    assert_eq!(target.calls().len(), 5, "no attempt while open");
    assert_eq!(f.store.stats().await.expect("stats").dead_letters, 0);

    // At +30 s exactly one trial goes out while the others stay parked.
    target.set_plan(Box::new(|_| Outcome::Delivered(Some(200))));
    target.hang.store(true, Ordering::SeqCst);
    f.clock.set(at(30_000));
    wait_for("the trial", async || target.calls().len() == 6).await;
    wait_for("the others parked again", async || {
        f.store.stats().await.expect("stats").in_flight <= 1
    })
    .await;
    // The others are parked until the next trial time, which the clock has not reached: no
    // other attempt can start.
    assert_eq!(target.calls().len(), 6, "one trial at a time");
    assert_eq!(
        breakers.get(TARGET).map(|b| b.state),
        Some(BreakerState::HalfOpen)
    );
    // Two good trials close it and the rest are delivered.
    target.hang.store(false, Ordering::SeqCst);
    target.release.notify_waiters();
    wait_for("everything delivered", async || {
        let s = f.store.stats().await.expect("stats");
        s.pending + s.in_flight == 0
    })
    .await;
    assert_eq!(
        breakers.get(TARGET).map(|b| (b.state, b.trips)),
        Some((BreakerState::Closed, 1))
    );
    let calls = target.calls();
    assert_eq!(calls.len(), 13, "5 failures, then each of the 8 once");
    assert!(
        calls.iter().all(|c| c.attempt <= 2),
        "parking never consumed an attempt: {calls:?}"
    );
    let mut per_event: HashMap<u64, usize> = HashMap::new();
    for c in &calls[5..] {
        *per_event.entry(c.sequence).or_default() += 1;
    }
    assert_eq!(per_event.len(), 8);
    handle.stop(Duration::from_secs(1)).await;
}

/// Behind a target that stays down, deliveries are parked once each: no trial window leases
/// them all again (the soak of issue 18 grew a queue of 1.4 million that way). Each window lets
/// exactly one go, as the trial; when the target is back, all of them are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_stays_down_costs_one_park_per_delivery() {
    let f = fixture().await;
    let target = Fake::new(Arc::clone(&f.clock), Box::new(|_| fail(503)));
    let breakers = Arc::new(Breakers::default());
    // Retries after 1 s, twenty of them: each window's failed trial is parked again before the
    // next window, and nothing becomes a dead letter meanwhile.
    let schedule = Schedule::new(vec![Duration::from_secs(1); 20], 0.0).expect("valid");
    let handle = worker_with(&f, &target, schedule)
        .breakers(Arc::clone(&breakers))
        .spawn();
    trip(&f, &breakers).await;
    publish(&f.store, 200).await;
    wait_for("the 200 parked", async || {
        handle.stats().parked.load(Ordering::SeqCst) == 200
    })
    .await;
    settled(handle.stats(), &f.clock).await;
    assert_eq!(f.store.next_due().await.expect("next due"), Some(at(1_000)));
    let windows: i64 = 8;
    for k in 1..=windows {
        f.clock.set(at(30_000 * k));
        let calls = 5 + usize::try_from(k).expect("small");
        wait_for("the window's trial", async || target.calls().len() == calls).await;
        wait_for("the breaker to open again", async || {
            breakers.get(TARGET).map(|b| b.state) == Some(BreakerState::Open)
        })
        .await;
        // The failed trial's retry falls due and is parked in its turn.
        f.clock.set(at(30_000 * k + 1_000));
        wait_for("the trial's retry parked", async || {
            f.store.next_due().await.expect("next due").is_none()
        })
        .await;
        settled(handle.stats(), &f.clock).await;
        assert_eq!(target.calls().len(), calls, "one trial per window");
        assert_eq!(
            handle.stats().activity(),
            Activity::IdleUntil(at(30_000 * (k + 1))),
            "asleep until the next trial"
        );
    }
    // The 200, the five first failures (their retries were due at the first window), and each
    // window's failed trial: never the 200 again per window.
    let parks = handle.stats().parked.load(Ordering::SeqCst);
    assert_eq!(parks, 200 + 5 + u64::try_from(windows).expect("small"));
    assert_eq!(f.store.stats().await.expect("stats").dead_letters, 0);

    // Back: two trials close the breaker, then everything goes, each delivery once.
    target.set_plan(Box::new(|_| Outcome::Delivered(Some(200))));
    let failed = target.calls().len();
    f.clock.set(at(30_000 * (windows + 1)));
    wait_for("everything delivered", async || {
        let s = f.store.stats().await.expect("stats");
        s.pending + s.in_flight == 0
    })
    .await;
    assert_eq!(
        breakers.get(TARGET).map(|b| b.state),
        Some(BreakerState::Closed)
    );
    let mut per_event: HashMap<u64, usize> = HashMap::new();
    for c in &target.calls()[failed..] {
        *per_event.entry(c.sequence).or_default() += 1;
    }
    assert_eq!(per_event.len(), 205, "each delivered");
    assert!(per_event.values().all(|n| *n == 1), "once");
    assert!(f.store.parked_targets().await.expect("parked").is_empty());
    handle.stop(Duration::from_secs(1)).await;
}

/// Deliveries left parked with no open breaker to wait for (a breaker record lost, or closed
/// while the release failed) are found in the store when the worker starts, and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_parked_behind_no_open_breaker_go_at_start() {
    let f = fixture().await;
    publish(&f.store, 3).await;
    let leases = f
        .store
        .lease_due("gone", f.clock.now(), 10, Duration::from_secs(60))
        .await
        .expect("lease");
    assert_eq!(leases.len(), 3);
    for lease in &leases {
        f.store.park(&lease.token, at(30_000)).await.expect("park");
    }
    assert_eq!(f.store.next_due().await.expect("next due"), None);
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    let handle = worker(&f, &target, "w").spawn();
    wait_for("the parked deliveries delivered", async || {
        let s = f.store.stats().await.expect("stats");
        s.pending + s.in_flight == 0
    })
    .await;
    assert_eq!(target.calls().len(), 3);
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_deliver_the_same_lease_twice() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    let a = worker(&f, &target, "a").spawn();
    let b = worker(&f, &target, "b").spawn();
    publish(&f.store, 500).await;
    wait_for("all delivered", async || {
        let s = f.store.stats().await.expect("stats");
        s.pending + s.in_flight == 0
    })
    .await;
    let mut seqs: Vec<u64> = target.calls().iter().map(|c| c.sequence).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>(), "each exactly once");
    let (sa, sb) = (Arc::clone(a.stats()), Arc::clone(b.stats()));
    a.stop(Duration::from_secs(1)).await;
    b.stop(Duration::from_secs(1)).await;
    assert_eq!(
        sa.delivered.load(Ordering::SeqCst) + sb.delivered.load(Ordering::SeqCst),
        500
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_pending_retries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(t0()));
    {
        let store = Arc::new(SqliteStore::open(dir.path()).expect("open"));
        nexus_store::conformance::subscribe_everything(&*store, &format!("{TARGET}/hook")).await;
        let target = Fake::new(Arc::clone(&clock), Box::new(|_| fail(502)));
        let handle = worker_on(&store, &clock, &target, "before").spawn();
        publish(&store, 3).await;
        wait_for("three scheduled retries", async || {
            store.next_due().await.expect("next_due") == Some(at(2_000))
                && store.stats().await.expect("stats").in_flight == 0
        })
        .await;
        handle.stop(Duration::from_secs(1)).await;
    }
    let store = Arc::new(SqliteStore::open(dir.path()).expect("reopen"));
    let target = Fake::new(
        Arc::clone(&clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    let handle = worker_on(&store, &clock, &target, "after").spawn();
    settled(handle.stats(), &clock).await;
    assert_eq!(handle.stats().activity(), Activity::IdleUntil(at(2_000)));
    assert!(target.calls().is_empty(), "not due yet");
    clock.set(at(2_000));
    wait_for("the resumed retries", async || target.calls().len() == 3).await;
    assert!(target.calls().iter().all(|c| c.attempt == 2));
    wait_for("acked", async || {
        store.stats().await.expect("stats").pending == 0
    })
    .await;
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_releases_what_does_not_finish() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    target.hang.store(true, Ordering::SeqCst);
    let handle = worker(&f, &target, "w").spawn();
    publish(&f.store, 3).await;
    wait_for("three attempts in flight", async || {
        target.calls().len() == 3
    })
    .await;
    let report = handle.stop(Duration::from_millis(100)).await;
    assert_eq!((report.finished, report.released), (0, 3));
    // Released, not failed: due now again, with no attempt counted.
    let again = f
        .store
        .lease_due("next", f.clock.now(), 10, Duration::from_secs(5))
        .await
        .expect("lease");
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|l| l.attempt == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_sleeps_until_the_next_due_time() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    // Ten deliveries due in an hour.
    let later: Vec<NewEvent> = (0..10)
        .map(|_| NewEvent::new(WellKnown::MintRequested, "nexus").time(at(3_600_000)))
        .collect();
    f.store.append(later).await.expect("append");
    let handle = worker(&f, &target, "w").spawn();
    settled(handle.stats(), &f.clock).await;
    assert_eq!(
        handle.stats().activity(),
        Activity::IdleUntil(at(3_600_000))
    );
    let woken = handle.stats().wakeups.load(Ordering::SeqCst);
    assert!(woken <= 2, "{woken} wake-ups at start");
    // The clock moves but not to the due time: no wake-up.
    for m in [1, 10, 30, 59] {
        f.clock.set(at(m * 60_000));
        settled(handle.stats(), &f.clock).await;
    }
    assert_eq!(handle.stats().wakeups.load(Ordering::SeqCst), woken);
    assert!(target.calls().is_empty());
    f.clock.set(at(3_600_000));
    wait_for("delivery at the due time", async || {
        target.calls().len() == 10
    })
    .await;
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_subscription_and_holds_its_deliveries() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| {
            Outcome::Gone(AttemptError {
                reason: Reason::Gone,
                message: "HTTP 410".into(),
                status: Some(410),
                retry_after: None,
            })
        }),
    );
    let handle = worker(&f, &target, "w").spawn();
    publish(&f.store, 1).await;
    let sub = f
        .store
        .subscriptions(10, None)
        .await
        .expect("list")
        .items
        .remove(0);
    wait_for("the subscription to be disabled", async || {
        !f.store
            .subscription(&sub.id)
            .await
            .expect("get")
            .expect("exists")
            .enabled
    })
    .await;
    publish(&f.store, 1).await;
    // Time passes well beyond the whole schedule: held deliveries are never dead-lettered.
    f.clock.set(at(3_600_000));
    // Waited for rather than read once the worker settles: the second publish's commit wakes
    // it, and a settle seen before that wake-up was read as the worker going busy again.
    wait_for("the worker idle with nothing due", async || {
        handle.stats().activity() == Activity::Idle
    })
    .await;
    assert_eq!(
        f.store.next_due().await.expect("next due"),
        None,
        "held deliveries are never due"
    );
    let s = f.store.stats().await.expect("stats");
    assert_eq!((s.pending, s.dead_letters), (2, 0));
    assert_eq!(target.calls().len(), 1);

    target.set_plan(Box::new(|_| Outcome::Delivered(Some(200))));
    f.store
        .update_subscription(
            &sub.id,
            SubscriptionPatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("enable");
    wait_for("both delivered", async || {
        let s = f.store.stats().await.expect("stats");
        s.pending + s.in_flight == 0
    })
    .await;
    let calls = target.calls();
    assert_eq!(calls.len(), 3);
    let first_again = calls[1..]
        .iter()
        .find(|c| c.sequence == 1)
        .expect("redelivered");
    assert_eq!(first_again.attempt, 2, "the 410 counted as an attempt");
    handle.stop(Duration::from_secs(1)).await;
}

#[test]
fn the_worker_and_breakers_report_through_the_metrics_facade() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use nexus_resilience::{BreakerConfig, MetricsInstrument, record_queue_gauges};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        // One thread, so every task of the worker reports to this recorder.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let f = fixture().await;
            let target = Fake::new(Arc::clone(&f.clock), Box::new(|_| fail(503)));
            let breakers = Arc::new(Breakers::with_instrument(
                BreakerConfig {
                    failure_threshold: 1,
                    ..Default::default()
                },
                Arc::new(MetricsInstrument),
            ));
            let schedule = Schedule::new(vec![Duration::from_secs(1)], 0.0).expect("valid");
            let handle = worker_with(&f, &target, schedule)
                .breakers(breakers)
                .spawn();
            publish(&f.store, 1).await;
            wait_for("the retry", async || {
                f.store.next_due().await.expect("next_due") == Some(at(1_000))
            })
            .await;
            // The breaker opened at the first failure: the retry waits for the trial at +30 s.
            f.clock.set(at(1_000));
            wait_for("the parked retry", async || {
                !f.store.parked_targets().await.expect("parked").is_empty()
            })
            .await;
            settled(handle.stats(), &f.clock).await;
            assert_eq!(handle.stats().activity(), Activity::IdleUntil(at(30_000)));
            f.clock.set(at(30_000));
            wait_for("the dead letter", async || {
                f.store.stats().await.expect("stats").dead_letters == 1
            })
            .await;
            record_queue_gauges(&f.store.stats().await.expect("stats"));
            handle.stop(Duration::from_secs(1)).await;
        });
    });
    let metrics: HashMap<String, DebugValue> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let k = key.key();
            let mut labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", k.name(), labels.join(",")), value)
        })
        .collect();
    let counter = |name: &str| match metrics.get(name) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!(
            "{name}: {other:?} in {:?}",
            metrics.keys().collect::<Vec<_>>()
        ),
    };
    let gauge = |name: &str| match metrics.get(name) {
        Some(DebugValue::Gauge(g)) => g.into_inner(),
        other => panic!(
            "{name}: {other:?} in {:?}",
            metrics.keys().collect::<Vec<_>>()
        ),
    };
    assert_eq!(
        counter("nexus_retry_queue_additions_total{reason=status,type=webhook}"),
        1
    );
    assert_eq!(
        counter("nexus_dead_letter_queue_additions_total{type=webhook}"),
        1
    );
    assert_eq!(
        counter(&format!(
            "nexus_circuit_breaker_trips_total{{target={TARGET}}}"
        )),
        2,
        "opened at the first failure, again at the failed trial"
    );
    assert_eq!(
        gauge(&format!("nexus_circuit_breaker_state{{target={TARGET}}}")),
        2.0,
        "open"
    );
    assert_eq!(gauge("nexus_dead_letter_queue_size{}"), 1.0);
    assert_eq!(gauge("nexus_retry_queue_size{}"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_stays_open_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(t0()));
    {
        let store = Arc::new(SqliteStore::open(dir.path()).expect("open"));
        nexus_store::conformance::subscribe_everything(&*store, &format!("{TARGET}/hook")).await;
        let target = Fake::new(Arc::clone(&clock), Box::new(|_| fail(503)));
        let breakers = Arc::new(Breakers::default());
        let handle = worker_on(&store, &clock, &target, "before")
            .breakers(Arc::clone(&breakers))
            .spawn();
        publish(&store, 5).await;
        wait_for("the breaker to open and be kept", async || {
            store
                .breakers()
                .await
                .expect("breakers")
                .iter()
                .any(|b| b.target == TARGET && b.open)
        })
        .await;
        handle.stop(Duration::from_secs(1)).await;
    }
    let store = Arc::new(SqliteStore::open(dir.path()).expect("reopen"));
    let target = Fake::new(
        Arc::clone(&clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    let breakers = Arc::new(Breakers::default());
    let handle = worker_on(&store, &clock, &target, "after")
        .breakers(Arc::clone(&breakers))
        .spawn();
    wait_for("the kept state", async || {
        breakers.get(TARGET).map(|b| b.state) == Some(BreakerState::Open)
    })
    .await;
    // The retries fall due at +2 s, but the breaker opened at t0 stays open until +30 s.
    clock.set(at(2_000));
    settled(handle.stats(), &clock).await;
    clock.set(at(29_999));
    settled(handle.stats(), &clock).await;
    assert!(
        target.calls().is_empty(),
        "no call to a target that was down"
    );
    clock.set(at(30_000));
    wait_for("trials, then everything", async || {
        store.stats().await.expect("stats").pending == 0 && target.calls().len() == 5
    })
    .await;
    handle.stop(Duration::from_secs(1)).await;
}

/// Another instance on the same store (here a second set of breakers saving to it) resets a
/// breaker this worker opened: at its next sync, every 500 ms by its clock, the worker closes it
/// too and lets the deliveries it parked go at once; a trip there parks deliveries here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakers_saved_by_another_instance_are_adopted_at_the_next_sync() {
    let f = fixture().await;
    let target = Fake::new(Arc::clone(&f.clock), Box::new(|_| fail(503)));
    let breakers = Arc::new(Breakers::default());
    let handle = worker(&f, &target, "here")
        .breakers(Arc::clone(&breakers))
        .spawn();
    publish(&f.store, 5).await;
    wait_for("the breaker to open and be saved", async || {
        f.store
            .breakers()
            .await
            .expect("breakers")
            .iter()
            .any(|b| b.target == TARGET && b.open)
    })
    .await;
    publish(&f.store, 3).await;
    wait_for("three parked", async || {
        let s = f.store.stats().await.expect("stats");
        s.in_flight == 0 && s.pending == 8
    })
    .await;
    assert_eq!(target.calls().len(), 5);

    let elsewhere = Breakers::default();
    elsewhere.sync(&*f.store).await.expect("sync elsewhere");
    assert_eq!(
        elsewhere.get(TARGET).map(|b| b.state),
        Some(BreakerState::Open)
    );
    assert!(elsewhere.reset(TARGET));
    elsewhere
        .persist(TARGET, &*f.store)
        .await
        .expect("save the reset");
    target.set_plan(Box::new(|_| Outcome::Delivered(Some(200))));
    // Not yet synced: still open here.
    f.clock.set(at(499));
    settled(handle.stats(), &f.clock).await;
    assert_eq!(
        breakers.get(TARGET).map(|b| b.state),
        Some(BreakerState::Open)
    );
    // The sync closes it and the three parked until +30 s go now, well before the retries of
    // the other five fall due at +2 s.
    f.clock.set(at(500));
    wait_for("the parked deliveries", async || target.calls().len() == 8).await;
    assert_eq!(
        breakers.get(TARGET).map(|b| (b.state, b.trips)),
        Some((BreakerState::Closed, 1))
    );
    wait_for("them settled", async || {
        f.store.stats().await.expect("stats").pending == 5
    })
    .await;

    // A trip elsewhere holds here after the next sync: a new delivery is parked, not attempted.
    for _ in 0..5 {
        elsewhere.record(
            TARGET,
            false,
            nexus_resilience::CallResult::Failure,
            at(600),
        );
    }
    elsewhere
        .persist(TARGET, &*f.store)
        .await
        .expect("save the trip");
    f.clock.set(at(1_000));
    wait_for("the trip adopted", async || {
        breakers.get(TARGET).map(|b| b.state) == Some(BreakerState::Open)
    })
    .await;
    assert_eq!(
        breakers.get(TARGET).map(|b| (b.trips, b.next_trial_at)),
        Some((2, Some(at(30_600))))
    );
    publish(&f.store, 1).await;
    wait_for("the new one parked", async || {
        let s = f.store.stats().await.expect("stats");
        s.in_flight == 0 && s.pending == 6
    })
    .await;
    settled(handle.stats(), &f.clock).await;
    assert_eq!(
        target.calls().len(),
        8,
        "no attempt behind a breaker open elsewhere"
    );
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_target_counts_as_a_failed_attempt() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| panic!("a bug in the target")),
    );
    let handle = worker(&f, &target, "w").spawn();
    publish(&f.store, 1).await;
    wait_for("the retry", async || {
        f.store.next_due().await.expect("next_due") == Some(at(2_000))
    })
    .await;
    target.set_plan(Box::new(|_| Outcome::Delivered(Some(200))));
    f.clock.set(at(2_000));
    wait_for("the second attempt", async || {
        f.store.stats().await.expect("stats").pending == 0 && target.calls().len() == 2
    })
    .await;
    assert_eq!(target.calls()[1].attempt, 2);
    handle.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_worker() {
    let f = fixture().await;
    let target = Fake::new(
        Arc::clone(&f.clock),
        Box::new(|_| Outcome::Delivered(Some(200))),
    );
    let handle = worker(&f, &target, "w").spawn();
    let stats = Arc::clone(handle.stats());
    settled(&stats, &f.clock).await;
    drop(handle);
    wait_for("the worker to stop", async || {
        stats.activity() == Activity::Stopped
    })
    .await;
    let after_drop = stats.wakeups.load(Ordering::SeqCst);
    publish(&f.store, 1).await;
    assert_eq!(
        stats.wakeups.load(Ordering::SeqCst),
        after_drop,
        "no spinning, no leasing"
    );
    assert!(target.calls().is_empty());
}
