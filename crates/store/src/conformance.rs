//! The conformance suite: the contract of the storage traits as one generic set of checks that
//! every backend must pass. A backend is done when all of them are green for it.
//!
//! Run it with [`conformance_tests!`](crate::conformance_tests), giving an async factory that
//! returns a fresh, empty store and a guard that keeps whatever backs it alive:
//!
//! ```ignore
//! async fn fresh() -> (nexus_store::SqliteStore, tempfile::TempDir) {
//!     let dir = tempfile::tempdir().unwrap();
//!     (nexus_store::SqliteStore::open(dir.path()).unwrap(), dir)
//! }
//! nexus_store::conformance_tests!(fresh);
//! ```
//!
//! A backend whose data outlives the handle also passes the restart checks: give a second
//! function that opens the store again from the guard, `conformance_tests!(fresh, reopen =
//! reopen)` with `async fn reopen(dir: &tempfile::TempDir) -> SqliteStore`.
//!
//! Every check uses explicit times, so none sleeps.

#[cfg(feature = "postgres")]
pub mod pg;

use std::time::Duration;

use nexus_event::{EventId, NewEvent, Pattern, Timestamp, TypeFilter, WellKnown, When};
use serde_json::json;

use crate::{
    AttemptRecord, BreakerRecord, Consumer, DeliveryQuery, DeliveryStatus, EventTypePut, Failure,
    Lease, NewSubscription, ReadOrder, ReplayTo, Selection, Store, StoreError, SubscriptionPatch,
    SubscriptionStats, Success, TypeOrigin,
};

/// Generates one `#[tokio::test]` per conformance check, each on a fresh store from `$factory`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            sequences_are_gap_free_and_ordered,
            repeats_are_idempotent,
            same_id_from_another_source_conflicts,
            id_twice_in_a_batch_refuses_the_batch,
            read_filters_by_type_and_pages,
            read_range_pages_both_ways,
            outbox_enqueues_deliveries_with_the_event,
            leases_are_fenced_and_expire,
            retries_then_dead_letters,
            release_does_not_count_an_attempt,
            parked_deliveries_wait_for_their_breaker,
            parked_deliveries_are_listed_by_target_and_never_due,
            redrive_resets_attempts,
            purge_deletes_dead_letters,
            dead_letters_page_newest_first,
            stats_count_the_queue,
            disabled_subscriptions_hold_deliveries,
            subscriptions_crud,
            cursors_persist,
            changes_wake_workers,
            stale_tokens_never_settle_another_delivery,
            expired_leases_of_disabled_subscriptions_are_held,
            redrive_skips_deleted_subscriptions,
            first_refused_position_wins,
            changes_apply_to_appends_committed_with_them,
            breakers_persist,
            last_attempts_of_disabled_subscriptions_are_held,
            replay_enqueues_a_range_again,
            ordered_subscriptions_go_one_at_a_time_in_sequence,
            expired_leases_keep_their_attempt_count,
            expired_leases_are_pending_not_in_flight,
            unknown_dead_letter_ids_are_skipped,
            instances_list_the_process_that_opened_the_store,
            filters_choose_deliveries_at_append,
            replay_to_a_filtered_subscription_applies_its_filter,
            event_types_crud,
            config_declared_types_refuse_the_api,
            event_type_changes_move_the_watch,
            history_keeps_every_attempt,
            subscription_deliveries_page_newest_first,
            subscription_stats_count_the_window,
            history_is_pruned_after_retention,
            thousands_of_globs_shape_no_query,
        );
    };
    // With a way to close the store and open it again on the same data: the restart checks.
    ($factory:path, reopen = $reopen:path) => {
        $crate::conformance_tests!($factory);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn leases_are_released_at_reopen() {
            let (store, guard) = $factory().await;
            $crate::conformance::leases_are_released_at_reopen(store, &guard, $reopen).await;
        }
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $factory().await;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

/// A fixed start time, so due times are exact.
pub fn t0() -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000).expect("2026-01-01 is in range")
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(t0().as_unix_millis() + ms).expect("in range")
}

fn ev(t: WellKnown, source: &str, id: &str) -> NewEvent {
    NewEvent::new(t, source)
        .id(EventId::new(id).expect("test ids are valid"))
        .time(t0())
        .payload(json!({ "id": id }))
}

fn failure(error: &str, status: Option<u16>, ms: i64) -> Failure {
    Failure {
        error: error.into(),
        status,
        at: at(ms),
        duration_ms: 0,
    }
}

/// An attempt that succeeded with `200`, ending `ms` after [`t0`].
fn success(ms: i64) -> Success {
    Success {
        status: Some(200),
        at: at(ms),
        duration_ms: 0,
    }
}

/// Creates a subscription to every type at `url` with a fixed secret; returns its id. For tests
/// and benches that need deliveries enqueued.
pub async fn subscribe_everything<S: crate::Subscriptions + ?Sized>(
    store: &S,
    url: &str,
) -> String {
    store
        .create_subscription(NewSubscription {
            url: url.into(),
            events: vec![Pattern::new("*").expect("valid")],
            secret: "s".into(),
            ordered: false,
            filter: None,
        })
        .await
        .expect("create subscription")
        .id
}

async fn subscribe<S: Store>(store: &S, globs: &[&str]) -> String {
    store
        .create_subscription(NewSubscription {
            url: "http://127.0.0.1:4000/hook".into(),
            events: globs
                .iter()
                .map(|g| Pattern::new(g).expect("valid"))
                .collect(),
            secret: "s3cret".into(),
            ordered: false,
            filter: None,
        })
        .await
        .expect("create subscription")
        .id
}

async fn lease<S: Store>(store: &S, owner: &str, now_ms: i64) -> Vec<Lease> {
    store
        .lease_due(owner, at(now_ms), 100, Duration::from_secs(10))
        .await
        .expect("lease_due")
}

/// Sequences start at 1, have no gaps, follow commit order; `get` and `head` agree.
pub async fn sequences_are_gap_free_and_ordered<S: Store>(store: &S) {
    assert_eq!(store.head().await.expect("head"), 0);
    for i in 0..3 {
        let a = store
            .append(vec![ev(
                WellKnown::PaymentReceived,
                "flowpay",
                &format!("s{i}"),
            )])
            .await
            .expect("append");
        assert_eq!(a[0].sequence, i + 1);
        assert!(!a[0].duplicate);
    }
    let batch: Vec<NewEvent> = (0..5)
        .map(|i| ev(WellKnown::MintConfirmed, "factory", &format!("b{i}")))
        .collect();
    let a = store.append(batch).await.expect("append batch");
    assert_eq!(
        a.iter().map(|x| x.sequence).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    assert_eq!(a[2].id, "b2");
    assert_eq!(store.head().await.expect("head"), 8);
    let all = store.read(0, 100, &TypeFilter::all()).await.expect("read");
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let got = store
        .get(&EventId::new("b1").expect("valid"))
        .await
        .expect("get")
        .expect("b1 exists");
    assert_eq!(got.sequence, 5);
    assert_eq!(got.source, "factory");
    assert_eq!(got.time, t0());
    assert_eq!(got.payload, json!({"id": "b1"}));
    assert!(
        store
            .get(&EventId::new("nope").expect("valid"))
            .await
            .expect("get")
            .is_none()
    );
}

/// A repeated id from the same source answers the first sequence, writes nothing and enqueues
/// nothing again.
pub async fn repeats_are_idempotent<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    let first = store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p1")])
        .await
        .expect("append");
    let again = store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p1")])
        .await
        .expect("append repeat");
    assert_eq!(again[0].sequence, first[0].sequence);
    assert!(again[0].duplicate);
    let mixed = store
        .append(vec![
            ev(WellKnown::PaymentReceived, "flowpay", "p1"),
            ev(WellKnown::PaymentReceived, "flowpay", "p2"),
        ])
        .await
        .expect("append mixed");
    assert_eq!(
        mixed
            .iter()
            .map(|a| (a.sequence, a.duplicate))
            .collect::<Vec<_>>(),
        vec![(1, true), (2, false)]
    );
    assert_eq!(store.head().await.expect("head"), 2);
    let leased = lease(store, "w", 0).await;
    assert_eq!(
        leased.iter().map(|l| l.event.sequence).collect::<Vec<_>>(),
        vec![1, 2],
        "one delivery per stored event, none for the repeats"
    );
}

/// The same id from another source refuses the whole batch; nothing of it is stored.
pub async fn same_id_from_another_source_conflicts<S: Store>(store: &S) {
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "x")])
        .await
        .expect("append");
    let err = store
        .append(vec![
            ev(WellKnown::MintConfirmed, "factory", "fresh"),
            ev(WellKnown::MintConfirmed, "factory", "x"),
        ])
        .await
        .expect_err("conflict");
    assert!(
        matches!(&err, StoreError::Conflict { index: 1, id } if id == "x"),
        "{err:?}"
    );
    assert_eq!(store.head().await.expect("head"), 1);
    assert!(
        store
            .get(&EventId::new("fresh").expect("valid"))
            .await
            .expect("get")
            .is_none()
    );
    let next = store
        .append(vec![ev(WellKnown::MintConfirmed, "factory", "fresh")])
        .await
        .expect("append after a refused batch");
    assert_eq!(next[0].sequence, 2, "a refused batch leaves no gap");
}

/// An id twice in one batch refuses it, naming the second position.
pub async fn id_twice_in_a_batch_refuses_the_batch<S: Store>(store: &S) {
    let err = store
        .append(vec![
            ev(WellKnown::PaymentReceived, "flowpay", "a"),
            ev(WellKnown::PaymentReceived, "flowpay", "b"),
            ev(WellKnown::PaymentReceived, "flowpay", "a"),
        ])
        .await
        .expect_err("duplicate in batch");
    assert!(
        matches!(&err, StoreError::DuplicateInBatch { index: 2, id } if id == "a"),
        "{err:?}"
    );
    assert_eq!(store.head().await.expect("head"), 0);
}

