//! Circuit breakers shared by instances on one PostgreSQL database (API.md section 13): two
//! store handles on one database stand for two instances, each with its own breakers.
//!
//! Like the other PostgreSQL tests these never skip: without a server they fail, naming the URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nexus_event::Timestamp;
use nexus_resilience::{
    BreakerConfig, BreakerState, Breakers, CallResult, Outcome, RetryWorker, SystemClock, Target,
    WorkerConfig,
};
use nexus_store::conformance::pg::TestDatabase;
use nexus_store::{BreakerLog, Lease, PgStore};

const TARGET: &str = "http://127.0.0.1:4000";

async fn open(db: &TestDatabase) -> PgStore {
    PgStore::open(db.url())
        .await
        .unwrap_or_else(|e| panic!("open a PostgreSQL store at {}: {e}", db.url()))
}

fn state(b: &Breakers) -> Option<BreakerState> {
    b.get(TARGET).map(|s| s.state)
}

/// A trip saved through one handle is open on the other after one sync, a reset there closes it
/// here after one sync, and neither takes its own save back as news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_and_a_reset_reach_the_other_instance_in_one_sync() {
    let db = TestDatabase::create("t").await;
    let (store_a, store_b) = (open(&db).await, open(&db).await);
    let config = BreakerConfig {
        failure_threshold: 1,
        ..Default::default()
    };
    let (a, b) = (Breakers::new(config), Breakers::new(config));
    let now = Timestamp::now();
    assert_eq!(
        a.record(TARGET, false, CallResult::Failure, now),
        Some(BreakerState::Open)
    );
    assert_eq!(a.persist(TARGET, &store_a).await.expect("save"), Some(1));
    assert!(b.sync(&store_b).await.expect("sync").is_empty());
    let seen = b.get(TARGET).expect("adopted");
    assert_eq!(
        (seen.state, seen.trips, seen.opened_at),
        (BreakerState::Open, 1, Some(now))
    );
    assert!(!b.would_admit(TARGET, now));

    assert!(b.reset(TARGET));
    assert_eq!(b.persist(TARGET, &store_b).await.expect("save"), Some(2));
    assert_eq!(
        a.sync(&store_a).await.expect("sync"),
        vec![TARGET.to_owned()],
        "closed by the reset elsewhere"
    );
    assert_eq!(state(&a), Some(BreakerState::Closed));
    assert!(a.sync(&store_a).await.expect("sync").is_empty());
    assert!(b.sync(&store_b).await.expect("sync").is_empty());
    let kept = store_a.breakers().await.expect("breakers");
    assert_eq!(
        kept.iter()
            .map(|r| (r.target.as_str(), r.open, r.generation))
            .collect::<Vec<_>>(),
        vec![(TARGET, false, 2)]
    );
}

/// Saves through two handles at once each get their own generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_saves_get_distinct_generations() {
    let db = TestDatabase::create("t").await;
    let (store_a, store_b) = (open(&db).await, open(&db).await);
    let record = Breakers::default();
    record.record(TARGET, false, CallResult::Success, Timestamp::now());
    let kept = record.record_of(TARGET).expect("known");
    let saves = (0..10).map(|i| {
        let store = if i % 2 == 0 { &store_a } else { &store_b };
        store.save_breaker(kept.clone())
    });
    let mut generations: Vec<u64> = futures_util::future::try_join_all(saves)
        .await
        .expect("saves");
    generations.sort_unstable();
    assert_eq!(generations, (1..=10).collect::<Vec<u64>>());
}

/// A target that always delivers.
struct Delivers;

#[async_trait]
impl Target for Delivers {
    async fn attempt(&self, _lease: &Lease) -> Outcome {
        Outcome::Delivered(Some(200))
    }
}

/// The contract's bound, end to end on real time: a trip saved by one instance holds on another
/// instance's running worker within the contract's 1 s (3 s allowed here, see `within`), and so
/// does a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_adopts_within_a_second() {
    let db = TestDatabase::create("t").await;
    let (store_a, store_b) = (open(&db).await, open(&db).await);
    let here = Arc::new(Breakers::default());
    let handle = RetryWorker::new(
        Arc::new(store_a) as _,
        Arc::new(Delivers) as _,
        Arc::new(SystemClock) as _,
        WorkerConfig::default(),
    )
    .expect("valid config")
    .breakers(Arc::clone(&here))
    .spawn();
    let elsewhere = Breakers::default();
    for _ in 0..5 {
        elsewhere.record(TARGET, false, CallResult::Failure, Timestamp::now());
    }
    // The contract's 1 s holds with the worker's 500 ms sync period; the test allows 3 s so a
    // loaded CI machine (a sync late, a slow PostgreSQL round trip) does not fail it.
    let within = |want: BreakerState| {
        let here = Arc::clone(&here);
        async move {
            let start = Instant::now();
            while state(&here) != Some(want) {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "not {} here within 3 s",
                    want.as_str()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    elsewhere.persist(TARGET, &store_b).await.expect("save");
    within(BreakerState::Open).await;
    assert!(elsewhere.reset(TARGET));
    elsewhere.persist(TARGET, &store_b).await.expect("save");
    within(BreakerState::Closed).await;
    handle.stop(Duration::from_secs(1)).await;
}
