//! `GET /ws` (API.md section 7): token auth, subscribe/unsubscribe with globs inside the token's
//! scope, `since` resume with no gap and no duplicate at the seam, server pings, a bounded
//! buffer per connection and close 1013 for a consumer that cannot keep up.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use nexus_core::{RecvError, metric_names};
use nexus_event::{Event, Pattern, Timestamp, TypeFilter};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::auth::{self, Secret};
use crate::envelope::ApiError;

/// A token that may open WebSocket connections, and the types it may subscribe to.
#[derive(Debug, Clone)]
pub struct WsToken {
    /// The token.
    pub token: Secret,
    /// Its scope: a subscribed pattern must be matched by one of these globs.
    pub events: TypeFilter,
}

/// WebSocket settings.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Subscriber tokens (`[[ws_tokens]]`); the admin token is accepted too, with every type.
    pub tokens: Vec<WsToken>,
    /// Frames a connection may have queued before it is closed with 1013 (`NEXUS_WS_BUFFER`,
    /// default 1024).
    pub buffer: usize,
    /// How often the server pings. Default 30 s.
    pub ping_every: Duration,
    /// How long a ping may go unanswered before the connection is closed. Default 10 s.
    pub pong_within: Duration,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            tokens: Vec::new(),
            buffer: 1024,
            ping_every: Duration::from_secs(30),
            pong_within: Duration::from_secs(10),
        }
    }
}

/// Close code for a consumer too slow for its buffer: resume with `since`.
const TRY_AGAIN_LATER: u16 = 1013;
/// Close code when the server shuts down.
const GOING_AWAY: u16 = 1001;
/// Close code for a peer that stopped answering pings.
const POLICY: u16 = 1008;

fn query_token(raw: Option<&str>) -> Option<String> {
    raw?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| v.to_owned())
    })
}

/// The upgrade: refused with 401 for a missing or wrong token.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let ws_config = &state.config.ws;
    let mut accepted: Vec<&Secret> = vec![&state.config.admin_token];
    accepted.extend(ws_config.tokens.iter().map(|t| &t.token));
    let index = match auth::bearer(&headers, &accepted) {
        Some(i) => Some(i),
        None => query_token(query.as_deref())
            .and_then(|t| accepted.iter().position(|s| s.matches(t.as_bytes()))),
    };
    let Some(index) = index else {
        return Err(ApiError::unauthorized(
            "a WebSocket needs a token: Authorization: Bearer <token> or ?token=",
        ));
    };
    if state.lifecycle.is_draining() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let scope = match index {
        0 => TypeFilter::all(),
        i => ws_config.tokens[i - 1].events.clone(),
    };
    // Small buffers that grow when a frame needs it: an idle connection should cost kilobytes,
    // not the 128 KiB read buffer tungstenite starts with.
    Ok(ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| connection(state, socket, scope))
        .into_response())
}

