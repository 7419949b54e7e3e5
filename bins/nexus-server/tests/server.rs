//! The real `nexus-server` binary: start with no configuration, serve, deliver a signed webhook
//! to a local receiver, refuse bad configuration with one line naming it, drain on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// The operations kit (alerts, dashboard, runbook) checked against this server.
#[path = "server/ops.rs"]
mod ops;

// The same binary on PostgreSQL.
#[path = "server/pg.rs"]
mod pg;

// The delivery history, test sends and subscription stats.
#[path = "server/history.rs"]
mod history;

// Several instances of it on one PostgreSQL database.
#[path = "server/cluster.rs"]
mod cluster;

// Payload filters on subscriptions: from the config and the admin API, checked at the queue.
#[path = "server/filters.rs"]
mod filters;
// The event-type catalogue: declarations, validation at the door and for reactors.
#[path = "server/catalog.rs"]
mod catalog;

const BIN: &str = env!("CARGO_BIN_EXE_nexus-server");
const SECRET: &str = "test-secret-of-the-nodes-0123456789";
const ADMIN: &str = "test-admin-token-0123456789abcdef";

struct Server {
    child: Child,
    base: String,
    stderr: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

/// A test that fails half-way leaves no server running.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn command(dir: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PORT", "0")
        .env("DATA_DIR", dir.join("data"))
        .env("NEXUS_SECRET", SECRET)
        .env("NEXUS_ADMIN_TOKEN", ADMIN)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn start(env: &[(&str, &str)], files: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("make the file's directory");
        }
        std::fs::write(path, text).expect("write file");
    }
    let mut child = command(dir.path(), env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nexus-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the listening line");
    let base = listening_url(&line).unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Server {
        child,
        base,
        stderr: rx,
        _dir: dir,
    }
}

/// The URL of the listening line: JSON with `LOG_FORMAT=json`, else `nexus-server listening on URL`.
fn listening_url(line: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(json) => json["url"].as_str().map(str::to_owned),
        Err(_) => line
            .trim()
            .strip_prefix("nexus-server listening on ")
            .map(str::to_owned),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(url: &str) -> (u16, serde_json::Value) {
    let mut r = agent().get(url).call().expect("request");
    let status = r.status().as_u16();
    (
        status,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    )
}

/// HMAC-SHA256 (RFC 2104) over a small SHA-256 of its own, so these checks share no code with
/// the server they check.
fn sign(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let inner = sha256::digest(&inner);
    let outer: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.iter().copied())
        .collect();
    sha256::digest(&outer).to_vec()
}

mod sha256 {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    pub(crate) fn digest(data: &[u8]) -> [u8; 32] {
        // FIPS 180-4.
        let mut h: [u32; 8] = [
            0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
            0x5be0cd19,
        ];
        let mut msg = data.to_vec();
        let bits = (data.len() as u64) * 8;
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&bits.to_be_bytes());
        for chunk in msg.chunks(64) {
            let mut w = [0u32; 64];
            for i in 0..16 {
                w[i] = u32::from_be_bytes([
                    chunk[4 * i],
                    chunk[4 * i + 1],
                    chunk[4 * i + 2],
                    chunk[4 * i + 3],
                ]);
            }
            for i in 16..64 {
                let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
                let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
                w[i] = w[i - 16]
                    .wrapping_add(s0)
                    .wrapping_add(w[i - 7])
                    .wrapping_add(s1);
            }
            let mut v = h;
            for i in 0..64 {
                let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
                let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
                let t1 = v[7]
                    .wrapping_add(s1)
                    .wrapping_add(ch)
                    .wrapping_add(K[i])
                    .wrapping_add(w[i]);
                let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
                let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
                let t2 = s0.wrapping_add(maj);
                v = [
                    t1.wrapping_add(t2),
                    v[0],
                    v[1],
                    v[2],
                    v[3].wrapping_add(t1),
                    v[4],
                    v[5],
                    v[6],
                ];
            }
            for (a, b) in h.iter_mut().zip(v) {
                *a = a.wrapping_add(b);
            }
        }
        let mut out = [0u8; 32];
        for (i, word) in h.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn publish(base: &str, node: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = try_publish(base, node, body).expect("request");
    (status, body)
}

/// A signed publish: its status, `Retry-After` and body, or why no answer came.
fn try_publish(
    base: &str,
    node: &str,
    body: &str,
) -> Result<(u16, Option<String>, serde_json::Value), String> {
    let ts = now().to_string();
    let sig = hex(&sign(SECRET.as_bytes(), format!("{ts}.{body}").as_bytes()));
    let mut r = agent()
        .post(&format!("{base}/events"))
        .header("content-type", "application/json")
        .header("x-nexus-node", node)
        .header("x-nexus-timestamp", &ts)
        .header("x-nexus-signature", &format!("sha256={sig}"))
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        status,
        retry_after,
        r.body_mut().read_json().unwrap_or(serde_json::Value::Null),
    ))
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn starts_without_configuration_serves_and_drains_on_sigterm() {
    let mut s = start(&[], &[]);
    assert_eq!(
        get(&format!("{}/health/ready", s.base)),
        (200, serde_json::json!({"status": "ready"}))
    );
    let (status, health) = get(&format!("{}/health/detailed", s.base));
    assert_eq!(
        (status, health["store"].clone()),
        (200, serde_json::json!({"kind": "sqlite"})),
        "{health}"
    );
    let (status, body) = publish(
        &s.base,
        "any-node",
        r#"{"type":"PAYMENT_RECEIVED","id":"p-1"}"#,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["sequence"], 1);
    let (status, body) = publish(
        &s.base,
        "any-node",
        r#"{"type":"PAYMENT_RECEIVED","id":"p-1"}"#,
    );
    assert_eq!(
        (status, body["data"]["duplicate"].clone()),
        (200, serde_json::json!(true))
    );
    let metrics = agent()
        .get(&format!("{}/metrics", s.base))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(metrics.contains("nexus_events_total"), "{metrics}");
    assert_eq!(terminate(&mut s.child).code(), Some(0), "a drain exits 0");
    // Every line of the exited process: its reader ends at the pipe's end (bounded wait).
    let mut logs: Vec<String> = Vec::new();
    while let Ok(line) = s.stderr.recv_timeout(Duration::from_secs(5)) {
        logs.push(line);
    }
    let json: Vec<serde_json::Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!json.is_empty(), "JSON log lines: {logs:?}");
    for line in &json {
        for key in ["timestamp", "level", "message"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
    assert!(
        json.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("draining"))),
        "{logs:?}"
    );
}

