//! The PostgreSQL store: the conformance suite case for case as for SQLite, on a database of its
//! own per test (`CREATE DATABASE t_<random>` on the server of `NEXUS_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, dropped afterwards), plus what only a server
//! has: several stores on one database, their heartbeats and the take-over from a dead one,
//! schema versions, TLS URLs, a lost connection.
//!
//! These tests never skip: without a server they fail, naming the URL they tried.

use std::sync::Arc;
use std::time::Duration;

use nexus_core::Bus;
use nexus_event::{EventId, NewEvent, Timestamp, TypeFilter, WellKnown};
use nexus_store::conformance::pg::{self, TestDatabase};
use nexus_store::conformance::t0;
use nexus_store::{
    Consumer, DeliveryQueue, EventLog, EventTypes, Instances, PgStore, Route, StoreError,
};
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

/// Acks that reach the writer together are settled by one statement, and each still gets its own
/// answer: 200 concurrent acks, a quarter of them with stale tokens (a later generation or
/// another owner) that answer `LeaseLost` for their own delivery while the rest succeed; a token
/// acked twice succeeds once; and a retry of an acked token right behind the ack sees it gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_acks_in_one_group_each_get_their_own_answer() {
    let (store, _db) = fresh().await;
    nexus_store::conformance::subscribe_everything(&store, "http://127.0.0.1:4000/hook").await;
    let drafts: Vec<NewEvent> = (0..202).map(|i| draft(&format!("ack-{i}"))).collect();
    store.append(drafts).await.expect("append");
    let leases = store
        .lease_due("w", Timestamp::now(), 1000, Duration::from_secs(600))
        .await
        .expect("lease");
    assert_eq!(leases.len(), 202);
    let (twice, rest) = leases.split_at(2);

    // Every fourth token is stale: alternately a generation the delivery never had and an owner
    // that does not hold it.
    let stale = |i: usize| i.is_multiple_of(4);
    let tokens: Vec<(bool, nexus_store::LeaseToken)> = rest
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut token = l.token.clone();
            if stale(i) && i.is_multiple_of(8) {
                token.generation += 1;
            } else if stale(i) {
                token.owner = "someone-else".into();
            }
            (stale(i), token)
        })
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(tokens.len() + 2));
    let mut tasks = Vec::new();
    for (is_stale, token) in tokens.iter().cloned() {
        let (store, barrier) = (store.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (
                is_stale,
                token.delivery,
                store
                    .ack(
                        &token,
                        nexus_store::Success {
                            status: Some(200),
                            at: nexus_event::Timestamp::now(),
                            duration_ms: 1,
                        },
                    )
                    .await,
            )
        }));
    }
    // The same token twice, in the same burst.
    for _ in 0..2 {
        let (store, barrier) = (store.clone(), Arc::clone(&barrier));
        let token = twice[0].token.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (
                false,
                token.delivery,
                store
                    .ack(
                        &token,
                        nexus_store::Success {
                            status: Some(200),
                            at: nexus_event::Timestamp::now(),
                            duration_ms: 1,
                        },
                    )
                    .await,
            )
        }));
    }
    let (mut acked, mut lost, mut twice_ok) = (0, 0, 0);
    for task in tasks {
        let (is_stale, delivery, result) = task.await.expect("ack task");
        if delivery == twice[0].token.delivery {
            match result {
                Ok(()) => twice_ok += 1,
                Err(StoreError::LeaseLost { delivery: d }) if d == delivery => {}
                other => panic!("second ack of delivery {delivery}: {other:?}"),
            }
        } else if is_stale {
            assert!(
                matches!(result, Err(StoreError::LeaseLost { delivery: d }) if d == delivery),
                "stale token of delivery {delivery}: {result:?}"
            );
            lost += 1;
        } else {
            assert!(result.is_ok(), "ack of delivery {delivery}: {result:?}");
            acked += 1;
        }
    }
    assert_eq!((acked, lost, twice_ok), (150, 50, 1));
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.in_flight),
        (0, 51),
        "the stale tokens' deliveries and the untouched one stay leased"
    );

    // A retry behind an ack of the same token, in one burst: the ack wins, the retry is fenced.
    let last = &twice[1].token;
    let failure = nexus_store::Failure {
        error: "late".into(),
        status: None,
        at: t0(),
        duration_ms: 1,
    };
    let (ack, retry) = tokio::join!(
        store.ack(
            last,
            nexus_store::Success {
                status: Some(200),
                at: nexus_event::Timestamp::now(),
                duration_ms: 1
            }
        ),
        store.retry_at(last, t0(), failure)
    );
    ack.expect("ack");
    assert!(
        matches!(retry, Err(StoreError::LeaseLost { delivery }) if delivery == last.delivery),
        "{retry:?}"
    );
    // The stale tokens' deliveries are still theirs to ack with the real tokens.
    for (i, lease) in rest.iter().enumerate().filter(|(i, _)| stale(*i)) {
        store
            .ack(
                &lease.token,
                nexus_store::Success {
                    status: Some(200),
                    at: nexus_event::Timestamp::now(),
                    duration_ms: 1,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("ack {i} with its real token: {e}"));
    }
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.in_flight), (0, 0));
}

