//! `GET /ws` (API.md section 7): token auth, subscribe/unsubscribe with globs inside the token's
//! scope, `since` resume with no gap and no duplicate at the seam, server pings, a bounded
//! buffer per connection and close 1013 for a consumer that cannot keep up.
//!
//! What one client can make the server do is bounded (issue 18): a client frame is at most
//! [`WsConfig::max_message_bytes`] (a larger one is refused at its header, before its payload
//! is read, with an error frame and close 1009), a frame names at most
//! [`WsConfig::max_patterns_per_frame`] patterns and a connection holds at most
//! [`WsConfig::max_patterns`]; a frame over a bound gets one error frame and changes nothing.
//! Each frame costs time linear in its size: patterns are deduplicated through hash sets, never
//! compared with every pattern held.

use std::collections::{HashMap, HashSet};
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
    /// The largest client message (and frame) in bytes (`NEXUS_WS_MAX_MESSAGE_BYTES`, default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], 64 KiB). A larger one is refused as soon as its header is
    /// read: an error frame `PAYLOAD_TOO_LARGE`, then close 1009.
    pub max_message_bytes: usize,
    /// Patterns one subscribe or unsubscribe frame may name (`NEXUS_WS_MAX_FRAME_PATTERNS`,
    /// default [`DEFAULT_MAX_PATTERNS_PER_FRAME`]); more is a `VALIDATION_ERROR` frame and the
    /// frame changes nothing.
    pub max_patterns_per_frame: usize,
    /// Patterns one connection may hold (`NEXUS_WS_MAX_PATTERNS`, default
    /// [`DEFAULT_MAX_PATTERNS`]); a subscribe frame that would go past it is a
    /// `VALIDATION_ERROR` frame and changes nothing.
    pub max_patterns: usize,
}

/// Default of [`WsConfig::max_message_bytes`]: 64 KiB, room for a few hundred patterns.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default of [`WsConfig::max_patterns_per_frame`].
pub const DEFAULT_MAX_PATTERNS_PER_FRAME: usize = 256;
/// Default of [`WsConfig::max_patterns`].
pub const DEFAULT_MAX_PATTERNS: usize = 1024;

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            tokens: Vec::new(),
            buffer: 1024,
            ping_every: Duration::from_secs(30),
            pong_within: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_patterns_per_frame: DEFAULT_MAX_PATTERNS_PER_FRAME,
            max_patterns: DEFAULT_MAX_PATTERNS,
        }
    }
}

/// Close code for a consumer too slow for its buffer: resume with `since`.
const TRY_AGAIN_LATER: u16 = 1013;
/// Close code when the server shuts down.
const GOING_AWAY: u16 = 1001;
/// Close code for a peer that stopped answering pings.
const POLICY: u16 = 1008;
/// Close code for a client message over [`WsConfig::max_message_bytes`].
const MESSAGE_TOO_BIG: u16 = 1009;
/// How long a connection closed for an oversized message stays open after its close frame went
/// out, so the peer reads the error and the close before the socket goes away (the rest of the
/// oversized message is never read, and a socket dropped with unread bytes is reset).
const TOO_BIG_LINGER: Duration = Duration::from_millis(250);

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
    // The size bounds apply to each frame at its header and to a message's fragments together.
    Ok(ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_frame_size(ws_config.max_message_bytes)
        .max_message_size(ws_config.max_message_bytes)
        .on_upgrade(move |socket| connection(state, socket, scope))
        .into_response())
}

fn frame(frame: &ServerFrame) -> Message {
    Message::Text(frame_text(frame))
}

fn frame_text(frame: &ServerFrame) -> Utf8Bytes {
    let text = serde_json::to_string(frame)
        .expect("a frame of strings, numbers and JSON values (string keys) always serializes");
    Utf8Bytes::from(text)
}

/// Event frames made once and shared by every connection that sends them: a frame is the same
/// text for every client, so an event fanned out to a thousand clients is serialised once and
/// held once (each queue holds a reference), not a thousand times.
pub(crate) struct EventFrames {
    slots: Box<[std::sync::Mutex<Option<Made>>]>,
}

