//! What the operator console costs the server on a large log: a SQLite store
//! (`synchronous=FULL`) filled with 1,000,000 events through the store API, then, against the
//! real router over loopback, the calls the overview makes (`/health/detailed`,
//! `/api/retry/stats`, `/api/instances`, `/metrics`), the event log's first page newest first
//! (`GET /api/events?order=desc&limit=50`, target < 200 ms), a page deep in the log, type-filtered
//! pages, and an event's page (`/api/events/{id}` and its deliveries). Each call is timed as a
//! round trip over loopback with a keep-alive connection: an upper bound of the server's time.
//! The baseline of the same run is `GET /health`, which does no I/O.
//!
//! One event in 1,000 is `MINT_FAILED`, and a subscription to that type gives those events a
//! delivery each, so the event page and the queue figures have something to show.
//!
//! Run with `cargo bench --bench console` (`-- serve` keeps the server up afterwards and prints
//! its console URL and token, to time the pages in a browser).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus_event::{EventId, NewEvent, Pattern, WellKnown};
use nexus_store::{EventLog, NewSubscription, SqliteStore, Subscriptions};
use nexus_transport::auth::{Nodes, Secret};
use nexus_transport::{App, AppConfig};
use serde_json::json;
use tokio::task::JoinSet;

const TOKEN: &str = "console-bench-admin-token-0123456789abcdef";

struct Settings {
    events: u64,
    batch: u64,
    writers: u64,
    calls: usize,
}

/// The type of the `i`th event (1-based): mostly payments, one in 1,000 a failure.
fn type_of(i: u64) -> WellKnown {
    if i.is_multiple_of(1000) {
        return WellKnown::MintFailed;
    }
    match i % 4 {
        0 => WellKnown::PaymentReceived,
        1 => WellKnown::MintRequested,
        2 => WellKnown::MintConfirmed,
        _ => WellKnown::NotificationSent,
    }
}