/// Retries that reach the writer together are settled by one statement too: 100 concurrent
/// retries, a quarter with stale tokens (`LeaseLost`, their deliveries still leased), the rest
/// due again at once with their attempt counted; an ack right behind a retry of the same token
/// is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_retries_in_one_group_each_get_their_own_answer() {
    let (store, _db) = fresh().await;
    nexus_store::conformance::subscribe_everything(&store, "http://127.0.0.1:4000/hook").await;
    let drafts: Vec<NewEvent> = (0..101).map(|i| draft(&format!("retry-{i}"))).collect();
    store.append(drafts).await.expect("append");
    let now = Timestamp::now();
    let leases = store
        .lease_due("w", now, 1000, Duration::from_secs(600))
        .await
        .expect("lease");
    assert_eq!(leases.len(), 101);
    let (last, rest) = leases.split_last().expect("leases");
    let failure = move |i: usize| nexus_store::Failure {
        error: format!("attempt {i} failed"),
        status: Some(503),
        at: now,
        duration_ms: 1,
    };
    let stale = |i: usize| i.is_multiple_of(4);
    let barrier = Arc::new(tokio::sync::Barrier::new(rest.len()));
    let mut tasks = Vec::new();
    for (i, lease) in rest.iter().enumerate() {
        let mut token = lease.token.clone();
        if stale(i) {
            token.generation += 1;
        }
        let (store, barrier) = (store.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (
                i,
                token.delivery,
                store.retry_at(&token, now, failure(i)).await,
            )
        }));
    }
    for task in tasks {
        let (i, delivery, result) = task.await.expect("retry task");
        if stale(i) {
            assert!(
                matches!(result, Err(StoreError::LeaseLost { delivery: d }) if d == delivery),
                "stale token of delivery {delivery}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "retry of delivery {delivery}: {result:?}");
        }
    }
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.in_flight), (75, 26));
    let again = store
        .lease_due("w", now, 1000, Duration::from_secs(600))
        .await
        .expect("lease again");
    assert_eq!(again.len(), 75);
    assert!(again.iter().all(|l| l.attempt == 2), "{again:?}");

    // An ack behind a retry of the same token, in one burst: the retry wins, the ack is fenced.
    let (retry, ack) = tokio::join!(
        store.retry_at(&last.token, now, failure(100)),
        store.ack(
            &last.token,
            nexus_store::Success {
                status: Some(200),
                at: nexus_event::Timestamp::now(),
                duration_ms: 1
            }
        )
    );
    retry.expect("retry");
    assert!(
        matches!(ack, Err(StoreError::LeaseLost { delivery }) if delivery == last.token.delivery),
        "{ack:?}"
    );
    let due = store
        .lease_due("w", now, 1000, Duration::from_secs(600))
        .await
        .expect("lease the retried one");
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].token.delivery, due[0].attempt),
        (last.token.delivery, 2)
    );
}

/// A batch large enough to go in with `COPY` (events and deliveries) reads back exactly as a small
/// one: sequences, ids, payloads, correlation ids, one delivery each; and a repeat of it is a
/// duplicate throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_goes_in_whole_with_its_deliveries() {
    let (store, _db) = fresh().await;
    store
        .append(vec![draft("before")])
        .await
        .expect("one first");
    nexus_store::conformance::subscribe_everything(&store, "http://127.0.0.1:4000/hook").await;
    let cause = nexus_event::CorrelationId::new("cause-1").expect("valid");
    let batch: Vec<NewEvent> = (0..1000)
        .map(|i| {
            let e = draft(&format!("big-{i}")).payload(serde_json::json!({"i": i, "s": "é\"x"}));
            if i % 2 == 0 {
                e.correlation_id(cause.clone())
            } else {
                e
            }
        })
        .collect();
    let appended = store.append(batch.clone()).await.expect("the batch");
    assert_eq!(
        appended.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        (2..=1001).collect::<Vec<_>>()
    );
    let read = store.read(1, 2000, &TypeFilter::all()).await.expect("read");
    assert_eq!(read.len(), 1000);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.id, format!("big-{i}").as_str());
        assert_eq!(e.payload, serde_json::json!({"i": i, "s": "é\"x"}));
        assert_eq!(e.correlation_id.is_some(), i % 2 == 0, "{i}");
        assert_eq!(e.time, t0());
    }
    let leased = store
        .lease_due("w", t0(), 5000, Duration::from_secs(60))
        .await
        .expect("lease");
    assert_eq!(leased.len(), 1000, "one delivery per event of the batch");
    let again = store.append(batch).await.expect("repeat");
    assert!(again.iter().all(|a| a.duplicate));
    assert_eq!(store.head().await.expect("head"), 1001);
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
                supported,
                ..
            } if supported == nexus_store::PG_SCHEMA_VERSION
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(db.name()), "{err}");
    drop(client);
}

