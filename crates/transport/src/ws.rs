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
use nexus_api::envelope::{ErrorBody, ErrorCode};
use nexus_api::ws::{
    AckFrame, AckKind, ClientFrame, ErrorFrame, EventFrame, PongFrame, ServerFrame,
};
use nexus_core::RecvError;
use nexus_event::{Event, Pattern, Timestamp, TypeFilter};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::auth::{self, Secret};
use crate::envelope::ApiError;
use crate::metric_names;

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

/// The query of the upgrade: `?token=` (other parameters are ignored).
#[derive(serde::Deserialize)]
struct UpgradeQuery {
    token: Option<String>,
}

fn query_token(raw: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<UpgradeQuery>(raw?).ok()?.token
}

/// The upgrade: refused with 401 for a missing or wrong token.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
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
    let ws = ws.map_err(|e| ApiError::bad_request(format!("not a WebSocket upgrade: {e}")))?;
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

fn frame(frame: &ServerFrame) -> Message {
    let text = serde_json::to_string(frame)
        .expect("a frame of strings, numbers and JSON values (string keys) always serializes");
    Message::Text(Utf8Bytes::from(text))
}

fn event_frame(e: &Event) -> Message {
    frame(&ServerFrame::Event(EventFrame::from(e)))
}

fn error_frame(code: ErrorCode, message: impl Into<String>) -> Message {
    frame(&ServerFrame::Error(ErrorFrame {
        error: ErrorBody {
            code,
            message: message.into(),
            details: None,
        },
    }))
}