/// `read` filters by type globs, pages by `after` and `limit`, and keeps sequence order.
pub async fn read_filters_by_type_and_pages<S: Store>(store: &S) {
    let types = [
        WellKnown::PaymentReceived,
        WellKnown::MintRequested,
        WellKnown::MintConfirmed,
        WellKnown::NotificationSent,
    ];
    let batch: Vec<NewEvent> = (0..12)
        .map(|i| ev(types[i % 4], "n", &format!("e{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let mints = store
        .read(0, 100, &TypeFilter::parse(["MINT_*"]).expect("valid"))
        .await
        .expect("read");
    assert_eq!(
        mints.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![2, 3, 6, 7, 10, 11]
    );
    let two = store
        .read(
            3,
            2,
            &TypeFilter::parse(["*_SENT", "PAYMENT_RECEIVED"]).expect("valid"),
        )
        .await
        .expect("read");
    assert_eq!(
        two.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![4, 5]
    );
    assert!(
        store
            .read(12, 10, &TypeFilter::all())
            .await
            .expect("read")
            .is_empty()
    );
}

/// `read_range` keeps `after < sequence <= until`, walks newest first or oldest first, filters
/// by type, and pages backwards from the head with the last sequence of each page.
pub async fn read_range_pages_both_ways<S: Store>(store: &S) {
    let types = [
        WellKnown::PaymentReceived,
        WellKnown::MintRequested,
        WellKnown::MintConfirmed,
        WellKnown::NotificationSent,
    ];
    let batch: Vec<NewEvent> = (0..12)
        .map(|i| ev(types[i % 4], "n", &format!("r{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let seqs =
        |events: Vec<nexus_event::Event>| events.iter().map(|e| e.sequence).collect::<Vec<_>>();
    let all = TypeFilter::all();
    let newest = store
        .read_range(0, u64::MAX, ReadOrder::Descending, 5, &all)
        .await
        .expect("read newest");
    assert_eq!(
        seqs(newest),
        vec![12, 11, 10, 9, 8],
        "newest first from the head"
    );

    // Paging backwards: each page ends below the last sequence of the one before.
    let mut pages = Vec::new();
    let mut until = u64::MAX;
    loop {
        let page = store
            .read_range(0, until, ReadOrder::Descending, 5, &all)
            .await
            .expect("read page");
        let Some(last) = page.last().map(|e| e.sequence) else {
            break;
        };
        pages.push(seqs(page));
        until = last - 1;
    }
    assert_eq!(
        pages,
        vec![vec![12, 11, 10, 9, 8], vec![7, 6, 5, 4, 3], vec![2, 1]],
        "every event once, newest first"
    );

    let mints = TypeFilter::parse(["MINT_*"]).expect("valid");
    assert_eq!(
        seqs(
            store
                .read_range(2, 10, ReadOrder::Descending, 100, &mints)
                .await
                .expect("filtered")
        ),
        vec![10, 7, 6, 3],
        "after is exclusive, until inclusive, the filter applies"
    );
    assert_eq!(
        seqs(
            store
                .read_range(2, 10, ReadOrder::Ascending, 3, &mints)
                .await
                .expect("ascending")
        ),
        vec![3, 6, 7],
        "oldest first within the same bounds"
    );
    assert_eq!(
        seqs(
            store
                .read_range(9, 11, ReadOrder::Ascending, 100, &all)
                .await
                .expect("bounded")
        ),
        vec![10, 11],
        "until stops an ascending read"
    );
    assert_eq!(
        seqs(
            store
                .read_range(0, 100, ReadOrder::Descending, 2, &all)
                .await
                .expect("past the head")
        ),
        vec![12, 11],
        "an until past the head starts at the head"
    );
    for (after, until) in [(5, 5), (6, 5), (12, 100)] {
        for order in [ReadOrder::Ascending, ReadOrder::Descending] {
            assert!(
                store
                    .read_range(after, until, order, 10, &all)
                    .await
                    .expect("empty range")
                    .is_empty(),
                "({after}, {until}] {order:?} is empty"
            );
        }
    }
    assert!(
        store
            .read_range(0, 12, ReadOrder::Descending, 0, &all)
            .await
            .expect("limit 0")
            .is_empty()
    );
}

/// An appended event's deliveries exist as soon as the append is answered, one per consumer.
pub async fn outbox_enqueues_deliveries_with_the_event<S: Store>(store: &S) {
    let payments = subscribe(store, &["PAYMENT_*"]).await;
    let everything = subscribe(store, &["*"]).await;
    store
        .append(vec![
            ev(WellKnown::PaymentReceived, "flowpay", "p"),
            ev(WellKnown::MintConfirmed, "factory", "m"),
        ])
        .await
        .expect("append");
    let mut got: Vec<(u64, Consumer)> = lease(store, "w", 0)
        .await
        .into_iter()
        .map(|l| (l.event.sequence, l.consumer))
        .collect();
    got.sort();
    let mut want = vec![
        (1, Consumer::Subscription(payments.clone())),
        (1, Consumer::Subscription(everything.clone())),
        (2, Consumer::Subscription(everything)),
    ];
    want.sort();
    assert_eq!(got, want);
}

/// Only the current lease holder can settle; an expired lease is taken by the next worker.
pub async fn leases_are_fenced_and_expire<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p")])
        .await
        .expect("append");
    let a = lease(store, "worker-a", 0).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].attempt, 1);
    assert_eq!(a[0].target, "http://127.0.0.1:4000");
    assert_eq!(a[0].expires_at, at(10_000));
    assert!(
        lease(store, "worker-b", 9_999).await.is_empty(),
        "still leased"
    );
    let b = lease(store, "worker-b", 10_000).await;
    assert_eq!(b.len(), 1, "expired lease is picked up again");
    assert_eq!(b[0].attempt, 1, "an expired lease burns no attempt");
    assert_ne!(a[0].token, b[0].token);
    let lost = store
        .ack(&a[0].token, success(0))
        .await
        .expect_err("a lost its lease");
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost:?}");
    assert!(
        store
            .retry_at(&a[0].token, at(1), failure("x", None, 1))
            .await
            .is_err()
    );
    assert!(
        store
            .dead_letter(&a[0].token, failure("x", None, 1))
            .await
            .is_err()
    );
    assert!(store.release(&a[0].token, at(1)).await.is_err());
    store
        .ack(&b[0].token, success(0))
        .await
        .expect("b holds the lease");
    assert!(matches!(
        store.ack(&b[0].token, success(0)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(lease(store, "worker-c", 100_000).await.is_empty());
    assert_eq!(store.next_due().await.expect("next_due"), None);
}

/// A failed attempt is counted and due again at the given time; the last one becomes a dead
/// letter with its error, status, attempts and times.
pub async fn retries_then_dead_letters<S: Store>(store: &S) {
    let sub = subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::MintRequested, "nexus", "m")])
        .await
        .expect("append");
    let l = lease(store, "w", 0).await;
    store
        .retry_at(
            &l[0].token,
            at(2_000),
            failure("connection refused", None, 100),
        )
        .await
        .expect("retry_at");
    assert_eq!(store.next_due().await.expect("next_due"), Some(at(2_000)));
    assert!(lease(store, "w", 1_999).await.is_empty());
    let l = lease(store, "w", 2_000).await;
    assert_eq!(l[0].attempt, 2);
    store
        .dead_letter(&l[0].token, failure("HTTP 500", Some(500), 2_100))
        .await
        .expect("dead_letter");
    assert!(lease(store, "w", 1_000_000).await.is_empty());
    let page = store.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(page.items.len(), 1);
    let d = &page.items[0];
    assert_eq!(d.event_id, "m");
    assert_eq!(d.event_type, WellKnown::MintRequested);
    assert_eq!(d.event_sequence, 1);
    assert_eq!(d.consumer, Consumer::Subscription(sub));
    assert_eq!(d.attempts, 2);
    assert_eq!(d.last_error, "HTTP 500");
    assert_eq!(d.last_status, Some(500));
    assert_eq!(d.created_at, t0());
    assert_eq!(d.first_attempt_at, Some(at(100)));
    assert_eq!(d.failed_at, at(2_100));
    assert_eq!(d.payload, json!({"id": "m"}));
    assert_eq!(page.next_cursor, None);
}

/// Releasing gives a delivery back without counting an attempt.
pub async fn release_does_not_count_an_attempt<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p")])
        .await
        .expect("append");
    let l = lease(store, "w", 0).await;
    store
        .release(&l[0].token, at(30_000))
        .await
        .expect("release");
    assert!(lease(store, "w", 29_999).await.is_empty());
    let l = lease(store, "w", 30_000).await;
    assert_eq!(l[0].attempt, 1, "released, not attempted");
}

/// Parked deliveries wait without counting an attempt until their time or until their target is
/// unparked; other targets are untouched.
pub async fn parked_deliveries_wait_for_their_breaker<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    let batch: Vec<NewEvent> = (0..3)
        .map(|i| ev(WellKnown::PaymentReceived, "flowpay", &format!("p{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let l = lease(store, "w", 0).await;
    assert_eq!(l.len(), 3);
    for lease in &l[..2] {
        store.park(&lease.token, at(30_000)).await.expect("park");
    }
    store
        .retry_at(&l[2].token, at(20_000), failure("e", None, 1))
        .await
        .expect("retry");
    assert!(lease(store, "w", 5_000).await.is_empty());
    assert_eq!(store.stats().await.expect("stats").pending, 3);
    assert_eq!(
        store
            .unpark("http://other.example:80", at(5_000))
            .await
            .expect("unpark"),
        0
    );
    assert_eq!(
        store
            .unpark("http://127.0.0.1:4000", at(5_000))
            .await
            .expect("unpark"),
        2,
        "only parked deliveries move, not the one waiting for its retry"
    );
    let again = lease(store, "w", 5_000).await;
    assert_eq!(again.len(), 2);
    assert!(
        again.iter().all(|l| l.attempt == 1),
        "parking costs no attempt"
    );
    // Parked without unparking: never leased, whatever the time, and not due either.
    for lease in &again {
        store.park(&lease.token, at(30_000)).await.expect("park");
    }
    assert_eq!(
        store.next_due().await.expect("next due"),
        Some(at(20_000)),
        "only the retry is due"
    );
    let late = lease(store, "w", 1_000_000).await;
    assert_eq!(
        late.iter().map(|l| l.token.delivery).collect::<Vec<_>>(),
        vec![l[2].token.delivery],
        "only the retry is leased"
    );
    assert_eq!(
        store.parked_targets().await.expect("parked targets"),
        vec!["http://127.0.0.1:4000".to_owned()]
    );
    // One at a time for the breaker's trials, the oldest first.
    assert!(
        !store
            .unpark_one("http://other.example:80", at(40_000))
            .await
            .expect("unpark one")
    );
    assert!(
        store
            .unpark_one("http://127.0.0.1:4000", at(40_000))
            .await
            .expect("unpark one")
    );
    let oldest = again.iter().map(|l| l.token.delivery).min();
    let trial = lease(store, "w", 40_000).await;
    let trial: Vec<_> = trial
        .iter()
        .filter(|l| l.target == "http://127.0.0.1:4000" && l.attempt == 1)
        .collect();
    assert_eq!(trial.len(), 1, "one parked delivery released");
    assert_eq!(Some(trial[0].token.delivery), oldest);
    assert!(
        store
            .unpark_one("http://127.0.0.1:4000", at(40_000))
            .await
            .expect("unpark one")
    );
    assert!(
        !store
            .unpark_one("http://127.0.0.1:4000", at(40_000))
            .await
            .expect("unpark one"),
        "none left"
    );
    assert!(store.parked_targets().await.expect("parked").is_empty());
}

/// A thousand deliveries parked behind two targets: the targets are listed once each, none of
/// them is leased or due at any time, and unparking one target leaves the other listed. (That
/// the listing and the lease query never walk over parked rows is checked on SQLite's query
/// plans in `sqlite::queue::tests`.)
pub async fn parked_deliveries_are_listed_by_target_and_never_due<S: Store>(store: &S) {
    let targets = ["http://a.example:80", "http://b.example:80"];
    for (i, target) in targets.iter().enumerate() {
        store
            .create_subscription(NewSubscription {
                url: format!("{target}/hook{i}"),
                events: vec![Pattern::new("*").expect("valid")],
                secret: "s3cret".into(),
                ordered: false,
                filter: None,
            })
            .await
            .expect("subscribe");
    }
    let batch: Vec<NewEvent> = (0..500)
        .map(|i| ev(WellKnown::PaymentReceived, "flowpay", &format!("m{i}")))
        .collect();
    store.append(batch).await.expect("append");
    loop {
        let l = store
            .lease_due("w", at(0), 400, Duration::from_secs(30))
            .await
            .expect("lease");
        if l.is_empty() {
            break;
        }
        for lease in &l {
            store.park(&lease.token, at(30_000)).await.expect("park");
        }
    }
    assert_eq!(store.stats().await.expect("stats").pending, 1_000);
    assert_eq!(
        store.parked_targets().await.expect("parked targets"),
        targets.map(str::to_owned).to_vec()
    );
    assert!(lease(store, "w", i64::from(u32::MAX)).await.is_empty());
    assert_eq!(store.next_due().await.expect("next due"), None);
    assert_eq!(store.unpark(targets[1], at(5)).await.expect("unpark"), 500);
    assert_eq!(
        store.parked_targets().await.expect("parked targets"),
        vec![targets[0].to_owned()]
    );
}

async fn dead_letter_n<S: Store>(store: &S, n: usize) -> Vec<i64> {
    subscribe(store, &["*"]).await;
    let batch: Vec<NewEvent> = (0..n)
        .map(|i| ev(WellKnown::MintFailed, "nexus", &format!("d{i}")))
        .collect();
    store.append(batch).await.expect("append");
    for l in lease(store, "w", 0).await {
        store
            .dead_letter(&l.token, failure("gone", Some(404), 5))
            .await
            .expect("dead_letter");
    }
    let mut ids: Vec<i64> = store
        .dead_letters(1000, None)
        .await
        .expect("dead letters")
        .items
        .iter()
        .map(|d| d.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), n);
    ids
}

/// Redrive puts dead letters back in the queue with attempts reset; unknown ids are skipped.
pub async fn redrive_resets_attempts<S: Store>(store: &S) {
    let ids = dead_letter_n(store, 3).await;
    let n = store
        .redrive(Selection::Ids(vec![ids[0], ids[0], 999_999]), at(60_000))
        .await
        .expect("redrive");
    assert_eq!(n, 1);
    assert!(lease(store, "w", 59_999).await.is_empty());
    let l = lease(store, "w", 60_000).await;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].attempt, 1);
    assert_eq!(l[0].event.id, "d0");
    assert_eq!(l[0].created_at, t0(), "keeps its original enqueue time");
    assert_eq!(
        store
            .redrive(Selection::All, at(60_000))
            .await
            .expect("redrive"),
        2
    );
    assert_eq!(store.stats().await.expect("stats").dead_letters, 0);
    assert_eq!(lease(store, "w", 60_000).await.len(), 2);
}