/// A bad URL or `sslmode` is refused as invalid, never showing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_refused_clearly() {
    for url in [
        "mysql://x",
        "postgres://nexus:hunter2@db.example:5432/nexus?sslmode=sometimes",
    ] {
        let err = PgStore::open(url).await.expect_err("invalid");
        assert!(
            matches!(err, StoreError::Invalid { field: "url", .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

/// `url` with `params` added to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// TLS as libpq's `sslmode` says, against the test server's own certificate (`ssl_cert_file`:
/// the snakeoil certificate of Debian's server, or the one `.ci/postgres.sh` makes for its
/// throwaway cluster; self-signed, named for a host, not for 127.0.0.1): `require` encrypts
/// without checking, `disable` does not encrypt, `verify-ca` accepts it as its own root and
/// refuses it against the public roots, and `verify-full` refuses it for 127.0.0.1 by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_follows_sslmode() {
    let admin = admin().await;
    let show = |row: tokio_postgres::Row| row.get::<_, String>(0);
    let ssl = show(admin.query_one("SHOW ssl", &[]).await.expect("SHOW ssl"));
    assert_eq!(
        ssl,
        "on",
        "the PostgreSQL at {} has ssl off: the TLS tests need it on (.ci/postgres.sh turns it on \
         for its throwaway cluster; for another server set ssl=on with a certificate)",
        pg::admin_url()
    );
    let cert = show(
        admin
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .expect("SHOW ssl_cert_file"),
    );
    let mut cert = std::path::PathBuf::from(cert);
    if cert.is_relative() {
        let data = show(
            admin
                .query_one("SHOW data_directory", &[])
                .await
                .expect("SHOW data_directory"),
        );
        cert = std::path::Path::new(&data).join(cert);
    }
    let root = format!("sslrootcert={}", cert.display());
    let db = TestDb::create("t").await;

    for (params, encrypted) in [
        ("sslmode=require".to_owned(), true),
        ("sslmode=disable".to_owned(), false),
        (format!("sslmode=verify-ca&{root}"), true),
    ] {
        let url = with_params(db.url(), &params);
        let store = PgStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("{params}: {e}"));
        assert_eq!(
            store.encrypted().await.expect("ssl state"),
            encrypted,
            "{params}"
        );
        store.close().await;
    }

    let refused = |params: String| {
        let url = with_params(db.url(), &params);
        async move {
            let err = PgStore::open(&url).await.expect_err(&params);
            assert!(matches!(err, StoreError::Tls { .. }), "{params}: {err:?}");
            err.to_string()
        }
    };
    let shown = refused(format!("sslmode=verify-full&{root}")).await;
    assert!(
        shown.contains(db.name())
            && shown.contains("sslmode=verify-full")
            && shown.contains("not valid for name"),
        "{shown}"
    );
    // Against the public roots, verify-full refuses it as not signed by one; verify-ca is
    // refused before connecting (with the public roots it would take any public certificate).
    let shown = refused("sslmode=verify-full&sslrootcert=system".to_owned()).await;
    assert!(
        shown.contains("sslmode=verify-full") && shown.contains("UnknownIssuer"),
        "not signed by a public root: {shown}"
    );
    let shown = refused("sslmode=verify-ca".to_owned()).await;
    assert!(
        shown.contains(db.name())
            && shown.contains("sslmode=verify-ca")
            && shown.contains("sslrootcert"),
        "{shown}"
    );
    let shown = refused("sslmode=require&sslrootcert=system".to_owned()).await;
    assert!(
        shown.contains(db.name())
            && shown.contains("sslrootcert=system")
            && shown.contains("sslmode=require"),
        "{shown}"
    );
    let shown = refused("sslmode=verify-full&sslrootcert=/nonexistent/root.pem".to_owned()).await;
    assert!(shown.contains("/nonexistent/root.pem"), "{shown}");
}

/// A setting of the server the tests use.
async fn setting(admin: &tokio_postgres::Client, query: &str) -> String {
    admin
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// A store at `url` opens, appends, heartbeats and follows; its connections are encrypted or
/// not as `encrypted` says, and come over a Unix socket (no client address) when `unix`.
async fn works_at(db: &TestDb, url: &str, encrypted: bool, unix: bool) {
    let store = PgStore::builder(url)
        .heartbeat(Duration::from_millis(100))
        .dead_after(Duration::from_secs(2))
        .open()
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    store
        .append(vec![draft(&format!("at-{}", url.len()))])
        .await
        .unwrap_or_else(|e| panic!("append at {url}: {e}"));
    assert_eq!(
        store.encrypted().await.expect("ssl state"),
        encrypted,
        "{url}"
    );
    followers_listening(db, 1, &[]).await;
    // The heartbeat's own connection works: this instance's last_seen_at moves on.
    let first = store.instances().await.expect("instances")[0].last_seen_at;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.instances().await.expect("instances")[0].last_seen_at == first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url}: no heartbeat within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = admin().await;
    let row = admin
        .query_one(
            "SELECT count(*), count(client_addr) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name()],
        )
        .await
        .expect("connections");
    let (all, tcp): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        all >= 3,
        "{url}: pool, follower and heartbeat expected, {all} connections"
    );
    assert_eq!(tcp == 0, unix, "{url}: {tcp} of {all} connections over TCP");
    store.close().await;
}

/// A Unix socket (its directory and the port read from the test server) opens the store, with
/// the default `sslmode` (`prefer`: the server offers no TLS over a socket) and with `disable`,
/// as a URL and as a `key=value` string, while `require` there is refused; a `hostaddr` without
/// `host` opens it too, encrypted under `prefer` (the server has ssl on), while `verify-full`
/// there is refused for want of a name to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_or_a_bare_hostaddr_opens_the_store() {
    let admin = admin().await;
    let dirs = setting(&admin, "SHOW unix_socket_directories").await;
    let dir = dirs
        .split(',')
        .map(str::trim)
        .find(|d| d.starts_with('/'))
        .unwrap_or_else(|| panic!("no socket directory in unix_socket_directories = {dirs:?}"))
        .to_owned();
    let port = setting(&admin, "SHOW port").await;
    let user = setting(&admin, "SELECT current_user::text").await;
    let address = setting(
        &admin,
        "SELECT coalesce(host(inet_server_addr()), 'none: the admin URL is a socket')",
    )
    .await;
    drop(admin);
    let db = TestDb::create("t").await;
    let name = db.name();

    let url = format!("postgres:///{name}?host={dir}&port={port}&user={user}");
    works_at(&db, &url, false, true).await;
    let url = format!("host={dir} port={port} user={user} dbname={name} sslmode=disable");
    works_at(&db, &url, false, true).await;
    let url = format!("hostaddr={address} port={port} user={user} dbname={name}");
    works_at(&db, &url, true, false).await;

    let url =
        format!("hostaddr={address} port={port} user={user} dbname={name} sslmode=verify-full");
    let err = PgStore::open(&url)
        .await
        .expect_err("verify-full without a host name");
    let shown = err.to_string();
    assert!(
        matches!(err, StoreError::Tls { .. })
            && shown.contains(&format!("{address}:{port}/{name}"))
            && shown.contains("sslmode=verify-full")
            && shown.contains("no hostname"),
        "{shown}"
    );
    // TLS asked of a socket is refused: the server offers none there.
    let url = format!("host={dir} port={port} user={user} dbname={name} sslmode=require");
    let err = PgStore::open(&url)
        .await
        .expect_err("require over a socket");
    let shown = err.to_string();
    assert!(
        matches!(err, StoreError::Tls { .. })
            && shown.contains("sslmode=require")
            && shown.contains("server does not support TLS"),
        "{shown}"
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

/// `now` plus `ms` milliseconds.
fn later(now: nexus_event::Timestamp, ms: i64) -> nexus_event::Timestamp {
    nexus_event::Timestamp::from_unix_millis(now.as_unix_millis() + ms).expect("in range")
}

/// A SQLite store holding every kind of row is copied whole: events with their sequences, the
/// subscription with its id and secret, queued deliveries waiting, retrying, parked and leased
/// (given back, due now), the dead letter with its id, the cursor and the breaker; the copy
/// continues where SQLite stopped (next sequence, next delivery id) and a second copy into the
/// same database is refused, naming what is there, without touching the leases of a store on it.
/// A server on the source makes it fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_is_copied_whole_into_an_empty_database() {
    use nexus_event::{Pattern, Timestamp};
    use nexus_store::{
        BreakerLog, BreakerRecord, Cursors, DeliveryHistory, Failure, NewSubscription, SqliteStore,
        Subscriptions, copy_sqlite_to_postgres,
    };

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path()).expect("open sqlite");
    // A filter the first events pass (they have no amount), so the copy must carry it for e8.
    let filter = nexus_event::When::from_value(&serde_json::json!({"/amount": {"exists": false}}))
        .expect("filter");
    let sub = sqlite
        .create_subscription(NewSubscription {
            url: "http://a.example/hook".into(),
            events: vec![Pattern::new("PAYMENT_*").expect("pattern")],
            secret: "s3cret".into(),
            ordered: false,
            filter: Some(filter),
        })
        .await
        .expect("subscription");
    sqlite
        .append((1..=6).map(|i| draft(&format!("e{i}"))).collect())
        .await
        .expect("append");
    let now = Timestamp::now();
    let mut leases = sqlite
        .lease_due("w", now, 10, Duration::from_secs(600))
        .await
        .expect("lease");
    assert_eq!(leases.len(), 6);
    leases.sort_by_key(|l| l.event.sequence);
    let failure = |error: &str| Failure {
        error: error.into(),
        status: Some(500),
        at: now,
        duration_ms: 1,
    };
    sqlite
        .dead_letter(&leases[0].token, failure("boom"))
        .await
        .expect("dead letter e1");
    sqlite
        .ack(
            &leases[1].token,
            nexus_store::Success {
                status: Some(200),
                at: nexus_event::Timestamp::now(),
                duration_ms: 1,
            },
        )
        .await
        .expect("ack e2");
    sqlite
        .retry_at(&leases[2].token, later(now, 3_600_000), failure("timeout"))
        .await
        .expect("retry e3");
    sqlite
        .park(&leases[3].token, later(now, 7_200_000))
        .await
        .expect("park e4");
    // e5 stays leased; e6 is given back, due now.
    sqlite
        .release(&leases[5].token, now)
        .await
        .expect("release e6");
    sqlite.set_cursor("reader", 3).await.expect("cursor");
    let declared = sqlite
        .put_event_type(nexus_store::EventTypePut {
            name: nexus_event::EventType::new("PAYMENT_RECEIVED").expect("type"),
            description: "paid".into(),
            schema: Some(serde_json::json!({"type": "object", "required": ["amount"]})),
            examples: vec![serde_json::json!({"amount": 1})],
            deprecated: true,
            origin: nexus_store::TypeOrigin::Config,
        })
        .await
        .expect("event type")
        .record;
    let breaker = BreakerRecord {
        target: "http://a.example".into(),
        open: true,
        consecutive_failures: 5,
        trips: 2,
        opened_at: Some(now),
        generation: 0,
    };
    // Saved twice: the copy keeps the generation the second save got.
    sqlite.save_breaker(breaker.clone()).await.expect("breaker");
    let generation = sqlite.save_breaker(breaker.clone()).await.expect("breaker");
    assert_eq!(generation, 2);
    let breaker = BreakerRecord {
        generation,
        ..breaker
    };
    let events = sqlite
        .read(0, 100, &TypeFilter::all())
        .await
        .expect("read sqlite");
    let dead = sqlite.dead_letters(10, None).await.expect("dead letters");
    assert_eq!(dead.items.len(), 1);
    // The history of e1 (dead), e2 (delivered), e3 (one failed attempt) and e4 (parked).
    let mut history = Vec::new();
    for sequence in 1..=4 {
        history.push(
            sqlite
                .event_deliveries(sequence, now)
                .await
                .expect("history"),
        );
    }

    let db = TestDb::create("t").await;
    let err = copy_sqlite_to_postgres(dir.path(), PgStore::builder(db.url()))
        .await
        .expect_err("a store runs on the source");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    sqlite.close().await;

    let report = copy_sqlite_to_postgres(dir.path(), PgStore::builder(db.url()))
        .await
        .expect("copy");
    assert_eq!(
        report.tables(),
        [
            ("event_types", 1),
            ("subscriptions", 1),
            ("events", 6),
            ("deliveries", 4),
            ("dead_letters", 1),
            ("delivery_history", 2),
            ("delivery_attempts", 2),
            ("cursors", 1),
            ("breakers", 1),
        ]
    );
    assert_eq!(report.head, 6);
    assert!(report.database.contains(db.name()), "{report:?}");

    let pg = reopen(&db).await;
    assert_eq!(
        pg.read(0, 100, &TypeFilter::all()).await.expect("read pg"),
        events
    );
    assert_eq!(pg.head().await.expect("head"), 6);
    let copied = pg
        .subscription(&sub.id)
        .await
        .expect("subscription")
        .expect("copied");
    assert!(
        copied == sub,
        "the subscription with its id, secret, filter and creation time"
    );
    assert_eq!(pg.dead_letters(10, None).await.expect("dead letters"), dead);
    for (sequence, before) in (1..=4).zip(&history) {
        let after = pg.event_deliveries(sequence, now).await.expect("history");
        assert_eq!(&after, before, "the history of event {sequence}");
    }
    assert_eq!(history[0][0].attempts[0].error.as_deref(), Some("boom"));
    assert_eq!(pg.cursor("reader").await.expect("cursor"), Some(3));
    assert_eq!(pg.breakers().await.expect("breakers"), vec![breaker]);
    assert_eq!(
        pg.event_types(10, None).await.expect("event types").items,
        vec![declared],
        "the type with its origin and times"
    );
    let stats = pg.stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.in_flight, stats.dead_letters),
        (4, 0, 1)
    );

    // Due now: e5 (its lease given back) and e6, attempts unchanged.
    let mut due = pg
        .lease_due("w2", later(now, 1_000), 10, Duration::from_secs(36_000))
        .await
        .expect("lease now");
    due.sort_by_key(|l| l.event.sequence);
    let seen: Vec<(u64, u32)> = due.iter().map(|l| (l.event.sequence, l.attempt)).collect();
    assert_eq!(seen, vec![(5, 1), (6, 1)]);
    // e3 at its retry time, second attempt; e4 at its next trial.
    let retried = pg
        .lease_due("w2", later(now, 3_700_000), 10, Duration::from_secs(36_000))
        .await
        .expect("lease the retry");
    let seen: Vec<(u64, u32)> = retried
        .iter()
        .map(|l| (l.event.sequence, l.attempt))
        .collect();
    assert_eq!(seen, vec![(3, 2)]);
    // e4 still parked: not leased by time, only when its breaker lets it go.
    let at_trial = later(now, 7_300_000);
    let parked = pg
        .lease_due("w2", at_trial, 10, Duration::from_secs(36_000))
        .await
        .expect("nothing leased");
    assert!(parked.is_empty(), "{parked:?}");
    let targets = pg.parked_targets().await.expect("parked targets");
    assert_eq!(targets.len(), 1);
    assert!(
        pg.unpark_one(&targets[0], at_trial)
            .await
            .expect("unpark one")
    );
    let parked = pg
        .lease_due("w2", at_trial, 10, Duration::from_secs(36_000))
        .await
        .expect("lease the parked one");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].event.sequence, 4);

    // Appends continue the log and route to the copied subscription with a new delivery id.
    let appended = pg.append(vec![draft("e7")]).await.expect("append");
    assert_eq!(appended[0].sequence, 7);
    let fresh = pg
        .lease_due("w3", later(now, 7_400_000), 10, Duration::from_secs(36_000))
        .await
        .expect("lease the new one");
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].event.sequence, 7);
    assert!(fresh[0].token.delivery > 6, "{:?}", fresh[0].token);
    assert_eq!(
        fresh[0].consumer,
        Consumer::Subscription(sub.id.clone()),
        "routed by the copied subscription"
    );
    pg.append(vec![draft("e8").payload(serde_json::json!({"amount": 1}))])
        .await
        .expect("append e8");
    assert_eq!(
        pg.lease_due("w3", later(now, 7_500_000), 10, Duration::from_secs(36_000))
            .await
            .expect("lease after e8")
            .len(),
        0,
        "the copied filter refuses e8: no delivery"
    );

    // A copy into it now is refused, and leaves the running store's lease alone.
    let err = copy_sqlite_to_postgres(dir.path(), PgStore::builder(db.url()))
        .await
        .expect_err("the target is no longer empty");
    pg.ack(
        &fresh[0].token,
        nexus_store::Success {
            status: Some(200),
            at: nexus_event::Timestamp::now(),
            duration_ms: 1,
        },
    )
    .await
    .expect("the lease is still held");
    pg.close().await;
    assert!(matches!(err, StoreError::NotEmpty { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("8 events")
            && shown.contains("1 subscriptions")
            && shown.contains("1 running nexus-server instance(s)")
            && shown.contains(db.name()),
        "{shown}"
    );
}

/// An empty database on which a server runs is refused too (that server would publish the
/// copied history to its WebSocket clients as new); once it stopped, the copy goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refuses_a_target_a_server_runs_on() {
    use nexus_store::{SqliteStore, copy_sqlite_to_postgres};
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(dir.path()).expect("open sqlite");
    sqlite.append(vec![draft("only")]).await.expect("append");
    sqlite.close().await;
    let db = TestDb::create("t").await;
    let running = PgStore::builder(db.url())
        .instance("server")
        .open()
        .await
        .expect("a server on the empty target");
    let err = copy_sqlite_to_postgres(dir.path(), PgStore::builder(db.url()))
        .await
        .expect_err("a server runs on the target");
    assert!(
        matches!(&err, StoreError::NotEmpty { holds, .. } if holds.contains("1 running nexus-server")),
        "{err:?}"
    );
    running.close().await;
    let report = copy_sqlite_to_postgres(dir.path(), PgStore::builder(db.url()))
        .await
        .expect("copied once the server stopped");
    assert_eq!(report.events, 1);
}

