//! Load generator for `nexus-server`, in two modes.
//!
//! **Steady load against a live server** (`--url`): signed single publishes at a fixed rate for
//! a fixed time, a progress line every second and a summary table (sent, acknowledged, errors by
//! kind, achieved rate, latency percentiles). Exits 1 when any publish failed.
//!
//! ```sh
//! NEXUS_SECRET=... cargo run --release --example loadgen -- \
//!     --url http://127.0.0.1:3000 --rate 500 --duration 60 [--node loadgen] [--type LOADGEN_TEST]
//! ```
//!
//! **The measurement suite** (no `--url`, or `--url ... --suite`): durable publishes over
//! keep-alive connections, batches, publish-to-WebSocket latency at a steady rate, WebSocket
//! fan-out, and the server's memory.
//!
//! ```sh
//! cargo build --release -p nexus-server
//! cargo run --release --example loadgen                  # starts target/release/nexus-server
//! cargo run --release --example loadgen -- --duration 10 --rate 10000 --connections 64
//! cargo run --release --example loadgen -- --suite --url http://127.0.0.1:3000 --secret S --admin-token T
//! ```
//!
//! Started by the load generator, the server gets a fresh data directory, `synchronous=FULL`
//! (the default: every acknowledged event is fsync'd) and no rate limit.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use nexus_transport::auth::{Secret, sign_nexus};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Options {
    url: Option<String>,
    /// Run the measurement suite against `--url` instead of a steady load.
    suite: bool,
    secret: String,
    /// Whether `--secret` or `NEXUS_SECRET` gave the secret (the default only fits a spawned server).
    secret_given: bool,
    admin: String,
    duration: Duration,
    rate: u64,
    connections: usize,
    subscribers: usize,
    server_bin: String,
    node: String,
    event_type: String,
    /// Flags seen, to tell a default from a value given and to refuse flags of the other mode.
    given: Vec<String>,
}

const USAGE: &str = "usage: loadgen --url http://HOST:PORT --rate EVENTS_PER_S --duration SECONDS \
[--secret S | NEXUS_SECRET=S] [--node NAME] [--type EVENT_TYPE] [--connections N]
   or: loadgen [--suite --url http://HOST:PORT --secret S --admin-token T] [--duration S] [--rate N] \
[--connections N] [--subscribers N] [--server-bin PATH]";

/// Parses `value` of `flag` as a number greater than zero.
fn positive<T: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    value: &str,
    what: &str,
) -> Result<T, String> {
    match value.parse::<T>() {
        Ok(v) if v > T::default() => Ok(v),
        _ => Err(format!("{flag} takes {what} greater than 0, not {value:?}")),
    }
}

