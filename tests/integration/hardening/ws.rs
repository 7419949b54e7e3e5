//! Issue 18, classes 1, 3 and 4 against the real `nexus-server`: WebSocket frames over the size
//! and pattern bounds, replay and `since` with thousands of type globs, and subscription URLs
//! and secrets that must be refused. Throughout, `/health` keeps answering fast.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::process::{self, ServerProcess};
use crate::support::server::{Answer, Call};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The documented defaults (README, Limits).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_FRAME_PATTERNS: usize = 256;
const MAX_PATTERNS: usize = 1024;
const MAX_TYPE_GLOBS: usize = 256;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn connect(server: &ServerProcess) -> Client {
    let url = server.base.replace("http://", "ws://") + "/ws";
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", process::ADMIN)
            .parse()
            .expect("header"),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the upgrade succeeds");
    ws
}

async fn send(ws: &mut Client, v: &Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next text frame as JSON (pings skipped); `None` once the server closed, with its code.
async fn next(ws: &mut Client) -> Result<Value, Option<CloseCode>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s");
        match m {
            Some(Ok(Message::Text(t))) => {
                return Ok(serde_json::from_str(t.as_str()).expect("a JSON frame"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| f.code)),
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn frame(ws: &mut Client) -> Value {
    next(ws).await.expect("a frame, not a close")
}

/// Nothing of the refused frames took effect on a connection subscribed to `MINT_*` only: of a
/// PAYMENT_RECEIVED and a MINT_CONFIRMED published after it, only the MINT_CONFIRMED arrives.
async fn only_mint_arrives(server: &ServerProcess, ws: &mut Client) {
    publish(server, "PAYMENT_RECEIVED");
    let mint = publish(server, "MINT_CONFIRMED");
    let event = frame(ws).await;
    assert_eq!(
        (event["event"].as_str(), event["sequence"].as_u64()),
        (Some("MINT_CONFIRMED"), Some(mint)),
        "{event}"
    );
}

/// `GET /health`: its status and how long it took.
fn health(server: &ServerProcess) -> (u16, Duration) {
    let started = Instant::now();
    let answer = Call::new("GET", format!("{}/health", server.base)).send();
    (answer.status, started.elapsed())
}

fn admin(server: &ServerProcess, method: &'static str, path: &str) -> Call {
    Call::new(method, format!("{}{path}", server.base))
        .header("authorization", format!("Bearer {}", process::ADMIN))
}

/// Publishes one event of `event_type` as node `flowpay`; its sequence.
fn publish(server: &ServerProcess, event_type: &str) -> u64 {
    let answer = Call::new("POST", format!("{}/events", server.base))
        .json(&json!({"type": event_type, "payload": {"n": 1}}))
        .nexus_signed("flowpay", process::SECRET)
        .send();
    assert_eq!(answer.status, 202, "{}", answer.text);
    answer.body["data"]["sequence"]
        .as_u64()
        .expect("a sequence")
}

/// `count` distinct, valid globs none of which matches the test's event types.
fn other_globs(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}_{i:05}_*")).collect()
}

fn refused(answer: &Answer, field: &str) {
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.code(), "VALIDATION_ERROR", "{}", answer.text);
    assert_eq!(
        answer.body["error"]["details"]["field"], field,
        "{}",
        answer.text
    );
    assert!(
        answer.header("x-request-id").is_some(),
        "an envelope carries x-request-id"
    );
}

/// Two connections each send a 1.3 MB subscribe frame of 100,000 patterns (the issue's case):
/// each gets a `PAYLOAD_TOO_LARGE` error frame and close 1009, `/health` answers in well under a
/// second meanwhile, and a new connection works as before.
#[test]
fn an_oversized_frame_is_refused_at_its_header_and_health_stays_fast() {
    let server = ServerProcess::start();
    let huge = json!({"action": "subscribe", "events": other_globs("HUGE", 100_000)}).to_string();
    assert!(huge.len() > 1_300_000, "{} bytes", huge.len());
    rt().block_on(async {
        let mut a = connect(&server).await;
        let mut b = connect(&server).await;
        for ws in [&mut a, &mut b] {
            // A send may fail part way once the server closes; what it answered is what counts.
            let _ = ws.send(Message::Text(huge.clone().into())).await;
        }
        let (status, took) = health(&server);
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(1),
            "/health took {took:?} with two oversized frames in"
        );
        for ws in [&mut a, &mut b] {
            let error = frame(ws).await;
            assert_eq!(error["error"]["code"], "PAYLOAD_TOO_LARGE", "{error}");
            let message = error["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains(&MAX_MESSAGE_BYTES.to_string()),
                "the message names the limit: {message}"
            );
            assert_eq!(next(ws).await, Err(Some(CloseCode::Size)));
        }
        let (status, took) = health(&server);
        assert!(status == 200 && took < Duration::from_secs(1), "{took:?}");

        // A frame just under the bound is read and answered.
        let mut c = connect(&server).await;
        send(&mut c, &json!({"action": "ping"})).await;
        assert!(frame(&mut c).await["pong"].is_i64());
        send(
            &mut c,
            &json!({"action": "subscribe", "events": ["PAYMENT_*"]}),
        )
        .await;
        assert_eq!(
            frame(&mut c).await,
            json!({"ack": "subscribe", "events": ["PAYMENT_*"]})
        );
    });
}