/// A copy from a directory without a store fails before touching the target, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_needs_a_store_in_its_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = PgStore::builder("postgres://nexus@127.0.0.1:1/nexus");
    let missing = dir.path().join("nowhere");
    let err = nexus_store::copy_sqlite_to_postgres(&missing, target)
        .await
        .expect_err("missing dir");
    assert!(matches!(err, StoreError::MissingDir { .. }), "{err:?}");
    let target = PgStore::builder("postgres://nexus@127.0.0.1:1/nexus");
    let err = nexus_store::copy_sqlite_to_postgres(dir.path(), target)
        .await
        .expect_err("no store");
    assert!(matches!(err, StoreError::NoStore { .. }), "{err:?}");
    assert!(err.to_string().contains("nexus.db"), "{err}");
}

/// Opens a store on `db` as instance `id` with these heartbeat settings.
async fn instance(db: &TestDb, id: &str, heartbeat: Duration, dead_after: Duration) -> PgStore {
    PgStore::builder(db.url())
        .instance(id)
        .heartbeat(heartbeat)
        .dead_after(dead_after)
        .open()
        .await
        .unwrap_or_else(|e| panic!("open instance {id}: {e}"))
}

/// The ids `store` lists, in its order.
async fn listed(store: &PgStore) -> Vec<String> {
    store
        .instances()
        .await
        .expect("instances")
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// Instance `a` stops heartbeating without closing (its heartbeat is an hour, as a killed
/// process's never comes): `b`, which heartbeats every 100 ms and takes 2 s unseen for dead,
/// gives back `a`'s lease (60 s long) within dead_after + heartbeat, deletes `a`'s row, and `a`'s
/// late ack is fenced off while `b` leases and acks the delivery, on the same attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_is_taken_over_and_its_late_ack_fenced() {
    let db = TestDb::create("t").await;
    let hour = Duration::from_secs(3600);
    let a = instance(&db, "a", hour, 2 * hour).await;
    let (heartbeat, dead_after) = (Duration::from_millis(100), Duration::from_secs(2));
    let b = instance(&db, "b", heartbeat, dead_after).await;
    assert_eq!(listed(&b).await, ["a", "b"], "both listed, by start");
    assert_eq!(listed(&a).await, ["a", "b"]);
    let listed_a = &a.instances().await.expect("instances")[0];
    assert!(!listed_a.host.is_empty() && listed_a.last_seen_at >= listed_a.started_at);

    nexus_store::conformance::subscribe_everything(&a, "http://127.0.0.1:4000/hook").await;
    a.append(vec![draft("in-flight")]).await.expect("append");
    let leased = a
        .lease_due("worker-a", Timestamp::now(), 10, Duration::from_secs(60))
        .await
        .expect("lease a");
    assert_eq!(leased.len(), 1);
    assert!(
        b.lease_due("worker-b", Timestamp::now(), 10, Duration::from_secs(60))
            .await
            .expect("lease b")
            .is_empty(),
        "a holds it"
    );

    // b's workers learn of the take-over from b's changes (the `nexus_work` notification the
    // give-back sends), not by polling: without it they would sleep until a's lease expired.
    let mut changes = b.changes();
    changes.borrow_and_update();
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let taken = loop {
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .expect("b's changes did not move for a take-over within 10 s")
            .expect("the store is open");
        let got = b
            .lease_due("worker-b", Timestamp::now(), 10, Duration::from_secs(60))
            .await
            .expect("lease b");
        if !got.is_empty() {
            break got;
        }
    };
    let waited = started.elapsed();
    // a registered at open, up to moments before the clock started.
    assert!(
        // Slack for a loaded CI machine; the contract's bound (30 s) is far above.
        waited <= dead_after + heartbeat + Duration::from_secs(3),
        "taken over after {waited:?}"
    );
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].token.delivery, leased[0].token.delivery);
    assert_eq!(taken[0].attempt, leased[0].attempt, "no attempt burnt");
    assert_eq!(listed(&b).await, ["b"], "a's row is deleted");
    assert_eq!(listed(&a).await, ["b"]);

    let late = a
        .ack(
            &leased[0].token,
            nexus_store::Success {
                status: Some(200),
                at: nexus_event::Timestamp::now(),
                duration_ms: 1,
            },
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { delivery }) if delivery == leased[0].token.delivery),
        "{late:?}"
    );
    b.ack(
        &taken[0].token,
        nexus_store::Success {
            status: Some(200),
            at: nexus_event::Timestamp::now(),
            duration_ms: 1,
        },
    )
    .await
    .expect("b acks");
    assert_eq!(b.stats().await.expect("stats").pending, 0);
    b.close().await;
    a.close().await;
}