#[test]
fn bad_configuration_stops_the_start_with_one_line_naming_it() {
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Pairs<'_>, Pairs<'_>, &str); 9] = [
        (&[("PORT", "eighty")], &[], "PORT:"),
        (&[("NEXUS_ENV", "production")], &[], "NEXUS_CONFIG:"),
        (
            &[
                ("NEXUS_ENV", "production"),
                ("NEXUS_CONFIG", "nexus.toml"),
                ("NEXUS_ADMIN_TOKEN", "short"),
                ("A_SECRET", "a-secret-of-thirty-two-bytes-or-more-0123"),
            ],
            &[(
                "nexus.toml",
                "[[nodes]]\nname = \"a\"\nsecret_env = \"A_SECRET\"\npublish = [\"*\"]\n",
            )],
            "NEXUS_ADMIN_TOKEN:",
        ),
        (
            &[("NEXUS_CONFIG", "nexus.toml")],
            &[(
                "nexus.toml",
                "[[nodes]]\nname = \"a\"\npublish = [\"*\"]\nflavour = 1\n",
            )],
            "flavour",
        ),
        (
            &[("NEXUS_CONFIG", "nexus.toml")],
            &[(
                "nexus.toml",
                "[[nodes]]\nname = \"a\"\nsecret_env = \"NOPE\"\npublish = [\"*\"]\n",
            )],
            "nodes[0].secret_env",
        ),
        (
            &[("NEXUS_CONFIG", "nexus.toml")],
            &[("nexus.toml", "[breaker]\nfailure_threshold = \"five\"\n")],
            "breaker.failure_threshold: invalid type: string \"five\", expected u32 (line 2)",
        ),
        (
            &[("NEXUS_CONFIG", "nexus.toml")],
            &[("nexus.toml", "[retry]\nlease_ms = 5000\n")],
            "retry.lease_ms: must be at least the webhook timeout plus 5000 ms",
        ),
        (
            &[("NEXUS_CONFIG", "nexus.toml")],
            &[(
                "nexus.toml",
                "[[event_types]]\nname = \"A\"\nschema = { type = \"integr\" }\n",
            )],
            "event_types[0].schema: the schema does not compile",
        ),
        (
            &[("NEXUS_CONFIG", "nexus.toml")],
            &[(
                "nexus.toml",
                "[[event_types]]\nname = \"A\"\nschema = { required = [\"x\"] }\nexamples = [{ y = 1 }]\n",
            )],
            "event_types[0].examples[0]: example 0 does not match the schema",
        ),
    ];
    for (env, files, expected) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let out = command(dir.path(), env).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {stderr}");
        let line = stderr.lines().last().unwrap_or("");
        // With LOG_FORMAT=json the line is a JSON error once the format is known; a refused
        // setting may be the format itself, so the first check is written plainly.
        let said = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(json) => {
                assert_eq!(json["level"], "ERROR", "{line}");
                json["message"].as_str().unwrap_or_default().to_owned()
            }
            Err(_) => line
                .strip_prefix("nexus-server: ")
                .unwrap_or_default()
                .to_owned(),
        };
        assert!(said.contains(expected), "{expected}: {stderr}");
    }
}

