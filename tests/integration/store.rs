//! The SQLite store: the conformance suite, opening bad data dirs, restarts, bus and routes.

use std::sync::Arc;
use std::time::Duration;

use nexus_core::Bus;
use nexus_event::{EventId, NewEvent, Timestamp, TypeFilter, WellKnown};
use nexus_store::conformance::t0;
use nexus_store::{
    Consumer, Cursors, DB_FILE, DeliveryQueue, EventLog, Route, SqliteStore, StoreError,
};

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open a fresh store");
    (store, dir)
}

async fn fresh_without_cache() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder(dir.path())
        .event_cache(0)
        .open()
        .expect("open a fresh store");
    (store, dir)
}

async fn reopen(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path()).expect("reopen the store")
}

mod conformance {
    nexus_store::conformance_tests!(super::fresh, reopen = super::reopen);
}

/// The same suite with the event cache off, so every lease reads its event back from disk.
mod conformance_uncached {
    nexus_store::conformance_tests!(super::fresh_without_cache);
}

fn draft(id: &str) -> NewEvent {
    NewEvent::new(WellKnown::PaymentReceived, "flowpay")
        .id(EventId::new(id).expect("valid"))
        .time(t0())
}

#[test]
fn missing_dir_is_a_clear_error_unless_asked_to_create() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("not-there");
    let err = SqliteStore::open(&missing).expect_err("missing dir");
    assert!(matches!(err, StoreError::MissingDir { .. }), "{err:?}");
    assert!(err.to_string().contains("not-there"), "{err}");
    let store = SqliteStore::builder(&missing)
        .create_dir(true)
        .open()
        .expect("created");
    assert!(store.path().ends_with(DB_FILE));
}

#[test]
fn a_file_instead_of_a_dir_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let err = SqliteStore::open(&file).expect_err("not a dir");
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err:?}");
}

#[test]
fn an_unwritable_dir_is_refused() {
    // Permission bits do not stop root, so use a directory no one can create files in.
    let dir = std::path::Path::new("/proc/self");
    let err = SqliteStore::open(dir).expect_err("read-only dir");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("not writable"), "{err}");
}

#[test]
fn a_corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE);
    let garbage = b"this is not a database, but it is someone's data ".repeat(200);
    std::fs::write(&db, &garbage).expect("write");
    let err = SqliteStore::open(dir.path()).expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(std::fs::read(&db).expect("read back"), garbage);
}

#[test]
fn another_programs_database_and_a_newer_schema_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join(DB_FILE);
    {
        let conn = rusqlite_like_open(&db);
        conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER);")
            .expect("create foreign table");
    }
    let err = SqliteStore::open(dir.path()).expect_err("foreign db");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    drop(SqliteStore::open(dir.path()).expect("create"));
    {
        let conn = rusqlite_like_open(&dir.path().join(DB_FILE));
        conn.execute_batch("PRAGMA user_version = 99;")
            .expect("bump version");
    }
    let err = SqliteStore::open(dir.path()).expect_err("newer schema");
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err:?}"
    );
}

