//! The HTTP edge under hostile and careless input, against the real `nexus-server` binary over
//! raw loopback sockets (so the bytes on the wire are exactly the ones under test): framework
//! rejections, early refusals before the body, the bound on body bytes in flight, parser
//! differences, gzip, slowloris, oversized heads, idle connections and the connection bound.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nexus_transport::auth::{Secret, sign_nexus};
use serde_json::Value;

use crate::support::process::{self, ServerProcess};
use crate::support::server::{Call, now};

/// Short limits so the suite stays fast; what is measured is that they hold.
const LIMITS: &[(&str, &str)] = &[
    ("NEXUS_HEADER_TIMEOUT_MS", "1000"),
    ("NEXUS_IDLE_TIMEOUT_MS", "1500"),
    ("RATE_LIMIT_MAX_REQUESTS", "0"),
];

fn server(extra: &[(&str, &str)]) -> ServerProcess {
    let env: Vec<(&str, &str)> = LIMITS.iter().chain(extra).copied().collect();
    ServerProcess::start_with(&env, &[])
}

fn addr(s: &ServerProcess) -> String {
    format!("127.0.0.1:{}", s.port)
}

/// An answer read off a raw socket.
#[derive(Debug)]
struct Raw {
    /// The status of the first response line (a `100 Continue` shows here).
    status: u16,
    head: String,
    body: Value,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The error envelope with `code`, and the request id in the body and the header.
    fn assert_envelope(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.body);
        assert_eq!(self.body["success"], false, "{}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        let id = self.header("x-request-id").expect("x-request-id");
        assert_eq!(self.body["requestId"].as_str(), Some(id.as_str()));
    }
}

/// Reads one response (head, then a body of `Content-Length` bytes) within `limit`.
fn read_response(stream: &mut TcpStream, limit: Duration) -> Raw {
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).expect("a response within the limit");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = stream.read(&mut buf).expect("the body");
        assert!(n > 0, "closed in the body");
        bytes.extend_from_slice(&buf[..n]);
    }
    let body = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null);
    Raw { status, head, body }
}

/// Like [`read_response`], but `None` when the connection is reset or closed first.
fn try_read_response(stream: &mut TcpStream, limit: Duration) -> Option<Raw> {
    let mut probe = [0u8; 1];
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    match stream.peek(&mut probe) {
        Ok(n) if n > 0 => Some(read_response(stream, limit)),
        Ok(_) => None,
        Err(e) => {
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "no answer within {limit:?}"
            );
            None
        }
    }
}

/// Sends `request` (head and whatever body) and reads the answer.
fn exchange(s: &ServerProcess, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(addr(s)).expect("connect");
    stream.write_all(request).expect("send");
    read_response(&mut stream, Duration::from_secs(5))
}

/// Nexus signature headers for `body` as node `node`.
fn signed(node: &str, body: &[u8]) -> String {
    let ts = now();
    let secret = Secret::parse(process::SECRET).expect("valid");
    format!(
        "X-Nexus-Node: {node}\r\nX-Nexus-Timestamp: {ts}\r\nX-Nexus-Signature: {}\r\n",
        sign_nexus(&secret, ts, body)
    )
}

/// `GET /health` over a new connection, answered within `limit`; how long it took.
fn health_within(s: &ServerProcess, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr(s)).expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let raw = read_response(&mut stream, limit);
    assert_eq!(raw.status, 200, "{}", raw.head);
    let took = started.elapsed();
    assert!(took < limit, "/health took {took:?}");
    took
}

