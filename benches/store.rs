//! Durable append and queue throughput of the SQLite store, against the machine's raw fsync rate
//! measured in the same run; then the same cases on the PostgreSQL store, against the raw rate of
//! single-row insert transactions over one connection to the same server in the same run.
//!
//! Cases: single-event appends from 1, 16 and 64 concurrent producers; one producer appending
//! batches of 100 and 1000; lease + ack of queued deliveries by two workers; on SQLite, single
//! appends with 100 subscriptions without a filter, with filters every event passes and with
//! filters none passes (the ratio filtered / unfiltered is judged against 0.9), and the CPU
//! cost of one filter per event and subscription (judged against 1 us). On PostgreSQL also
//! the latency from an append on one instance to the event on another instance's bus (two stores
//! on one database, light load), as p50/p99/max; `cargo bench --bench store -- fanout` runs that
//! case alone. Every case runs with
//! `synchronous=FULL` (durable); a few are repeated with `NORMAL`, labelled not durable. The
//! baseline is a loop of 4 KiB writes + `fdatasync` on the same disk: "events per fsync" says
//! how much group commit gets out of each flush the disk can do.
//!
//! A custom harness rather than criterion: the cases are concurrent, run for a fixed time and
//! fsync, so a steady-state rate over seconds is the measurement, not per-iteration timing.
//!
//! The PostgreSQL cases run on the server of `NEXUS_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), each in a database of its own that is dropped
//! afterwards; `.ci/run` provides one. Without a server the bench fails, naming the URL.
//!
//! Run with `cargo bench --bench store` (`-- sqlite` or `-- postgres` for one store only, `--
//! queue` for the lease + ack cases only).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nexus_event::{NewEvent, Pattern, Timestamp, WellKnown, When};
use nexus_store::{
    DeliveryQueue, Durability, EventLog, NewSubscription, PgStore, SqliteStore, Subscriptions,
};
use serde_json::json;
use tokio::task::JoinSet;

#[path = "support/pg_raw.rs"]
mod pg_raw;

struct Settings {
    run_for: Duration,
    prefill: usize,
}

fn draft(n: u64) -> NewEvent {
    NewEvent::new(WellKnown::PaymentReceived, "flowpay")
        .payload(json!({"order": format!("order-{n}"), "amount": 25, "currency": "EUR"}))
}

fn open(dir: &std::path::Path, durability: Durability) -> SqliteStore {
    SqliteStore::builder(dir)
        .durability(durability)
        .open()
        .expect("open store")
}

/// Raw `fdatasync`s per second of 4 KiB writes in `dir`.
fn fsync_baseline(dir: &std::path::Path, run_for: Duration) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run_for {
        f.write_all(&block).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    rate
}

async fn subscribe_all<S: Subscriptions>(store: &S) {
    nexus_store::conformance::subscribe_everything(store, "http://127.0.0.1:4000/hook").await;
}

/// `producers` tasks each appending batches of `batch` until time is up, with `subscriptions`
/// webhook subscriptions that every event is enqueued for; events/s acknowledged.
async fn appends(
    durability: Durability,
    producers: usize,
    batch: usize,
    subscriptions: usize,
    s: &Settings,
) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), durability);
    for _ in 0..subscriptions {
        subscribe_all(&store).await;
    }
    append_for(store, producers, batch, s).await
}

/// `producers` tasks appending single events, with `subscriptions` webhook subscriptions to every
/// type, each with `filter` (API.md section 12); events/s acknowledged.
async fn filtered_appends(
    producers: usize,
    subscriptions: usize,
    filter: Option<&When>,
    s: &Settings,
) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), Durability::Full);
    for i in 0..subscriptions {
        store
            .create_subscription(NewSubscription {
                url: format!("http://127.0.0.1:4000/hook/{i}"),
                events: vec![Pattern::new("*").expect("glob")],
                secret: "s".into(),
                ordered: false,
                filter: filter.cloned(),
            })
            .await
            .expect("subscribe");
    }
    append_for(store, producers, 1, s).await
}

/// Nanoseconds per evaluation of `filter` on the bench's payload, as routing does it per event
/// and subscription (the type glob, then the filter).
fn filter_ns(filter: &When, run_for: Duration) -> f64 {
    let event = draft(7).into_event(1);
    let glob = Pattern::new("*").expect("glob");
    let mut n = 0u64;
    let mut held = 0u64;
    let start = Instant::now();
    while start.elapsed() < run_for {
        for _ in 0..10_000 {
            let e = black_box(&event);
            if glob.matches_type(&e.event_type) && black_box(filter).holds(&e.payload) {
                held += 1;
            }
        }
        n += 10_000;
    }
    black_box(held);
    start.elapsed().as_nanos() as f64 / n as f64
}