fn ack_frame(ack: AckKind, patterns: &[Pattern]) -> Message {
    frame(&ServerFrame::Ack(AckFrame {
        ack,
        events: patterns.iter().map(|p| p.as_str().to_owned()).collect(),
    }))
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
                    if conn.push(error_frame(ErrorCode::BadRequest, "frames are JSON text")).is_err() {
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
    /// Subscribed patterns, each with the sequence after which it wants events: its `since`, or
    /// the log's head when it was subscribed without one.
    patterns: Vec<(Pattern, u64)>,
    /// The highest sequence sent or passed over by this connection: live events at or below it
    /// were dealt with by a `since` replay.
    high_water: u64,
    out: mpsc::Sender<Out>,
}

/// How long a replay waits for a client that reads nothing before it is closed.
const REPLAY_STALL: Duration = Duration::from_secs(10);

fn wanted(patterns: &[(Pattern, u64)], e: &Event) -> bool {
    patterns
        .iter()
        .any(|(p, from)| e.sequence > *from && p.matches_type(&e.event_type))
}

impl Conn<'_> {
    fn push(&self, m: Message) -> Result<(), Close> {
        self.out
            .try_send(Out::Send(m))
            .map_err(|_| (TRY_AGAIN_LATER, "consumer too slow; resume with since"))
    }

    /// Queues a frame, waiting for room: for replays, which the client asked for and which may
    /// be longer than the live buffer; a client that reads nothing for a while is closed.
    async fn push_waiting(&self, m: Message) -> Result<(), Close> {
        match tokio::time::timeout(REPLAY_STALL, self.out.send(Out::Send(m))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err((GOING_AWAY, "connection closed")),
            Err(_) => Err((TRY_AGAIN_LATER, "consumer too slow; resume with since")),
        }
    }

    fn live(&mut self, e: &Event) -> Result<(), Close> {
        if e.sequence <= self.high_water || !wanted(&self.patterns, e) {
            return Ok(());
        }
        self.high_water = e.sequence;
        self.push(event_frame(e))
    }

    async fn client_frame(&mut self, text: &str) -> Result<(), Close> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self.push(error_frame(ErrorCode::BadRequest, format!("not JSON: {e}")));
            }
        };
        // An action this server does not know is a bad request; a known one with a bad shape
        // is a validation error.
        let action = value
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !ClientFrame::ACTIONS.contains(&action.as_str()) {
            return self.push(error_frame(
                ErrorCode::BadRequest,
                format!("unknown action {action:?}"),
            ));
        }
        let (globs, since, subscribe) = match serde_json::from_value::<ClientFrame>(value) {
            Ok(ClientFrame::Ping) => {
                return self.push(frame(&ServerFrame::Pong(PongFrame {
                    pong: Timestamp::now().as_unix_millis(),
                })));
            }
            Ok(ClientFrame::Subscribe { events, since }) => (events, since, true),
            Ok(ClientFrame::Unsubscribe { events }) => (events, None, false),
            Err(e) => {
                return self.push(error_frame(
                    ErrorCode::ValidationError,
                    format!("a bad {action} frame (events: type globs, since: a sequence): {e}"),
                ));
            }
        };
        if globs.is_empty() {
            return self.push(error_frame(
                ErrorCode::ValidationError,
                "events must be a non-empty array of type globs",
            ));
        }
        let mut parsed = Vec::with_capacity(globs.len());
        for g in &globs {
            match Pattern::new(g) {
                Ok(p) => parsed.push(p),
                Err(e) => {
                    return self.push(error_frame(
                        ErrorCode::ValidationError,
                        format!("{g:?}: {e}"),
                    ));
                }
            }
        }
        if subscribe {
            return self.subscribe(parsed, since).await;
        }
        self.patterns.retain(|(p, _)| !parsed.contains(p));
        self.push(ack_frame(AckKind::Unsubscribe, &parsed))
    }

    async fn subscribe(&mut self, asked: Vec<Pattern>, since: Option<u64>) -> Result<(), Close> {
        let (inside, outside): (Vec<Pattern>, Vec<Pattern>) = asked
            .into_iter()
            .partition(|p| self.scope.matches_str(p.as_str()));
        if !outside.is_empty() {
            let names: Vec<&str> = outside.iter().map(Pattern::as_str).collect();
            self.push(error_frame(
                ErrorCode::Forbidden,
                format!("outside this token's scope: {}", names.join(", ")),
            ))?;
        }
        if inside.is_empty() {
            return Ok(());
        }
        let old = self.patterns.clone();
        // Without `since`, a pattern starts now: after the log's head.
        let head = match since {
            Some(_) => 0,
            None => self.state.store.head().await.unwrap_or(self.high_water),
        };
        let from = since.unwrap_or(head);
        for p in &inside {
            match self.patterns.iter_mut().find(|(q, _)| q == p) {
                // Subscribing again with an older `since` widens what the pattern wants.
                Some((_, f)) => *f = (*f).min(from),
                None => self.patterns.push((p.clone(), from)),
            }
        }
        self.push(ack_frame(AckKind::Subscribe, &inside))?;
        if let Some(since) = since {
            self.replay(since, &old).await?;
        }
        Ok(())
    }

    /// Sends, in order, every stored event the patterns now want that was not sent already, up
    /// to the log's head; live events at or below what it covered are then skipped. An event at
    /// or below the old high-water mark was sent if the old patterns wanted it.
    async fn replay(&mut self, since: u64, old: &[(Pattern, u64)]) -> Result<(), Close> {
        let old_high_water = self.high_water;
        let current = self.patterns.clone();
        let filter = TypeFilter::new(current.iter().map(|(p, _)| p.clone()));
        // Nothing at or below the smallest `from` is wanted by any pattern.
        let mut after = current.iter().map(|(_, from)| *from).min().unwrap_or(since);
        loop {
            let page = match self.state.store.read(after, 256, &filter).await {
                Ok(page) if page.is_empty() => return Ok(()),
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the log for a WebSocket replay");
                    return self.push(error_frame(
                        ErrorCode::Unavailable,
                        "cannot read the log; resubscribe with since",
                    ));
                }
            };
            for e in page {
                after = e.sequence;
                let sent_before = e.sequence <= old_high_water && wanted(old, &e);
                if wanted(&current, &e) && !sent_before {
                    self.push_waiting(event_frame(&e)).await?;
                }
                self.high_water = self.high_water.max(e.sequence);
            }
        }
    }
}