/// A plain SQLite connection, to prepare files the way another program would.
fn rusqlite_like_open(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("open sqlite")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_events_and_resumes_the_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (sub, leased_token) = {
        let store = SqliteStore::open(dir.path()).expect("open");
        let sub =
            nexus_store::conformance::subscribe_everything(&store, "http://127.0.0.1:4000/hook")
                .await;
        store
            .append((0..5).map(|i| draft(&format!("e{i}"))).collect())
            .await
            .expect("append");
        let leased = store
            .lease_due("before-restart", t0(), 2, Duration::from_secs(30))
            .await
            .expect("lease");
        assert_eq!(leased.len(), 2);
        store.set_cursor("c", 3).await.expect("cursor");
        (sub, leased[0].token.clone())
    };
    let store = SqliteStore::open(dir.path()).expect("reopen");
    assert_eq!(store.head().await.expect("head"), 5);
    assert_eq!(store.cursor("c").await.expect("cursor"), Some(3));
    let again = store
        .append(vec![draft("e5")])
        .await
        .expect("append after restart");
    assert_eq!(again[0].sequence, 6);
    // Three waiting plus the new one now; the two leased come back when their lease expires.
    let now = store
        .lease_due("after-restart", t0(), 100, Duration::from_secs(3600))
        .await
        .expect("lease");
    assert_eq!(now.len(), 4);
    assert!(
        now.iter()
            .all(|l| l.consumer == Consumer::Subscription(sub.clone()))
    );
    let later = Timestamp::from_unix_millis(t0().as_unix_millis() + 30_000).expect("in range");
    let expired = store
        .lease_due("after-restart", later, 100, Duration::from_secs(30))
        .await
        .expect("lease");
    assert_eq!(
        expired.iter().map(|l| l.event.sequence).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(matches!(
        store
            .ack(
                &leased_token,
                nexus_store::Success {
                    status: Some(200),
                    at: nexus_event::Timestamp::now(),
                    duration_ms: 1
                }
            )
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_reach_the_bus_in_order_and_routes_enqueue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Bus::new();
    let mut sub = bus.subscribe(TypeFilter::all());
    let routes = vec![Route {
        consumer: Consumer::Reactor("mint-on-payment".into()),
        filter: TypeFilter::parse(["PAYMENT_*"]).expect("valid"),
        target: "http://127.0.0.1:4000".into(),
    }];
    let store = SqliteStore::builder(dir.path())
        .bus(bus.clone())
        .router(Arc::new(routes))
        .open()
        .expect("open");
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    store
                        .append(vec![draft(&format!("p{p}-{i}"))])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    store
        .append(vec![
            NewEvent::new(WellKnown::MintConfirmed, "factory").time(t0()),
        ])
        .await
        .expect("append");
    let seqs: Vec<u64> = std::iter::from_fn(|| sub.try_recv().ok())
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seqs, (1..=201).collect::<Vec<_>>());
    let leases = store
        .lease_due("w", t0(), 1000, Duration::from_secs(5))
        .await
        .expect("lease");
    assert_eq!(leases.len(), 200, "the reactor route wants payments only");
    assert!(
        leases
            .iter()
            .all(|l| l.consumer == Consumer::Reactor("mint-on-payment".into()))
    );
}

#[test]
fn one_data_dir_has_one_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = SqliteStore::open(dir.path()).expect("open");
    let err = SqliteStore::open(dir.path()).expect_err("second store on the same dir");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    SqliteStore::open(dir.path()).expect("free again once the first is closed");
}

/// A full disk fails the operations that hit it and commits nothing of their group: no event
/// reported as failed is stored, none acknowledged is lost, and sequences stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_nothing_acknowledged_and_stores_nothing_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder(dir.path())
        .max_size_bytes(256 * 1024)
        .open()
        .expect("open");
    nexus_store::conformance::subscribe_everything(&store, "http://127.0.0.1:4000/hook").await;
    let small = |id: String| vec![draft(&id)];
    let huge =
        |id: String| vec![draft(&id).payload(serde_json::json!({ "blob": "x".repeat(60_000) }))];
    let mut acked = std::collections::HashMap::new();
    let mut refused = 0;
    for round in 0..40 {
        let (a, b, c) = tokio::join!(
            store.append(small(format!("a{round}"))),
            store.append(huge(format!("b{round}"))),
            store.append(small(format!("c{round}"))),
        );
        for (prefix, result) in [("a", a), ("b", b), ("c", c)] {
            match result {
                Ok(appended) => {
                    acked.insert(format!("{prefix}{round}"), appended[0].sequence);
                }
                Err(e) => {
                    assert!(e.is_transient(), "a full disk is a transient error: {e:?}");
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 0, "the cap was never reached");
    let head = store.head().await.expect("head");
    let stored = store.read(0, 1000, &TypeFilter::all()).await.expect("read");
    assert_eq!(
        stored.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "gap-free"
    );
    let stored: std::collections::HashMap<String, u64> = stored
        .into_iter()
        .map(|e| (e.id.to_string(), e.sequence))
        .collect();
    assert_eq!(stored, acked, "exactly the acknowledged events are stored");
    store.close().await;
    let store = SqliteStore::open(dir.path()).expect("reopen without the cap");
    let next = store.append(small("after".into())).await.expect("append");
    assert_eq!(next[0].sequence, head + 1);
}

/// Holds the writer inside an append (routing runs in the writer's transaction) until released,
/// and says when it got there.
struct GateRouter {
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl nexus_store::Router for GateRouter {
    fn route(&self, _event: &nexus_event::Event, _out: &mut Vec<(Consumer, String)>) {
        let _ = self.entered.send(());
        // Returns once the sender is dropped, and at once from then on.
        let _ = self.release.lock().map(|r| r.recv());
    }
}

/// With the writer's queue full, `try_append` (ingress) fails at once with `Busy` and writes
/// nothing, while `append` (reactor output, embedders) waits for room; what was queued is written
/// once the writer moves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_queue_refuses_appends_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = GateRouter {
        entered: entered_tx,
        release: std::sync::Mutex::new(release_rx),
    };
    let store = SqliteStore::builder(dir.path())
        .writer_queue(1)
        .router(Arc::new(gate))
        .open()
        .expect("open");
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.append(vec![draft("first")]).await }
    });
    // The writer is now inside the first append, its queue empty.
    tokio::task::spawn_blocking(move || entered_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the writer runs the first append");
    // The second takes the one place in the queue: polled once, it is queued.
    let mut second = Box::pin(store.append(vec![draft("second")]));
    std::future::poll_fn(|cx| {
        assert!(
            std::future::Future::poll(second.as_mut(), cx).is_pending(),
            "the writer is held"
        );
        std::task::Poll::Ready(())
    })
    .await;
    let third = store.try_append(vec![draft("third")]).await;
    assert!(
        matches!(third, Err(StoreError::Busy { capacity: 1 })),
        "{third:?}"
    );
    assert!(third.expect_err("busy").is_transient());
    // A plain append waits for room instead of failing.
    let mut fourth = Box::pin(store.append(vec![draft("fourth")]));
    std::future::poll_fn(|cx| {
        assert!(
            std::future::Future::poll(fourth.as_mut(), cx).is_pending(),
            "append waits while the queue is full"
        );
        std::task::Poll::Ready(())
    })
    .await;
    drop(release_tx);
    assert_eq!(first.await.expect("join").expect("first")[0].sequence, 1);
    assert_eq!(second.await.expect("second")[0].sequence, 2);
    assert_eq!(fourth.await.expect("fourth")[0].sequence, 3);
    assert_eq!(
        store.head().await.expect("head"),
        3,
        "the refused one wrote nothing"
    );
    assert!(
        store
            .get(&EventId::new("third").expect("valid"))
            .await
            .expect("get")
            .is_none()
    );
}