/// Resident memory of the server, from `/proc/<pid>/status`.
fn rss_kib(s: &ServerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Whether the server closed `stream` within `limit` (a read returns 0 or an error that is not
/// a timeout).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

fn stored_events(s: &ServerProcess) -> usize {
    let a = Call::new("GET", format!("{}/api/events", s.base))
        .header("authorization", format!("Bearer {}", process::ADMIN))
        .send();
    assert_eq!(a.status, 200, "{}", a.text);
    a.body["data"].as_array().map_or(0, Vec::len)
}

#[test]
fn every_routed_path_with_a_bad_segment_gets_the_envelope() {
    let s = server(&[]);
    let doc = Call::new("GET", format!("{}/openapi.json", s.base)).send();
    let mut routes: Vec<(String, String)> = vec![("GET".into(), "/ui/{path}".into())];
    for (path, methods) in doc.body["paths"].as_object().expect("paths") {
        if !path.contains('{') {
            continue;
        }
        for method in methods.as_object().expect("methods").keys() {
            routes.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(routes.len() >= 12, "{routes:?}");
    for (method, path) in &routes {
        for bad in ["%FF", "%C0%AF"] {
            // Every `{param}` replaced with a segment that is not UTF-8 once decoded.
            let target: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { bad } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
                process::ADMIN
            );
            let raw = exchange(&s, request.as_bytes());
            assert_eq!(
                raw.status, 400,
                "{method} {target}: {}\n{}",
                raw.head, raw.body
            );
            raw.assert_envelope(400, "BAD_REQUEST");
            assert!(
                raw.body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("UTF-8")),
                "{method} {target}: {}",
                raw.body
            );
        }
    }
    // The issue's four, by name.
    for (method, target) in [
        ("POST", "/webhook/%FF"),
        ("GET", "/api/events/%FF"),
        ("PATCH", "/api/subscriptions/%FF"),
        ("POST", "/api/breakers/%C0%AF/reset"),
    ] {
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            process::ADMIN
        );
        exchange(&s, request.as_bytes()).assert_envelope(400, "BAD_REQUEST");
    }
    // A bad query and a missing content type are enveloped too.
    let request = format!(
        "GET /api/events?limit=many HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        process::ADMIN
    );
    exchange(&s, request.as_bytes()).assert_envelope(400, "VALIDATION_ERROR");
    let body = br#"{"type":"PAYMENT_RECEIVED"}"#;
    let request = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n",
        signed("flowpay", body),
        body.len()
    );
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    exchange(&s, &bytes).assert_envelope(415, "UNSUPPORTED_MEDIA_TYPE");
    health_within(&s, Duration::from_secs(2));
}

#[test]
fn an_oversized_or_unsigned_body_is_refused_before_it_is_read() {
    let s = server(&[]);
    for path in ["/events", "/events/batch", "/webhook/flowpay"] {
        // Signed or not, 1 TB declared is 413 at once, and never `100 Continue` first.
        for auth in [String::new(), signed("flowpay", b"")] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\
                 Content-Length: 1000000000000\r\nExpect: 100-continue\r\n\r\n"
            );
            let started = Instant::now();
            let raw = exchange(&s, request.as_bytes());
            raw.assert_envelope(413, "PAYLOAD_TOO_LARGE");
            assert!(started.elapsed() < Duration::from_secs(2), "{path}");
        }
        // Unsigned, unknown node, stale timestamp: 401 without reading (the body never comes).
        let stale = format!(
            "X-Nexus-Node: flowpay\r\nX-Nexus-Timestamp: {}\r\nX-Nexus-Signature: sha256=00\r\n",
            now() - 3600
        );
        for auth in [String::new(), stale] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\
                 Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            );
            exchange(&s, request.as_bytes()).assert_envelope(401, "UNAUTHORIZED");
        }
        // A wrong content type or encoding: 415 without reading.
        for (ct, ce) in [("text/plain", "identity"), ("application/json", "br")] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Encoding: {ce}\r\n{}\
                 Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
                signed("flowpay", b"")
            );
            exchange(&s, request.as_bytes()).assert_envelope(415, "UNSUPPORTED_MEDIA_TYPE");
        }
    }
    assert_eq!(stored_events(&s), 0);
}