/// A receiver on loopback that answers 204 and hands each request over.
/// A received request: its headers (lowercase names) and body.
type Received = (Vec<(String, String)>, String);

fn receiver() -> (String, mpsc::Receiver<Received>) {
    scripted_receiver(vec![204])
}

/// A receiver on loopback that answers each request with the next status of `statuses` (the
/// last one once they run out) and hands each request over.
pub(crate) fn scripted_receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(20).enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            // Handed over before the answer: once the server has its answer (or has exited after
            // a drain, which waits for calls in flight), the channel holds the request.
            let _ = tx.send((headers, String::from_utf8_lossy(&body).into_owned()));
            let status = statuses.get(i).or(statuses.last()).copied().unwrap_or(204);
            let answer = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (url, rx)
}

#[test]
fn delivers_signed_webhooks_to_configured_subscriptions() {
    let (url, received) = receiver();
    let sub_secret = "whsec_c3Vic2NyaWJlci1zZWNyZXQtMDEyMzQ1Njc4OQ==";
    let config = format!(
        "[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n\n[[subscriptions]]\nurl = \"{url}\"\nevents = [\"PAYMENT_*\"]\nsecret_env = \"SUB_SECRET\"\n"
    );
    let mut s = start(
        &[("NEXUS_CONFIG", "nexus.toml"), ("SUB_SECRET", sub_secret)],
        &[("nexus.toml", &config)],
    );
    let (status, body) = publish(
        &s.base,
        "flowpay",
        r#"{"type":"PAYMENT_RECEIVED","id":"pay-9","payload":{"amount":5}}"#,
    );
    assert_eq!(status, 202, "{body}");
    let (headers, body) = received
        .recv_timeout(Duration::from_secs(20))
        .expect("a delivery");
    let header = |name: &str| header_of(&headers, name);
    assert_eq!(header("webhook-id"), "pay-9");
    assert_eq!(header("x-nexus-event"), "PAYMENT_RECEIVED");
    assert_eq!(header("x-nexus-sequence"), "1");
    let event: serde_json::Value = serde_json::from_str(&body).expect("event JSON");
    assert_eq!(
        (
            event["id"].clone(),
            event["source"].clone(),
            event["payload"].clone()
        ),
        (
            serde_json::json!("pay-9"),
            serde_json::json!("flowpay"),
            serde_json::json!({"amount": 5})
        )
    );
    let expected = standard_signature(sub_secret, &headers, &body);
    assert!(
        header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "{} vs {expected}",
        header("webhook-signature")
    );
    // The delivery was acknowledged: nothing pending.
    let stats = admin_get(&format!("{}/api/retry/stats", s.base));
    assert_eq!(stats["data"]["deadLetters"], 0);
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    assert_eq!(received.try_iter().count(), 0, "one delivery only");
}