/// An instance whose row the others deleted (it was away longer than dead_after) writes it
/// again on its next heartbeat, with its start time kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_taken_for_dead_registers_again() {
    let db = TestDb::create("t").await;
    let a = instance(&db, "a", Duration::from_millis(100), Duration::from_secs(1)).await;
    let before = a.instances().await.expect("instances");
    assert_eq!(before.len(), 1);
    let admin = pg::connect(db.url()).await;
    let deleted = admin
        .execute("DELETE FROM instances WHERE id = 'a'", &[])
        .await
        .expect("delete a's row");
    assert_eq!(deleted, 1);
    assert!(listed(&a).await.is_empty());
    let started = std::time::Instant::now();
    let again = loop {
        let now = a.instances().await.expect("instances");
        if !now.is_empty() {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a did not register again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again[0].id, "a");
    assert_eq!(
        again[0].started_at, before[0].started_at,
        "its start is kept"
    );
    assert!(again[0].last_seen_at >= before[0].last_seen_at);
    a.close().await;
}

/// Closing gives the instance's leases back at once and takes it off the list; the other
/// instance's heartbeat, which runs meanwhile, never takes its own leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_leaves_at_once_and_gives_the_leases_back() {
    let db = TestDb::create("t").await;
    let (heartbeat, dead_after) = (Duration::from_millis(50), Duration::from_secs(1));
    let a = instance(&db, "a", heartbeat, dead_after).await;
    let b = instance(&db, "b", heartbeat, dead_after).await;
    nexus_store::conformance::subscribe_everything(&a, "http://127.0.0.1:4000/hook").await;
    a.append(vec![draft("e1"), draft("e2")])
        .await
        .expect("append");
    let held_by_a = a
        .lease_due("worker-a", Timestamp::now(), 1, Duration::from_secs(60))
        .await
        .expect("lease a");
    let held_by_b = b
        .lease_due("worker-b", Timestamp::now(), 1, Duration::from_secs(60))
        .await
        .expect("lease b");
    assert_eq!((held_by_a.len(), held_by_b.len()), (1, 1));
    // Many heartbeats of both: neither takes its own or a live other's lease.
    tokio::time::sleep(heartbeat * 6).await;
    assert_eq!(listed(&b).await, ["a", "b"]);
    a.close().await;
    assert_eq!(listed(&b).await, ["b"], "a left at close");
    let again = b
        .lease_due("worker-b", Timestamp::now(), 10, Duration::from_secs(60))
        .await
        .expect("lease b");
    assert_eq!(
        again.iter().map(|l| l.token.delivery).collect::<Vec<_>>(),
        [held_by_a[0].token.delivery],
        "a's lease is due again at once"
    );
    b.ack(
        &held_by_b[0].token,
        nexus_store::Success {
            status: Some(200),
            at: nexus_event::Timestamp::now(),
            duration_ms: 1,
        },
    )
    .await
    .expect("b's own lease survived");
    b.ack(
        &again[0].token,
        nexus_store::Success {
            status: Some(200),
            at: nexus_event::Timestamp::now(),
            duration_ms: 1,
        },
    )
    .await
    .expect("b acks a's");
    b.close().await;
}