/// A body the client sends unasked (no `Expect: 100-continue`) to a request refused before its
/// body is read is read and dropped first (up to 1 MiB), so the client gets the answer: closing
/// with the bytes unread would reset the connection, and the client would see a broken
/// connection instead (the client crate then retried the whole publish).
#[test]
fn a_refused_body_already_sent_gets_its_answer_not_a_reset() {
    let s = server(&[]);
    // Over the 256 KiB limit (413), and unsigned within it (401).
    let over = vec![b' '; 700 * 1024];
    let within = vec![b' '; 200 * 1024];
    for _ in 0..3 {
        for (body, auth, status, code) in [
            (&over, signed("flowpay", &over), 413, "PAYLOAD_TOO_LARGE"),
            (&within, String::new(), 401, "UNAUTHORIZED"),
        ] {
            let head = format!(
                "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            // The head and a first piece, then the rest a moment later, as a client on a real
            // network sends it: by then the server has made its answer.
            let mut stream = TcpStream::connect(addr(&s)).expect("connect");
            stream.write_all(head.as_bytes()).expect("head");
            stream.write_all(&body[..16 * 1024]).expect("first piece");
            std::thread::sleep(Duration::from_millis(100));
            stream
                .write_all(&body[16 * 1024..])
                .expect("the rest of the body is taken, not refused by a closed connection");
            read_response(&mut stream, Duration::from_secs(5)).assert_envelope(status, code);
        }
    }
    assert_eq!(stored_events(&s), 0);
}

#[test]
fn body_bytes_in_flight_are_bounded() {
    // The smallest budget the server takes: two batches at the 4 MiB limit. The idle timeout
    // is longer than the budget's wait, so that waiting is what answers.
    let s = server(&[
        ("NEXUS_MAX_BODY_BYTES_IN_FLIGHT", "8388608"),
        ("NEXUS_IDLE_TIMEOUT_MS", "10000"),
    ]);
    let batch_bytes = 4 * 1024 * 1024;
    health_within(&s, Duration::from_secs(2));
    let before = rss_kib(&s);
    // 40 unsigned connections, each sending a 4 MB batch body: refused before the body is
    // read, so the bodies never reach the server's memory.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = TcpStream::connect(addr(&s)).expect("connect");
        let head = format!(
            "POST /events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {batch_bytes}\r\n\r\n"
        );
        c.write_all(head.as_bytes()).expect("head");
        c.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        // As much of the body as the socket takes; the answer comes regardless.
        let _ = c.write_all(&vec![b' '; 1 << 20]);
        held.push(c);
    }
    for c in &mut held {
        // The answer, unless the server's close after it (with body bytes unread) reset the
        // connection first: both mean the body was not read.
        if let Some(raw) = try_read_response(c, Duration::from_secs(5)) {
            raw.assert_envelope(401, "UNAUTHORIZED");
        }
    }
    let unsigned = rss_kib(&s);
    // 40 signed connections, each declaring a 4 MB batch and sending it slowly: two fit in the
    // budget, the others are answered 503 with Retry-After within about a second.
    let mut signed_conns = Vec::new();
    for _ in 0..40 {
        let mut c = TcpStream::connect(addr(&s)).expect("connect");
        let head = format!(
            "POST /events/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{}\
             Content-Length: {batch_bytes}\r\n\r\n{{\"events\": [",
            signed("flowpay", b"whatever")
        );
        c.write_all(head.as_bytes()).expect("head");
        signed_conns.push(c);
    }
    let mut refused = 0;
    for c in &mut signed_conns {
        c.set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answered = vec![false; signed_conns.len()];
    while Instant::now() < deadline && answered.iter().filter(|a| !**a).count() > 2 {
        for (i, c) in signed_conns.iter_mut().enumerate() {
            if answered[i] {
                continue;
            }
            let mut probe = [0u8; 1];
            if c.peek(&mut probe).is_ok_and(|n| n > 0) {
                let raw = read_response(c, Duration::from_secs(2));
                raw.assert_envelope(503, "UNAVAILABLE");
                assert!(raw.header("retry-after").is_some(), "{}", raw.head);
                answered[i] = true;
                refused += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(refused, 38, "all but the two that fit are refused");
    let signed = rss_kib(&s);
    health_within(&s, Duration::from_secs(2));
    eprintln!(
        "RSS: {before} KiB before, {unsigned} KiB after 40 unsigned 4 MB bodies, \
         {signed} KiB with 40 signed ones held"
    );
    assert!(
        unsigned.saturating_sub(before) < 16 * 1024,
        "unsigned bodies took memory: {before} -> {unsigned} KiB"
    );
    assert!(
        signed.saturating_sub(before) < 32 * 1024,
        "bodies in flight passed the budget: {before} -> {signed} KiB"
    );
}

#[test]
fn duplicate_keys_and_huge_integers_are_refused_everywhere() {
    let s = server(&[]);
    let post = |path: &str, body: &[u8]| {
        Call::new("POST", format!("{}{path}", s.base))
            .raw("application/json", body.to_vec())
            .nexus_signed("flowpay", process::SECRET)
            .send()
    };
    for (path, body, key) in [
        (
            "/events",
            &br#"{"type":"PAYMENT_RECEIVED","type":"MINT_FAILED"}"#[..],
            "type",
        ),
        (
            "/events",
            br#"{"type":"PAYMENT_RECEIVED","payload":{"amount":1,"amount":1000}}"#,
            "amount",
        ),
        (
            "/events/batch",
            br#"{"events":[{"type":"A"},{"type":"B","payload":{"x":[{"k":1,"\u006b":2}]}}]}"#,
            "k",
        ),
        (
            "/webhook/flowpay",
            br#"{"order":"o-1","order":"o-2"}"#,
            "order",
        ),
    ] {
        let a = post(path, body);
        assert_eq!(a.status, 400, "{path}: {}", a.text);
        assert_eq!(a.code(), "BAD_REQUEST", "{}", a.text);
        assert_eq!(a.body["error"]["details"]["field"], key, "{}", a.text);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!("{key:?}"))),
            "{}",
            a.text
        );
    }
    for (path, body, pointer) in [
        (
            "/events",
            &br#"{"type":"PAYMENT_RECEIVED","payload":{"amount":18446744073709551616}}"#[..],
            "/payload/amount",
        ),
        (
            "/events/batch",
            br#"{"events":[{"type":"A","payload":{"n":-9223372036854775809}}]}"#,
            "/events/0/payload/n",
        ),
        (
            "/webhook/flowpay",
            br#"{"amount":100000000000000000000000}"#,
            "/amount",
        ),
    ] {
        let a = post(path, body);
        assert_eq!(a.status, 400, "{path}: {}", a.text);
        assert_eq!(a.code(), "VALIDATION_ERROR", "{}", a.text);
        assert_eq!(a.body["error"]["details"]["pointer"], pointer, "{}", a.text);
    }
    assert_eq!(stored_events(&s), 0, "nothing refused is stored");
    // The edges of the 64-bit range stay exact.
    let exact = post(
        "/events",
        br#"{"type":"PAYMENT_RECEIVED","payload":{"max":18446744073709551615,"min":-9223372036854775808,"f":1e300}}"#,
    );
    assert_eq!(exact.status, 202, "{}", exact.text);
    let id = exact.body["data"]["id"].as_str().expect("id");
    let stored = Call::new("GET", format!("{}/api/events/{id}", s.base))
        .header("authorization", format!("Bearer {}", process::ADMIN))
        .send();
    assert!(
        stored.text.contains("18446744073709551615")
            && stored.text.contains("-9223372036854775808"),
        "{}",
        stored.text
    );
}

#[test]
fn gzip_bodies_are_accepted_signed_as_written_and_bounded_when_decompressed() {
    let s = server(&[]);
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).expect("in memory");
        e.finish().expect("in memory")
    };
    let send = |path: &str, compressed: Vec<u8>, signed_over: &[u8]| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Encoding: gzip\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n",
            signed("flowpay", signed_over),
            compressed.len()
        )
        .into_bytes();
        request.extend_from_slice(&compressed);
        exchange(&s, &request)
    };
    let body = br#"{"type":"PAYMENT_RECEIVED","id":"gz-1","payload":{"amount":5}}"#;
    let ok = send("/events", gzip(body), body);
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert_eq!(ok.body["data"]["id"], "gz-1");
    let batch = br#"{"events":[{"type":"PAYMENT_RECEIVED","id":"gz-2"}]}"#;
    assert_eq!(send("/events/batch", gzip(batch), batch).status, 202);
    // Signed over the compressed bytes instead: the signature covers the body as written.
    let other = br#"{"type":"PAYMENT_RECEIVED","id":"gz-3"}"#;
    let compressed = gzip(other);
    send("/events", compressed.clone(), &compressed).assert_envelope(401, "UNAUTHORIZED");
    // A bomb: 64 MB of spaces inside a JSON string compress to about 64 KB (under the
    // 256 KiB limit) and are refused once the decompressed size passes the limit.
    let mut bomb = br#"{"type":"PAYMENT_RECEIVED","payload":""#.to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 << 20));
    bomb.extend_from_slice(br#""}"#);
    let compressed = gzip(&bomb);
    assert!(compressed.len() < 256 * 1024, "{}", compressed.len());
    let before = rss_kib(&s);
    send("/events", compressed, &bomb).assert_envelope(413, "PAYLOAD_TOO_LARGE");
    assert!(rss_kib(&s).saturating_sub(before) < 16 * 1024);
    // Not gzip at all.
    send("/events", b"plain".to_vec(), b"plain").assert_envelope(400, "BAD_REQUEST");
    assert_eq!(stored_events(&s), 2);
}