/// Purge deletes dead letters by id or all, counting only those that existed.
pub async fn purge_deletes_dead_letters<S: Store>(store: &S) {
    let ids = dead_letter_n(store, 3).await;
    assert_eq!(
        store
            .purge(Selection::Ids(vec![ids[1], 424_242]))
            .await
            .expect("purge"),
        1
    );
    assert_eq!(store.purge(Selection::All).await.expect("purge"), 2);
    assert_eq!(store.purge(Selection::All).await.expect("purge"), 0);
    assert!(
        store
            .dead_letters(10, None)
            .await
            .expect("list")
            .items
            .is_empty()
    );
}

/// Dead letters list newest first, in pages joined by cursors; bad limits and cursors are errors.
pub async fn dead_letters_page_newest_first<S: Store>(store: &S) {
    let ids = dead_letter_n(store, 5).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = store
            .dead_letters(2, cursor.as_deref())
            .await
            .expect("page");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|d| d.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    assert!(matches!(
        store.dead_letters(0, None).await,
        Err(StoreError::Invalid { field: "limit", .. })
    ));
    assert!(matches!(
        store.dead_letters(1001, None).await,
        Err(StoreError::Invalid { field: "limit", .. })
    ));
    assert!(matches!(
        store.dead_letters(10, Some("not-a-cursor")).await,
        Err(StoreError::Invalid {
            field: "cursor",
            ..
        })
    ));
}

/// Stats count waiting, in-flight and dead deliveries and the oldest retry.
pub async fn stats_count_the_queue<S: Store>(store: &S) {
    let empty = store.stats().await.expect("stats");
    assert_eq!(
        (
            empty.pending,
            empty.in_flight,
            empty.dead_letters,
            empty.oldest_retry
        ),
        (0, 0, 0, None)
    );
    subscribe(store, &["*"]).await;
    let batch: Vec<NewEvent> = (0..3)
        .map(|i| ev(WellKnown::PaymentReceived, "flowpay", &format!("p{i}")))
        .collect();
    store.append(batch).await.expect("append");
    assert_eq!(store.stats().await.expect("stats").pending, 3);
    // Lease far in the future so the leases are live whatever the real clock says.
    let far: u64 = 100 * 365 * 24 * 3600 * 1000;
    let l = store
        .lease_due("w", at(0), 2, Duration::from_millis(far))
        .await
        .expect("lease");
    assert_eq!(l.len(), 2);
    let s = store.stats().await.expect("stats");
    assert_eq!((s.pending, s.in_flight), (1, 2));
    store
        .retry_at(&l[0].token, at(2_000), failure("e", Some(503), 1))
        .await
        .expect("retry");
    store
        .dead_letter(&l[1].token, failure("e", None, 1))
        .await
        .expect("dead");
    let s = store.stats().await.expect("stats");
    assert_eq!((s.pending, s.in_flight, s.dead_letters), (2, 0, 1));
    assert_eq!(s.oldest_retry, Some(t0()));
}

