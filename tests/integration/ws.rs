//! `GET /ws` against API.md section 7, with a real WebSocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nexus_event::{NewEvent, TypeFilter, WellKnown};
use nexus_transport::WsToken;
use nexus_transport::auth::Secret;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::server::{ADMIN, TestServer, publish};

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const DASH: &str = "dashboard-token-0123456789abcdef0123";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.ws.tokens.push(WsToken {
            token: Secret::parse(DASH).expect("valid"),
            events: TypeFilter::parse(["PAYMENT_*", "NOTIFICATION_*"]).expect("valid"),
        });
    })
}

async fn connect(
    s: &TestServer,
    token: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let url = s.base.replace("http://", "ws://") + "/ws";
    let mut request = url.into_client_request().expect("request");
    if let Some(t) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

async fn send(ws: &mut Client, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next text frame as JSON; pings are skipped.
async fn next(ws: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        match m {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code.
async fn closed(ws: &mut Client) -> Option<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for _ in 0..100_000 {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return None,
            Err(_) => panic!("the server did not close"),
        }
    }
    panic!("too many frames before the close");
}

#[test]
fn a_missing_or_wrong_token_is_refused_at_the_upgrade() {
    let s = server();
    rt().block_on(async {
        for token in [None, Some("wrong")] {
            match connect(&s, token).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
                other => panic!("expected 401, got {:?}", other.map(|_| "a connection")),
            }
        }
        let url = s.base.replace("http://", "ws://") + "/ws?token=" + DASH;
        assert!(
            tokio_tungstenite::connect_async(url).await.is_ok(),
            "?token= works"
        );
        assert!(
            connect(&s, Some(ADMIN)).await.is_ok(),
            "the admin token works"
        );
    });
}

#[test]
fn a_null_payload_arrives_as_null() {
    let s = server();
    rt().block_on(async {
        let mut ws = connect(&s, Some(DASH)).await.expect("connect");
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["PAYMENT_*"]}),
        )
        .await;
        assert_eq!(next(&mut ws).await["ack"], "subscribe");
        let a = publish(
            &s,
            &json!({"type": "PAYMENT_RECEIVED", "id": "n1", "payload": null}),
        );
        assert_eq!(a.status, 202, "{}", a.text);
        let f = next(&mut ws).await;
        assert_eq!(f["id"], "n1");
        assert_eq!(
            f.as_object().and_then(|o| o.get("payload")),
            Some(&Value::Null),
            "{f}"
        );
    });
}

#[test]
fn subscribe_receive_unsubscribe_and_ping() {
    let s = server();
    rt().block_on(async {
        let mut ws = connect(&s, Some(DASH)).await.expect("connect");
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["PAYMENT_*"]}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await,
            json!({"ack": "subscribe", "events": ["PAYMENT_*"]})
        );
        publish(
            &s,
            &json!({"type": "PAYMENT_RECEIVED", "id": "p1", "payload": {"amount": 3}}),
        );
        let f = next(&mut ws).await;
        assert_eq!(
            (
                f["event"].clone(),
                f["id"].clone(),
                f["sequence"].clone(),
                f["payload"].clone()
            ),
            (
                json!("PAYMENT_RECEIVED"),
                json!("p1"),
                json!(1),
                json!({"amount": 3})
            )
        );
        assert!(
            f["timestamp"]
                .as_i64()
                .is_some_and(|t| t > 1_700_000_000_000),
            "unix ms"
        );
        send(&mut ws, json!({"action": "ping"})).await;
        assert!(next(&mut ws).await["pong"].as_i64().is_some());
        let d = crate::support::server::Call::new("GET", s.url("/health/detailed")).send();
        assert_eq!(d.body["websocket"]["connections"], 1);
        send(
            &mut ws,
            json!({"action": "unsubscribe", "events": ["PAYMENT_*"]}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await,
            json!({"ack": "unsubscribe", "events": ["PAYMENT_*"]})
        );
        publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "p2"}));
        send(&mut ws, json!({"action": "ping"})).await;
        assert!(
            next(&mut ws).await.get("pong").is_some(),
            "no event frame after unsubscribing"
        );
        send(&mut ws, json!({"action": "dance"})).await;
        assert_eq!(next(&mut ws).await["error"]["code"], "BAD_REQUEST");
    });
}

#[test]
fn patterns_outside_the_token_scope_are_refused() {
    let s = server();
    rt().block_on(async {
        let mut ws = connect(&s, Some(DASH)).await.expect("connect");
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["PAYMENT_*", "*", "MINT_*"]}),
        )
        .await;
        let err = next(&mut ws).await;
        assert_eq!(err["error"]["code"], "FORBIDDEN");
        let message = err["error"]["message"].as_str().expect("message");
        assert!(
            message.contains('*') && message.contains("MINT_*"),
            "{message}"
        );
        assert_eq!(
            next(&mut ws).await,
            json!({"ack": "subscribe", "events": ["PAYMENT_*"]})
        );
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["MINT_*"]}),
        )
        .await;
        assert_eq!(next(&mut ws).await["error"]["code"], "FORBIDDEN");
        send(&mut ws, json!({"action": "ping"})).await;
        assert!(
            next(&mut ws).await.get("pong").is_some(),
            "no ack when nothing is left"
        );
    });
}

