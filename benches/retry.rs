//! Deliveries per second through the retry worker with an instant fake target, on the SQLite
//! store with `synchronous=FULL`, against the store's bare lease + ack loop measured in the same
//! run; and what an idle worker with 10,000 delayed deliveries costs.
//!
//! Run with `cargo bench --bench retry`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nexus_event::{NewEvent, Timestamp, WellKnown};
use nexus_resilience::{Outcome, RetryWorker, SystemClock, Target, WorkerConfig};
use nexus_store::{DeliveryQueue, EventLog, Lease, SqliteStore};
use tokio::task::JoinSet;

struct Instant200;

#[async_trait]
impl Target for Instant200 {
    async fn attempt(&self, _lease: &Lease) -> Outcome {
        Outcome::Delivered(Some(200))
    }
}

async fn store_with(n: usize, due: Timestamp) -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open"));
    nexus_store::conformance::subscribe_everything(&*store, "http://127.0.0.1:4000/hook").await;
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let batch: Vec<NewEvent> = (0..k)
            .map(|i| {
                NewEvent::new(WellKnown::MintRequested, "nexus")
                    .time(due)
                    .payload(serde_json::json!({"n": i}))
            })
            .collect();
        store.append(batch).await.expect("prefill");
        left -= k;
    }
    (store, dir)
}

/// The bare loop: lease 256, ack each concurrently, until `n` are done.
async fn bare_lease_ack(n: usize) -> f64 {
    let (store, _dir) = store_with(n, Timestamp::now()).await;
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let leases = store
            .lease_due("bare", Timestamp::now(), 256, Duration::from_secs(60))
            .await
            .expect("lease");
        let mut acks = JoinSet::new();
        for l in leases {
            let store = Arc::clone(&store);
            acks.spawn(async move {
                store
                    .ack(
                        &l.token,
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
            r.expect("task").expect("ack");
            done += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn through_worker(n: usize, concurrency: usize) -> f64 {
    let (store, _dir) = store_with(n, Timestamp::now()).await;
    let start = Instant::now();
    let handle = RetryWorker::new(
        Arc::clone(&store) as _,
        Arc::new(Instant200),
        Arc::new(SystemClock),
        WorkerConfig {
            owner: "bench".into(),
            concurrency,
            ..WorkerConfig::default()
        },
    )
    .expect("valid config")
    .spawn();
    let stats = Arc::clone(handle.stats());
    while stats.delivered.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    handle.stop(Duration::from_secs(5)).await;
    let left = store.stats().await.expect("stats");
    assert_eq!(left.pending + left.in_flight, 0, "everything acked");
    rate
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn idle(entries: usize, watch_for: Duration) -> (u64, Option<f64>) {
    let due = Timestamp::from_unix_millis(Timestamp::now().as_unix_millis() + 3_600_000)
        .expect("in range");
    let (store, _dir) = store_with(entries, due).await;
    let handle = RetryWorker::new(
        Arc::clone(&store) as _,
        Arc::new(Instant200),
        Arc::new(SystemClock),
        WorkerConfig::default(),
    )
    .expect("valid config")
    .spawn();
    // Let it start and go to sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let wakeups = handle.stats().wakeups.load(Ordering::Relaxed);
    let cpu = cpu_seconds();
    tokio::time::sleep(watch_for).await;
    let woke = handle.stats().wakeups.load(Ordering::Relaxed) - wakeups;
    let used = cpu.zip(cpu_seconds()).map(|(a, b)| b - a);
    handle.stop(Duration::from_secs(1)).await;
    (woke, used)
}

#[allow(clippy::print_stdout)]
fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (n, idle_for) = if quick {
        (2_000, Duration::from_millis(300))
    } else {
        (200_000, Duration::from_secs(5))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("retry worker bench: {n} deliveries, instant target, SQLite synchronous=FULL");
    if quick {
        println!("smoke run: figures are not measurements and targets are not judged");
    }
    let bare = rt.block_on(bare_lease_ack(n));
    println!(
        "{:<40} {:>12}",
        "baseline: bare lease + ack loop",
        format!("{:.1}k del/s", bare / 1e3)
    );
    let mut missed = Vec::new();
    let default = WorkerConfig::default().concurrency;
    for concurrency in [64, default] {
        let rate = rt.block_on(through_worker(n, concurrency));
        let verdict = if quick || concurrency != default {
            String::new()
        } else if rate >= 50_000.0 {
            ">= 50k: ok".into()
        } else {
            missed.push(format!(
                "worker, concurrency {concurrency}: {:.1}k/s",
                rate / 1e3
            ));
            ">= 50k: MISSED".into()
        };
        println!(
            "{:<40} {:>12} {:>8.2}x baseline  {verdict}",
            if concurrency == default {
                format!("worker, concurrency {concurrency} (default)")
            } else {
                format!("worker, concurrency {concurrency}")
            },
            format!("{:.1}k del/s", rate / 1e3),
            rate / bare
        );
    }
    let (woke, cpu) = rt.block_on(idle(10_000, idle_for));
    let cpu = cpu.map_or("n/a".into(), |c| format!("{:.1} ms CPU", c * 1e3));
    println!(
        "idle, 10,000 deliveries due in 1 h, {:.0} s: {woke} wake-ups, {cpu} (whole process)",
        idle_for.as_secs_f64()
    );
    if woke > 0 && !quick {
        missed.push(format!("idle worker woke {woke} times"));
    }
    if quick {
        println!("smoke run complete");
    } else if missed.is_empty() {
        println!("all retry targets met");
    } else {
        println!("targets missed: {}", missed.join("; "));
    }
}
