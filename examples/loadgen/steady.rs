//! `--url ... --rate ... --duration ...`: a steady, signed load against a live server, a progress
//! line every second and a summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nexus_transport::auth::{Secret, sign_nexus};

use crate::http::Sender;
use crate::options::{Options, host_of};
use crate::percentile;

/// How long one publish may take before it counts as a `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connections share: counters for the progress line, and per-kind errors and
/// latencies for the summary.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    latencies_ms: Mutex<Vec<f64>>,
}

impl Tally {
    fn error(&self, kind: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(kind).or_default() += 1;
        }
    }
}

pub(crate) async fn connect(host: &str) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => format!("connect: {}", e.kind()),
        })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "HTTP handshake failed".to_owned())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One signed publish: the status, or the kind of failure.
pub(crate) async fn publish(
    sender: &mut Sender,
    host: &str,
    node: &str,
    secret: &Secret,
    body: String,
) -> Result<u16, String> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let sig = sign_nexus(secret, ts, body.as_bytes());
    let request = hyper::Request::post("/events")
        .header("host", host)
        .header("content-type", "application/json")
        .header("x-nexus-node", node)
        .header("x-nexus-timestamp", ts.to_string())
        .header("x-nexus-signature", sig)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    sender
        .ready()
        .await
        .map_err(|_| "connection closed".to_owned())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| "connection closed".to_owned())?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|_| "connection closed".to_owned())?;
    Ok(status)
}

/// Runs the load; the process exit code: 0 when every publish was acknowledged, 1 when any
/// failed, 2 for bad input.
pub(crate) async fn run(url: &str, o: &Options) -> i32 {
    let host = match host_of(url) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return 2;
        }
    };
    let secret = match Secret::parse(&o.secret) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadgen: the node secret: {e}");
            return 2;
        }
    };
    // Fail fast and clearly when nothing listens there.
    if let Err(e) = connect(&host).await {
        eprintln!("loadgen: cannot reach {url}: {e}");
        return 1;
    }
    let total = (o.rate as f64 * o.duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = 1.0 / o.rate as f64;
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();
    println!(
        "loadgen: {total} events of type {} as node {} to {url}: {}/s for {:?} over {} connections",
        o.event_type, o.node, o.rate, o.duration, o.connections
    );
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.connections {
        let (host, secret, tally, next) = (
            host.clone(),
            secret.clone(),
            Arc::clone(&tally),
            Arc::clone(&next),
        );
        let (node, event_type) = (o.node.clone(), o.event_type.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender: Option<Sender> = None;
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 * interval))
                    .await;
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let sending = Instant::now();
                let s = match sender.take() {
                    Some(s) => s,
                    None => match connect(&host).await {
                        Ok(s) => s,
                        Err(e) => {
                            tally.error(e);
                            continue;
                        }
                    },
                };
                let mut s = s;
                let body = format!(
                    r#"{{"type":"{event_type}","payload":{{"loadgen":{run_id},"n":{i}}}}}"#
                );
                let answer = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    publish(&mut s, &host, &node, &secret, body),
                )
                .await;
                match answer {
                    Ok(Ok(202)) => {
                        tally.acked.fetch_add(1, Ordering::Relaxed);
                        mine.push(sending.elapsed().as_secs_f64() * 1000.0);
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
            if let Ok(mut all) = tally.latencies_ms.lock() {
                all.extend(mine);
            }
        }));
    }

    let progress = {
        let tally = Arc::clone(&tally);
        let duration = o.duration;
        tokio::spawn(async move {
            let terminal = std::io::stdout().is_terminal();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let acked = tally.acked.load(Ordering::Relaxed);
                let line = format!(
                    "{:>5.0}s/{:.0}s  sent {:>9}  acked {:>9}  errors {:>6}  {:>7} acked/s",
                    start.elapsed().as_secs_f64(),
                    duration.as_secs_f64(),
                    tally.sent.load(Ordering::Relaxed),
                    acked,
                    tally.failed.load(Ordering::Relaxed),
                    acked - last,
                );
                last = acked;
                let mut out = std::io::stdout().lock();
                let _ = if terminal {
                    write!(out, "\r{line}")
                } else {
                    writeln!(out, "{line}")
                };
                let _ = out.flush();
            }
        })
    };
    for t in tasks {
        if let Err(e) = t.await {
            tally.error(format!("connection task failed: {e}"));
        }
    }
    let elapsed = start.elapsed();
    progress.abort();
    if std::io::stdout().is_terminal() {
        println!();
    }

    let mut latencies = tally
        .latencies_ms
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let acked = tally.acked.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let ms = |v: f64| {
        if v.is_nan() {
            "n/a".to_owned()
        } else {
            format!("{v:.2} ms")
        }
    };
    let mut rows: Vec<(String, String)> = vec![
        ("target rate".into(), format!("{} events/s", o.rate)),
        ("duration".into(), format!("{:.1} s", elapsed.as_secs_f64())),
        (
            "sent".into(),
            tally.sent.load(Ordering::Relaxed).to_string(),
        ),
        ("acknowledged (202)".into(), acked.to_string()),
        ("errors".into(), failed.to_string()),
    ];
    if let Ok(errors) = tally.errors.lock() {
        for (kind, n) in errors.iter() {
            rows.push((format!("  {kind}"), n.to_string()));
        }
    }
    rows.extend([
        (
            "achieved rate".into(),
            format!("{:.0} events/s", acked as f64 / elapsed.as_secs_f64()),
        ),
        ("latency p50".into(), ms(percentile(&latencies, 0.50))),
        ("latency p90".into(), ms(percentile(&latencies, 0.90))),
        ("latency p99".into(), ms(percentile(&latencies, 0.99))),
        (
            "latency max".into(),
            ms(latencies.last().copied().unwrap_or(f64::NAN)),
        ),
    ]);
    println!();
    println!("{:<24} {:>16}", "measure", "value");
    for (what, value) in &rows {
        println!("{what:<24} {value:>16}");
    }
    if failed > 0 {
        eprintln!(
            "loadgen: {failed} of {} publishes failed (see errors above; HTTP 429 means the server's rate limit, RATE_LIMIT_MAX_REQUESTS)",
            tally.sent.load(Ordering::Relaxed)
        );
        1
    } else {
        0
    }
}