/// A disabled subscription's deliveries wait, are not leased, and come back when re-enabled.
pub async fn disabled_subscriptions_hold_deliveries<S: Store>(store: &S) {
    let sub = subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p1")])
        .await
        .expect("append");
    store
        .update_subscription(
            &sub,
            SubscriptionPatch {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("disable");
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p2")])
        .await
        .expect("append while disabled");
    assert!(lease(store, "w", 1_000).await.is_empty());
    assert_eq!(store.stats().await.expect("stats").pending, 2);
    assert_eq!(store.next_due().await.expect("next_due"), None);
    store
        .update_subscription(
            &sub,
            SubscriptionPatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("enable");
    assert_eq!(lease(store, "w", 1_000).await.len(), 2);
}

/// Create, read, list in pages, update and delete subscriptions; bad input is refused.
pub async fn subscriptions_crud<S: Store>(store: &S) {
    let mut ids = Vec::new();
    for i in 0..3 {
        let s = store
            .create_subscription(NewSubscription {
                url: format!("https://crm{i}.example/hooks"),
                events: vec![Pattern::new("MINT_*").expect("valid")],
                secret: format!("whsec_{i}"),
                ordered: i == 0,
                filter: None,
            })
            .await
            .expect("create");
        assert!(s.enabled);
        assert_eq!(s.target, format!("https://crm{i}.example:443"));
        ids.push(s.id);
    }
    let got = store
        .subscription(&ids[0])
        .await
        .expect("get")
        .expect("exists");
    assert!(got.ordered);
    assert_eq!(got.secret, "whsec_0");
    let first = store.subscriptions(2, None).await.expect("list");
    assert_eq!(first.items.len(), 2);
    let rest = store
        .subscriptions(2, first.next_cursor.as_deref())
        .await
        .expect("list");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_cursor, None);
    let mut listed: Vec<String> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|s| s.id.clone())
        .collect();
    listed.sort();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(listed, sorted);

    let before = store
        .subscription(&ids[1])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(before.url, "https://crm1.example/hooks");
    let updated = store
        .update_subscription(
            &ids[1],
            SubscriptionPatch {
                url: Some("http://10.0.0.1:8080/x".into()),
                events: Some(vec![Pattern::new("*").expect("valid")]),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.target, "http://10.0.0.1:8080");
    assert_eq!(updated.events[0].as_str(), "*");
    assert_eq!(updated.secret, "whsec_1", "untouched fields stay");
    let after = store
        .subscription(&ids[1])
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(after, updated, "a read after an update sees it");
    assert!(matches!(
        store
            .update_subscription("nope", SubscriptionPatch::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .update_subscription(
                &ids[1],
                SubscriptionPatch {
                    url: Some("ftp://x/".into()),
                    ..Default::default()
                }
            )
            .await,
        Err(StoreError::Invalid { field: "url", .. })
    ));
    assert!(matches!(
        store
            .create_subscription(NewSubscription {
                url: "http://x/".into(),
                events: vec![],
                secret: "s".into(),
                ordered: false,
                filter: None,
            })
            .await,
        Err(StoreError::Invalid {
            field: "events",
            ..
        })
    ));

    // Deleting removes its pending deliveries too.
    store
        .append(vec![ev(WellKnown::MintConfirmed, "factory", "m")])
        .await
        .expect("append");
    assert!(store.delete_subscription(&ids[0]).await.expect("delete"));
    assert!(!store.delete_subscription(&ids[0]).await.expect("delete"));
    assert!(store.subscription(&ids[0]).await.expect("get").is_none());
    let leased = lease(store, "w", 0).await;
    assert_eq!(leased.len(), 2, "deliveries of the other two only");
}

/// Cursors start absent and keep the last value set.
pub async fn cursors_persist<S: Store>(store: &S) {
    assert_eq!(store.cursor("ws:dash").await.expect("cursor"), None);
    store.set_cursor("ws:dash", 7).await.expect("set");
    store.set_cursor("ws:dash", 42).await.expect("set");
    store.set_cursor("other", 1).await.expect("set");
    assert_eq!(store.cursor("ws:dash").await.expect("cursor"), Some(42));
    assert_eq!(store.cursor("other").await.expect("cursor"), Some(1));
}

/// The change watch moves when work is enqueued, so workers need not poll.
pub async fn changes_wake_workers<S: Store>(store: &S) {
    let mut changes = store.changes();
    changes.borrow_and_update();
    subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p")])
        .await
        .expect("append");
    assert!(changes.has_changed().expect("store alive"));
    changes.borrow_and_update();
    let l = lease(store, "w", 0).await;
    store
        .retry_at(&l[0].token, at(5_000), failure("e", None, 1))
        .await
        .expect("retry");
    assert!(changes.has_changed().expect("store alive"));
    assert_eq!(store.next_due().await.expect("next_due"), Some(at(5_000)));
}

/// A token from an earlier lease never settles a delivery created later, even when the first
/// delivery is gone (ids are never reused).
pub async fn stale_tokens_never_settle_another_delivery<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "a")])
        .await
        .expect("append");
    let first = lease(store, "w", 0).await;
    let again = lease(store, "w", 10_000).await;
    store.ack(&again[0].token, success(0)).await.expect("ack");
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "b")])
        .await
        .expect("append");
    let fresh = lease(store, "w", 20_000).await;
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0].token.delivery, first[0].token.delivery);
    assert!(matches!(
        store.ack(&first[0].token, success(0)).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store
        .ack(&fresh[0].token, success(0))
        .await
        .expect("the fresh lease still holds");
}

/// A lease that expires while its subscription is disabled is not leased again until the
/// subscription is enabled.
pub async fn expired_leases_of_disabled_subscriptions_are_held<S: Store>(store: &S) {
    let sub = subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "a")])
        .await
        .expect("append");
    assert_eq!(lease(store, "w", 0).await.len(), 1);
    let disable = |enabled| SubscriptionPatch {
        enabled: Some(enabled),
        ..Default::default()
    };
    store
        .update_subscription(&sub, disable(false))
        .await
        .expect("disable");
    assert!(lease(store, "w", 60_000).await.is_empty());
    store
        .update_subscription(&sub, disable(true))
        .await
        .expect("enable");
    assert_eq!(lease(store, "w", 60_000).await.len(), 1);
}

/// Dead letters of a deleted subscription are not redriven (nothing would take them); they can
/// still be purged.
pub async fn redrive_skips_deleted_subscriptions<S: Store>(store: &S) {
    let ids = dead_letter_n(store, 2).await;
    let sub = match &store.dead_letters(1, None).await.expect("list").items[0].consumer {
        Consumer::Subscription(id) => id.clone(),
        other => panic!("unexpected consumer {other:?}"),
    };
    assert!(store.delete_subscription(&sub).await.expect("delete"));
    assert_eq!(
        store
            .redrive(Selection::Ids(vec![ids[0]]), at(0))
            .await
            .expect("redrive"),
        0
    );
    assert_eq!(
        store.redrive(Selection::All, at(0)).await.expect("redrive"),
        0
    );
    assert_eq!(store.stats().await.expect("stats").dead_letters, 2);
    assert_eq!(store.purge(Selection::All).await.expect("purge"), 2);
}

/// In a refused batch, the first refused position is the one reported.
pub async fn first_refused_position_wins<S: Store>(store: &S) {
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "taken")])
        .await
        .expect("append");
    let err = store
        .append(vec![
            ev(WellKnown::PaymentReceived, "other", "taken"),
            ev(WellKnown::PaymentReceived, "other", "x"),
            ev(WellKnown::PaymentReceived, "other", "x"),
        ])
        .await
        .expect_err("refused");
    assert!(
        matches!(err, StoreError::Conflict { index: 0, .. }),
        "{err:?}"
    );
}

/// Subscription changes apply to appends that follow them, even inside one group commit: a
/// disable holds, a delete drops, a create routes.
pub async fn changes_apply_to_appends_committed_with_them<S: Store>(store: &S) {
    let big = || -> Vec<NewEvent> {
        (0..2000)
            .map(|_| NewEvent::new(WellKnown::MintFailed, "nexus").time(t0()))
            .collect()
    };
    let sub = subscribe(store, &["PAYMENT_*"]).await;
    // A large append keeps the writer busy, so the next two operations tend to share a commit.
    let (a, b, c) = tokio::join!(
        store.append(big()),
        store.update_subscription(
            &sub,
            SubscriptionPatch {
                enabled: Some(false),
                ..Default::default()
            }
        ),
        store.append(vec![ev(
            WellKnown::PaymentReceived,
            "flowpay",
            "while-disabled"
        )]),
    );
    a.expect("big append");
    b.expect("disable");
    c.expect("append");
    assert!(
        lease(store, "w", 0).await.is_empty(),
        "appended after the disable: held"
    );
    let (a, b, c) = tokio::join!(
        store.append(big()),
        store.delete_subscription(&sub),
        store.append(vec![ev(
            WellKnown::PaymentReceived,
            "flowpay",
            "after-delete"
        )]),
    );
    a.expect("big append");
    assert!(b.expect("delete"));
    c.expect("append");
    assert_eq!(
        store.stats().await.expect("stats").pending,
        0,
        "nothing routed to a deleted subscription"
    );
    let new = NewSubscription {
        url: "http://127.0.0.1:4000/hook".into(),
        events: vec![Pattern::new("PAYMENT_*").expect("valid")],
        secret: "s".into(),
        ordered: false,
        filter: None,
    };
    let (a, b, c) = tokio::join!(
        store.append(big()),
        store.create_subscription(new),
        store.append(vec![ev(
            WellKnown::PaymentReceived,
            "flowpay",
            "after-create"
        )]),
    );
    a.expect("big append");
    b.expect("create");
    c.expect("append");
    let leased = lease(store, "w", 0).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].event.id, "after-create");
}

/// Breaker states are kept per target, the last save winning; each save answers the record's new
/// generation, which grows with every save of that target and is read back with it.
pub async fn breakers_persist<S: Store>(store: &S) {
    assert!(store.breakers().await.expect("breakers").is_empty());
    let mut open = BreakerRecord {
        target: "http://b.example:80".into(),
        open: true,
        consecutive_failures: 5,
        trips: 3,
        opened_at: Some(at(1_000)),
        // Ignored: the store assigns it.
        generation: 77,
    };
    open.generation = store.save_breaker(open.clone()).await.expect("save");
    assert_eq!(open.generation, 1, "a first save is generation 1");
    let mut closed = open.clone();
    closed.target = "http://a.example:80".into();
    closed.open = false;
    closed.opened_at = None;
    closed.generation = store.save_breaker(closed.clone()).await.expect("save");
    assert_eq!(closed.generation, 1, "generations are per target");
    assert_eq!(
        store.breakers().await.expect("breakers"),
        vec![closed.clone(), open.clone()]
    );
    let mut reopened = closed.clone();
    reopened.open = true;
    reopened.trips = 4;
    reopened.opened_at = Some(at(2_000));
    reopened.generation = store.save_breaker(reopened.clone()).await.expect("save");
    assert_eq!(reopened.generation, 2);
    // A save of the same state is still a new version.
    let again = store.save_breaker(reopened.clone()).await.expect("save");
    assert_eq!(again, 3);
    reopened.generation = again;
    assert_eq!(
        store.breakers().await.expect("breakers"),
        vec![reopened, open]
    );
}