/// Appends `s.events` events in batches from `s.writers` concurrent writers (group commit).
async fn fill(store: &Arc<SqliteStore>, s: &Settings) -> Duration {
    let started = Instant::now();
    let per_writer = s.events / s.writers;
    let mut writers = JoinSet::new();
    for w in 0..s.writers {
        let store = Arc::clone(store);
        let batch = s.batch;
        writers.spawn(async move {
            let first = w * per_writer + 1;
            let mut i = first;
            while i < first + per_writer {
                let end = (i + batch).min(first + per_writer);
                let drafts = (i..end)
                    .map(|n| {
                        NewEvent::new(type_of(n), "flowpay")
                            .id(EventId::new(&format!("ev-{n}")).expect("valid id"))
                            .payload(json!({"order": format!("o-{n}"), "amount": n % 50_000, "currency": "EUR"}))
                    })
                    .collect();
                store.append(drafts).await.expect("append");
                i = end;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    started.elapsed()
}

struct Timing {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `calls` round trips of GET `path` on one keep-alive connection, after one warm-up call.
fn time(agent: &ureq::Agent, base: &str, path: &str, calls: usize) -> Timing {
    let get = || {
        let started = Instant::now();
        let mut answer = agent
            .get(&format!("{base}{path}"))
            .header("authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = answer.body_mut().read_to_string().expect("a body");
        assert!(!body.is_empty(), "GET {path} answered an empty body");
        started.elapsed()
    };
    get();
    let mut all: Vec<Duration> = (0..calls).map(|_| get()).collect();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Timing {
        p50: at(0.5),
        p99: at(0.99),
        max: all[all.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; without it this is a smoke run.
    let quick = !args.iter().any(|a| a == "--bench");
    let serve = args.iter().any(|a| a == "serve");
    let s = if quick {
        Settings {
            events: 20_000,
            batch: 1000,
            writers: 4,
            calls: 5,
        }
    } else {
        Settings {
            events: 1_000_000,
            batch: 1000,
            writers: 4,
            calls: 200,
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open the store"));
    let filled = rt.block_on(async {
        store
            .create_subscription(NewSubscription {
                url: "http://127.0.0.1:9/failures".into(),
                events: vec![Pattern::new("MINT_FAILED").expect("valid")],
                secret: "s".into(),
                ordered: false,
                filter: None,
            })
            .await
            .expect("subscribe");
        fill(&store, &s).await
    });
    let db = dir.path().join(nexus_store::DB_FILE);
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "console bench: {} events appended in {:.1} s ({:.0} events/s, batches of {}, {} writers, synchronous=FULL); database {:.0} MiB",
        s.events,
        filled.as_secs_f64(),
        s.events as f64 / filled.as_secs_f64(),
        s.batch,
        s.writers,
        size as f64 / (1024.0 * 1024.0)
    );
    if quick {
        println!("smoke run: figures are not measurements and targets are not judged");
    }

    let secret = Secret::parse(TOKEN).expect("valid token");
    let config = AppConfig::new(Nodes::Open(secret.clone()), secret);
    let probe_path = db.clone();
    let app = App::new(
        Arc::clone(&store) as _,
        nexus_core::Bus::new(),
        Arc::default(),
        config,
    )
    // The binary renders its Prometheus recorder here; the text does not grow with the log,
    // so the bench times what does: the gauges read from the store before rendering.
    .metrics(Arc::new(|| "# the bench renders no recorder\n".to_owned()))
    .database_size(Arc::new(move || {
        let path = probe_path.clone();
        Box::pin(async move { std::fs::metadata(path).ok().map(|m| m.len()) })
    }));
    app.lifecycle().set_ready();
    let router = app.router();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    rt.spawn(nexus_transport::serve(
        listener,
        router,
        std::future::pending(),
    ));

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(true)
        .build()
        .into();
    let head = s.events;
    let failed = head - head % 1000;
    let cases: Vec<(&str, String, Option<f64>)> = vec![
        ("baseline: /health (no I/O)", "/health".into(), None),
        (
            "overview: /health/detailed",
            "/health/detailed".into(),
            None,
        ),
        (
            "overview: /api/retry/stats",
            "/api/retry/stats".into(),
            None,
        ),
        (
            "overview: /api/instances",
            "/api/instances?limit=100".into(),
            None,
        ),
        ("overview: /metrics", "/metrics".into(), None),
        (
            "event log, newest 50",
            "/api/events?order=desc&limit=50".into(),
            Some(200.0),
        ),
        (
            "event log, 50 from the middle",
            format!("/api/events?order=desc&limit=50&cursor={}", head / 2),
            Some(200.0),
        ),
        (
            "event log, newest 50 PAYMENT_*",
            "/api/events?order=desc&limit=50&type=PAYMENT_*".into(),
            Some(200.0),
        ),
        (
            "event log, newest 50 MINT_FAILED (1 in 1000)",
            "/api/events?order=desc&limit=50&type=MINT_FAILED".into(),
            None,
        ),
        (
            "event log, a type with no event (whole log)",
            "/api/events?order=desc&limit=50&type=NOTIFICATION_REQUESTED".into(),
            None,
        ),
        (
            "event log, oldest 50",
            "/api/events?limit=50".into(),
            Some(200.0),
        ),
        (
            "event page: /api/events/{id}",
            format!("/api/events/ev-{failed}"),
            None,
        ),
        (
            "event page: its deliveries",
            format!("/api/events/ev-{failed}/deliveries"),
            None,
        ),
    ];
    println!(
        "{:<46} {:>10} {:>10} {:>10}  target",
        "call", "p50", "p99", "max"
    );
    let mut missed = 0;
    for (name, path, target_ms) in &cases {
        let t = time(&agent, &base, path, s.calls);
        let verdict = match target_ms {
            Some(limit) if !quick => {
                let ok = t.p99.as_secs_f64() * 1000.0 < *limit;
                if !ok {
                    missed += 1;
                }
                format!("p99 < {limit} ms: {}", if ok { "met" } else { "MISSED" })
            }
            Some(limit) => format!("p99 < {limit} ms (not judged)"),
            None => String::new(),
        };
        println!(
            "{name:<46} {:>10} {:>10} {:>10}  {verdict}",
            ms(t.p50),
            ms(t.p99),
            ms(t.max)
        );
    }
    if quick {
        println!("smoke run complete");
    } else if missed > 0 {
        println!("{missed} target(s) missed");
    }
    if serve {
        println!("serving the console at {base}/ui/ (admin token {TOKEN}); Ctrl-C to stop");
        rt.block_on(std::future::pending::<()>());
    }
    drop(rt);
    drop(store);
}