/// A dead_after no longer than the heartbeat is refused at open, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_after_must_outlast_the_heartbeat() {
    let db = TestDb::create("t").await;
    let refused = PgStore::builder(db.url())
        .heartbeat(Duration::from_secs(5))
        .dead_after(Duration::from_secs(5))
        .open()
        .await;
    match refused {
        Err(StoreError::Invalid { field, message }) => {
            assert_eq!(field, "dead_after");
            assert!(message.contains("5s"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// While the database refuses an instance, its heartbeat keeps trying; once back, it takes no one
/// over for dead_after (the others could not be seen either while the database was away), and
/// then does as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_others_get_dead_after_to_be_seen_again() {
    let db = TestDb::create("t").await;
    let hour = Duration::from_secs(3600);
    // Never heartbeats after open: dead 2 s after it, for `a`.
    let gone = instance(&db, "gone", hour, 2 * hour).await;
    let dead_after = Duration::from_secs(2);
    let a = instance(&db, "a", Duration::from_millis(100), dead_after).await;
    let admin = admin().await;
    let name = db.name().to_owned();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("refuse connections");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("cut the open connections");
    // Away longer than dead_after: `gone` is past it when the database is back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    admin
        .batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .await
        .expect("allow connections again");
    let back = std::time::Instant::now();
    let rows = pg::connect(db.url()).await;
    loop {
        let left = rows
            .query_one("SELECT count(*) FROM instances WHERE id = 'gone'", &[])
            .await
            .expect("count")
            .get::<_, i64>(0);
        if left == 0 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "gone was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = back.elapsed();
    assert!(
        waited >= dead_after - Duration::from_millis(500),
        "taken over {waited:?} after the database came back"
    );
    assert_eq!(listed(&a).await, ["a"], "a heartbeats again");
    a.close().await;
    gone.close().await;
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
            duration_ms: 1,
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

/// A row of the log that cannot be read as an event (changed by hand) is skipped with an error
/// line: the other instance's bus still gets every later event, instead of its follower failing
/// on the same row for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_row_does_not_stop_the_fan_out() {
    let db = TestDb::create("t").await;
    let (bus_a, bus_b) = (Bus::new(), Bus::new());
    let mut sub_a = bus_a.subscribe(TypeFilter::all());
    let a = instance_with_bus(&db, "a", &bus_a).await;
    let b = instance_with_bus(&db, "b", &bus_b).await;
    b.append(vec![draft("first")]).await.expect("append 1");
    assert_eq!(receive(&mut sub_a, 1, "a").await, [1]);
    // Sequence 2 written by hand with a payload that is not JSON, as its appender would (under
    // the append lock, schema::APPEND_LOCK = 0x6e6578757301, with the notification).
    let raw = pg::connect(db.url()).await;
    raw.batch_execute(
        "BEGIN; SELECT pg_advisory_xact_lock(121382091715329); \
         INSERT INTO events (sequence, id, source, type, time_ms, payload) \
         VALUES (2, 'broken', 'flowpay', 'PAYMENT_RECEIVED', 0, '{not json'); \
         SELECT pg_notify('nexus_events', '2'); COMMIT",
    )
    .await
    .expect("the broken row");
    b.append(vec![draft("third")]).await.expect("append 3");
    b.append(vec![draft("fourth")]).await.expect("append 4");
    assert_eq!(
        receive(&mut sub_a, 2, "a").await,
        [3, 4],
        "the unreadable row is skipped, the rest arrives"
    );
    a.close().await;
    b.close().await;
}

/// `subscription()` is cached (every webhook delivery reads it), and a change made on another
/// instance reaches this instance's cache through its `nexus_subscriptions` notification, well
/// before the cache's 10 s bound; a change made here is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_changed_elsewhere_is_not_served_stale() {
    use nexus_event::Pattern;
    use nexus_store::{NewSubscription, SubscriptionPatch, Subscriptions};
    let db = TestDb::create("t").await;
    let a = instance(&db, "a", Duration::from_secs(2), Duration::from_secs(10)).await;
    let b = instance(&db, "b", Duration::from_secs(2), Duration::from_secs(10)).await;
    followers_listening(&db, 2, &[]).await;
    let made = a
        .create_subscription(NewSubscription {
            url: "http://127.0.0.1:4000/old".into(),
            events: vec![Pattern::new("*").expect("pattern")],
            secret: "first-secret".into(),
            ordered: false,
            filter: None,
        })
        .await
        .expect("create");
    let read = |s: &PgStore| {
        let s = s.clone();
        let id = made.id.clone();
        async move { s.subscription(&id).await.expect("read").expect("exists") }
    };
    assert_eq!(
        read(&b).await.url,
        "http://127.0.0.1:4000/old",
        "cached on b now"
    );
    a.update_subscription(
        &made.id,
        SubscriptionPatch {
            url: Some("http://127.0.0.1:4000/new".into()),
            secret: Some("second-secret".into()),
            ..Default::default()
        },
    )
    .await
    .expect("update on a");
    assert_eq!(
        read(&a).await.secret,
        "second-secret",
        "seen at once where it was made"
    );
    let started = std::time::Instant::now();
    loop {
        let seen = read(&b).await;
        if seen.url.ends_with("/new") {
            assert_eq!(seen.secret, "second-secret");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "b still serves the old subscription after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.delete_subscription(&made.id).await.expect("delete");
    let started = std::time::Instant::now();
    while b.subscription(&made.id).await.expect("read").is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "b still serves a deleted subscription after 3 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.close().await;
    b.close().await;
}

/// A filter set, changed or removed on one instance routes the very next append on another
/// (the routes version moves with the change, under the append lock): the shared queue holds a
/// delivery for the events the filter passes only (API.md section 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_set_on_one_instance_routes_the_next_append_on_another() {
    use nexus_event::{Pattern, When};
    use nexus_store::{NewSubscription, SubscriptionPatch, Subscriptions};
    let db = TestDb::create("t").await;
    let a = instance(&db, "a", Duration::from_secs(2), Duration::from_secs(10)).await;
    let b = instance(&db, "b", Duration::from_secs(2), Duration::from_secs(10)).await;
    let made = a
        .create_subscription(NewSubscription {
            url: "http://127.0.0.1:4000/hook".into(),
            events: vec![Pattern::new("*").expect("pattern")],
            secret: "s".into(),
            ordered: false,
            filter: None,
        })
        .await
        .expect("create");
    let pay = |id: &str, amount: i64| draft(id).payload(serde_json::json!({ "amount": amount }));
    let pending = |s: &PgStore| {
        let s = s.clone();
        async move { s.stats().await.expect("stats").pending }
    };
    b.append(vec![pay("p1", 5)]).await.expect("append");
    assert_eq!(pending(&b).await, 1, "no filter yet");
    a.update_subscription(
        &made.id,
        SubscriptionPatch {
            filter: Some(Some(
                When::from_value(&serde_json::json!({"/amount": {"gte": 10}})).expect("filter"),
            )),
            ..SubscriptionPatch::default()
        },
    )
    .await
    .expect("set the filter on a");
    b.append(vec![pay("p2", 5), pay("p3", 50)])
        .await
        .expect("append on b");
    assert_eq!(pending(&b).await, 2, "b routed by a's filter: p3 only");
    a.update_subscription(
        &made.id,
        SubscriptionPatch {
            filter: Some(None),
            ..SubscriptionPatch::default()
        },
    )
    .await
    .expect("clear it on a");
    b.append(vec![pay("p4", 5)]).await.expect("append on b");
    assert_eq!(pending(&b).await, 3, "cleared: p4 is routed");
    a.close().await;
    b.close().await;
}

/// Two instances on one database, each with its catalogue: a type declared, changed or deleted
/// through one is applied by the other within a bounded time (the `nexus_event_types`
/// notification), with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_follows_changes_made_on_another_instance() {
    use nexus_api::event_types::EventTypePut;
    use nexus_catalog::{Catalog, Refusal};
    use serde_json::json;

    const BOUND: Duration = Duration::from_secs(2);
    let db = TestDb::create("t").await;
    let a = Arc::new(PgStore::open(db.url()).await.expect("instance a"));
    let b = Arc::new(PgStore::open(db.url()).await.expect("instance b"));
    let here = Catalog::open(a.clone(), false).await.expect("catalogue a");
    let there = Catalog::open(b.clone(), false).await.expect("catalogue b");
    let paid = nexus_event::EventType::new("PAYMENT_RECEIVED").expect("type");
    let amount = |kind: &str| EventTypePut {
        schema: Some(json!({"type": "object", "required": ["amount"],
            "properties": {"amount": {"type": kind}}})),
        ..EventTypePut::default()
    };
    // Waits until `there` answers `wanted` for `payload`; how long it took.
    let until = |payload: serde_json::Value,
                 wanted: fn(&Result<nexus_catalog::Accepted, Refusal>) -> bool| {
        let there = Arc::clone(&there);
        let paid = paid.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let answer = there.check(&paid, &payload);
                if wanted(&answer) {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < BOUND,
                    "not seen within {BOUND:?}: {answer:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    here.put(
        paid.clone(),
        amount("integer"),
        nexus_store::TypeOrigin::Api,
    )
    .await
    .expect("declared on a");
    let took = until(json!({"amount": "1"}), |r| {
        matches!(r, Err(Refusal::Schema { .. }))
    })
    .await;
    assert!(there.check(&paid, &json!({"amount": 1})).is_ok());
    let replaced_in = {
        here.put(paid.clone(), amount("string"), nexus_store::TypeOrigin::Api)
            .await
            .expect("replaced on a");
        until(json!({"amount": "1"}), |r| r.is_ok()).await
    };
    assert!(
        there.check(&paid, &json!({"amount": 1})).is_err(),
        "the new validator"
    );
    assert!(here.delete("PAYMENT_RECEIVED").await.expect("deleted on a"));
    let deleted_in = until(json!({"amount": 1}), |r| r.is_ok()).await;
    assert!(there.declared().is_empty());
    eprintln!(
        "seen on the other instance after {took:?} (declared), {replaced_in:?} (replaced), {deleted_in:?} (deleted)"
    );
    drop((here, there));
    for store in [a, b] {
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close().await;
        }
    }
}