/// `producers` tasks each appending batches of `batch` to `store` until time is up; events/s
/// acknowledged.
async fn append_for<S: EventLog + Clone + 'static>(
    store: S,
    producers: usize,
    batch: usize,
    s: &Settings,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for p in 0..producers {
        let (store, stop, done) = (store.clone(), Arc::clone(&stop), Arc::clone(&done));
        tasks.spawn(async move {
            let mut n = (p as u64) << 40;
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<NewEvent> = (0..batch)
                    .map(|_| {
                        n += 1;
                        draft(n)
                    })
                    .collect();
                let appended = store.append(events).await.expect("append");
                done.fetch_add(appended.len() as u64, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(s.run_for).await;
    stop.store(true, Ordering::Relaxed);
    let acknowledged = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    while tasks.join_next().await.is_some() {}
    acknowledged as f64 / elapsed.as_secs_f64()
}

/// Two workers leasing 256 at a time and acking each delivery concurrently; deliveries/s.
async fn lease_and_ack(durability: Durability, subscriptions: usize, s: &Settings) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), durability);
    lease_and_ack_on(store, subscriptions, s).await
}

/// Two workers leasing 256 at a time from `store` and acking each delivery concurrently, after a
/// prefill of `s.prefill` deliveries to `subscriptions` subscriptions (each event has one
/// delivery per subscription, as a drain to several does; at least 1000 events); deliveries/s.
async fn lease_and_ack_on<S: EventLog + DeliveryQueue + Subscriptions + Clone + 'static>(
    store: S,
    subscriptions: usize,
    s: &Settings,
) -> f64 {
    for _ in 0..subscriptions {
        subscribe_all(&store).await;
    }
    let events = s.prefill.div_ceil(subscriptions).max(1000);
    let mut n = 0;
    while n < events {
        let batch: Vec<NewEvent> = (0..1000).map(|i| draft((n + i) as u64)).collect();
        store.append(batch).await.expect("prefill");
        n += 1000;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    let start = Instant::now();
    for w in 0..2 {
        let (store, stop, done) = (store.clone(), Arc::clone(&stop), Arc::clone(&done));
        workers.spawn(async move {
            let owner = format!("worker-{w}");
            while !stop.load(Ordering::Relaxed) {
                let leases = store
                    .lease_due(&owner, Timestamp::now(), 256, Duration::from_secs(30))
                    .await
                    .expect("lease");
                if leases.is_empty() {
                    break;
                }
                let mut acks = JoinSet::new();
                for lease in leases {
                    let store = store.clone();
                    acks.spawn(async move {
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
                    });
                }
                while let Some(r) = acks.join_next().await {
                    r.expect("ack task").expect("ack");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    tokio::time::sleep(s.run_for).await;
    stop.store(true, Ordering::Relaxed);
    let acked = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    while workers.join_next().await.is_some() {}
    assert!(acked > 0, "nothing was leased and acked");
    acked as f64 / elapsed.as_secs_f64()
}

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The PostgreSQL server the cases run on.
fn pg_url() -> String {
    std::env::var("NEXUS_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// A plain connection to `url`, failing the bench with the URL when nothing answers.
async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL answers at {url} (NEXUS_TEST_DATABASE_URL): {e}")
        });
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    match query {
        Some(q) => format!("{}/{name}?{q}", &base[..authority_end]),
        None => format!("{}/{name}", &base[..authority_end]),
    }
}

/// A fresh database on the bench server for one case; its URL.
async fn pg_database(name: &str) -> String {
    let admin = pg_connect(&pg_url()).await;
    // Two statements: neither may run inside the implicit transaction of a multi-statement batch.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    with_database(&pg_url(), name)
}

async fn pg_drop_database(name: &str) {
    let admin = pg_connect(&pg_url()).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

/// The baseline (`support/pg_raw.rs`) in a database of its own, and the server's settings.
async fn pg_baseline(run_for: Duration) -> (f64, String) {
    let name = "nexus_bench_raw";
    let url = pg_database(name).await;
    let client = pg_connect(&url).await;
    let settings = pg_raw::settings(&client).await;
    let rate = pg_raw::insert_rate(&client, "raw", run_for).await;
    drop(client);
    pg_drop_database(name).await;
    (rate, settings)
}

/// One PostgreSQL append case in a database of its own; events/s acknowledged.
async fn pg_appends(
    case: usize,
    producers: usize,
    batch: usize,
    subscriptions: usize,
    s: &Settings,
) -> f64 {
    let name = format!("nexus_bench_{case}");
    let url = pg_database(&name).await;
    let store = PgStore::builder(&url)
        .pool_size(4)
        .open()
        .await
        .expect("open the PostgreSQL store");
    for _ in 0..subscriptions {
        subscribe_all(&store).await;
    }
    let rate = append_for(store.clone(), producers, batch, s).await;
    store.close().await;
    pg_drop_database(&name).await;
    rate
}

/// Lease + ack on PostgreSQL in a database of its own; deliveries/s.
async fn pg_lease_and_ack(s: &Settings) -> f64 {
    let name = "nexus_bench_queue";
    let url = pg_database(name).await;
    let store = PgStore::builder(&url)
        .pool_size(4)
        .open()
        .await
        .expect("open the PostgreSQL store");
    let rate = lease_and_ack_on(store.clone(), 1, s).await;
    store.close().await;
    pg_drop_database(name).await;
    rate
}

/// Events per second the fan-out case appends: light load.
const FANOUT_RATE: u64 = 200;

/// Latencies of the fan-out case: from the append call and from its acknowledgement (after the
/// commit) to the event on the other instance's bus; and how many events.
struct Fanout {
    from_call: Vec<Duration>,
    from_ack: Vec<Duration>,
}

/// Two instances on one database in a database of its own: appends on A at [`FANOUT_RATE`]
/// events/s (one at a time, single events) for the case's time, each received on B's bus (read
/// by B's follower, told by `NOTIFY`). Fails the bench if an event does not reach B within 5 s
/// or arrives out of order.
async fn pg_fanout(s: &Settings) -> Fanout {
    let name = "nexus_bench_fanout";
    let url = pg_database(name).await;
    let a = PgStore::builder(&url)
        .instance("a")
        .pool_size(4)
        .open()
        .await
        .expect("open instance a");
    let bus = nexus_core::Bus::new();
    let mut sub = bus.subscribe(nexus_core::TypeFilter::all());
    let b = PgStore::builder(&url)
        .instance("b")
        .pool_size(4)
        .bus(bus)
        .open()
        .await
        .expect("open instance b");
    // B's follower listens once it has read the log after connecting: wait for one event.
    let warm = a.append(vec![draft(0)]).await.expect("append")[0].sequence;
    let first = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("B receives A's first event within 5 s")
        .expect("bus");
    assert_eq!(first.sequence, warm);
    let receiver = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut expected = warm + 1;
        while let Ok(got) = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await {
            let event = got.expect("bus");
            assert_eq!(event.sequence, expected, "B's bus out of order");
            expected += 1;
            received.push(Instant::now());
        }
        received
    });
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FANOUT_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = Vec::new();
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < s.run_for {
        tick.tick().await;
        n += 1;
        let call = Instant::now();
        a.append(vec![draft(n)]).await.expect("append on A");
        sent.push((call, Instant::now()));
    }
    // The receiver ends 5 s after the last event it got.
    let received = receiver.await.expect("receiver");
    assert_eq!(received.len(), sent.len(), "every event reaches B's bus");
    a.close().await;
    b.close().await;
    pg_drop_database(name).await;
    let (mut from_call, mut from_ack) = (Vec::new(), Vec::new());
    for ((call, ack), got) in sent.into_iter().zip(received) {
        from_call.push(got.saturating_duration_since(call));
        from_ack.push(got.saturating_duration_since(ack));
    }
    Fanout {
        from_call,
        from_ack,
    }
}

/// `p50 / p99 / max` of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.50),
        at(0.99),
        at(1.0)
    )
}

/// Prints the fan-out case.
#[allow(clippy::print_stdout)]
fn report_fanout(f: Fanout) {
    println!(
        "cross-instance fan-out, {FANOUT_RATE} ev/s appended on A, {} events received on B's bus:",
        f.from_call.len()
    );
    println!("  append call -> B's bus:     {}", percentiles(f.from_call));
    println!("  append answered -> B's bus: {}", percentiles(f.from_ack));
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[allow(clippy::print_stdout)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; without it this is a smoke run.
    let quick = !args.iter().any(|a| a == "--bench");
    // `cargo bench --bench store -- sqlite` or `-- postgres` runs one store's cases only,
    // `-- fanout` the cross-instance fan-out case only, `-- queue` the lease + ack cases only
    // (of the stores chosen), for profiling the settle path.
    let only_fanout = args.iter().any(|a| a == "fanout");
    let only_queue = args.iter().any(|a| a == "queue");
    let sqlite = !only_fanout && !args.iter().any(|a| a == "postgres");
    let postgres = !only_fanout && !args.iter().any(|a| a == "sqlite");
    let s = if quick {
        Settings {
            run_for: Duration::from_millis(200),
            prefill: 2_000,
        }
    } else {
        Settings {
            run_for: Duration::from_secs(3),
            prefill: 400_000,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if only_fanout {
        println!("store bench: {} s per case", s.run_for.as_secs_f64());
        report_fanout(rt.block_on(pg_fanout(&s)));
        return;
    }
    let probe_dir = tempfile::tempdir().expect("temp dir");
    let fsyncs = fsync_baseline(probe_dir.path(), s.run_for);
    println!("store bench: {} s per case", s.run_for.as_secs_f64());
    if quick {
        println!("smoke run: figures are not measurements and targets are not judged");
    }
    println!("baseline: {} fdatasync/s of 4 KiB on this disk", si(fsyncs));
    println!(
        "{:<34} {:<22} {:>12} {:>16}  target",
        "case", "durability", "rate", "per raw fsync"
    );
    // (name, durability, producers, batch size, subscriptions, target events/s)
    type Case = (&'static str, Durability, usize, usize, usize, Option<f64>);
    let cases: [Case; 9] = [
        ("1 producer, single events", Durability::Full, 1, 1, 0, None),
        (
            "16 producers, single events",
            Durability::Full,
            16,
            1,
            0,
            None,
        ),
        (
            "64 producers, single events",
            Durability::Full,
            64,
            1,
            0,
            Some(30_000.0),
        ),
        (
            "64 producers, single events",
            Durability::Normal,
            64,
            1,
            0,
            None,
        ),
        (
            "64 producers, single + 1 delivery",
            Durability::Full,
            64,
            1,
            1,
            None,
        ),
        (
            "1 producer, batches of 100",
            Durability::Full,
            1,
            100,
            0,
            None,
        ),
        (
            "1 producer, batches of 1000",
            Durability::Full,
            1,
            1000,
            0,
            Some(150_000.0),
        ),
        (
            "1 producer, batches of 1000",
            Durability::Normal,
            1,
            1000,
            0,
            None,
        ),
        (
            "1 producer, 1000 + 1000 deliveries",
            Durability::Full,
            1,
            1000,
            1,
            None,
        ),
    ];
    let mut missed = Vec::new();
    let label = |d: Durability| match d {
        Durability::Full => "FULL (durable)",
        _ => "NORMAL (NOT durable)",
    };
    let mut report = |name: &str, d: Durability, unit: &str, rate: f64, target: Option<f64>| {
        let verdict = match target {
            Some(t) if !quick => {
                if rate >= t {
                    format!(">= {}: ok", si(t))
                } else {
                    missed.push(format!("{name} ({} < {})", si(rate), si(t)));
                    format!(">= {}: MISSED", si(t))
                }
            }
            _ => String::new(),
        };
        println!(
            "{:<34} {:<22} {:>12} {:>16}  {verdict}",
            name,
            label(d),
            format!("{} {unit}", si(rate)),
            format!("{:.1}", rate / fsyncs),
        );
    };
    for (name, d, producers, batch, subscriptions, target) in cases {
        if !sqlite || only_queue {
            break;
        }
        let rate = rt.block_on(appends(d, producers, batch, subscriptions, &s));
        report(name, d, "ev/s", rate, target);
    }
    for d in [Durability::Full, Durability::Normal] {
        if !sqlite {
            break;
        }
        let rate = rt.block_on(lease_and_ack(d, 1, &s));
        let target = (d == Durability::Full).then_some(50_000.0);
        report("lease + ack, 2 workers", d, "del/s", rate, target);
    }
    if sqlite {
        // A group of acks to 10 subscriptions writes a leaf per subscription in each of the two
        // per-subscription indexes; the drain with 10 subscriptions is this case.
        let d = Durability::Full;
        let rate = rt.block_on(lease_and_ack(d, 10, &s));
        report("lease + ack, 10 subscriptions", d, "del/s", rate, None);
    }
    if sqlite && !only_queue {
        // Subscription filters (issue 15): the same 100 subscriptions without a filter, with one
        // every event passes (every condition is evaluated and every delivery still written,
        // so the difference is the filters' cost), and with one no event passes.
        let passes = When::from_value(&json!({"/amount": {"gte": 10}, "/currency": {"eq": "EUR"}}))
            .expect("filter");
        let refuses =
            When::from_value(&json!({"/amount": {"gte": 10000}, "/currency": {"eq": "EUR"}}))
                .expect("filter");
        let d = Durability::Full;
        let plain = rt.block_on(filtered_appends(64, 100, None, &s));
        report("64 producers, 100 subs, no filter", d, "ev/s", plain, None);
        let filtered = rt.block_on(filtered_appends(64, 100, Some(&passes), &s));
        report(
            "64 producers, 100 subs, all pass",
            d,
            "ev/s",
            filtered,
            None,
        );
        let refused = rt.block_on(filtered_appends(64, 100, Some(&refuses), &s));
        report(
            "64 producers, 100 subs, none pass",
            d,
            "ev/s",
            refused,
            None,
        );
        let ratio = filtered / plain;
        let pass_ns = filter_ns(&passes, s.run_for);
        let refuse_ns = filter_ns(&refuses, s.run_for);
        let judge = |ok: bool, goal: &str| match (quick, ok) {
            (true, _) => String::new(),
            (false, true) => format!("{goal}: ok"),
            (false, false) => format!("{goal}: MISSED"),
        };
        let ratio_verdict = judge(ratio >= 0.9, ">= 0.90");
        println!(
            "{:<34} {:<22} {:>12} {:>16}  {ratio_verdict}",
            "filtered / unfiltered (100 subs)",
            label(d),
            format!("{ratio:.3}"),
            ""
        );
        let cost_verdict = judge(pass_ns.max(refuse_ns) <= 1_000.0, "<= 1 us");
        println!(
            "{:<34} {:<22} {:>12} {:>16}  {cost_verdict}",
            "filter per event and sub",
            "CPU, 2 conditions",
            format!("{pass_ns:.0} ns"),
            format!("refused: {refuse_ns:.0} ns"),
        );
        if !quick && ratio < 0.9 {
            missed.push(format!("filtered / unfiltered appends ({ratio:.3} < 0.90)"));
        }
        if !quick && pass_ns.max(refuse_ns) > 1_000.0 {
            missed.push(format!(
                "filter cost ({:.0} ns > 1 us)",
                pass_ns.max(refuse_ns)
            ));
        }
    }

    if postgres {
        let (raw, settings) = rt.block_on(pg_baseline(s.run_for));
        println!();
        println!(
            "PostgreSQL store: {settings}, server at {}",
            with_database(&pg_url(), "")
        );
        println!(
            "baseline: {} single-row insert transactions/s over one connection",
            si(raw)
        );
        println!(
            "{:<34} {:<22} {:>12} {:>16}  goal (issue 14)",
            "case", "durability", "rate", "per raw insert tx"
        );
        // (name, producers, batch size, subscriptions, goal events/s)
        type PgCase = (&'static str, usize, usize, usize, Option<f64>);
        let pg_cases: [PgCase; 6] = [
            ("1 producer, single events", 1, 1, 0, None),
            ("64 producers, single events", 64, 1, 0, Some(10_000.0)),
            ("64 producers, single + 1 delivery", 64, 1, 1, None),
            ("1 producer, batches of 100", 1, 100, 0, None),
            ("1 producer, batches of 1000", 1, 1000, 0, Some(100_000.0)),
            ("1 producer, 1000 + 1000 deliveries", 1, 1000, 1, None),
        ];
        let mut pg_report = |name: &str, unit: &str, rate: f64, target: Option<f64>| {
            let verdict = match target {
                Some(t) if !quick => {
                    if rate >= t {
                        format!(">= {}: ok", si(t))
                    } else {
                        missed.push(format!("PostgreSQL {name} ({} < {})", si(rate), si(t)));
                        format!(">= {}: MISSED", si(t))
                    }
                }
                _ => String::new(),
            };
            println!(
                "{:<34} {:<22} {:>12} {:>16}  {verdict}",
                name,
                "commit (durable)",
                format!("{} {unit}", si(rate)),
                format!("{:.1}", rate / raw),
            );
        };
        for (case, (name, producers, batch, subscriptions, goal)) in
            pg_cases.into_iter().enumerate()
        {
            if only_queue {
                break;
            }
            let rate = rt.block_on(pg_appends(case, producers, batch, subscriptions, &s));
            pg_report(name, "ev/s", rate, goal);
        }
        let rate = rt.block_on(pg_lease_and_ack(&s));
        pg_report("lease + ack, 2 workers", "del/s", rate, None);
    }
    if postgres && !only_queue {
        report_fanout(rt.block_on(pg_fanout(&s)));
    }

    if quick {
        println!("smoke run complete");
    } else if missed.is_empty() {
        println!("all store targets met");
    } else {
        println!("targets missed: {}", missed.join("; "));
    }
}
