//! `--soak`: a long steady load on a server of its own, delivering to local receivers of which
//! some always fail, sampled every `--sample-seconds` into a CSV (one row per sample) and judged
//! at the end against three goals: flat memory after warm-up, no descriptor growth, no latency
//! drift.
//!
//! Each subscription has a receiver (its own port, so its own circuit breaker) and an event type
//! of its own (`LOADGEN_SOAK_<n>`); the publishes go round the types, so every subscription gets
//! `rate / subscriptions` deliveries a second and the failing ones keep retries, breakers and
//! dead letters busy for the whole run.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexus_transport::auth::Secret;

use crate::http::{Sender, admin_get, admin_post};
use crate::options::{Options, Soak, host_of};
use crate::percentile;
use crate::receiver::{self, Answer, Received};
use crate::server::{rss_kib, spawn_server};
use crate::steady::{connect, publish};

/// How long one publish may take before it counts as a `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The share of the run before memory is judged.
const WARM_UP: f64 = 0.2;
/// Memory after warm-up stays within this share of its median.
const RSS_BAND: f64 = 0.10;
/// The last quarter's p99 may be this many times the second quarter's (or 1 ms more, whichever
/// is larger) before it counts as drift: the machine is shared, so some noise is expected.
const DRIFT_FACTOR: f64 = 1.5;

const CSV_HEADER: &str = "elapsed_s,acked,publish_p50_ms,publish_p99_ms,publish_max_ms,rss_kib,open_fds,queue_depth,pending,in_flight,dead_letters,delivered,failed_answers,publish_errors";

/// What the publishing connections share with the sampler.
#[derive(Default)]
struct Tally {
    /// Set when the run's time is up: events still due (the connections fell behind) are not
    /// sent.
    stop: AtomicBool,
    unsent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Publish latencies (ms) since the last sample.
    interval_ms: Mutex<Vec<f64>>,
    /// Publish latencies (ms) of each quarter of the run, for the drift verdict.
    quarters_ms: Mutex<[Vec<f32>; 4]>,
}

impl Tally {
    fn error(&self, kind: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind).or_default() += 1;
        }
    }
}

/// One CSV row.
struct Sample {
    elapsed_s: f64,
    acked: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    rss_kib: Option<u64>,
    fds: Option<usize>,
    pending: Option<u64>,
    in_flight: Option<u64>,
    dead_letters: Option<u64>,
    delivered: u64,
    failed_answers: u64,
    publish_errors: u64,
}

impl Sample {
    fn queue_depth(&self) -> Option<u64> {
        Some(self.pending? + self.in_flight?)
    }

    fn csv(&self) -> String {
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map(|v| v.to_string()).unwrap_or_default()
        }
        fn ms(v: f64) -> String {
            if v.is_nan() {
                String::new()
            } else {
                format!("{v:.3}")
            }
        }
        format!(
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.elapsed_s,
            self.acked,
            ms(self.p50_ms),
            ms(self.p99_ms),
            ms(self.max_ms),
            opt(self.rss_kib),
            opt(self.fds),
            opt(self.queue_depth()),
            opt(self.pending),
            opt(self.in_flight),
            opt(self.dead_letters),
            self.delivered,
            self.failed_answers,
            self.publish_errors,
        )
    }
}

fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// What the open descriptors of `pid` are, counted by kind (`socket`, `anon_inode:[eventfd]`, a
/// file's path with any `-wal`/`-shm` suffix kept), most first.
fn fd_kinds(pid: u32) -> Vec<(String, usize)> {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "?".into());
            let kind = match target.split_once(':') {
                Some((k @ ("socket" | "pipe"), _)) => k.to_owned(),
                _ => target,
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    kinds
}