/// A frame naming more than 256 patterns, or one that would take a connection past 1024, gets
/// one `VALIDATION_ERROR` frame naming the bound and changes nothing; the connection stays.
#[test]
fn too_many_patterns_are_refused_whole() {
    let server = ServerProcess::start();
    rt().block_on(async {
        let mut ws = connect(&server).await;

        // Over the per-frame bound, with a pattern that would match what is published below.
        let mut over = other_globs("FRAME", MAX_FRAME_PATTERNS);
        over.push("PAYMENT_*".into());
        send(&mut ws, &json!({"action": "subscribe", "events": over})).await;
        let error = frame(&mut ws).await;
        assert_eq!(error["error"]["code"], "VALIDATION_ERROR", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("256") && message.contains("257"),
            "{message}"
        );

        // Repeats of one pattern count once once the frame is inside the bound.
        let repeats = vec!["MINT_*"; MAX_FRAME_PATTERNS];
        send(&mut ws, &json!({"action": "subscribe", "events": repeats})).await;
        assert_eq!(
            frame(&mut ws).await,
            json!({"ack": "subscribe", "events": ["MINT_*"]})
        );

        // Fill the connection to its bound: MINT_* plus 1023 others.
        let fill = other_globs("FILL", MAX_PATTERNS - 1);
        for chunk in fill.chunks(MAX_FRAME_PATTERNS) {
            send(&mut ws, &json!({"action": "subscribe", "events": chunk})).await;
            let ack = frame(&mut ws).await;
            assert_eq!(ack["ack"], "subscribe", "{ack}");
            assert_eq!(ack["events"].as_array().map(Vec::len), Some(chunk.len()));
        }
        send(
            &mut ws,
            &json!({"action": "subscribe", "events": ["MINT_*", "PAYMENT_*"]}),
        )
        .await;
        let error = frame(&mut ws).await;
        assert_eq!(error["error"]["code"], "VALIDATION_ERROR", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("1024"), "{message}");

        // A pattern already held adds nothing and is acked; after an unsubscribe there is room.
        send(
            &mut ws,
            &json!({"action": "subscribe", "events": ["MINT_*"]}),
        )
        .await;
        assert_eq!(frame(&mut ws).await["ack"], "subscribe");
        send(
            &mut ws,
            &json!({"action": "unsubscribe", "events": [fill[0]]}),
        )
        .await;
        assert_eq!(frame(&mut ws).await["ack"], "unsubscribe");

        only_mint_arrives(&server, &mut ws).await;
        let (status, took) = health(&server);
        assert!(status == 200 && took < Duration::from_secs(1), "{took:?}");
    });
}