#[test]
fn runs_configured_reactors_and_emits_their_events() {
    let (url, received) = receiver();
    let hook_secret = "whsec_ZmFjdG9yeS1ob29rLXNlY3JldC0wMTIzNDU2Nzg5";
    let config = format!(
        "[[nodes]]\nname = \"flowpay\"\npublish = [\"PAYMENT_*\"]\n\n[[reactors]]\nname = \"mint\"\non = \"PAYMENT_RECEIVED\"\nwhen = {{ \"/amount\" = {{ gte = 1 }} }}\nhttp = {{ url = \"{url}\", secret_env = \"HOOK_SECRET\", timeout_ms = 5000 }}\nemit_on_success = \"MINT_REQUESTED\"\n"
    );
    let mut s = start(
        &[("NEXUS_CONFIG", "nexus.toml"), ("HOOK_SECRET", hook_secret)],
        &[("nexus.toml", &config)],
    );
    for body in [
        r#"{"type":"PAYMENT_RECEIVED","id":"pay-0","payload":{"amount":0}}"#,
        r#"{"type":"PAYMENT_RECEIVED","id":"pay-10","payload":{"amount":10}}"#,
    ] {
        let (status, answer) = publish(&s.base, "flowpay", body);
        assert_eq!(status, 202, "{answer}");
    }
    let (headers, body) = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the reactor's call");
    let header = |name: &str| header_of(&headers, name);
    assert_eq!(
        header("webhook-id"),
        "pay-10",
        "amount 0 does not pass `when`"
    );
    assert_eq!(
        header("webhook-signature"),
        standard_signature(hook_secret, &headers, &body)
    );
    // The receiver answered 204 with no body: MINT_REQUESTED carries `{}`, caused by pay-10.
    let deadline = Instant::now() + Duration::from_secs(20);
    let emitted = loop {
        let page = admin_get(&format!("{}/api/events?type=MINT_REQUESTED", s.base));
        if let Some(e) = page["data"].as_array().and_then(|l| l.first()).cloned() {
            break e;
        }
        assert!(Instant::now() < deadline, "no MINT_REQUESTED: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(emitted["source"], "nexus");
    assert_eq!(emitted["correlation_id"], "pay-10");
    assert_eq!(emitted["payload"], serde_json::json!({}));
    let metrics = agent()
        .get(&format!("{}/metrics", s.base))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nexus_reactor_executions_total{")
                && l.contains("reactor=\"mint\"")
                && l.contains("status=\"success\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // The drain finishes every call in flight before the exit, and the receiver hands each
    // request over before answering it: after the exit the channel holds every call made.
    assert_eq!(terminate(&mut s.child).code(), Some(0));
    assert_eq!(received.try_iter().count(), 0, "one call only");
}

/// A received request's header (lowercase name), or "".
fn header_of(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The Standard Webhooks signature a request should carry, computed independently of the
/// server's code: base64-decode the `whsec_` key, HMAC-SHA256 over `<id>.<timestamp>.<body>`.
fn standard_signature(secret: &str, headers: &[(String, String)], body: &str) -> String {
    let key = b64_decode(secret.trim_start_matches("whsec_"));
    let signed = format!(
        "{}.{}.{body}",
        header_of(headers, "webhook-id"),
        header_of(headers, "webhook-timestamp")
    );
    format!("v1,{}", b64(&sign(&key, signed.as_bytes())))
}

/// A GET of the admin API, as JSON.
fn admin_get(url: &str) -> serde_json::Value {
    agent()
        .get(url)
        .header("authorization", &format!("Bearer {ADMIN}"))
        .call()
        .expect("the admin API answers")
        .body_mut()
        .read_json::<serde_json::Value>()
        .expect("json")
}

/// An admin API call with a JSON body: its status and JSON answer.
fn admin_send(method: &str, url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let agent = agent();
    let request = match method {
        "POST" => agent.post(url),
        "PATCH" => agent.patch(url),
        other => panic!("no {other} here"),
    };
    let mut r = request
        .header("authorization", &format!("Bearer {ADMIN}"))
        .send_json(body)
        .expect("the admin API answers");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or_default())
}

fn b64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = s
        .bytes()
        .filter(|&b| b != b'=')
        .filter_map(|b| A.iter().position(|&a| a == b))
        .map(|p| p as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in vals.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn with_json_logs_every_line_written_is_one_json_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    // No secrets: development generates both and says so.
    let mut child = command(dir.path(), &[])
        .env_remove("NEXUS_SECRET")
        .env_remove("NEXUS_ADMIN_TOKEN")
        .env("LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nexus-server");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("the listening line");
    let base = listening_url(&banner).unwrap_or_else(|| panic!("no url in {banner:?}"));
    let stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    assert_eq!(get(&format!("{base}/health/ready")).0, 200);
    assert_eq!(
        get(&format!("{base}/api/retry/stats")).0,
        401,
        "a request that logs"
    );
    assert_eq!(terminate(&mut child).code(), Some(0));
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .expect("the rest of stdout");
    let out: Vec<String> = std::iter::once(banner.trim_end().to_owned())
        .chain(rest.lines().map(str::to_owned))
        .collect();
    let err = stderr.join().expect("stderr lines");
    let parse = |line: &String| -> serde_json::Value {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
        for key in ["timestamp", "level", "message"] {
            assert!(json.get(key).is_some(), "{key} missing in {line}");
        }
        json
    };
    let out: Vec<_> = out.iter().map(parse).collect();
    let err: Vec<_> = err.iter().map(parse).collect();
    assert_eq!(out.len(), 1, "stdout holds the banner only: {out:?}");
    assert_eq!(out[0]["message"], "nexus-server listening");
    let generated: Vec<_> = err.iter().filter_map(|l| l["variable"].as_str()).collect();
    assert_eq!(generated, ["NEXUS_ADMIN_TOKEN", "NEXUS_SECRET"], "{err:?}");
    assert!(
        err.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("draining"))),
        "{err:?}"
    );
}