/// `{pending, inFlight, deadLetters}` of `GET /api/retry/stats` (in the envelope's `data`).
async fn retry_stats(
    admin: &mut Option<Sender>,
    host: &str,
    token: &str,
) -> Result<(u64, u64, u64), String> {
    let mut sender = match admin.take() {
        Some(s) => s,
        None => connect(host).await?,
    };
    let (status, body) = admin_get(&mut sender, host, "/api/retry/stats", token).await?;
    *admin = Some(sender);
    if status != 200 {
        return Err(format!("GET /api/retry/stats answered {status}: {body}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/api/retry/stats: {e}: {body}"))?;
    let field = |name: &str| {
        v["data"][name]
            .as_u64()
            .ok_or_else(|| format!("/api/retry/stats has no number {name}: {body}"))
    };
    Ok((field("pending")?, field("inFlight")?, field("deadLetters")?))
}

/// Starts the receivers and creates one subscription to each; the receivers that answer 204 and
/// those that answer 500.
async fn subscribe(
    host: &str,
    admin: &str,
    soak: &Soak,
) -> Result<(Vec<Arc<Received>>, Vec<Arc<Received>>), String> {
    let mut ok = Vec::new();
    let mut failing = Vec::new();
    let mut sender = connect(host).await?;
    for n in 0..soak.subscriptions {
        let answer = if n < soak.subscriptions - soak.failing {
            Answer::NoContent
        } else {
            Answer::ServerError
        };
        let (url, received) = receiver::start_answering(answer)
            .await
            .map_err(|e| format!("cannot start receiver {n}: {e}"))?;
        let (status, body) = admin_post(
            &mut sender,
            host,
            "/api/subscriptions",
            admin,
            format!(r#"{{"url":"{url}","events":["LOADGEN_SOAK_{n}"]}}"#),
        )
        .await;
        if status != 201 {
            return Err(format!(
                "creating subscription {n} ({url}) answered {status}: {body}"
            ));
        }
        match answer {
            Answer::NoContent => ok.push(received),
            Answer::ServerError => failing.push(received),
        }
    }
    Ok((ok, failing))
}

/// Starts the publishing connections: event `i` is due at `start + i / rate` and has type
/// `LOADGEN_SOAK_<i mod subscriptions>`.
fn start_publishing(
    host: &str,
    secret: &Secret,
    o: &Options,
    soak: &Soak,
    tally: &Arc<Tally>,
    start: tokio::time::Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let total = (o.rate as f64 * soak.run_for.as_secs_f64()).round() as u64;
    let interval = 1.0 / o.rate as f64;
    let next = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();
    let run_for = soak.run_for.as_secs_f64();
    let types = soak.subscriptions as u64;
    (0..o.connections)
        .map(|_| {
            let (host, secret, tally, next) = (
                host.to_owned(),
                secret.clone(),
                Arc::clone(tally),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let mut sender: Option<Sender> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    if tally.stop.load(Ordering::Relaxed) {
                        tally.unsent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 * interval))
                        .await;
                    let sending = Instant::now();
                    let mut s = match sender.take() {
                        Some(s) => s,
                        None => match connect(&host).await {
                            Ok(s) => s,
                            Err(e) => {
                                tally.error(e);
                                continue;
                            }
                        },
                    };
                    let body = format!(
                        r#"{{"type":"LOADGEN_SOAK_{}","payload":{{"loadgen":{run_id},"n":{i}}}}}"#,
                        i % types
                    );
                    let answer = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        publish(&mut s, &host, "loadgen", &secret, body),
                    )
                    .await;
                    match answer {
                        Ok(Ok(202)) => {
                            let ms = sending.elapsed().as_secs_f64() * 1000.0;
                            tally.acked.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut v) = tally.interval_ms.lock() {
                                v.push(ms);
                            }
                            let quarter = ((start.elapsed().as_secs_f64() / run_for) * 4.0)
                                .floor()
                                .clamp(0.0, 3.0) as usize;
                            if let Ok(mut q) = tally.quarters_ms.lock() {
                                q[quarter].push(ms as f32);
                            }
                            sender = Some(s);
                        }
                        Ok(Ok(status)) => {
                            tally.error(format!("HTTP {status}"));
                            sender = Some(s);
                        }
                        Ok(Err(e)) => tally.error(e),
                        Err(_) => tally.error("timeout".into()),
                    }
                }
            })
        })
        .collect()
}