/// A client frame is read as request bodies are: a duplicate key is a `BAD_REQUEST` frame
/// naming it, an integer past 64 bits a `VALIDATION_ERROR`; neither frame takes effect.
#[test]
fn frames_with_duplicate_keys_or_huge_integers_are_refused() {
    let server = ServerProcess::start();
    rt().block_on(async {
        let mut ws = connect(&server).await;
        for (raw, code, field) in [
            (
                r#"{"action":"subscribe","events":["MINT_*"],"events":["PAYMENT_*"]}"#,
                "BAD_REQUEST",
                "events",
            ),
            (
                r#"{"action":"subscribe","events":["PAYMENT_*"],"since":18446744073709551616}"#,
                "VALIDATION_ERROR",
                "since",
            ),
        ] {
            ws.send(Message::Text(raw.into())).await.expect("send");
            let error = frame(&mut ws).await;
            assert_eq!(error["error"]["code"], code, "{raw}: {error}");
            assert_eq!(error["error"]["details"]["field"], field, "{error}");
        }
        send(
            &mut ws,
            &json!({"action": "subscribe", "events": ["MINT_*"]}),
        )
        .await;
        assert_eq!(frame(&mut ws).await["ack"], "subscribe");
        only_mint_arrives(&server, &mut ws).await;
    });
}

/// Replay with thousands of type globs is a clear `400` naming `types` (at most 256), and with
/// 256 it enqueues exactly what matches; a WebSocket holding 1024 patterns gets every stored
/// matching event on `since`, in order, and then live ones.
#[test]
fn replay_and_since_with_many_globs() {
    let server = ServerProcess::start();
    let sub = admin(&server, "POST", "/api/subscriptions")
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["NEVER_*"]}))
        .send();
    assert_eq!(sub.status, 201, "{}", sub.text);
    let sub_id = sub.body["data"]["id"].as_str().expect("an id").to_owned();
    let mut wanted = Vec::new();
    for i in 0..30 {
        let t = if i % 3 == 0 {
            "PAYMENT_RECEIVED"
        } else {
            "MINT_CONFIRMED"
        };
        let sequence = publish(&server, t);
        if t == "PAYMENT_RECEIVED" {
            wanted.push(sequence);
        }
    }

    let mut thousands = other_globs("REPLAY", 5_000);
    thousands.push("PAYMENT_*".into());
    let answer = admin(&server, "POST", "/api/replay")
        .json(&json!({"after": 0, "types": thousands, "target": sub_id}))
        .send();
    refused(&answer, "types");
    assert!(answer.text.contains("256"), "{}", answer.text);

    let mut most = other_globs("REPLAY", MAX_TYPE_GLOBS - 1);
    most.push("PAYMENT_*".into());
    let answer = admin(&server, "POST", "/api/replay")
        .json(&json!({"after": 0, "types": most, "target": sub_id}))
        .send();
    assert_eq!(answer.status, 202, "{}", answer.text);
    assert_eq!(
        answer.body["data"]["enqueued"].as_u64(),
        Some(wanted.len() as u64)
    );

    rt().block_on(async {
        let mut ws = connect(&server).await;
        let fill = other_globs("SINCE", MAX_PATTERNS - 1);
        for chunk in fill.chunks(MAX_FRAME_PATTERNS) {
            send(&mut ws, &json!({"action": "subscribe", "events": chunk})).await;
            assert_eq!(frame(&mut ws).await["ack"], "subscribe");
        }
        send(
            &mut ws,
            &json!({"action": "subscribe", "events": ["PAYMENT_*"], "since": 0}),
        )
        .await;
        assert_eq!(
            frame(&mut ws).await,
            json!({"ack": "subscribe", "events": ["PAYMENT_*"]})
        );
        let mut got = Vec::new();
        while got.len() < wanted.len() {
            let event = frame(&mut ws).await;
            assert_eq!(event["event"], "PAYMENT_RECEIVED", "{event}");
            got.push(event["sequence"].as_u64().expect("a sequence"));
        }
        assert_eq!(got, wanted, "every stored match, in order, once");
        let (status, took) = health(&server);
        assert!(status == 200 && took < Duration::from_secs(1), "{took:?}");
        let live = publish(&server, "PAYMENT_RECEIVED");
        publish(&server, "MINT_CONFIRMED");
        assert_eq!(frame(&mut ws).await["sequence"].as_u64(), Some(live));
    });
}