#[test]
fn slowloris_is_closed_within_the_header_timeout_while_health_answers() {
    let s = server(&[]);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut c = TcpStream::connect(addr(&s)).expect("connect");
            c.write_all(b"POST /events HTTP/1.1\r\n")
                .expect("first line");
            c
        })
        .collect();
    // One byte each every 100 ms: the head never completes.
    let mut closed = vec![None; slow.len()];
    let deadline = started + Duration::from_secs(4);
    while Instant::now() < deadline && closed.iter().any(Option::is_none) {
        for (i, c) in slow.iter_mut().enumerate() {
            if closed[i].is_some() {
                continue;
            }
            if c.write_all(b"X").is_err() {
                closed[i] = Some(started.elapsed());
                continue;
            }
            c.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0u8; 256];
            match c.read(&mut buf) {
                Ok(_) => closed[i] = Some(started.elapsed()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => closed[i] = Some(started.elapsed()),
            }
            c.set_nonblocking(false).expect("blocking");
        }
        health_within(&s, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, at) in closed.iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("connection {i} still open after 4 s"));
        assert!(
            at >= Duration::from_millis(900),
            "connection {i} closed too early, at {at:?}"
        );
    }
}

#[test]
fn oversized_heads_are_refused_and_the_server_stays_up() {
    let s = server(&[("NEXUS_MAX_HEADER_BYTES", "8192")]);
    // Over the limit, under twice it: 431 with the envelope.
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(10_000)
    );
    exchange(&s, request.as_bytes()).assert_envelope(431, "BAD_REQUEST");
    // Far over: hyper stops reading at twice the limit and answers 431 (bare: no request
    // exists yet to give an id) or closes; either way nothing is buffered past it.
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .expect("head");
    let filler = format!("X-Filler: {}\r\n", "b".repeat(4000));
    let mut refused = false;
    for _ in 0..256 {
        if c.write_all(filler.as_bytes()).is_err() {
            refused = true;
            break;
        }
    }
    // Answered 431 and closed, or reset: anything but waiting for more.
    if !refused && let Some(raw) = try_read_response(&mut c, Duration::from_secs(3)) {
        assert_eq!(raw.status, 431, "{}", raw.head);
    }
    // Many headers, each small.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    c.write_all(request.as_bytes()).expect("send");
    let mut answer = Vec::new();
    c.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = c.read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned);
    assert!(
        matches!(status.as_deref(), Some("431" | "200")),
        "{status:?}"
    );
    health_within(&s, Duration::from_secs(1));
}