/// The median of `values`; NaN when there are none.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// Runs the soak and prints the verdict; the exit code: 0 when every goal is met, 1 when one is
/// missed (or a publish failed), 2 when it could not start.
pub(crate) async fn run(o: &Options, soak: &Soak) -> i32 {
    let mut server = match spawn_server(o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let code = soak_against(o, soak, &server.url, server.child.id()).await;
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    code
}

async fn soak_against(o: &Options, soak: &Soak, url: &str, pid: u32) -> i32 {
    let (host, secret) = match (host_of(url), Secret::parse(&o.secret)) {
        (Ok(h), Ok(s)) => (h, s),
        (Err(e), _) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
        (_, Err(e)) => {
            eprintln!("loadgen: the node secret: {e}");
            return 2;
        }
    };
    let mut csv = match std::fs::File::create(&soak.csv) {
        Ok(f) => std::io::BufWriter::new(f),
        Err(e) => {
            eprintln!("loadgen: cannot create --csv {}: {e}", soak.csv);
            return 2;
        }
    };
    let (ok, failing) = match subscribe(&host, &o.admin, soak).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "loadgen soak against {url} (pid {pid}, SQLite synchronous=FULL, {cpu} CPUs shared by server and load generator): {}/s over {} connections for {:.1} min, {} subscriptions of which {} answer 500, a sample every {:?} to {}",
        o.rate,
        o.connections,
        soak.run_for.as_secs_f64() / 60.0,
        soak.subscriptions,
        soak.failing,
        soak.sample,
        soak.csv
    );
    if let Err(e) = writeln!(csv, "{CSV_HEADER}").and_then(|()| csv.flush()) {
        eprintln!("loadgen: writing {}: {e}", soak.csv);
        return 2;
    }
    println!("{}", CSV_HEADER.replace(',', " "));

    let tally = Arc::new(Tally::default());
    let start = tokio::time::Instant::now();
    let tasks = start_publishing(&host, &secret, o, soak, &tally, start);
    let mut admin: Option<Sender> = None;
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval_at(start + soak.sample, soak.sample);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_acked = 0;
    let mut last_failed = 0;
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let mut latencies = tally
            .interval_ms
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        latencies.sort_by(f64::total_cmp);
        let acked = tally.acked.load(Ordering::Relaxed);
        let failed = tally.failed.load(Ordering::Relaxed);
        let stats = match retry_stats(&mut admin, &host, &o.admin).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("loadgen: sample at {:.0} s: {e}", elapsed.as_secs_f64());
                None
            }
        };
        let sample = Sample {
            elapsed_s: elapsed.as_secs_f64(),
            acked: acked - last_acked,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(f64::NAN),
            rss_kib: rss_kib(pid),
            fds: open_fds(pid),
            pending: stats.map(|s| s.0),
            in_flight: stats.map(|s| s.1),
            dead_letters: stats.map(|s| s.2),
            delivered: ok.iter().map(|r| r.count()).sum(),
            failed_answers: failing.iter().map(|r| r.count()).sum(),
            publish_errors: failed - last_failed,
        };
        (last_acked, last_failed) = (acked, failed);
        let row = sample.csv();
        println!("{}", row.replace(',', " "));
        if let Err(e) = writeln!(csv, "{row}").and_then(|()| csv.flush()) {
            eprintln!("loadgen: writing {}: {e}", soak.csv);
            return 2;
        }
        samples.push(sample);
        if sample_done(elapsed, soak) {
            break;
        }
    }
    tally.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        if let Err(e) = t.await {
            tally.error(format!("connection task failed: {e}"));
        }
    }
    let quarters = tally
        .quarters_ms
        .lock()
        .map(|mut q| std::mem::take(&mut *q))
        .unwrap_or_default();
    let errors = tally.errors.lock().map(|e| e.clone()).unwrap_or_default();
    let unsent = tally.unsent.load(Ordering::Relaxed);
    let kinds = fd_kinds(pid)
        .into_iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("open fds of the server at the end: {kinds}");
    verdict(o, soak, &samples, quarters, &errors, unsent)
}