/// A last attempt that fails while its subscription is disabled is held, not dead-lettered, and
/// the due time of a disabled subscription's expired lease is not reported as due.
pub async fn last_attempts_of_disabled_subscriptions_are_held<S: Store>(store: &S) {
    let sub = subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "a")])
        .await
        .expect("append");
    let l = lease(store, "w", 0).await;
    let patch = |enabled| SubscriptionPatch {
        enabled: Some(enabled),
        ..Default::default()
    };
    store
        .update_subscription(&sub, patch(false))
        .await
        .expect("disable");
    assert_eq!(
        store.next_due().await.expect("next_due"),
        None,
        "the lease is held, not due"
    );
    store
        .dead_letter(&l[0].token, failure("HTTP 500", Some(500), 50))
        .await
        .expect("settled");
    let s = store.stats().await.expect("stats");
    assert_eq!((s.pending, s.dead_letters), (1, 0));
    store
        .update_subscription(&sub, patch(true))
        .await
        .expect("enable");
    let again = lease(store, "w", 100).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2, "the held attempt was counted");
}

/// Replay enqueues a range of the log again for one subscription, filtered by type; `after` is
/// exclusive and `until` inclusive.
pub async fn replay_enqueues_a_range_again<S: Store>(store: &S) {
    let types = [WellKnown::PaymentReceived, WellKnown::MintConfirmed];
    let batch: Vec<NewEvent> = (0..10)
        .map(|i| ev(types[i % 2], "n", &format!("e{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let sub = subscribe(store, &["*"]).await;
    let n = store
        .replay(
            2,
            Some(7),
            &TypeFilter::parse(["PAYMENT_*"]).expect("valid"),
            ReplayTo::Subscription(sub.clone()),
            at(5_000),
        )
        .await
        .expect("replay");
    assert_eq!(
        n, 3,
        "payments are the odd sequences: 3, 5 and 7 are in (2, 7]"
    );
    let mut seqs: Vec<u64> = lease(store, "w", 5_000)
        .await
        .iter()
        .map(|l| l.event.sequence)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, vec![3, 5, 7]);
    assert!(matches!(
        store
            .replay(
                0,
                None,
                &TypeFilter::all(),
                ReplayTo::Subscription("nope".into()),
                at(0)
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .replay(
                0,
                None,
                &TypeFilter::all(),
                ReplayTo::Subscription(sub),
                at(0)
            )
            .await
            .expect("replay all"),
        10
    );
}

/// An ordered subscription gets its deliveries strictly in sequence: one at a time, and a failing
/// one holds back the later ones (of that subscription only) until delivered or dead-lettered.
pub async fn ordered_subscriptions_go_one_at_a_time_in_sequence<S: Store>(store: &S) {
    let ordered = store
        .create_subscription(NewSubscription {
            url: "http://127.0.0.1:4000/ordered".into(),
            events: vec![Pattern::new("*").expect("valid")],
            secret: "s".into(),
            ordered: true,
            filter: None,
        })
        .await
        .expect("create")
        .id;
    let unordered = subscribe(store, &["*"]).await;
    let batch: Vec<NewEvent> = (0..3)
        .map(|i| ev(WellKnown::PaymentReceived, "flowpay", &format!("o{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let of = |leases: &[Lease], sub: &str| -> Vec<u64> {
        let mut v: Vec<u64> = leases
            .iter()
            .filter(|l| l.consumer == Consumer::Subscription(sub.into()))
            .map(|l| l.event.sequence)
            .collect();
        v.sort_unstable();
        v
    };
    let first = lease(store, "w", 0).await;
    assert_eq!(
        of(&first, &unordered),
        vec![1, 2, 3],
        "unordered: all at once"
    );
    assert_eq!(of(&first, &ordered), vec![1], "ordered: the first only");
    let head = first
        .iter()
        .find(|l| l.consumer == Consumer::Subscription(ordered.clone()))
        .expect("leased");
    store
        .retry_at(&head.token, at(2_000), failure("HTTP 500", Some(500), 10))
        .await
        .expect("retry");
    assert!(
        lease(store, "w", 1_000).await.is_empty(),
        "a failing event holds the rest back"
    );
    assert_eq!(
        store.next_due().await.expect("next_due"),
        Some(at(2_000)),
        "no busy wake-up for held-back ones"
    );
    let again = lease(store, "w", 2_000).await;
    assert_eq!(of(&again, &ordered), vec![1]);
    store.ack(&again[0].token, success(0)).await.expect("ack");
    let next = lease(store, "w", 2_000).await;
    assert_eq!(of(&next, &ordered), vec![2], "then the next in sequence");
    store
        .dead_letter(&next[0].token, failure("HTTP 500", Some(500), 2_100))
        .await
        .expect("dead letter");
    assert_eq!(
        of(&lease(store, "w", 2_200).await, &ordered),
        vec![3],
        "a dead letter lets the rest go"
    );
}

/// A lease that expires counts no attempt: leased again, the delivery keeps its attempt number,
/// after a failed attempt as before any.
pub async fn expired_leases_keep_their_attempt_count<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "p")])
        .await
        .expect("append");
    let l = lease(store, "w", 0).await;
    store
        .retry_at(&l[0].token, at(1_000), failure("HTTP 503", Some(503), 500))
        .await
        .expect("retry_at");
    let second = lease(store, "w", 1_000).await;
    assert_eq!(second[0].attempt, 2);
    // `lease` leases for 10 s: this one expires unsettled (its worker died).
    let again = lease(store, "other", 11_000).await;
    assert_eq!(again.len(), 1, "the expired lease is due");
    assert_eq!(again[0].attempt, 2, "the expired lease burned no attempt");
    store
        .dead_letter(&again[0].token, failure("HTTP 500", Some(500), 11_500))
        .await
        .expect("dead_letter");
    let page = store.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(
        page.items[0].attempts, 2,
        "two attempts were made, not three"
    );
}

/// `in_flight` counts only live leases: a delivery whose lease expired (by the wall clock) is
/// pending work.
pub async fn expired_leases_are_pending_not_in_flight<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    let batch: Vec<NewEvent> = (0..2)
        .map(|i| ev(WellKnown::PaymentReceived, "flowpay", &format!("p{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let now = Timestamp::now().as_unix_millis();
    let ago = |ms: i64| Timestamp::from_unix_millis(now - ms).expect("in range");
    // One lease that ran out a minute ago, one that holds for an hour.
    let expired = store
        .lease_due("dead", ago(120_000), 1, Duration::from_secs(60))
        .await
        .expect("lease");
    assert_eq!(expired.len(), 1);
    let live = store
        .lease_due("alive", ago(0), 1, Duration::from_secs(3_600))
        .await
        .expect("lease");
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].token.delivery, expired[0].token.delivery);
    let s = store.stats().await.expect("stats");
    assert_eq!((s.pending, s.in_flight), (1, 1), "{s:?}");
}

/// Redrive and purge by id count only the dead letters that exist; unknown ids are no error.
pub async fn unknown_dead_letter_ids_are_skipped<S: Store>(store: &S) {
    let ids = dead_letter_n(store, 2).await;
    let unknown = ids.iter().max().copied().unwrap_or(0) + 1_000;
    let redriven = store
        .redrive(Selection::Ids(vec![ids[0], unknown, -1]), at(50_000))
        .await
        .expect("redrive with unknown ids");
    assert_eq!(redriven, 1);
    assert_eq!(
        store
            .redrive(Selection::Ids(vec![unknown]), at(50_000))
            .await
            .expect("only unknown ids"),
        0
    );
    let purged = store
        .purge(Selection::Ids(vec![unknown, ids[1], ids[0]]))
        .await
        .expect("purge with unknown ids");
    assert_eq!(
        purged, 1,
        "ids[0] was redriven, so only ids[1] is still a dead letter"
    );
    assert_eq!(
        store
            .purge(Selection::Ids(vec![unknown]))
            .await
            .expect("only unknown ids"),
        0
    );
    assert_eq!(store.stats().await.expect("stats").dead_letters, 0);
}

/// A fresh store lists one instance, the process that opened it: an id, its host, this crate's
/// version (the builders' default), seen no earlier than it started; listed again, the same
/// instance, seen no earlier than before.
pub async fn instances_list_the_process_that_opened_the_store<S: Store>(store: &S) {
    let first = store.instances().await.expect("instances");
    assert_eq!(first.len(), 1, "{first:?}");
    let me = &first[0];
    assert!(!me.id.is_empty(), "{me:?}");
    assert!(!me.host.is_empty(), "{me:?}");
    assert_eq!(me.version, env!("CARGO_PKG_VERSION"), "{me:?}");
    assert!(me.last_seen_at >= me.started_at, "{me:?}");
    let again = store.instances().await.expect("instances again");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        (&again[0].id, again[0].started_at, &again[0].host),
        (&me.id, me.started_at, &me.host)
    );
    assert!(again[0].last_seen_at >= me.last_seen_at, "{again:?}");
}

fn filter(spec: serde_json::Value) -> When {
    When::from_value(&spec).expect("a valid filter")
}

fn payment(id: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent::new(WellKnown::PaymentReceived, "flowpay")
        .id(EventId::new(id).expect("test ids are valid"))
        .time(t0())
        .payload(payload)
}

/// The event ids the queue holds for each of `subs`, leased at `now_ms` and released again
/// (a release counts no attempt), sorted.
async fn queued_for<S: Store>(store: &S, subs: &[&str], now_ms: i64) -> Vec<Vec<String>> {
    let leases = lease(store, "filter-check", now_ms).await;
    let mut out = vec![Vec::new(); subs.len()];
    for l in &leases {
        let Consumer::Subscription(id) = &l.consumer else {
            continue;
        };
        if let Some(i) = subs.iter().position(|s| s == id) {
            out[i].push(l.event.id.as_str().to_owned());
        }
        store.release(&l.token, at(now_ms)).await.expect("release");
    }
    for ids in &mut out {
        ids.sort_unstable();
    }
    out
}

/// A subscription's filter (API.md section 12) is applied when the event is appended: an event
/// it refuses gets no delivery row at all, a matching one gets one; the filter round-trips
/// through every read; a patch that sets or clears it applies to the events appended after it,
/// and a patch that does not name it leaves it alone.
pub async fn filters_choose_deliveries_at_append<S: Store>(store: &S) {
    let big = filter(json!({"/amount": {"gte": 10000}, "/currency": {"eq": "EUR"}}));
    let filtered = store
        .create_subscription(NewSubscription {
            url: "http://127.0.0.1:4000/big".into(),
            events: vec![Pattern::new("PAYMENT_*").expect("valid")],
            secret: "s".into(),
            ordered: false,
            filter: Some(big.clone()),
        })
        .await
        .expect("create filtered");
    assert_eq!(filtered.filter.as_ref(), Some(&big));
    let all = subscribe(store, &["*"]).await;
    let got = store
        .subscription(&filtered.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.filter.as_ref(), Some(&big), "read back");
    let listed = store.subscriptions(10, None).await.expect("list").items;
    let shown = |id: &str| listed.iter().find(|s| s.id == id).map(|s| s.filter.clone());
    assert_eq!(shown(&filtered.id), Some(Some(big.clone())), "listed");
    assert_eq!(shown(&all), Some(None), "no filter is None");

    store
        .append(vec![
            payment("small", json!({"amount": 500, "currency": "EUR"})),
            payment("big", json!({"amount": 25000, "currency": "EUR"})),
            payment("big-usd", json!({"amount": 25000, "currency": "USD"})),
            payment("no-amount", json!({"currency": "EUR"})),
            payment("not-an-object", json!([1, 2])),
        ])
        .await
        .expect("append");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats.pending, 6,
        "5 for the unfiltered subscription, 1 for the filtered one: refused events have no row"
    );
    assert_eq!(
        queued_for(store, &[&filtered.id, &all], 0).await,
        vec![
            vec!["big".to_owned()],
            vec![
                "big".to_owned(),
                "big-usd".to_owned(),
                "no-amount".to_owned(),
                "not-an-object".to_owned(),
                "small".to_owned()
            ]
        ]
    );

    // A patch that does not name the filter keeps it.
    let kept = store
        .update_subscription(
            &filtered.id,
            SubscriptionPatch {
                ordered: Some(false),
                ..SubscriptionPatch::default()
            },
        )
        .await
        .expect("patch without filter");
    assert_eq!(kept.filter.as_ref(), Some(&big));

    // Set one on the unfiltered subscription, clear the other's.
    let small = filter(json!({"/amount": {"lt": 1000}}));
    let set = store
        .update_subscription(
            &all,
            SubscriptionPatch {
                filter: Some(Some(small.clone())),
                ..SubscriptionPatch::default()
            },
        )
        .await
        .expect("set a filter");
    assert_eq!(set.filter.as_ref(), Some(&small));
    let cleared = store
        .update_subscription(
            &filtered.id,
            SubscriptionPatch {
                filter: Some(None),
                ..SubscriptionPatch::default()
            },
        )
        .await
        .expect("clear the filter");
    assert_eq!(cleared.filter, None);
    assert_eq!(
        store
            .subscription(&filtered.id)
            .await
            .expect("get")
            .expect("exists")
            .filter,
        None,
        "cleared as read back"
    );
    store
        .append(vec![
            payment("small-2", json!({"amount": 500, "currency": "USD"})),
            payment("big-2", json!({"amount": 90000, "currency": "USD"})),
        ])
        .await
        .expect("append after the patches");
    assert_eq!(
        store.stats().await.expect("stats").pending,
        6 + 3,
        "the cleared one takes both, the newly filtered one the small one only"
    );
    let queued = queued_for(store, &[&filtered.id, &all], 0).await;
    assert_eq!(
        queued[0],
        vec!["big".to_owned(), "big-2".to_owned(), "small-2".to_owned()]
    );
    assert!(
        queued[1].contains(&"small-2".to_owned()) && !queued[1].contains(&"big-2".to_owned()),
        "{:?}",
        queued[1]
    );
    assert_eq!(queued[1].len(), 6, "the rows made before the patch stay");
}