fn options() -> Result<Options, String> {
    let env_secret = std::env::var("NEXUS_SECRET").ok().filter(|s| !s.is_empty());
    let mut o = Options {
        url: None,
        suite: false,
        secret_given: env_secret.is_some(),
        secret: env_secret.unwrap_or_else(|| "loadgen-node-secret-0123456789abcdef".into()),
        admin: "loadgen-admin-token-0123456789abcdef".into(),
        duration: Duration::from_secs(5),
        rate: 10_000,
        connections: 64,
        subscribers: 1000,
        server_bin: "target/release/nexus-server".into(),
        node: "loadgen".into(),
        event_type: "LOADGEN_TEST".into(),
        given: Vec::new(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => o.url = Some(value()?),
            "--suite" => o.suite = true,
            "--secret" => {
                o.secret = value()?;
                o.secret_given = true;
            }
            "--admin-token" => o.admin = value()?,
            "--duration" => {
                let secs: f64 = positive(flag, &value()?, "seconds")?;
                if !secs.is_finite() {
                    return Err(format!(
                        "--duration takes a finite number of seconds, not {secs}"
                    ));
                }
                o.duration = Duration::from_secs_f64(secs);
            }
            "--rate" => o.rate = positive(flag, &value()?, "events per second")?,
            "--connections" => o.connections = positive(flag, &value()?, "a number")?,
            "--subscribers" => o.subscribers = positive(flag, &value()?, "a number")?,
            "--server-bin" => o.server_bin = value()?,
            "--node" => o.node = value()?,
            "--type" => {
                let t = value()?;
                nexus_event::EventType::new(&t).map_err(|e| format!("--type {t:?}: {e}"))?;
                o.event_type = t;
            }
            "--bench" => continue,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
        o.given.push(flag.clone());
    }
    let steady = o.url.is_some() && !o.suite;
    let only = |flags: &[&str], mode: &str| -> Result<(), String> {
        match o.given.iter().find(|g| flags.contains(&g.as_str())) {
            Some(g) => Err(format!("{g} only applies {mode}\n{USAGE}")),
            None => Ok(()),
        }
    };
    if steady {
        only(
            &["--admin-token", "--subscribers", "--server-bin"],
            "to the suite (--suite or no --url)",
        )?;
        for needed in ["--rate", "--duration"] {
            if !o.given.iter().any(|g| g == needed) {
                return Err(format!(
                    "a steady load against --url needs {needed}\n{USAGE}"
                ));
            }
        }
        if !o.secret_given {
            return Err(
                "a steady load against --url needs the node's secret: --secret S or NEXUS_SECRET"
                    .into(),
            );
        }
        if !o.given.iter().any(|g| g == "--connections") {
            o.connections = 16;
        }
    } else {
        only(
            &["--node", "--type"],
            "to a steady load (--url without --suite)",
        )?;
        if o.suite && o.url.is_none() {
            return Err(format!(
                "--suite needs --url (without --url the suite starts its own server)\n{USAGE}"
            ));
        }
    }
    if let Some(url) = &o.url {
        host_of(url)?;
    }
    Ok(o)
}

/// `host:port` of a plain-HTTP base URL such as `http://127.0.0.1:3000`.
fn host_of(url: &str) -> Result<String, String> {
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(format!(
            "--url {url:?}: loadgen speaks plain HTTP only; point it at the server's own listener (or a plain-HTTP port of the proxy)"
        ));
    } else {
        return Err(format!("--url {url:?}: expected http://HOST:PORT"));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('@') {
        return Err(format!(
            "--url {url:?}: expected http://HOST:PORT with no path or credentials"
        ));
    }
    Ok(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        },
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

struct Spawned {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

fn spawn_server(o: &Options) -> Result<Spawned, String> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = Command::new(&o.server_bin)
        .env("PORT", "0")
        .env("DATA_DIR", dir.path().join("data"))
        .env("NEXUS_SECRET", &o.secret)
        .env("NEXUS_ADMIN_TOKEN", &o.admin)
        .env("RATE_LIMIT_MAX_REQUESTS", "0")
        .env("LOG_LEVEL", "warn")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {} ({e}); build it with `cargo build --release -p nexus-server`",
                o.server_bin
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    // With LOG_FORMAT=json the listening line is a JSON object whose `url` is the address.
    let url = serde_json::from_str::<serde_json::Value>(&line)
        .ok()
        .and_then(|line| line["url"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("unexpected first line {line:?}"))?;
    Ok(Spawned {
        child,
        url,
        _dir: dir,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connection(addr: &str) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn post(sender: &mut Sender, host: &str, path: &str, secret: &Secret, body: Vec<u8>) -> u16 {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let sig = sign_nexus(secret, ts, &body);
    let request = hyper::Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .header("x-nexus-node", "loadgen")
        .header("x-nexus-timestamp", ts.to_string())
        .header("x-nexus-signature", sig)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

/// Publishes from `connections` keep-alive connections for `duration`; events/s acknowledged.
async fn publish_rate(
    host: &str,
    secret: &Secret,
    connections: usize,
    batch: usize,
    duration: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for c in 0..connections {
        let (host, secret, stop, done) = (
            host.to_owned(),
            secret.clone(),
            Arc::clone(&stop),
            Arc::clone(&done),
        );
        tasks.push(tokio::spawn(async move {
            let mut sender = connection(&host).await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (path, body) = if batch == 1 {
                    n += 1;
                    (
                        "/events",
                        format!(r#"{{"type":"PAYMENT_RECEIVED","payload":{{"c":{c},"n":{n}}}}}"#),
                    )
                } else {
                    let events: Vec<String> = (0..batch)
                        .map(|i| {
                            format!(
                                r#"{{"type":"PAYMENT_RECEIVED","payload":{{"c":{c},"i":{i}}}}}"#
                            )
                        })
                        .collect();
                    (
                        "/events/batch",
                        format!(r#"{{"events":[{}]}}"#, events.join(",")),
                    )
                };
                let status = post(&mut sender, &host, path, &secret, body.into_bytes()).await;
                assert_eq!(status, 202, "publish refused");
                done.fetch_add(batch as u64, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let acked = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    acked as f64 / elapsed.as_secs_f64()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(host: &str, admin: &str) -> Ws {
    let mut request = format!("ws://{host}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {admin}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("ws connect");
    ws.send(Message::Text(
        r#"{"action":"subscribe","events":["*"]}"#.into(),
    ))
    .await
    .expect("subscribe");
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && t.contains("\"ack\"")
        {
            return ws;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Publishes at a steady `rate` and measures publish-to-WebSocket receipt.
async fn latency(
    host: &str,
    secret: &Secret,
    admin: &str,
    rate: u64,
    duration: Duration,
) -> Latency {
    let mut sub = ws(host, admin).await;
    let origin = Instant::now();
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let receiver = tokio::spawn(async move {
        let mut lat = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + Duration::from_secs(60);
        while (lat.len() as u64) < total && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Some(sent) = t
                        .split("\"sent_us\":")
                        .nth(1)
                        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|d| d.parse::<u64>().ok())
                    {
                        let now = origin.elapsed().as_micros() as u64;
                        lat.push(now.saturating_sub(sent) as f64 / 1000.0);
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        lat
    });
    let connections = 16u64;
    let per_conn = total / connections;
    let acks = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (host, secret, acks) = (host.to_owned(), secret.clone(), Arc::clone(&acks));
        tasks.push(tokio::spawn(async move {
            let mut sender = connection(&host).await;
            let mut mine = Vec::with_capacity(per_conn as usize);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..per_conn {
                tick.tick().await;
                let sent = origin.elapsed().as_micros() as u64;
                let body =
                    format!(r#"{{"type":"PAYMENT_RECEIVED","payload":{{"sent_us":{sent}}}}}"#);
                post(&mut sender, &host, "/events", &secret, body.into_bytes()).await;
                mine.push(
                    (origin.elapsed().as_micros() as u64).saturating_sub(sent) as f64 / 1000.0,
                );
            }
            if let Ok(mut all) = acks.lock() {
                all.extend(mine);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = receiver.await.expect("receiver");
    lat.sort_by(f64::total_cmp);
    let mut acks = acks.lock().map(|a| a.clone()).unwrap_or_default();
    acks.sort_by(f64::total_cmp);
    Latency {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        received: lat.len(),
        ack_p50: percentile(&acks, 0.5),
        ack_p99: percentile(&acks, 0.99),
    }
}

/// Publish-to-WebSocket latency, and publish-to-202 for comparison, in milliseconds.
struct Latency {
    p50: f64,
    p99: f64,
    received: usize,
    ack_p50: f64,
    ack_p99: f64,
}

/// Opens `n` subscribers, then measures the RSS they cost and the frames/s of a fan-out.
async fn fan_out(
    host: &str,
    secret: &Secret,
    admin: &str,
    n: usize,
    pid: Option<u32>,
) -> (f64, Option<f64>) {
    let before = pid.and_then(rss_kib);
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(ws(host, admin).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_conn = before
        .zip(pid.and_then(rss_kib))
        .map(|(b, a)| (a.saturating_sub(b) as f64 * 1024.0) / n as f64);
    let events = 200usize;
    let received = Arc::new(AtomicU64::new(0));
    let expected = (events * n) as u64;
    let mut readers = Vec::new();
    for mut c in clients {
        let received = Arc::clone(&received);
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < events {
                match tokio::time::timeout(Duration::from_secs(30), c.next()).await {
                    Ok(Some(Ok(Message::Text(_)))) => {
                        got += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
        }));
    }
    let start = Instant::now();
    let mut sender = connection(host).await;
    let batch: Vec<String> = (0..events)
        .map(|i| format!(r#"{{"type":"NOTIFICATION_SENT","payload":{{"i":{i}}}}}"#))
        .collect();
    post(
        &mut sender,
        host,
        "/events/batch",
        secret,
        format!(r#"{{"events":[{}]}}"#, batch.join(",")).into_bytes(),
    )
    .await;
    for r in readers {
        let _ = r.await;
    }
    let got = received.load(Ordering::Relaxed);
    if got < expected {
        eprintln!("fan-out: {got} of {expected} frames arrived");
    }
    (got as f64 / start.elapsed().as_secs_f64(), per_conn)
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    if let (Some(url), false) = (&o.url, o.suite) {
        let code = steady::run(url, &o).await;
        std::process::exit(code);
    }
    let spawned = match &o.url {
        Some(_) => None,
        None => match spawn_server(&o) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("loadgen: {e}");
                std::process::exit(2);
            }
        },
    };
    let url = o
        .url
        .clone()
        .or_else(|| spawned.as_ref().map(|s| s.url.clone()))
        .unwrap_or_default();
    let host = match host_of(&url) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let pid = spawned.as_ref().map(|s| s.child.id());
    let secret = Secret::parse(&o.secret).expect("secret");
    let mut results: Vec<(String, String, String)> = Vec::new();
    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("loadgen against {url} ({cpu} CPUs shared by server and load generator)");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = pid.and_then(rss_kib);
    results.push((
        "idle RSS of the server".into(),
        idle.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        "<= 10 MB".into(),
    ));
    println!(
        "progress: idle RSS measured; publishing singles for {:?}",
        o.duration
    );

    let singles = publish_rate(&host, &secret, o.connections, 1, o.duration).await;
    results.push((
        format!("single publishes, {} keep-alive connections", o.connections),
        format!("{:.0} events/s", singles),
        ">= 30,000/s".into(),
    ));
    println!("progress: batches for {:?}", o.duration);
    let batches = publish_rate(&host, &secret, 4, 1000, o.duration).await;
    results.push((
        "batches of 1000, 4 connections".into(),
        format!("{:.0} events/s", batches),
        ">= 150,000/s".into(),
    ));
    println!("progress: latency at {}/s for {:?}", o.rate, o.duration);
    let l = latency(&host, &secret, &o.admin, o.rate, o.duration).await;
    results.push((
        format!(
            "publish -> WebSocket at {}/s ({} events)",
            o.rate, l.received
        ),
        format!("p50 {:.2} ms, p99 {:.2} ms", l.p50, l.p99),
        "p50 0.5 ms, p99 2 ms".into(),
    ));
    results.push((
        format!("publish -> 202 at {}/s, for comparison", o.rate),
        format!("p50 {:.2} ms, p99 {:.2} ms", l.ack_p50, l.ack_p99),
        String::new(),
    ));
    println!("progress: fan-out to {} subscribers", o.subscribers);
    let (frames, per_conn) = fan_out(&host, &secret, &o.admin, o.subscribers, pid).await;
    results.push((
        format!("WebSocket fan-out to {} subscribers", o.subscribers),
        format!("{frames:.0} frames/s"),
        ">= 300,000/s".into(),
    ));
    results.push((
        "RSS per idle WebSocket connection".into(),
        per_conn.map_or("n/a".into(), |b| format!("{:.1} KiB", b / 1024.0)),
        "<= 16 KB".into(),
    ));
    if let Some(k) = pid.and_then(rss_kib) {
        results.push((
            "RSS of the server at the end".into(),
            format!("{:.1} MiB", k as f64 / 1024.0),
            String::new(),
        ));
    }

    println!();
    println!("{:<48} {:>28}  goal", "measure", "result");
    for (what, value, goal) in &results {
        println!("{what:<48} {value:>28}  {goal}");
    }
    if let Some(mut s) = spawned {
        let _ = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status();
        let _ = s.child.wait();
    }
}

/// `--url ... --rate ... --duration ...`: a steady, signed load against a live server.
mod steady {
    use std::collections::BTreeMap;
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    use nexus_transport::auth::{Secret, sign_nexus};

    use super::{Options, Sender, host_of, percentile};

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

    async fn connect(host: &str) -> Result<Sender, String> {
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
    async fn publish(
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
    pub(super) async fn run(url: &str, o: &Options) -> i32 {
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
}