/// Whether the sample taken `elapsed` into the run is the last one (the one at or just past the
/// end; a few milliseconds of timer slack do not make an extra row).
fn sample_done(elapsed: Duration, soak: &Soak) -> bool {
    elapsed + soak.sample / 2 >= soak.run_for
}

/// Prints the summary against the goals; 0 when all are met, 1 otherwise.
fn verdict(
    o: &Options,
    soak: &Soak,
    samples: &[Sample],
    quarters: [Vec<f32>; 4],
    errors: &BTreeMap<String, u64>,
    unsent: u64,
) -> i32 {
    let run_s = soak.run_for.as_secs_f64();
    let sample_s = soak.sample.as_secs_f64();
    // A row covers the interval that ends at its time: it belongs where its middle falls.
    let quarter_of = |s: &Sample| {
        (((s.elapsed_s - sample_s / 2.0) / run_s * 4.0).floor()).clamp(0.0, 3.0) as usize
    };
    let warm = |s: &&Sample| s.elapsed_s - sample_s / 2.0 >= run_s * WARM_UP;
    let mib = |k: f64| k / 1024.0;
    let mut missed: Vec<String> = Vec::new();
    let mut rows: Vec<(String, String)> = Vec::new();

    let acked: u64 = samples.iter().map(|s| s.acked).sum();
    let failed: u64 = errors.values().sum();
    let achieved = acked as f64 / run_s;
    rows.push((
        "publishes acknowledged".into(),
        format!(
            "{acked} ({achieved:.0}/s of {}/s), {failed} failed, {unsent} not sent (behind schedule at the end)",
            o.rate
        ),
    ));
    for (kind, n) in errors {
        rows.push((format!("  {kind}"), n.to_string()));
    }
    if failed > 0 {
        missed.push(format!("{failed} publishes failed"));
    }
    if achieved < o.rate as f64 * 0.95 {
        missed.push(format!(
            "the load was not held: {achieved:.0} events/s acknowledged of {}/s ({:.1} % short)",
            o.rate,
            (1.0 - achieved / o.rate as f64) * 100.0
        ));
    }

    // Memory: after warm-up within ±10 % of its median.
    let rss: Vec<f64> = samples
        .iter()
        .filter(warm)
        .filter_map(|s| s.rss_kib.map(|k| k as f64))
        .collect();
    let first_rss = samples.first().and_then(|s| s.rss_kib).map(|k| k as f64);
    let last_rss = samples.last().and_then(|s| s.rss_kib).map(|k| k as f64);
    if rss.is_empty() {
        missed.push("no RSS readings after warm-up".into());
    } else {
        let m = median(&rss);
        let lo = rss.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rss.iter().copied().fold(0.0, f64::max);
        let spread = ((hi - m) / m).max((m - lo) / m);
        rows.push((
            "RSS first sample / after warm-up / end".into(),
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                mib(first_rss.unwrap_or(f64::NAN)),
                mib(rss[0]),
                mib(last_rss.unwrap_or(f64::NAN))
            ),
        ));
        rows.push((
            format!(
                "RSS after warm-up ({:.0} %): min / median / max",
                WARM_UP * 100.0
            ),
            format!(
                "{:.1} / {:.1} / {:.1} MiB (-{:.1} % / +{:.1} %)",
                mib(lo),
                mib(m),
                mib(hi),
                (m - lo) / m * 100.0,
                (hi - m) / m * 100.0
            ),
        ));
        if spread > RSS_BAND {
            missed.push(format!(
                "memory not flat: RSS after warm-up spans {:.1} to {:.1} MiB, {:.1} % from its median {:.1} MiB (goal ±{:.0} %)",
                mib(lo),
                mib(hi),
                spread * 100.0,
                mib(m),
                RSS_BAND * 100.0
            ));
        }
    }

    // Descriptors: the last quarter's median no higher than the first quarter's maximum.
    let fds_in = |q: usize| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| quarter_of(s) == q)
            .filter_map(|s| s.fds.map(|f| f as f64))
            .collect()
    };
    let (fd_first, fd_last) = (fds_in(0), fds_in(3));
    let fds_warm: Vec<f64> = samples
        .iter()
        .filter(warm)
        .filter_map(|s| s.fds.map(|f| f as f64))
        .collect();
    if fd_first.is_empty() || fd_last.is_empty() {
        missed.push("no descriptor counts in the first or last quarter".into());
    } else {
        let first_max = fd_first.iter().copied().fold(0.0, f64::max);
        let last_median = median(&fd_last);
        let lo = fds_warm.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = fds_warm.iter().copied().fold(0.0, f64::max);
        rows.push((
            "open fds after warm-up: min / max".into(),
            format!("{lo:.0} / {hi:.0} (max - min {:.0})", hi - lo),
        ));
        rows.push((
            "open fds: first quarter max / last quarter median".into(),
            format!("{first_max:.0} / {last_median:.0}"),
        ));
        if last_median > first_max {
            missed.push(format!(
                "descriptors grew: the last quarter's median {last_median:.0} is above the first quarter's maximum {first_max:.0} (+{:.0})",
                last_median - first_max
            ));
        }
    }

    // Queue depth: reported, not judged (a failing target's deliveries wait while its breaker is open).
    let depth: Vec<u64> = samples.iter().filter_map(Sample::queue_depth).collect();
    if let (Some(first), Some(last)) = (depth.first(), depth.last()) {
        rows.push((
            "queue depth (pending + in flight) first / max / end".into(),
            format!(
                "{first} / {} / {last}",
                depth.iter().max().copied().unwrap_or(0)
            ),
        ));
    }
    if let Some(last) = samples.last() {
        rows.push((
            "dead letters / deliveries succeeded / 500 answers".into(),
            format!(
                "{} / {} / {}",
                last.dead_letters.map_or("n/a".into(), |d| d.to_string()),
                last.delivered,
                last.failed_answers
            ),
        ));
    }

    // Latency: the last quarter's p99 against the second quarter's.
    let p99s: Vec<f64> = quarters
        .into_iter()
        .map(|mut q| {
            q.sort_by(f32::total_cmp);
            let q: Vec<f64> = q.into_iter().map(f64::from).collect();
            percentile(&q, 0.99)
        })
        .collect();
    rows.push((
        "publish p99 by quarter".into(),
        p99s.iter()
            .map(|p| format!("{p:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
            + " ms",
    ));
    let (second, last) = (p99s[1], p99s[3]);
    let allowed = (second * DRIFT_FACTOR).max(second + 1.0);
    if second.is_nan() || last.is_nan() {
        missed.push("no publish latencies in the second or last quarter".into());
    } else if last > allowed {
        missed.push(format!(
            "latency drifted: p99 {last:.2} ms in the last quarter against {second:.2} ms in the second (+{:.0} %; goal at most {allowed:.2} ms)",
            (last / second - 1.0) * 100.0
        ));
    }

    println!();
    println!("{:<56} value", "measure");
    for (what, value) in &rows {
        println!("{what:<56} {value}");
    }
    println!();
    let goals = [
        (
            "memory flat after warm-up (±10 % of its median)",
            "memory not flat",
        ),
        ("no descriptor growth", "descriptors grew"),
        (
            "no latency drift (p99 last quarter <= 1.5 x second, or +1 ms)",
            "latency drifted",
        ),
    ];
    for (goal, miss) in goals {
        let met = !missed.iter().any(|m| m.starts_with(miss));
        println!("goal: {goal}: {}", if met { "met" } else { "MISSED" });
    }
    if missed.is_empty() {
        0
    } else {
        for m in &missed {
            eprintln!("loadgen: soak: {m}");
        }
        1
    }
}