/// A replay to a subscription with a filter enqueues only the events its filter passes, as
/// routing would have; one without a filter takes every event of the range.
pub async fn replay_to_a_filtered_subscription_applies_its_filter<S: Store>(store: &S) {
    let batch: Vec<NewEvent> = (0..10)
        .map(|i| payment(&format!("r{i}"), json!({ "amount": i * 1000 })))
        .collect();
    store.append(batch).await.expect("append");
    let sub = store
        .create_subscription(NewSubscription {
            url: "http://127.0.0.1:4000/replayed".into(),
            events: vec![Pattern::new("*").expect("valid")],
            secret: "s".into(),
            ordered: false,
            filter: Some(filter(json!({"/amount": {"gte": 4000}}))),
        })
        .await
        .expect("create")
        .id;
    let n = store
        .replay(
            2,
            Some(8),
            &TypeFilter::all(),
            ReplayTo::Subscription(sub.clone()),
            at(0),
        )
        .await
        .expect("replay");
    assert_eq!(n, 4, "sequences 5 to 8 carry amounts 4000 to 7000");
    assert_eq!(
        queued_for(store, &[&sub], 0).await,
        vec![vec!["r4", "r5", "r6", "r7"]]
    );
    store
        .update_subscription(
            &sub,
            SubscriptionPatch {
                filter: Some(None),
                ..SubscriptionPatch::default()
            },
        )
        .await
        .expect("clear");
    let n = store
        .replay(
            0,
            Some(2),
            &TypeFilter::all(),
            ReplayTo::Subscription(sub),
            at(0),
        )
        .await
        .expect("replay without filter");
    assert_eq!(n, 2, "no filter: the whole range");
}

/// At open, every lease left by the previous process is given back, due at once, with its
/// attempt count unchanged (API.md section 5: only one process holds an embedded store).
pub async fn leases_are_released_at_reopen<S, G>(store: S, guard: &G, reopen: impl AsyncFn(&G) -> S)
where
    S: Store,
{
    subscribe(&store, &["*"]).await;
    store
        .append(vec![
            ev(WellKnown::PaymentReceived, "flowpay", "p1"),
            ev(WellKnown::PaymentReceived, "flowpay", "p2"),
        ])
        .await
        .expect("append");
    let first = lease(&store, "w", 0).await;
    assert_eq!(first.len(), 2);
    store
        .retry_at(
            &first[0].token,
            at(1_000),
            failure("HTTP 503", Some(503), 500),
        )
        .await
        .expect("retry_at");
    // Leased for a century: only the release at open can make them due.
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let leased = store
        .lease_due("doomed", Timestamp::now(), 10, century)
        .await
        .expect("lease");
    assert_eq!(leased.len(), 2);
    assert_eq!(store.stats().await.expect("stats").in_flight, 2);
    drop(store);

    let store = reopen(guard).await;
    let s = store.stats().await.expect("stats");
    assert_eq!((s.pending, s.in_flight), (2, 0), "{s:?}");
    let now = Timestamp::now();
    let due = store.next_due().await.expect("next_due").expect("due");
    assert!(
        due <= now,
        "due at once, not at the lease's expiry: {due:?} > {now:?}"
    );
    let mut again = store
        .lease_due("after", now, 10, Duration::from_secs(10))
        .await
        .expect("lease");
    again.sort_by_key(|l| l.event.sequence);
    let attempts: Vec<u32> = again.iter().map(|l| l.attempt).collect();
    assert_eq!(
        attempts,
        vec![2, 1],
        "attempt counts survive the restart unchanged"
    );
    store
        .ack(&again[0].token, success(0))
        .await
        .expect("the new lease holds");
    assert!(
        store.ack(&leased[1].token, success(0)).await.is_err(),
        "the dead process's token holds nothing"
    );
}

fn type_put(name: &str, origin: TypeOrigin) -> EventTypePut {
    EventTypePut {
        name: nexus_event::EventType::new(name).expect("valid type"),
        description: format!("{name} happened"),
        schema: Some(json!({"type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer"}}})),
        examples: vec![json!({"amount": 1}), json!({"amount": 2, "note": "ü"})],
        deprecated: false,
        origin,
    }
}

/// Event types: a put creates, a second replaces the whole type keeping its creation time, an
/// identical one changes nothing (times kept); the list pages in name order; a delete removes
/// it once.
pub async fn event_types_crud<S: Store>(store: &S) {
    let first = store
        .put_event_type(type_put("PAYMENT_RECEIVED", TypeOrigin::Api))
        .await
        .expect("created");
    assert!(first.created);
    assert_eq!(first.record.examples.len(), 2);
    let got = store
        .event_type("PAYMENT_RECEIVED")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(got, first.record, "read back as put");
    assert_eq!(got.created_at, got.updated_at);

    let same = store
        .put_event_type(type_put("PAYMENT_RECEIVED", TypeOrigin::Api))
        .await
        .expect("same again");
    assert!(!same.created);
    assert_eq!(
        same.record, first.record,
        "an identical put keeps the times"
    );

    // Millisecond times: make sure the replacement is in a later one.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let replacement = EventTypePut {
        description: String::new(),
        schema: None,
        examples: Vec::new(),
        deprecated: true,
        ..type_put("PAYMENT_RECEIVED", TypeOrigin::Api)
    };
    let replaced = store.put_event_type(replacement).await.expect("replaced");
    assert!(!replaced.created);
    assert_eq!(replaced.record.created_at, first.record.created_at);
    assert!(replaced.record.updated_at > first.record.updated_at);
    let got = store
        .event_type("PAYMENT_RECEIVED")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(got, replaced.record);
    assert!(got.schema.is_none() && got.examples.is_empty() && got.deprecated);

    for name in ["b.two", "A_ONE", "a:three", "Z-4"] {
        store
            .put_event_type(type_put(name, TypeOrigin::Api))
            .await
            .expect("put");
    }
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.event_types(2, cursor.as_deref()).await.expect("list");
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(|t| t.name.to_string()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["A_ONE", "PAYMENT_RECEIVED", "Z-4", "a:three", "b.two"],
        "byte order, every type once"
    );
    assert!(matches!(
        store.event_types(0, None).await,
        Err(StoreError::Invalid { field: "limit", .. })
    ));

    assert!(store.delete_event_type("Z-4").await.expect("delete"));
    assert!(!store.delete_event_type("Z-4").await.expect("gone"));
    assert_eq!(store.event_type("Z-4").await.expect("read"), None);
    assert_eq!(
        store.event_types(10, None).await.expect("list").items.len(),
        4
    );
}

