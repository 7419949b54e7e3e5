//! The PostgreSQL store: the conformance suite case for case as for SQLite, on a database of its
//! own per test (`CREATE DATABASE t_<random>` on the server of `NEXUS_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, dropped afterwards), plus what only a server
//! has: several stores on one database, schema versions, TLS URLs, a lost connection.
//!
//! These tests never skip: without a server they fail, naming the URL they tried.

use std::sync::Arc;
use std::time::Duration;

use nexus_core::Bus;
use nexus_event::{EventId, NewEvent, TypeFilter, WellKnown};
use nexus_store::conformance::pg::{self, TestDatabase};
use nexus_store::conformance::t0;
use nexus_store::{Consumer, DeliveryQueue, EventLog, PgStore, Route, StoreError};
use tokio_postgres::NoTls;

/// The database of one test: created on `NEXUS_TEST_DATABASE_URL`'s server, dropped after.
type TestDb = TestDatabase;

/// A client on the server the tests create their databases on.
async fn admin() -> tokio_postgres::Client {
    pg::connect(&pg::admin_url()).await
}

async fn fresh() -> (PgStore, TestDb) {
    let db = TestDb::create("t").await;
    let store = PgStore::open(db.url())
        .await
        .unwrap_or_else(|e| panic!("open a fresh PostgreSQL store at {}: {e}", db.url()));
    (store, db)
}

async fn reopen(db: &TestDb) -> PgStore {
    PgStore::open(db.url()).await.expect("reopen the store")
}

mod conformance {
    nexus_store::conformance_tests!(super::fresh, reopen = super::reopen);
}

fn draft(id: &str) -> NewEvent {
    NewEvent::new(WellKnown::PaymentReceived, "flowpay")
        .id(EventId::new(id).expect("valid"))
        .time(t0())
}

/// Producers appending at once get gap-free sequences, the bus sees them in commit order, and
/// the router's reactor routes are enqueued with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_gap_free_and_reach_the_bus_in_order() {
    let db = TestDb::create("t").await;
    let bus = Bus::new();
    let mut sub = bus.subscribe(TypeFilter::all());
    let routes = vec![Route {
        consumer: Consumer::Reactor("mint-on-payment".into()),
        filter: TypeFilter::parse(["PAYMENT_*"]).expect("valid"),
        target: "http://127.0.0.1:4000".into(),
    }];
    let store = PgStore::builder(db.url())
        .bus(bus.clone())
        .router(Arc::new(routes))
        .open()
        .await
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
}

/// Two stores (two instances) on one database: sequences stay gap-free across both, an id is
/// unique across both (a repeat on the other answers duplicate, another source conflicts), and a
/// delivery is leased by one of them only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_share_sequences_ids_and_leases() {
    let db = TestDb::create("t").await;
    let a = PgStore::builder(db.url())
        .instance("a")
        .open()
        .await
        .expect("open a");
    let b = PgStore::builder(db.url())
        .instance("b")
        .open()
        .await
        .expect("open b");
    nexus_store::conformance::subscribe_everything(&a, "http://127.0.0.1:4000/hook").await;
    let (ra, rb) = tokio::join!(
        async {
            for i in 0..40 {
                a.append(vec![draft(&format!("a{i}"))])
                    .await
                    .expect("append a");
            }
        },
        async {
            for i in 0..40 {
                b.append(vec![draft(&format!("b{i}"))])
                    .await
                    .expect("append b");
            }
        },
    );
    let ((), ()) = (ra, rb);
    let all = a.read(0, 1000, &TypeFilter::all()).await.expect("read");
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=80).collect::<Vec<_>>()
    );
    assert_eq!(b.head().await.expect("head"), 80);
    let again = b.append(vec![draft("a7")]).await.expect("repeat on b");
    assert!(again[0].duplicate);
    assert_eq!(
        Some(again[0].sequence),
        all.iter().find(|e| e.id == "a7").map(|e| e.sequence)
    );
    let other = b
        .append(vec![
            NewEvent::new(WellKnown::PaymentReceived, "elsewhere")
                .id(EventId::new("a7").expect("valid")),
        ])
        .await;
    assert!(
        matches!(other, Err(StoreError::Conflict { index: 0, .. })),
        "{other:?}"
    );
    // The subscription made on a routes b's appends too; every delivery is leased once between
    // the two.
    let (la, lb) = tokio::join!(
        a.lease_due("wa", t0(), 1000, Duration::from_secs(60)),
        b.lease_due("wb", t0(), 1000, Duration::from_secs(60)),
    );
    let (la, lb) = (la.expect("lease a"), lb.expect("lease b"));
    let mut ids: Vec<i64> = la.iter().chain(&lb).map(|l| l.token.delivery).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "no delivery leased twice");
    assert_eq!(
        total, 80,
        "one delivery per stored event, whichever store appended it"
    );
}

/// A database whose schema is newer than this build is refused with the versions, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let (store, db) = fresh().await;
    store.close().await;
    let (client, connection) = tokio_postgres::connect(db.url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("UPDATE nexus_schema SET version = 99")
        .await
        .expect("bump the version");
    let err = PgStore::open(db.url()).await.expect_err("newer schema");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(db.name()), "{err}");
    drop(client);
}