/// URLs whose port is out of range or not a number, that carry credentials or no host, or use
/// another scheme, and secrets under 16 key bytes (`whsec_` alone included), are refused on
/// create and on PATCH with `400 VALIDATION_ERROR` naming the field; nothing is stored.
#[test]
fn subscription_urls_and_secrets_are_checked_on_create_and_patch() {
    let server = ServerProcess::start();
    let create = |body: Value| {
        admin(&server, "POST", "/api/subscriptions")
            .json(&body)
            .send()
    };
    let bad_urls = [
        "http://127.0.0.1:99999/hook",
        "http://127.0.0.1:-1/hook",
        "http://127.0.0.1:0/hook",
        "http://127.0.0.1:65536/hook",
        "http://127.0.0.1:/hook",
        "http://user:hunter2@127.0.0.1:4000/hook",
        "ftp://127.0.0.1/hook",
        "http:///hook",
        "not a url",
    ];
    for url in bad_urls {
        let answer = create(json!({"url": url, "events": ["*"]}));
        refused(&answer, "url");
        assert!(
            !answer.text.contains("hunter2"),
            "no credentials echoed: {}",
            answer.text
        );
    }
    let bad_secrets = [
        "whsec_",
        "whsec_AAAA",
        "whsec_bm90aWZpZXItc2VjcmV0",
        "short",
        "fifteen-bytes!!",
        "",
        "whsec_not base64!",
    ];
    for secret in bad_secrets {
        let answer =
            create(json!({"url": "http://127.0.0.1:9/hook", "events": ["*"], "secret": secret}));
        refused(&answer, "secret");
    }
    let list = admin(&server, "GET", "/api/subscriptions").send();
    assert_eq!(list.body["data"], json!([]), "nothing refused was stored");

    let good = create(
        json!({"url": "http://127.0.0.1:65535/hook", "events": ["*"],
        "secret": "sixteen-bytes-ok"}),
    );
    assert_eq!(good.status, 201, "{}", good.text);
    let id = good.body["data"]["id"].as_str().expect("an id").to_owned();
    let patch = |body: Value| {
        admin(&server, "PATCH", &format!("/api/subscriptions/{id}"))
            .json(&body)
            .send()
    };
    for url in bad_urls {
        refused(&patch(json!({"url": url})), "url");
    }
    for secret in bad_secrets {
        refused(&patch(json!({"secret": secret})), "secret");
    }
    let shown = admin(&server, "GET", &format!("/api/subscriptions/{id}")).send();
    assert_eq!(shown.body["data"]["url"], "http://127.0.0.1:65535/hook");
    let ok = patch(
        json!({"url": "https://example.com:8443/hooks", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    );
    assert_eq!(ok.status, 200, "{}", ok.text);

    // Too many type globs for a subscription: the same bound as replay.
    let answer = create(json!({"url": "http://127.0.0.1:9/hook",
        "events": other_globs("SUB", MAX_TYPE_GLOBS + 1)}));
    refused(&answer, "events");
    refused(
        &patch(json!({"events": other_globs("SUB", MAX_TYPE_GLOBS + 1)})),
        "events",
    );
}