/// A config-declared type refuses the API's put and delete (and changes nothing); the config's
/// own put takes; released, the API may change and delete it.
pub async fn config_declared_types_refuse_the_api<S: Store>(store: &S) {
    let declared = store
        .put_event_type(type_put("MINT_CONFIRMED", TypeOrigin::Config))
        .await
        .expect("declared");
    assert_eq!(declared.record.origin, TypeOrigin::Config);
    let refused = store
        .put_event_type(EventTypePut {
            deprecated: true,
            ..type_put("MINT_CONFIRMED", TypeOrigin::Api)
        })
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Declared { name }) if name == "MINT_CONFIRMED"),
        "{refused:?}"
    );
    assert!(matches!(
        store.delete_event_type("MINT_CONFIRMED").await,
        Err(StoreError::Declared { .. })
    ));
    let kept = store
        .event_type("MINT_CONFIRMED")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(kept, declared.record, "a refused put changes nothing");

    let redeclared = store
        .put_event_type(EventTypePut {
            description: "changed in the file".into(),
            ..type_put("MINT_CONFIRMED", TypeOrigin::Config)
        })
        .await
        .expect("the config's own put");
    assert!(!redeclared.created);
    assert_eq!(redeclared.record.description, "changed in the file");

    // An API-declared type taken over by the config file.
    store
        .put_event_type(type_put("MINT_FAILED", TypeOrigin::Api))
        .await
        .expect("api");
    let taken = store
        .put_event_type(type_put("MINT_FAILED", TypeOrigin::Config))
        .await
        .expect("taken over");
    assert_eq!(taken.record.origin, TypeOrigin::Config);

    assert!(
        store
            .release_event_type("MINT_CONFIRMED")
            .await
            .expect("released")
    );
    assert!(
        !store
            .release_event_type("MINT_CONFIRMED")
            .await
            .expect("not again"),
        "already the API's"
    );
    assert!(!store.release_event_type("UNKNOWN").await.expect("unknown"));
    let released = store
        .event_type("MINT_CONFIRMED")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(released.origin, TypeOrigin::Api);
    assert_eq!(released.description, "changed in the file", "content kept");
    store
        .put_event_type(type_put("MINT_CONFIRMED", TypeOrigin::Api))
        .await
        .expect("the API's now");
    assert!(
        store
            .delete_event_type("MINT_CONFIRMED")
            .await
            .expect("deleted")
    );
}

/// Every committed change of event types moves the watch; a refused one need not.
pub async fn event_type_changes_move_the_watch<S: Store>(store: &S) {
    let mut changes = store.event_type_changes();
    changes.borrow_and_update();
    store
        .put_event_type(type_put("NOTIFICATION_SENT", TypeOrigin::Api))
        .await
        .expect("put");
    assert!(changes.has_changed().expect("open"), "a put moves it");
    changes.borrow_and_update();
    assert!(
        store
            .delete_event_type("NOTIFICATION_SENT")
            .await
            .expect("deleted")
    );
    assert!(changes.has_changed().expect("open"), "a delete moves it");
    changes.borrow_and_update();
    store
        .put_event_type(type_put("NOTIFICATION_SENT", TypeOrigin::Config))
        .await
        .expect("declared");
    changes.borrow_and_update();
    assert!(
        store
            .release_event_type("NOTIFICATION_SENT")
            .await
            .expect("released")
    );
    assert!(changes.has_changed().expect("open"), "a release moves it");
}

/// A failed attempt ending `end_ms` after [`t0`] that took `took_ms`.
fn failed_after(error: &str, status: Option<u16>, end_ms: i64, took_ms: u64) -> Failure {
    Failure {
        duration_ms: took_ms,
        ..failure(error, status, end_ms)
    }
}

/// An attempt kept in the history: started `start_ms` after [`t0`].
fn kept(start_ms: i64, took_ms: u64, status: Option<u16>, error: Option<&str>) -> AttemptRecord {
    AttemptRecord {
        at: at(start_ms),
        duration_ms: took_ms,
        status,
        error: error.map(str::to_owned),
    }
}

/// Every settled attempt is kept with its start, duration, status and error, through retries
/// to the ack; the delivery then shows `delivered`. A dead letter's delivery shows `dead` with
/// its attempts, and still does beside the new delivery a redrive starts.
pub async fn history_keeps_every_attempt<S: Store>(store: &S) {
    let sub = subscribe(store, &["*"]).await;
    store
        .append(vec![
            ev(WellKnown::MintRequested, "nexus", "h1"),
            ev(WellKnown::MintRequested, "nexus", "h2"),
        ])
        .await
        .expect("append");
    let fresh = store.event_deliveries(1, at(0)).await.expect("history");
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].state, DeliveryStatus::Pending);
    assert_eq!(fresh[0].event_id, "h1");
    assert_eq!(fresh[0].consumer, Consumer::Subscription(sub.clone()));
    assert_eq!(fresh[0].target, "http://127.0.0.1:4000");
    assert!(fresh[0].attempts.is_empty());
    assert_eq!(fresh[0].created_at, t0());

    let l = lease(store, "w", 0).await;
    assert_eq!(l.len(), 2);
    let leased = store.event_deliveries(1, at(5)).await.expect("history");
    assert_eq!(leased[0].state, DeliveryStatus::InFlight);
    assert_eq!(leased[0].next_attempt_at, None);
    let expired = store
        .event_deliveries(1, at(20_000))
        .await
        .expect("history");
    assert_eq!(
        expired[0].state,
        DeliveryStatus::Pending,
        "an expired lease is pending work"
    );
    store
        .retry_at(
            &l[0].token,
            at(2_000),
            failed_after("connection refused", None, 100, 40),
        )
        .await
        .expect("retry_at");
    let after_one = store.event_deliveries(1, at(150)).await.expect("history");
    assert_eq!(after_one[0].state, DeliveryStatus::Pending);
    assert_eq!(after_one[0].next_attempt_at, Some(at(2_000)));
    assert_eq!(
        after_one[0].attempts,
        vec![kept(60, 40, None, Some("connection refused"))]
    );

    let again = lease(store, "w", 2_000).await;
    assert_eq!(again.len(), 1);
    store
        .retry_at(
            &again[0].token,
            at(6_000),
            failed_after("HTTP 503", Some(503), 2_030, 30),
        )
        .await
        .expect("retry_at");
    let last = lease(store, "w", 6_000).await;
    store
        .ack(
            &last[0].token,
            Success {
                status: Some(204),
                at: at(6_012),
                duration_ms: 12,
            },
        )
        .await
        .expect("ack");
    let done = store.event_deliveries(1, at(7_000)).await.expect("history");
    assert_eq!(done.len(), 1, "the delivered delivery is kept");
    assert_eq!(done[0].state, DeliveryStatus::Delivered);
    assert_eq!(done[0].next_attempt_at, None);
    assert_eq!(done[0].id, l[0].token.delivery, "it keeps its id");
    assert_eq!(
        done[0].attempts,
        vec![
            kept(60, 40, None, Some("connection refused")),
            kept(2_000, 30, Some(503), Some("HTTP 503")),
            kept(6_000, 12, Some(204), None),
        ]
    );

    store
        .dead_letter(&l[1].token, failed_after("HTTP 500", Some(500), 300, 100))
        .await
        .expect("dead_letter");
    let dead = store.event_deliveries(2, at(400)).await.expect("history");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].state, DeliveryStatus::Dead);
    assert_eq!(
        dead[0].attempts,
        vec![kept(200, 100, Some(500), Some("HTTP 500"))]
    );
    assert_eq!(
        store
            .redrive(Selection::All, at(1_000))
            .await
            .expect("redrive"),
        1
    );
    let redriven = store.event_deliveries(2, at(1_000)).await.expect("history");
    assert_eq!(
        redriven
            .iter()
            .map(|d| (d.state, d.attempts.len()))
            .collect::<Vec<_>>(),
        vec![(DeliveryStatus::Dead, 1), (DeliveryStatus::Pending, 0)],
        "the dead delivery stays in the history beside the new one"
    );
    assert!(
        store
            .event_deliveries(99, at(0))
            .await
            .expect("history")
            .is_empty()
    );
}

/// Five events for one subscription, settled differently at `t0`: 1 and 2 delivered, 3 dead,
/// 4 retrying (one failed attempt), 5 in flight until `t0 + 10 s`. Another subscription gets
/// event 1 too. Returns the subscription's id and its delivery ids by event.
async fn settled_five<S: Store>(store: &S) -> (String, Vec<i64>) {
    let sub = subscribe(store, &["MINT_*"]).await;
    let events = (1..=5)
        .map(|i| ev(WellKnown::MintRequested, "nexus", &format!("q{i}")))
        .collect();
    store.append(events).await.expect("append");
    let other = subscribe(store, &["*"]).await;
    let l = lease(store, "w", 0).await;
    assert_eq!(l.len(), 5);
    store.ack(&l[0].token, success(10)).await.expect("ack");
    store.ack(&l[1].token, success(10)).await.expect("ack");
    store
        .dead_letter(&l[2].token, failure("HTTP 500", Some(500), 10))
        .await
        .expect("dead_letter");
    store
        .retry_at(&l[3].token, at(60_000), failure("HTTP 503", Some(503), 10))
        .await
        .expect("retry_at");
    store
        .append(vec![ev(WellKnown::PaymentReceived, "flowpay", "other")])
        .await
        .expect("append for the other subscription");
    assert_ne!(other, sub);
    (sub, l.iter().map(|l| l.token.delivery).collect())
}