#[test]
fn thousands_of_idle_connections_are_cheap_while_health_answers() {
    // Header and idle timeouts longer than opening them all takes, so all 2000 are open when
    // memory is read (closing them in time is the slowloris and stalled-body tests' business).
    let s = server(&[
        ("NEXUS_HEADER_TIMEOUT_MS", "30000"),
        ("NEXUS_IDLE_TIMEOUT_MS", "30000"),
    ]);
    health_within(&s, Duration::from_secs(2));
    let before = rss_kib(&s);
    let started = Instant::now();
    let mut idle = Vec::new();
    for i in 0..2000 {
        idle.push(TcpStream::connect(addr(&s)).expect("connect"));
        if i % 250 == 0 {
            health_within(&s, Duration::from_secs(2));
        }
    }
    // The server has accepted them all once /health answers behind them.
    health_within(&s, Duration::from_secs(2));
    let opened = started.elapsed();
    let during = rss_kib(&s);
    eprintln!(
        "RSS: {before} KiB before, {during} KiB with 2000 idle connections (opened in {opened:?})"
    );
    assert!(
        during.saturating_sub(before) < 48 * 1024,
        "2000 idle connections took {} KiB",
        during - before
    );
    // Still open: nothing closed them early.
    let mut probe = [0u8; 1];
    for c in idle.iter().step_by(100) {
        c.set_nonblocking(true).expect("nonblocking");
        assert!(
            matches!(c.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "an idle connection was closed before its timeouts"
        );
    }
    drop(idle);
    health_within(&s, Duration::from_secs(2));
}

#[test]
fn a_stalled_body_is_closed_by_the_idle_timeout_and_connections_are_bounded() {
    let s = server(&[("NEXUS_MAX_CONNECTIONS", "8")]);
    // A signed request whose body stops after 10 of 100 bytes: nothing moves, so the idle
    // timeout (1.5 s) closes it, well before the 30 s request timeout.
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{}\
         Content-Length: 100\r\n\r\n{{\"type\": \"",
        signed("flowpay", b"")
    );
    c.write_all(head.as_bytes()).expect("head");
    let at = closed_within(&mut c, Duration::from_secs(4)).expect("closed by the idle timeout");
    assert!(at >= Duration::from_millis(1200), "{at:?}");
    // Eight idle connections take every slot: a ninth waits in the accept queue until the
    // header timeout (1 s) frees them, and is then served.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(addr(&s)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let took = health_within(&s, Duration::from_secs(4));
    assert!(
        took >= Duration::from_millis(500),
        "served at once although every slot was taken ({took:?})"
    );
    drop(held);
    health_within(&s, Duration::from_secs(2));
}
