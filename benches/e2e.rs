//! End to end: events appended to the durable log (SQLite, `synchronous=FULL`) until each is
//! delivered, signed, over HTTP to a local receiver by the retry worker, with 1 and with 100
//! subscriptions; and publish-to-receiver latency at a steady 1,000 events/s. The baseline of the
//! same run is the bare HTTP loop: the same client posting to the same receiver with the same
//! concurrency and no store, which is the ceiling the delivery path can reach on the machine.
//!
//! Run with `cargo bench --bench e2e`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use nexus_event::{NewEvent, WellKnown};
use nexus_outbound::{Call, HttpClient, OutboundConfig};
use nexus_reactors::{DeliveryTarget, Reactors};
use nexus_resilience::{RetryWorker, SystemClock, WorkerConfig};
use nexus_store::{EventLog, SqliteStore};
use tokio::task::JoinSet;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The local receiver: answers 204, counts, and records the latency of events that carry
/// their publish time.
#[derive(Default)]
struct Receiver {
    received: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let s = Arc::clone(&state);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_h: HeaderMap, body: Bytes| {
            let s = Arc::clone(&s);
            async move {
                s.received.fetch_add(1, Ordering::Relaxed);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                    && let Some(sent) = v["payload"]["sent_us"].as_u64()
                {
                    let now = epoch().elapsed().as_micros() as u64;
                    if let Ok(mut l) = s.latencies_us.lock() {
                        l.push(now.saturating_sub(sent));
                    }
                }
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, state)
}

struct Rig {
    store: Arc<SqliteStore>,
    worker: nexus_resilience::WorkerHandle,
    receiver: Arc<Receiver>,
    _dir: tempfile::TempDir,
}

async fn rig(subscriptions: usize) -> Rig {
    let (url, receiver) = receiver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let reactors = Arc::new(Reactors::new(Vec::new()).expect("no reactors"));
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open"));
    for _ in 0..subscriptions {
        nexus_store::conformance::subscribe_everything(&*store, &url).await;
    }
    let target = DeliveryTarget::new(
        Arc::clone(&store) as _,
        Arc::new(HttpClient::new(OutboundConfig::default())),
        reactors,
    );
    let worker = RetryWorker::new(
        Arc::clone(&store) as _,
        Arc::new(target),
        Arc::new(SystemClock),
        WorkerConfig {
            owner: "bench".into(),
            ..WorkerConfig::default()
        },
    )
    .expect("worker")
    .spawn();
    Rig {
        store,
        worker,
        receiver,
        _dir: dir,
    }
}

async fn wait_received(r: &Receiver, n: u64, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while r.received.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// Deliveries per second from the first append until the receiver has them all.
async fn throughput(subscriptions: usize, deliveries: usize) -> f64 {
    let rig = rig(subscriptions).await;
    let events = deliveries / subscriptions;
    let start = Instant::now();
    let mut left = events;
    while left > 0 {
        let k = left.min(500);
        let batch: Vec<NewEvent> = (0..k)
            .map(|i| {
                NewEvent::new(WellKnown::PaymentReceived, "bench")
                    .payload(serde_json::json!({"n": i}))
            })
            .collect();
        rig.store.append(batch).await.expect("append");
        left -= k;
    }
    let total = (events * subscriptions) as u64;
    let all = wait_received(&rig.receiver, total, Duration::from_secs(300)).await;
    let elapsed = start.elapsed().as_secs_f64();
    assert!(all, "not every delivery arrived");
    rig.worker.stop(Duration::from_secs(1)).await;
    total as f64 / elapsed
}

/// Publish-to-receipt latency percentiles (ms) at `rate` events/s for `for_`.
async fn latency(rate: u64, for_: Duration) -> (f64, f64, f64, usize) {
    let rig = rig(1).await;
    let store = Arc::clone(&rig.store);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut appends = JoinSet::new();
    let mut sent = 0u64;
    while start.elapsed() < for_ {
        tick.tick().await;
        let store = Arc::clone(&store);
        appends.spawn(async move {
            let sent_us = epoch().elapsed().as_micros() as u64;
            let e = NewEvent::new(WellKnown::PaymentReceived, "bench")
                .payload(serde_json::json!({"sent_us": sent_us}));
            store.append(vec![e]).await.expect("append");
        });
        sent += 1;
    }
    while appends.join_next().await.is_some() {}
    assert!(
        wait_received(&rig.receiver, sent, Duration::from_secs(60)).await,
        "not every delivery arrived"
    );
    rig.worker.stop(Duration::from_secs(1)).await;
    let mut l = rig
        .receiver
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1e3;
    (pct(0.50), pct(0.99), pct(1.0), l.len())
}

/// The ceiling: the same client and concurrency posting straight to the receiver.
async fn bare_http(n: usize, concurrency: usize) -> f64 {
    let (url, receiver) = receiver().await;
    let http = Arc::new(HttpClient::new(OutboundConfig::default()));
    let target = nexus_store::target_origin(&url).expect("origin");
    let body = Bytes::from(serde_json::to_vec(&serde_json::json!({"n": 1})).expect("json"));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (http, url, target, body, next) = (
            Arc::clone(&http),
            url.clone(),
            target.clone(),
            body.clone(),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                let call = Call {
                    method: axum::http::Method::POST,
                    url: &url,
                    target: &target,
                    headers: Vec::new(),
                    body: body.clone(),
                    timeout: None,
                };
                http.send(call).await.expect("the receiver answers");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    assert_eq!(receiver.received.load(Ordering::Relaxed), n as u64);
    n as f64 / start.elapsed().as_secs_f64()
}

#[allow(clippy::print_stdout)]
fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (deliveries, steady) = if quick {
        (1_000, Duration::from_millis(300))
    } else {
        (100_000, Duration::from_secs(10))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    epoch();
    println!(
        "end-to-end bench: append (SQLite synchronous=FULL) -> retry worker -> signed POST -> local receiver, {deliveries} deliveries"
    );
    if quick {
        println!("smoke run: figures are not measurements and targets are not judged");
    }
    let concurrency = WorkerConfig::default().concurrency;
    let bare = rt.block_on(bare_http(deliveries, concurrency));
    println!(
        "{:<44} {:>14}",
        format!("baseline: bare HTTP loop, {concurrency} in flight"),
        format!("{:.1}k req/s", bare / 1e3)
    );
    let mut missed = Vec::new();
    for subs in [1, 100] {
        let rate = rt.block_on(throughput(subs, deliveries));
        let verdict = if quick {
            String::new()
        } else if rate >= 20_000.0 {
            ">= 20k: ok".into()
        } else {
            missed.push(format!("{subs} subscription(s): {:.1}k/s", rate / 1e3));
            ">= 20k: MISSED".into()
        };
        println!(
            "{:<44} {:>14} {:>6.2}x baseline  {verdict}",
            format!("{subs} subscription(s)"),
            format!("{:.1}k del/s", rate / 1e3),
            rate / bare
        );
    }
    let (p50, p99, max, n) = rt.block_on(latency(1_000, steady));
    println!(
        "publish -> receiver at 1,000 events/s, {n} events: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
    );
    if quick {
        println!("smoke run complete");
    } else if missed.is_empty() {
        println!("all end-to-end targets met");
    } else {
        println!("targets missed: {}", missed.join("; "));
    }
}