/// The event sequences of a subscription's deliveries in `state`, newest first.
async fn only_in<S: Store>(store: &S, sub: &str, state: DeliveryStatus) -> Vec<u64> {
    store
        .subscription_deliveries(sub, query(Some(state), 0, 100))
        .await
        .expect("filtered")
        .items
        .iter()
        .map(|d| d.event_sequence)
        .collect()
}

fn query(state: Option<DeliveryStatus>, after: u64, limit: usize) -> DeliveryQuery {
    DeliveryQuery {
        state,
        after,
        limit,
        cursor: None,
        now: at(1_000),
    }
}

/// A subscription's deliveries list newest first, page by page, filtered by state and by
/// event sequence, and only that subscription's; an unknown subscription is `NotFound`.
pub async fn subscription_deliveries_page_newest_first<S: Store>(store: &S) {
    let (sub, ids) = settled_five(store).await;
    let mut seen = Vec::new();
    let mut q = query(None, 0, 2);
    loop {
        let page = store
            .subscription_deliveries(&sub, q.clone())
            .await
            .expect("page");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|d| (d.id, d.event_sequence, d.state)));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![
            (ids[4], 5, DeliveryStatus::InFlight),
            (ids[3], 4, DeliveryStatus::Pending),
            (ids[2], 3, DeliveryStatus::Dead),
            (ids[1], 2, DeliveryStatus::Delivered),
            (ids[0], 1, DeliveryStatus::Delivered),
        ]
    );
    let only = |state| only_in(store, &sub, state);
    assert_eq!(only(DeliveryStatus::Delivered).await, vec![2, 1]);
    assert_eq!(only(DeliveryStatus::Dead).await, vec![3]);
    assert_eq!(only(DeliveryStatus::Pending).await, vec![4]);
    assert_eq!(only(DeliveryStatus::InFlight).await, vec![5]);
    assert!(only(DeliveryStatus::Held).await.is_empty());
    let pending = store
        .subscription_deliveries(&sub, query(Some(DeliveryStatus::Pending), 0, 10))
        .await
        .expect("pending");
    assert_eq!(pending.items[0].next_attempt_at, Some(at(60_000)));
    assert_eq!(
        pending.items[0].attempts,
        vec![kept(10, 0, Some(503), Some("HTTP 503"))]
    );
    let late = store
        .subscription_deliveries(&sub, query(None, 3, 100))
        .await
        .expect("after 3");
    assert_eq!(
        late.items
            .iter()
            .map(|d| d.event_sequence)
            .collect::<Vec<_>>(),
        vec![5, 4]
    );
    store
        .update_subscription(
            &sub,
            SubscriptionPatch {
                enabled: Some(false),
                ..SubscriptionPatch::default()
            },
        )
        .await
        .expect("disable");
    assert_eq!(only(DeliveryStatus::Held).await, vec![4]);
    let missing = store
        .subscription_deliveries("no-such-subscription", query(None, 0, 10))
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    let bad = store
        .subscription_deliveries(
            &sub,
            DeliveryQuery {
                cursor: Some("not-a-cursor".into()),
                ..query(None, 0, 10)
            },
        )
        .await;
    assert!(matches!(
        bad,
        Err(StoreError::Invalid {
            field: "cursor",
            ..
        })
    ));
}

/// A subscription's stats count what was delivered, what failed (attempts) and what died within
/// the window, and what is queued now whatever its age.
pub async fn subscription_stats_count_the_window<S: Store>(store: &S) {
    let (sub, _) = settled_five(store).await;
    let ids = [sub.clone(), "no-such-subscription".to_owned()];
    let stats = store.subscription_stats(&ids, t0()).await.expect("stats");
    assert_eq!(
        stats,
        vec![
            SubscriptionStats {
                delivered: 2,
                failed: 2,
                pending: 2,
                dead: 1,
            },
            SubscriptionStats::default(),
        ]
    );
    let later = store
        .subscription_stats(&ids[..1], at(20))
        .await
        .expect("stats");
    assert_eq!(
        later,
        vec![SubscriptionStats {
            pending: 2,
            ..SubscriptionStats::default()
        }],
        "outside the window only the queue counts"
    );
}

/// Pruning removes finished deliveries (with their attempts) that finished before the cut,
/// oldest first and at most `max` at a time; queued deliveries keep their attempts.
pub async fn history_is_pruned_after_retention<S: Store>(store: &S) {
    subscribe(store, &["*"]).await;
    store
        .append(vec![
            ev(WellKnown::MintRequested, "nexus", "p1"),
            ev(WellKnown::MintRequested, "nexus", "p2"),
            ev(WellKnown::MintRequested, "nexus", "p3"),
            ev(WellKnown::MintRequested, "nexus", "p4"),
        ])
        .await
        .expect("append");
    let l = lease(store, "w", 0).await;
    store.ack(&l[0].token, success(100)).await.expect("ack");
    store
        .dead_letter(&l[1].token, failure("HTTP 500", Some(500), 200))
        .await
        .expect("dead_letter");
    store.ack(&l[2].token, success(5_000)).await.expect("ack");
    store
        .retry_at(&l[3].token, at(90_000), failure("HTTP 503", Some(503), 50))
        .await
        .expect("retry_at");
    assert_eq!(
        store.prune_history(at(1_000), 1).await.expect("prune"),
        1,
        "at most max at a time"
    );
    assert_eq!(store.prune_history(at(1_000), 100).await.expect("prune"), 1);
    assert_eq!(store.prune_history(at(1_000), 100).await.expect("prune"), 0);
    for gone in [1, 2] {
        assert!(
            store
                .event_deliveries(gone, at(6_000))
                .await
                .expect("history")
                .is_empty(),
            "event {gone}"
        );
    }
    let kept_one = store.event_deliveries(3, at(6_000)).await.expect("history");
    assert_eq!(kept_one.len(), 1);
    assert_eq!(kept_one[0].attempts.len(), 1);
    assert_eq!(
        store
            .prune_history(at(1_000_000), 100)
            .await
            .expect("prune"),
        1
    );
    let queued = store.event_deliveries(4, at(6_000)).await.expect("history");
    assert_eq!(queued[0].state, DeliveryStatus::Pending);
    assert_eq!(
        queued[0].attempts.len(),
        1,
        "a queued delivery keeps its attempts"
    );
}

/// A filter of 5,000 type globs reads, pages and replays exactly as a filter of one does: the
/// number of globs never shapes the SQL (issue 18: it once grew an expression tree past SQLite's
/// depth limit), and the answer is the same at every size.
pub async fn thousands_of_globs_shape_no_query<S: Store>(store: &S) {
    let types = [WellKnown::PaymentReceived, WellKnown::MintConfirmed];
    let batch: Vec<NewEvent> = (0..20)
        .map(|i| ev(types[i % 2], "n", &format!("g{i}")))
        .collect();
    store.append(batch).await.expect("append");
    let payments: Vec<u64> = (1..=20).step_by(2).collect();
    let mut globs: Vec<String> = (0..5_000).map(|i| format!("OTHER_{i:04}_*")).collect();
    // Spread the one that matches among the rest, and add a few with LIKE's own characters.
    globs.insert(2_500, "PAYMENT_*".into());
    globs.extend(["x_x".into(), "A_B".into(), "*_NOPE".into()]);
    let many = TypeFilter::parse(&globs).expect("valid globs");
    assert_eq!(many.patterns().len(), 5_004);
    let seqs = |events: Vec<nexus_event::Event>| -> Vec<u64> {
        events.iter().map(|e| e.sequence).collect()
    };
    assert_eq!(
        seqs(store.read(0, 100, &many).await.expect("read")),
        payments
    );
    assert_eq!(
        seqs(store.read(5, 3, &many).await.expect("read a page")),
        vec![7, 9, 11]
    );
    assert_eq!(
        seqs(
            store
                .read_range(2, 11, ReadOrder::Descending, 2, &many)
                .await
                .expect("read_range")
        ),
        vec![11, 9]
    );
    assert_eq!(
        seqs(
            store
                .read_range(0, 20, ReadOrder::Ascending, 100, &many)
                .await
                .expect("read_range")
        ),
        payments
    );
    let sub = subscribe(store, &["*"]).await;
    let n = store
        .replay(
            0,
            None,
            &many,
            ReplayTo::Subscription(sub.clone()),
            at(1_000),
        )
        .await
        .expect("replay with 5,000 globs");
    assert_eq!(n, payments.len() as u64);
    store
        .update_subscription(
            &sub,
            SubscriptionPatch {
                filter: Some(Some(
                    When::from_value(&json!({"/id": {"ne": "g0"}})).expect("valid"),
                )),
                ..SubscriptionPatch::default()
            },
        )
        .await
        .expect("set a filter");
    let n = store
        .replay(0, Some(10), &many, ReplayTo::Subscription(sub), at(1_000))
        .await
        .expect("filtered replay with 5,000 globs");
    assert_eq!(
        n, 4,
        "payments 3, 5, 7, 9: g0 (sequence 1) fails the filter"
    );
    store
        .replay(0, None, &many, ReplayTo::Reactors, at(1_000))
        .await
        .expect("replay to the reactors with 5,000 globs");
}
