//! The measurement suite: durable publishes over keep-alive connections, batches,
//! publish-to-WebSocket latency at a steady rate, WebSocket fan-out and the server's memory.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nexus_transport::auth::Secret;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::http::{admin_post, connection, post};
use crate::options::{Options, host_of};
use crate::percentile;
use crate::receiver;
use crate::server::{rss_kib, spawn_server};

/// The raw insert baseline (`benches/support/pg_raw.rs`) on the server's database, in a table of
/// its own; the rate and the server's commit settings.
async fn pg_baseline(url: &str, run_for: Duration) -> Result<(f64, String), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to --database-url: {e}"))?;
    tokio::spawn(connection);
    let settings = crate::pg_raw::settings(&client).await;
    let rate = crate::pg_raw::insert_rate(&client, "loadgen_raw_baseline", run_for).await;
    Ok((rate, settings))
}

/// End to end: a subscription to a local receiver, batches of 500 events of its type published
/// over 2 connections for `duration`, then every delivery awaited (at most 120 s). Answers how
/// many were delivered, deliveries/s from the first publish to the last delivery, and
/// deliveries/s of the drain after publishing stopped.
async fn deliveries(
    host: &str,
    secret: &Secret,
    admin: &str,
    duration: Duration,
) -> Result<(u64, f64, f64), String> {
    let (url, received) = receiver::start()
        .await
        .map_err(|e| format!("cannot start the receiver: {e}"))?;
    let mut sender = connection(host).await;
    let (status, body) = admin_post(
        &mut sender,
        host,
        "/api/subscriptions",
        admin,
        format!(r#"{{"url":"{url}","events":["LOADGEN_DELIVERY"]}}"#),
    )
    .await;
    if status != 201 {
        return Err(format!(
            "creating the subscription answered {status}: {body}"
        ));
    }
    let start = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..2 {
        let (host, secret, published) = (host.to_owned(), secret.clone(), Arc::clone(&published));
        tasks.push(tokio::spawn(async move {
            let mut sender = connection(&host).await;
            let mut n = 0u64;
            while start.elapsed() < duration {
                let events: Vec<String> = (0..500)
                    .map(|i| {
                        n += 1;
                        format!(
                            r#"{{"type":"LOADGEN_DELIVERY","payload":{{"c":{c},"n":{n},"i":{i}}}}}"#
                        )
                    })
                    .collect();
                let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
                let status = post(
                    &mut sender,
                    &host,
                    "/events/batch",
                    &secret,
                    body.into_bytes(),
                )
                .await;
                assert_eq!(status, 202, "publish refused");
                published.fetch_add(500, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let published = published.load(Ordering::Relaxed);
    let stopped = Instant::now();
    let at_stop = received.count();
    let deadline = stopped + Duration::from_secs(120);
    while received.count() < published {
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {published} deliveries arrived within 120 s of the last publish",
                received.count()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = received.last();
    let e2e = published as f64 / last.duration_since(start).as_secs_f64();
    let drain = (published - at_stop) as f64 / last.duration_since(stopped).as_secs_f64().max(1e-3);
    Ok((published, e2e, drain))
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

/// Runs the suite (starting a server when there is no `--url`) and prints the table; the exit
/// code.
pub(crate) async fn run(o: &Options) -> i32 {
    let spawned = match &o.url {
        Some(_) => None,
        None => match spawn_server(o) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return 2;
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
            return 2;
        }
    };
    let pid = spawned.as_ref().map(|s| s.child.id());
    let secret = match Secret::parse(&o.secret) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadgen: the node secret: {e}");
            return 2;
        }
    };
    let mut results: Vec<(String, String, String)> = Vec::new();
    let cpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("loadgen against {url} ({cpu} CPUs shared by server and load generator)");
    if let Some(db) = &o.database_url {
        match pg_baseline(db, o.duration).await {
            Ok((rate, settings)) => {
                println!("store: {settings}");
                results.push((
                    "baseline: single-row insert transactions, 1 connection".into(),
                    format!("{rate:.0} tx/s"),
                    String::new(),
                ));
            }
            Err(e) => {
                eprintln!("loadgen: the PostgreSQL baseline: {e}");
                return 2;
            }
        }
    } else if spawned.is_some() {
        println!("store: SQLite, synchronous=FULL");
    }

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
    println!(
        "progress: deliveries to a local receiver for {:?}",
        o.duration
    );
    match deliveries(&host, &secret, &o.admin, o.duration).await {
        Ok((count, e2e, drain)) => {
            results.push((
                format!("end-to-end deliveries to a local receiver ({count})"),
                format!("{e2e:.0} deliveries/s"),
                ">= 10,000/s".into(),
            ));
            results.push((
                "  of which the drain after publishing stopped".into(),
                format!("{drain:.0} deliveries/s"),
                String::new(),
            ));
        }
        Err(e) => {
            eprintln!("loadgen: deliveries: {e}");
            return 1;
        }
    }
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
    0
}