/// A URL asking for TLS is refused with its own error until TLS is supported; the password is
/// never in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_url_is_refused_clearly() {
    let err = PgStore::open("postgres://nexus:hunter2@db.example:5432/nexus?sslmode=require")
        .await
        .expect_err("tls");
    assert!(matches!(err, StoreError::TlsUnsupported { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("db.example:5432/nexus") && shown.contains("TLS"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    let err = PgStore::open("mysql://x").await.expect_err("not postgres");
    assert!(
        matches!(err, StoreError::Invalid { field: "url", .. }),
        "{err:?}"
    );
}

/// A server that does not answer is `Unavailable` (transient: ingress answers 503), not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    let err = PgStore::builder("postgres://nexus@127.0.0.1:1/nexus")
        .connect_timeout(Duration::from_secs(2))
        .open()
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("127.0.0.1:1/nexus"), "{err}");
}

/// Connections killed by the server fail what was running on them with a transient error, and
/// the store recovers by itself with fresh connections, losing nothing acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_transient_and_the_store_recovers() {
    let (store, db) = fresh().await;
    let first = store.append(vec![draft("before")]).await.expect("append");
    assert_eq!(first[0].sequence, 1);
    let killed = admin()
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name()],
        )
        .await
        .expect("terminate");
    assert!(killed > 0, "the store held connections");
    let mut refused = 0;
    let mut stored = None;
    for attempt in 0..20 {
        match store.append(vec![draft("after")]).await {
            Ok(a) => {
                stored = Some(a[0].sequence);
                break;
            }
            Err(e) => {
                assert!(e.is_transient(), "attempt {attempt}: {e:?}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(stored, Some(2), "recovered after {refused} refusals");
    assert_eq!(store.head().await.expect("head"), 2);
    assert!(
        store
            .get(&EventId::new("before").expect("valid"))
            .await
            .expect("get")
            .is_some()
    );
}

/// The next `n` sequences a bus subscription receives, each within a few seconds (a test
/// failure otherwise, naming what was received so far).
async fn receive(sub: &mut nexus_core::Subscription, n: usize, who: &str) -> Vec<u64> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            Ok(Ok(event)) => got.push(event.sequence),
            Ok(Err(e)) => panic!("{who}: the bus failed after {got:?}: {e}"),
            Err(_) => panic!(
                "{who}: nothing more within 5 s after {} events: {got:?}",
                got.len()
            ),
        }
    }
    got
}

/// A store on `db` named `instance`, publishing to `bus`.
async fn instance_with_bus(db: &TestDb, instance: &str, bus: &Bus) -> PgStore {
    PgStore::builder(db.url())
        .instance(instance)
        .bus(bus.clone())
        .open()
        .await
        .unwrap_or_else(|e| panic!("open {instance}: {e}"))
}

/// Waits (at most 10 s) until `n` event followers of `db` are connected and listening (their
/// last statement was the read they prepare after `LISTEN`), other than the pids in `old`.
async fn followers_listening(db: &TestDb, n: i64, old: &[i32]) -> Vec<i32> {
    let admin = admin().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
                 AND application_name = 'nexus-follower' AND query LIKE 'SELECT%' \
                 AND NOT pid = ANY($2)",
                &[&db.name(), &old],
            )
            .await
            .expect("list followers")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if pids.len() as i64 >= n {
            return pids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} listening followers expected within 10 s, found {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances on one database, appending at once from several tasks each: each instance's
/// bus receives every sequence exactly once, in order (its own events and the other's), and
/// nothing twice afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_bus_sees_every_instance_events_once_in_order() {
    let db = TestDb::create("t").await;
    let (bus_a, bus_b) = (Bus::new(), Bus::new());
    let (mut sub_a, mut sub_b) = (
        bus_a.subscribe(TypeFilter::all()),
        bus_b.subscribe(TypeFilter::all()),
    );
    let a = instance_with_bus(&db, "a", &bus_a).await;
    let b = instance_with_bus(&db, "b", &bus_b).await;
    const PER_TASK: usize = 75;
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let store = if p % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    store
                        .append(vec![draft(&format!("p{p}-{i}"))])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    let total = 4 * PER_TASK;
    let (got_a, got_b) = tokio::join!(
        receive(&mut sub_a, total, "bus a"),
        receive(&mut sub_b, total, "bus b")
    );
    for p in producers {
        p.await.expect("producer");
    }
    let expected: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(got_a, expected, "bus a");
    assert_eq!(got_b, expected, "bus b");
    // Nothing published twice: the next event on each bus is the next sequence.
    b.append(vec![draft("last")]).await.expect("append last");
    let next = total as u64 + 1;
    assert_eq!(receive(&mut sub_a, 1, "bus a").await, [next]);
    assert_eq!(receive(&mut sub_b, 1, "bus b").await, [next]);
}