/// `close` of one handle leaves the others working; `close` of the last shuts the writer down on
/// the blocking pool, so the directory opens again at once. Dropping the last handle inside a
/// current-thread runtime (no `block_in_place` there) does the same synchronously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_shuts_down_with_the_last_handle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path()).expect("open");
    let other = store.clone();
    store.close().await;
    other.append(vec![draft("a")]).await.expect("still open");
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    other.close().await;
    let again = SqliteStore::open(dir.path()).expect("reopened at once");
    assert_eq!(again.head().await.expect("head"), 1);
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let inner = path.clone();
        rt.block_on(async move {
            drop(again);
            let third = SqliteStore::open(&inner).expect("reopened after a drop");
            third.append(vec![draft("b")]).await.expect("append");
            drop(third);
        });
        SqliteStore::open(&path).expect("reopened after the runtime's drop")
    })
    .await
    .expect("join");
}

/// The same at the HTTP level: with the writer held and its queue full, `POST /events` is answered
/// at once `503 UNAVAILABLE` with `Retry-After`, and nothing is stored for it.
#[test]
fn a_full_writer_queue_is_503_with_retry_after_over_http() {
    use crate::support::server::{TestServer, publish};

    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let gate = Arc::new(GateRouter {
        entered: entered_tx,
        release: std::sync::Mutex::new(release_rx),
    });
    let server = TestServer::start_with_store(|store| store.writer_queue(1).router(gate), |_| {});
    let event = |id: &str| serde_json::json!({"type": "PAYMENT_RECEIVED", "id": id});
    let held = std::thread::scope(|scope| {
        let first = scope.spawn(|| publish(&server, &event("held")));
        entered_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer runs the first publish");
        // The one place in the queue, taken directly (polled once, it is queued).
        let mut queued = Box::pin(server.store.append(vec![draft("queued")]));
        server.block_on(std::future::poll_fn(|cx| {
            assert!(std::future::Future::poll(queued.as_mut(), cx).is_pending());
            std::task::Poll::Ready(())
        }));
        let refused = publish(&server, &event("refused"));
        assert_eq!(refused.status, 503, "{}", refused.text);
        assert_eq!(refused.code(), "UNAVAILABLE");
        assert_eq!(refused.header("retry-after"), Some("1"));
        drop(release_tx);
        server.block_on(queued).expect("the queued append");
        first.join().expect("first publish")
    });
    assert_eq!(held.status, 202, "{}", held.text);
    let refused = server.block_on(server.store.get(&EventId::new("refused").expect("valid")));
    assert!(
        refused.expect("get").is_none(),
        "the refused event is not stored"
    );
}