#[test]
fn since_resumes_with_no_gap_and_no_duplicate() {
    let s = server();
    for i in 1..=5 {
        publish(
            &s,
            &json!({"type": "PAYMENT_RECEIVED", "id": format!("e{i}")}),
        );
    }
    rt().block_on(async {
        let mut ws = connect(&s, Some(ADMIN)).await.expect("connect");
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["*"], "since": 2}),
        )
        .await;
        assert_eq!(next(&mut ws).await["ack"], "subscribe");
        let mut seqs = Vec::new();
        for _ in 0..3 {
            seqs.push(next(&mut ws).await["sequence"].as_u64().expect("seq"));
        }
        // Published while the replay runs and after it: each exactly once, in order.
        publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "e6"}));
        publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "e7"}));
        for _ in 0..2 {
            seqs.push(next(&mut ws).await["sequence"].as_u64().expect("seq"));
        }
        assert_eq!(seqs, vec![3, 4, 5, 6, 7]);
    });
}

#[test]
fn a_new_pattern_with_since_keeps_the_old_stream_whole() {
    let s = server();
    rt().block_on(async {
        let mut ws = connect(&s, Some(ADMIN)).await.expect("connect");
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["PAYMENT_*"]}),
        )
        .await;
        next(&mut ws).await;
        let batch: Vec<NewEvent> = (0..6)
            .map(|i| {
                let t = if i % 2 == 0 {
                    WellKnown::PaymentReceived
                } else {
                    WellKnown::MintConfirmed
                };
                NewEvent::new(t, "x")
            })
            .collect();
        nexus_store::EventLog::append(&*s.store, batch)
            .await
            .expect("append");
        // Ask for mints since 0 while the payments 1, 3, 5 are still on their way.
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["MINT_*"], "since": 0}),
        )
        .await;
        let mut seqs = Vec::new();
        while seqs.len() < 6 {
            let f = next(&mut ws).await;
            if let Some(seq) = f["sequence"].as_u64() {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6], "every event once");
    });
}

#[test]
fn a_consumer_too_slow_for_its_buffer_is_closed_with_1013() {
    let s = TestServer::start_with(|c| c.ws.buffer = 2);
    rt().block_on(async {
        let mut ws = connect(&s, Some(ADMIN)).await.expect("connect");
        send(&mut ws, json!({"action": "subscribe", "events": ["*"]})).await;
        next(&mut ws).await;
        // Far more than the socket buffers hold, while the client reads nothing.
        for _ in 0..4 {
            let batch: Vec<NewEvent> = (0..500)
                .map(|_| {
                    NewEvent::new(WellKnown::PaymentReceived, "x")
                        .payload(json!({"pad": "x".repeat(8192)}))
                })
                .collect();
            nexus_store::EventLog::append(&*s.store, batch)
                .await
                .expect("append");
        }
        assert_eq!(closed(&mut ws).await, Some(CloseCode::Again));
    });
}

#[test]
fn shutdown_closes_with_1001_and_silence_with_a_close() {
    let s = TestServer::start_with(|c| {
        c.ws.ping_every = Duration::from_millis(100);
        c.ws.pong_within = Duration::from_millis(100);
    });
    rt().block_on(async {
        let mut quiet = connect(&s, Some(ADMIN)).await.expect("connect");
        // Reading nothing means answering no ping: the server closes the connection.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(closed(&mut quiet).await, Some(CloseCode::Policy));
        let mut ws = connect(&s, Some(ADMIN)).await.expect("connect");
        s.app.lifecycle().start_draining();
        assert_eq!(closed(&mut ws).await, Some(CloseCode::Away));
    });
}

#[test]
fn a_pattern_without_since_starts_now_and_since_widens_a_pattern() {
    let s = server();
    for (i, t) in ["MINT_CONFIRMED", "PAYMENT_RECEIVED", "MINT_CONFIRMED"]
        .iter()
        .enumerate()
    {
        s.block_on(nexus_store::EventLog::append(
            &*s.store,
            vec![
                NewEvent::new(nexus_event::EventType::new(t).expect("valid"), "x")
                    .id(nexus_event::EventId::new(&format!("h{i}")).expect("valid")),
            ],
        ))
        .expect("append");
    }
    rt().block_on(async {
        let mut ws = connect(&s, Some(ADMIN)).await.expect("connect");
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["MINT_*"]}),
        )
        .await;
        next(&mut ws).await;
        // Payments since 0: the stored payment only, not the mints stored before MINT_* started.
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["PAYMENT_*"], "since": 0}),
        )
        .await;
        assert_eq!(next(&mut ws).await["ack"], "subscribe");
        assert_eq!(next(&mut ws).await["sequence"], 2);
        send(&mut ws, json!({"action": "ping"})).await;
        assert!(
            next(&mut ws).await.get("pong").is_some(),
            "nothing else was sent"
        );
        // MINT_* again with since 0: its stored history now, each event once.
        send(
            &mut ws,
            json!({"action": "subscribe", "events": ["MINT_*"], "since": 0}),
        )
        .await;
        assert_eq!(next(&mut ws).await["ack"], "subscribe");
        assert_eq!(next(&mut ws).await["sequence"], 1);
        assert_eq!(next(&mut ws).await["sequence"], 3);
        publish(&s, &json!({"type": "PAYMENT_RECEIVED", "id": "live"}));
        assert_eq!(next(&mut ws).await["sequence"], 4);
    });
}