/// The follower's connection killed by the server: it connects again and catches up, so events
/// appended on the other instance meanwhile reach the bus, in order before this instance's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_connects_again_and_catches_up() {
    let db = TestDb::create("t").await;
    let (bus_a, bus_b) = (Bus::new(), Bus::new());
    let mut sub_b = bus_b.subscribe(TypeFilter::all());
    let a = instance_with_bus(&db, "a", &bus_a).await;
    let b = instance_with_bus(&db, "b", &bus_b).await;
    let old = followers_listening(&db, 2, &[]).await;
    a.append(vec![draft("before")]).await.expect("append");
    assert_eq!(receive(&mut sub_b, 1, "bus b").await, [1]);
    let killed = admin()
        .await
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'nexus-follower'",
            &[&db.name()],
        )
        .await
        .expect("terminate");
    assert_eq!(killed, 2, "one follower per instance");
    for i in 0..3 {
        a.append(vec![draft(&format!("a{i}"))])
            .await
            .expect("append on a");
    }
    // b's own events come after a's: they wait for the catch-up read.
    for i in 0..2 {
        b.append(vec![draft(&format!("b{i}"))])
            .await
            .expect("append on b");
    }
    assert_eq!(receive(&mut sub_b, 5, "bus b").await, [2, 3, 4, 5, 6]);
    let new = followers_listening(&db, 2, &old).await;
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} {new:?}");
    a.append(vec![draft("after")]).await.expect("append");
    assert_eq!(receive(&mut sub_b, 1, "bus b").await, [7]);
}

/// Another instance's retry worker wakes when one instance makes work due: a retry scheduled
/// (`nexus_work`) and deliveries enqueued by an append (`nexus_events`) move its `changes()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_workers_wake_when_work_becomes_due() {
    let db = TestDb::create("t").await;
    let a = PgStore::builder(db.url())
        .instance("a")
        .open()
        .await
        .expect("open a");
    nexus_store::conformance::subscribe_everything(&a, "http://127.0.0.1:4000/hook").await;
    a.append(vec![draft("first")]).await.expect("append");
    let leases = a
        .lease_due("wa", t0(), 10, Duration::from_secs(60))
        .await
        .expect("lease");
    assert_eq!(leases.len(), 1);
    // b listens from here on: what a did before cannot move b's watch.
    let b = PgStore::builder(db.url())
        .instance("b")
        .open()
        .await
        .expect("open b");
    followers_listening(&db, 2, &[]).await;
    let mut changes = b.changes();
    changes.borrow_and_update();
    a.retry_at(
        &leases[0].token,
        t0(),
        nexus_store::Failure {
            at: t0(),
            error: "refused".into(),
            status: Some(503),
        },
    )
    .await
    .expect("retry_at");
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("b woken within 5 s by a's retry")
        .expect("b's watch is alive");
    changes.borrow_and_update();
    a.append(vec![draft("second")]).await.expect("append");
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("b woken within 5 s by a's append")
        .expect("b's watch is alive");
}

/// The end to end promise of API.md section 13: a WebSocket client on instance B (the real
/// `GET /ws` of nexus-transport over B's store and bus) resumes with `since` from the store and
/// then receives the events appended on A and on B, in sequence order, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_on_one_instance_receives_every_instance_events() {
    use futures_util::{SinkExt, StreamExt};
    use nexus_transport::auth::{Nodes, Secret};
    use nexus_transport::{App, AppConfig};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const ADMIN: &str = "admin-token-for-tests-0123456789abcdef";
    let db = TestDb::create("t").await;
    let (bus_a, bus_b) = (Bus::new(), Bus::new());
    let a = instance_with_bus(&db, "a", &bus_a).await;
    let b = instance_with_bus(&db, "b", &bus_b).await;
    for i in 0..2 {
        a.append(vec![draft(&format!("old{i}"))])
            .await
            .expect("append");
    }
    let app = App::new(
        Arc::new(b.clone()),
        bus_b.clone(),
        Arc::new(nexus_resilience::Breakers::default()),
        AppConfig::new(Nodes::configured([]), Secret::parse(ADMIN).expect("valid")),
    );
    app.lifecycle().set_ready();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(nexus_transport::serve(listener, app.router(), async move {
        let _ = stopped.await;
    }));
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect to B's /ws");
    let subscribe = serde_json::json!({"action": "subscribe", "events": ["*"], "since": 1});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .expect("send");
    let mut sequences = Vec::new();
    let mut appended = false;
    while sequences.len() < 4 {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no frame within 5 s after {sequences:?}"))
            .expect("the connection is open")
            .expect("a frame");
        let Message::Text(text) = frame else {
            continue;
        };
        let frame: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON");
        if frame.get("ack").is_some() {
            continue;
        }
        sequences.push(frame["sequence"].as_u64().expect("an event frame"));
        if !appended {
            // The replay from the store reached the client: append on both instances.
            appended = true;
            a.append(vec![draft("a-new")]).await.expect("append on a");
            b.append(vec![draft("b-new")]).await.expect("append on b");
            a.append(vec![draft("a-newer")]).await.expect("append on a");
        }
    }
    assert_eq!(sequences, [2, 3, 4, 5]);
    let _ = shutdown.send(());
    let _ = server.await;
}