fn frame(value: &Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn event_frame(e: &Event) -> Message {
    frame(&json!({
        "event": e.event_type,
        "id": e.id,
        "sequence": e.sequence,
        "payload": e.payload,
        "timestamp": e.time.as_unix_millis(),
    }))
}

fn error_frame(code: &str, message: impl Into<String>) -> Message {
    frame(&json!({ "error": { "code": code, "message": message.into() } }))
}

/// What the writer is told to do.
enum Out {
    Send(Message),
    Close(u16, &'static str),
}

/// One connection. The reader side (this task) follows the client's frames and the bus; the
/// writer task drains a bounded queue into the socket.
async fn connection(state: AppState, socket: WebSocket, scope: TypeFilter) {
    let connections = &state.lifecycle.websocket_connections;
    let open = connections.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::gauge!(metric_names::WEBSOCKET_CONNECTIONS).set(open as f64);
    let config = state.config.ws.clone();
    // Subscribe to the bus before anything else, so nothing committed from now on is missed.
    let mut bus = state.bus.subscribe(TypeFilter::all());
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(config.buffer.max(1));
    let (close_tx, mut close_rx) = mpsc::channel::<Out>(1);
    let writer = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                Some(close) = close_rx.recv() => close,
                Some(out) = out_rx.recv() => out,
                else => break,
            };
            match next {
                Out::Send(m) => {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                Out::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: Utf8Bytes::from_static(reason),
                        })))
                        .await;
                    break;
                }
            }
        }
    });

    let mut conn = Conn {
        state: &state,
        scope,
        patterns: Vec::new(),
        high_water: 0,
        out: out_tx,
    };
    let mut shutdown = state.lifecycle.shutdown_signal();
    let mut ping = tokio::time::interval(config.ping_every);
    ping.tick().await;
    let mut awaiting_pong: Option<tokio::time::Instant> = None;
    let close = loop {
        let pong_deadline = async {
            match awaiting_pong {
                Some(since) => tokio::time::sleep_until(since + config.pong_within).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // `wait_for` also sees a drain that began before this connection subscribed.
            _ = async { shutdown.wait_for(|draining| *draining).await.map(|_| ()) } => {
                break Some((GOING_AWAY, "server shutting down"));
            }
            _ = ping.tick() => {
                if awaiting_pong.is_none() {
                    awaiting_pong = Some(tokio::time::Instant::now());
                }
                if conn.push(Message::Ping(Default::default())).is_err() {
                    break Some((TRY_AGAIN_LATER, "consumer too slow; resume with since"));
                }
            }
            _ = pong_deadline => break Some((POLICY, "no pong")),
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(close) = conn.client_frame(text.as_str()).await {
                        break Some(close);
                    }
                }
                Some(Ok(Message::Pong(_))) => awaiting_pong = None,
                Some(Ok(Message::Binary(_))) => {
                    if conn.push(error_frame("BAD_REQUEST", "frames are JSON text")).is_err() {
                        break Some((TRY_AGAIN_LATER, "consumer too slow; resume with since"));
                    }
                }
                Some(Ok(Message::Ping(_))) => {} // answered by the protocol layer
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
            },
            received = bus.recv() => match received {
                Ok(event) => {
                    if let Err(close) = conn.live(&event) {
                        break Some(close);
                    }
                }
                Err(RecvError::Lagged { .. }) => break Some((TRY_AGAIN_LATER, "consumer too slow; resume with since")),
                Err(_) => break Some((GOING_AWAY, "server shutting down")),
            },
        }
    };
    if let Some((code, reason)) = close {
        let _ = close_tx.send(Out::Close(code, reason)).await;
        // The closing handshake: read (and drop) what the client still sends until its close
        // frame, so our close is not lost to a reset; bounded, since a peer may never answer.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    drop(conn);
    drop(close_tx);
    // A writer stuck on a peer that reads nothing is not waited for long.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    let open = connections
        .fetch_sub(1, Ordering::Relaxed)
        .saturating_sub(1);
    metrics::gauge!(metric_names::WEBSOCKET_CONNECTIONS).set(open as f64);
}

type Close = (u16, &'static str);

struct Conn<'a> {
    state: &'a AppState,
    scope: TypeFilter,
    patterns: Vec<Pattern>,
    /// The highest sequence sent to this client: live events at or below it were sent by a
    /// `since` replay already.
    high_water: u64,
    out: mpsc::Sender<Out>,
}