/// A frame in an [`EventFrames`] slot, with the sequence and id of its event.
type Made = (u64, nexus_event::EventId, Utf8Bytes);

/// Slots of [`EventFrames`]: recent events by sequence; an older event (a replay) is made again.
const EVENT_FRAME_SLOTS: u64 = 256;

impl EventFrames {
    pub(crate) fn new() -> Self {
        EventFrames {
            slots: (0..EVENT_FRAME_SLOTS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
        }
    }

    /// The frame of `e`, made now or by an earlier connection. A slot is told by the sequence
    /// and checked by the id as well, so a frame is never sent for another event.
    fn get(&self, e: &Event) -> Message {
        let slot = &self.slots[(e.sequence % EVENT_FRAME_SLOTS) as usize];
        let cached = |slot: &Option<Made>| match slot {
            Some((sequence, id, text)) if *sequence == e.sequence && *id == e.id => {
                Some(text.clone())
            }
            _ => None,
        };
        if let Some(text) = cached(&slot.lock().unwrap_or_else(|p| p.into_inner())) {
            return Message::Text(text);
        }
        let text = frame_text(&ServerFrame::Event(EventFrame::from(e)));
        *slot.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((e.sequence, e.id.clone(), text.clone()));
        Message::Text(text)
    }
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

/// How a connection ends on the server's side.
enum Ending {
    /// Close ahead of whatever is queued: a consumer too slow for its buffer, a shutdown.
    Now(Close),
    /// Close after the frames already queued, the error frame that says why among them.
    AfterQueued(Close),
}

/// Whether a read error is a message over the size bounds (matched by type: the error axum
/// wraps is tungstenite's).
fn too_big(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
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
        /// Frames written before one flush: what a burst (a fan-out, a replay) queued goes out
        /// in few writes, not one system call per frame.
        const BATCH: usize = 64;
        let mut next = None;
        loop {
            let out = match next.take() {
                Some(out) => out,
                None => tokio::select! {
                    biased;
                    Some(close) = close_rx.recv() => close,
                    Some(out) = out_rx.recv() => out,
                    else => break,
                },
            };
            match out {
                Out::Send(m) => {
                    if sink.feed(m).await.is_err() {
                        break;
                    }
                    let mut fed = 1;
                    while fed < BATCH && close_rx.is_empty() {
                        match out_rx.try_recv() {
                            Ok(Out::Send(m)) => {
                                if sink.feed(m).await.is_err() {
                                    return;
                                }
                                fed += 1;
                            }
                            Ok(close) => {
                                next = Some(close);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    if sink.flush().await.is_err() {
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
        patterns: HashMap::new(),
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
                break Some(Ending::Now((GOING_AWAY, "server shutting down")));
            }
            _ = ping.tick() => {
                if awaiting_pong.is_none() {
                    awaiting_pong = Some(tokio::time::Instant::now());
                }
                if let Err(close) = conn.push(Message::Ping(Default::default())) {
                    break Some(Ending::Now(close));
                }
            }
            _ = pong_deadline => break Some(Ending::Now((POLICY, "no pong"))),
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(close) = conn.client_frame(text.as_str()).await {
                        break Some(Ending::Now(close));
                    }
                }
                Some(Ok(Message::Pong(_))) => awaiting_pong = None,
                Some(Ok(Message::Binary(_))) => {
                    if let Err(close) = conn.push(error_frame(ErrorCode::BadRequest, "frames are JSON text")) {
                        break Some(Ending::Now(close));
                    }
                }
                Some(Ok(Message::Ping(_))) => {} // answered by the protocol layer
                Some(Err(e)) if too_big(&e) => {
                    let refused = error_frame(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "a client frame may hold at most {} bytes (NEXUS_WS_MAX_MESSAGE_BYTES)",
                            config.max_message_bytes
                        ),
                    );
                    break Some(match conn.push(refused) {
                        Ok(()) => Ending::AfterQueued((MESSAGE_TOO_BIG, "message too big")),
                        Err(close) => Ending::Now(close),
                    });
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
            },
            received = bus.recv() => match received {
                Ok(event) => {
                    if let Err(close) = conn.live(&event) {
                        break Some(Ending::Now(close));
                    }
                }
                Err(RecvError::Lagged { .. }) => break Some(Ending::Now((TRY_AGAIN_LATER, "consumer too slow; resume with since"))),
                Err(_) => break Some(Ending::Now((GOING_AWAY, "server shutting down"))),
            },
        }
    };
    let mut linger = false;
    match close {
        Some(Ending::Now((code, reason))) => {
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
        Some(Ending::AfterQueued((code, reason))) => {
            // Nothing more is read: the rest of the oversized message would be buffered whole.
            if conn.out.try_send(Out::Close(code, reason)).is_err() {
                let _ = close_tx.send(Out::Close(code, reason)).await;
            }
            linger = true;
        }
        None => {}
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
    if linger {
        tokio::time::sleep(TOO_BIG_LINGER).await;
    }
    drop(stream);
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
    /// the log's head when it was subscribed without one. At most [`WsConfig::max_patterns`].
    patterns: HashMap<Pattern, u64>,
    /// The highest sequence sent or passed over by this connection: live events at or below it
    /// were dealt with by a `since` replay.
    high_water: u64,
    out: mpsc::Sender<Out>,
}

/// The most patterns a `since` replay hands the store as its type filter.
const STORE_FILTER_MAX: usize = 32;

/// How long a replay waits for a client that reads nothing before it is closed.
const REPLAY_STALL: Duration = Duration::from_secs(10);

fn wanted(patterns: &HashMap<Pattern, u64>, e: &Event) -> bool {
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
        self.push(self.state.frames.get(e))
    }

    async fn client_frame(&mut self, text: &str) -> Result<(), Close> {
        // Read as request bodies are (json.rs): a duplicate key or an integer past 64 bits is
        // refused, so no frame means one thing here and another to a proxy that inspects it.
        let value: Value = match crate::json::parse(text.as_bytes()) {
            Ok(v) => v,
            Err(e) => {
                return self.push(frame(&ServerFrame::Error(ErrorFrame {
                    error: ErrorBody {
                        code: e.code,
                        message: e.message,
                        details: e.details,
                    },
                })));
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
        let per_frame = self.state.config.ws.max_patterns_per_frame;
        if globs.len() > per_frame {
            return self.push(error_frame(
                ErrorCode::ValidationError,
                format!(
                    "a {action} frame may name at most {per_frame} patterns \
                     (NEXUS_WS_MAX_FRAME_PATTERNS); this one names {}",
                    globs.len()
                ),
            ));
        }
        // Each glob once, in the order given.
        let mut seen: HashSet<&str> = HashSet::with_capacity(globs.len());
        let mut parsed = Vec::with_capacity(globs.len());
        for g in globs.iter().filter(|g| seen.insert(g.as_str())) {
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
        for p in &parsed {
            self.patterns.remove(p);
        }
        self.push(ack_frame(AckKind::Unsubscribe, &parsed))
    }

    async fn subscribe(&mut self, asked: Vec<Pattern>, since: Option<u64>) -> Result<(), Close> {
        let (inside, outside): (Vec<Pattern>, Vec<Pattern>) = asked
            .into_iter()
            .partition(|p| self.scope.matches_str(p.as_str()));
        let adding = inside
            .iter()
            .filter(|p| !self.patterns.contains_key(*p))
            .count();
        let held = self.patterns.len();
        let most = self.state.config.ws.max_patterns;
        if held + adding > most {
            return self.push(error_frame(
                ErrorCode::ValidationError,
                format!(
                    "a connection may hold at most {most} patterns (NEXUS_WS_MAX_PATTERNS); it \
                     holds {held} and this frame adds {adding}: unsubscribe some first"
                ),
            ));
        }
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
        // What was held before, for a replay to tell what it sent already; only `since` needs it.
        let old = since.map(|_| self.patterns.clone());
        // Without `since`, a pattern starts now: after the log's head.
        let head = match since {
            Some(_) => 0,
            None => self.state.store.head().await.unwrap_or(self.high_water),
        };
        let from = since.unwrap_or(head);
        for p in &inside {
            // Subscribing again with an older `since` widens what the pattern wants.
            self.patterns
                .entry(p.clone())
                .and_modify(|f| *f = (*f).min(from))
                .or_insert(from);
        }
        self.push(ack_frame(AckKind::Subscribe, &inside))?;
        if let (Some(since), Some(old)) = (since, old) {
            self.replay(since, &old).await?;
        }
        Ok(())
    }

    /// Sends, in order, every stored event the patterns now want that was not sent already, up
    /// to the log's head; live events at or below what it covered are then skipped. An event at
    /// or below the old high-water mark was sent if the old patterns wanted it.
    async fn replay(&mut self, since: u64, old: &HashMap<Pattern, u64>) -> Result<(), Close> {
        let old_high_water = self.high_water;
        let current = self.patterns.clone();
        // Every row read is matched in Rust below anyway; the store's filter only saves reading
        // rows, and its cost per row grows with the number of globs, so many patterns read
        // unfiltered pages instead.
        let filter = if current.len() <= STORE_FILTER_MAX {
            TypeFilter::new(current.keys().cloned())
        } else {
            TypeFilter::all()
        };
        // Nothing at or below the smallest `from` is wanted by any pattern.
        let mut after = current.values().copied().min().unwrap_or(since);
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
                    self.push_waiting(self.state.frames.get(&e)).await?;
                }
                self.high_water = self.high_water.max(e.sequence);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::error::{CapacityError, ProtocolError};

    fn event(sequence: u64, id: &str) -> Event {
        nexus_event::NewEvent::new(nexus_event::WellKnown::PaymentReceived, "flowpay")
            .id(nexus_event::EventId::new(id).expect("id"))
            .payload(serde_json::json!({"n": sequence}))
            .into_event(sequence)
    }

    fn text(m: Message) -> Utf8Bytes {
        match m {
            Message::Text(t) => t,
            other => panic!("not text: {other:?}"),
        }
    }

    /// A frame is made once per event and shared; a slot taken by a later event makes the
    /// earlier one again, the same text.
    #[test]
    fn event_frames_are_made_once_and_shared() {
        let frames = EventFrames::new();
        let first = event(7, "a");
        let (one, two) = (text(frames.get(&first)), text(frames.get(&first)));
        assert_eq!(
            one.as_str().as_ptr(),
            two.as_str().as_ptr(),
            "one allocation"
        );
        let expected =
            serde_json::to_value(ServerFrame::Event(EventFrame::from(&first))).expect("frame");
        assert_eq!(
            serde_json::from_str::<Value>(one.as_str()).expect("json"),
            expected
        );
        // The same slot, another event: its own frame, then the first made anew.
        let later = event(7 + EVENT_FRAME_SLOTS, "b");
        let other = text(frames.get(&later));
        assert!(other.as_str().contains(r#""id":"b""#), "{other}");
        let again = text(frames.get(&first));
        assert_eq!(again.as_str(), one.as_str());
        assert_ne!(again.as_str().as_ptr(), one.as_str().as_ptr(), "made again");
        // Another event under the same sequence (another log) gets its own frame.
        let other_log = text(frames.get(&event(7, "c")));
        assert!(other_log.as_str().contains(r#""id":"c""#), "{other_log}");
    }

    #[test]
    fn only_a_capacity_error_is_too_big() {
        let big = axum::Error::new(tungstenite::Error::Capacity(
            CapacityError::MessageTooLong {
                size: 1_300_000,
                max_size: DEFAULT_MAX_MESSAGE_BYTES,
            },
        ));
        assert!(too_big(&big));
        for other in [
            axum::Error::new(tungstenite::Error::ConnectionClosed),
            axum::Error::new(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake,
            )),
            axum::Error::new(std::io::Error::other("reset")),
        ] {
            assert!(!too_big(&other), "{other}");
        }
    }

    #[test]
    fn the_defaults_fit_a_full_frame_of_patterns() {
        let config = WsConfig::default();
        assert!(config.max_patterns_per_frame <= config.max_patterns);
        // A frame of the most patterns, each a glob of a usual length, fits the message bound.
        let frame = serde_json::json!({
            "action": "subscribe",
            "events": vec!["PAYMENT_RECEIVED_*"; config.max_patterns_per_frame],
        })
        .to_string();
        assert!(frame.len() < config.max_message_bytes, "{}", frame.len());
    }
}