impl Conn<'_> {
    fn push(&self, m: Message) -> Result<(), Close> {
        self.out
            .try_send(Out::Send(m))
            .map_err(|_| (TRY_AGAIN_LATER, "consumer too slow; resume with since"))
    }

    /// Queues a frame, waiting for room: for replays, which the client asked for and which may
    /// be longer than the live buffer.
    async fn push_waiting(&self, m: Message) -> Result<(), Close> {
        self.out
            .send(Out::Send(m))
            .await
            .map_err(|_| (GOING_AWAY, "connection closed"))
    }

    fn wants(&self, e: &Event) -> bool {
        self.patterns.iter().any(|p| p.matches_type(&e.event_type))
    }

    fn live(&mut self, e: &Event) -> Result<(), Close> {
        if e.sequence <= self.high_water || !self.wants(e) {
            return Ok(());
        }
        self.high_water = e.sequence;
        self.push(event_frame(e))
    }

    async fn client_frame(&mut self, text: &str) -> Result<(), Close> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.push(error_frame("BAD_REQUEST", format!("not JSON: {e}"))),
        };
        let action = value.get("action").and_then(Value::as_str).unwrap_or("");
        match action {
            "ping" => self.push(frame(&json!({ "pong": Timestamp::now().as_unix_millis() }))),
            "subscribe" | "unsubscribe" => {
                let globs: Option<Vec<&str>> = value
                    .get("events")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|v| v.as_str().unwrap_or("")).collect());
                let Some(globs) = globs.filter(|g| !g.is_empty()) else {
                    return self.push(error_frame(
                        "VALIDATION_ERROR",
                        "events must be a non-empty array of type globs",
                    ));
                };
                let mut parsed = Vec::new();
                for g in &globs {
                    match Pattern::new(g) {
                        Ok(p) => parsed.push(p),
                        Err(e) => {
                            return self
                                .push(error_frame("VALIDATION_ERROR", format!("{g:?}: {e}")));
                        }
                    }
                }
                if action == "unsubscribe" {
                    self.patterns.retain(|p| !parsed.contains(p));
                    let names: Vec<&str> = parsed.iter().map(Pattern::as_str).collect();
                    return self.push(frame(&json!({ "ack": "unsubscribe", "events": names })));
                }
                let since = match value.get("since") {
                    None | Some(Value::Null) => None,
                    Some(v) => match v.as_u64() {
                        Some(s) => Some(s),
                        None => {
                            return self.push(error_frame(
                                "VALIDATION_ERROR",
                                "since must be a sequence number",
                            ));
                        }
                    },
                };
                self.subscribe(parsed, since).await
            }
            other => self.push(error_frame(
                "BAD_REQUEST",
                format!("unknown action {other:?}"),
            )),
        }
    }

    async fn subscribe(&mut self, asked: Vec<Pattern>, since: Option<u64>) -> Result<(), Close> {
        let (inside, outside): (Vec<Pattern>, Vec<Pattern>) = asked
            .into_iter()
            .partition(|p| self.scope.matches_str(p.as_str()));
        if !outside.is_empty() {
            let names: Vec<&str> = outside.iter().map(Pattern::as_str).collect();
            self.push(error_frame(
                "FORBIDDEN",
                format!("outside this token's scope: {}", names.join(", ")),
            ))?;
        }
        if inside.is_empty() {
            return Ok(());
        }
        let old = TypeFilter::new(self.patterns.clone());
        let had_any = !self.patterns.is_empty();
        for p in &inside {
            if !self.patterns.contains(p) {
                self.patterns.push(p.clone());
            }
        }
        let names: Vec<&str> = inside.iter().map(Pattern::as_str).collect();
        self.push(frame(&json!({ "ack": "subscribe", "events": names })))?;
        if let Some(since) = since {
            let new = TypeFilter::new(inside);
            self.replay(since, &new, had_any.then_some(old)).await?;
        }
        Ok(())
    }

    /// Sends stored events after `since`, in order, up to the log's head, leaving nothing for
    /// the live stream to repeat or miss. At or below the old high-water mark: what the new
    /// patterns want and the old ones did not (the rest was sent). Above it: everything the
    /// patterns now want, since the live stream skips what this replay covered.
    async fn replay(
        &mut self,
        since: u64,
        new: &TypeFilter,
        old: Option<TypeFilter>,
    ) -> Result<(), Close> {
        let old_high_water = self.high_water;
        let current = TypeFilter::new(self.patterns.clone());
        let old_wants = |e: &Event| old.as_ref().is_some_and(|f| f.matches(&e.event_type));
        // Events above the old high-water mark that the old patterns want are still on their way
        // through the bus, which will skip them once this replay has moved the mark: send them
        // here, even below `since`.
        let mut after = if old.is_some() {
            since.min(old_high_water)
        } else {
            since
        };
        loop {
            let page = match self.state.store.read(after, 256, &current).await {
                Ok(page) if page.is_empty() => return Ok(()),
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the log for a WebSocket replay");
                    return self.push(error_frame(
                        "UNAVAILABLE",
                        "cannot read the log; resubscribe with since",
                    ));
                }
            };
            for e in page {
                after = e.sequence;
                let send = if e.sequence <= old_high_water {
                    e.sequence > since && new.matches(&e.event_type) && !old_wants(&e)
                } else if e.sequence <= since {
                    old_wants(&e)
                } else {
                    true
                };
                if send {
                    self.push_waiting(event_frame(&e)).await?;
                }
                self.high_water = self.high_water.max(e.sequence);
            }
        }
    }
}
