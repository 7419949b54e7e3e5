//! The reconnecting WebSocket subscriber (API.md section 7).
//!
//! One task owns the connection. It connects, subscribes, reads frames, pings, and when the
//! connection is lost it waits a jittered, growing delay and connects again, subscribing with
//! `since` = the last sequence it delivered: the server replays what was committed meanwhile,
//! and anything at or below that sequence is dropped, so across reconnects nothing is lost and
//! nothing is repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nexus_api::envelope::Failure;
use nexus_api::ws::{ClientFrame, ErrorFrame, ServerFrame};
use nexus_event::Pattern;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::{Backoff, Error};

/// A client frame as WebSocket text.
fn client_frame(frame: &ClientFrame) -> Message {
    let text =
        serde_json::to_string(frame).expect("a frame of strings and numbers always serializes");
    Message::text(text)
}

/// Where a subscriber is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Built; its task has not started yet.
    Idle,
    /// Opening its first connection.
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// The connection was lost (or could not be opened): waiting, then connecting again.
    Reconnecting,
    /// [`Subscriber::close`] was called, or the handle dropped: saying goodbye.
    Closing,
    /// Done; no more events will come.
    Closed,
}

/// An event as the WebSocket carries it: nexus-api's [`EventFrame`](nexus_api::ws::EventFrame)
/// (`event_type`, `id`, `sequence`, `payload`, `timestamp_ms`).
pub use nexus_api::ws::EventFrame as WsEvent;

/// What [`Subscriber::next`] gives.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Incoming {
    /// An event, in sequence order, each once.
    Event(WsEvent),
    /// An error frame of the server (`FORBIDDEN` for a pattern outside the token's scope,
    /// `VALIDATION_ERROR`, ...), or `UNAUTHORIZED` when the upgrade was refused (the
    /// subscriber then closes: a wrong token does not get better by retrying).
    ServerError {
        /// The error code.
        code: String,
        /// What the server said.
        message: String,
    },
}

/// A snapshot of a subscriber's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Connections opened (the first included).
    pub connects: u64,
    /// Connections opened after the first.
    pub reconnects: u64,
    /// Events delivered.
    pub messages: u64,
    /// Failures: connection attempts that failed, connections lost or closed by the server,
    /// missed pongs, malformed frames and error frames.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Shared {
    connects: AtomicU64,
    reconnects: AtomicU64,
    messages: AtomicU64,
    errors: AtomicU64,
    /// The last sequence delivered; 0 before the first (sequences start at 1).
    last_sequence: AtomicU64,
}

impl Shared {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

enum Command {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

/// Builds a [`Subscriber`]; see [`Subscriber::builder`].
#[derive(Debug, Clone)]
pub struct SubscriberBuilder {
    url: String,
    token: String,
    events: Vec<String>,
    since: Option<u64>,
    ping_every: Duration,
    pong_within: Duration,
    backoff: (Duration, Duration),
    stable_after: Duration,
    connect_timeout: Duration,
    queue: usize,
    buffer: usize,
    seed: Option<u64>,
}

impl SubscriberBuilder {
    /// Type globs to subscribe to (`PAYMENT_*`, `MINT_CONFIRMED`, `*`). Default none: call
    /// [`Subscriber::subscribe`] later.
    pub fn events<I, S>(mut self, events: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.events.extend(events.into_iter().map(Into::into));
        self
    }

    /// Start after this sequence: the server first sends every stored matching event after
    /// it. Default none: events committed from the first subscription on.
    ///
    /// Until the first event arrives, a reconnect subscribes with this `since` again; without
    /// it, such a reconnect starts at the log's head again, so events committed while that
    /// connection was down and before any event was delivered are not replayed. Give
    /// `since` (0 for the whole log) when that matters.
    pub fn since(mut self, sequence: u64) -> Self {
        self.since = Some(sequence);
        self
    }

    /// How often the subscriber pings the server. Default 30 s.
    pub fn ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every;
        self
    }

    /// How long a ping may go unanswered before the connection is dropped and opened again.
    /// Default 10 s.
    pub fn pong_within(mut self, within: Duration) -> Self {
        self.pong_within = within;
        self
    }

    /// The reconnect backoff: full jitter over a window starting at `base` and doubling up to
    /// `max`. Default 1 s doubling to 30 s.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff = (base, max);
        self
    }

    /// A connection that lasted this long resets the backoff to its base. Default 10 s.
    pub fn stable_after(mut self, after: Duration) -> Self {
        self.stable_after = after;
        self
    }

    /// The time an attempt to connect (TCP and upgrade) may take. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Subscribe and unsubscribe requests held while offline; more are refused with
    /// [`Error::QueueFull`]. Default 100.
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = capacity;
        self
    }

    /// Events received and not yet taken with [`Subscriber::next`]; when it is full the
    /// subscriber stops reading (the server then closes a slow consumer and the subscriber
    /// resumes with `since`, losing nothing). Default 1024.
    pub fn buffer(mut self, capacity: usize) -> Self {
        self.buffer = capacity;
        self
    }

    /// Seeds the backoff jitter. Default: a random seed.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks everything and starts the subscriber's task on the current tokio runtime.
    pub fn connect(self) -> Result<Subscriber, Error> {
        let url = ws_url(&self.url)?;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::invalid("url", format!("{url}: {e}")))?;
        let authorization = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .ok()
            .filter(|_| !self.token.is_empty() && !self.token.contains(' '))
            .ok_or_else(|| {
                Error::invalid("token", "it must be non-empty visible ASCII without spaces")
            })?;
        request.headers_mut().insert("authorization", authorization);
        let patterns = check_patterns(&self.events, true)?;
        for (what, d) in [
            ("ping interval", self.ping_every),
            ("pong timeout", self.pong_within),
            ("connect timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(what, "it must not be zero"));
            }
        }
        let backoff = Backoff::new(self.backoff.0, self.backoff.1)?;
        if self.queue == 0 || self.buffer == 0 {
            return Err(Error::invalid(
                "queue",
                "queue and buffer need room for one",
            ));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (events_tx, events_rx) = mpsc::channel(self.buffer);
        let (commands_tx, commands_rx) = mpsc::channel(self.queue);
        let (state_tx, state_rx) = watch::channel(State::Idle);
        let (close_tx, close_rx) = watch::channel(false);
        let shared = Arc::new(Shared::default());
        let task = Task {
            request,
            patterns,
            resume: self.since,
            ping_every: self.ping_every,
            pong_within: self.pong_within,
            backoff,
            stable_after: self.stable_after,
            connect_timeout: self.connect_timeout,
            rng: match self.seed {
                Some(s) => fastrand::Rng::with_seed(s),
                None => fastrand::Rng::new(),
            },
            events: events_tx,
            commands: commands_rx,
            state: state_tx,
            close: close_rx,
            shared: Arc::clone(&shared),
        };
        let join = handle.spawn(task.run());
        Ok(Subscriber {
            events: events_rx,
            commands: commands_tx,
            queue: self.queue,
            state: state_rx,
            close: close_tx,
            shared,
            join: Some(join),
        })
    }
}

/// `ws://host:port/ws` from `ws://`, `wss://`, `http://` or `https://`; `/ws` is added when
/// the URL has no path.
fn ws_url(written: &str) -> Result<String, Error> {
    let trimmed = written.trim().trim_end_matches('/');
    let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("ws://") {
        ("ws", rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        ("ws", rest)
    } else if let Some(rest) = trimmed
        .strip_prefix("wss://")
        .or_else(|| trimmed.strip_prefix("https://"))
    {
        if !cfg!(feature = "tls") {
            return Err(Error::invalid(
                "url",
                format!("{written:?}: wss needs nexus-client's \"tls\" feature"),
            ));
        }
        ("wss", rest)
    } else {
        return Err(Error::invalid(
            "url",
            format!("{written:?}: expected ws://, wss://, http:// or https://"),
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::invalid("url", format!("{written:?} names no host")));
    }
    if rest.contains('/') {
        Ok(format!("{scheme}://{rest}"))
    } else {
        Ok(format!("{scheme}://{rest}/ws"))
    }
}

fn check_patterns(events: &[String], allow_empty: bool) -> Result<Vec<String>, Error> {
    if events.is_empty() && !allow_empty {
        return Err(Error::invalid("events", "give at least one type glob"));
    }
    for e in events {
        Pattern::new(e).map_err(|err| Error::invalid("events", format!("{e:?}: {err}")))?;
    }
    Ok(events.to_vec())
}

/// A WebSocket subscriber that reconnects by itself.
///
/// It keeps its subscriptions across reconnects, resumes with `since` = the last sequence it
/// delivered (so a reconnect loses nothing and repeats nothing), pings the server and drops a
/// connection whose pong does not come, and backs off with full jitter between attempts.
/// Dropping it closes the connection.
///
/// ```no_run
/// # async fn run() -> Result<(), nexus_client::Error> {
/// use nexus_client::{Incoming, Subscriber};
/// let mut sub = Subscriber::builder("ws://127.0.0.1:3000", "the-token")
///     .events(["PAYMENT_*"])
///     .connect()?;
/// while let Some(incoming) = sub.next().await {
///     if let Incoming::Event(e) = incoming {
///         println!("#{} {} {}", e.sequence, e.event_type, e.payload);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Subscriber {
    events: mpsc::Receiver<Incoming>,
    commands: mpsc::Sender<Command>,
    queue: usize,
    state: watch::Receiver<State>,
    close: watch::Sender<bool>,
    shared: Arc<Shared>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl Subscriber {
    /// A builder for a subscriber of the server at `url` (`ws://host:port`, or its `http://`
    /// base; `/ws` is added) with an admin or subscriber `token`.
    pub fn builder(url: &str, token: &str) -> SubscriberBuilder {
        SubscriberBuilder {
            url: url.to_owned(),
            token: token.to_owned(),
            events: Vec::new(),
            since: None,
            ping_every: Duration::from_secs(30),
            pong_within: Duration::from_secs(10),
            backoff: (Duration::from_secs(1), Duration::from_secs(30)),
            stable_after: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            queue: 100,
            buffer: 1024,
            seed: None,
        }
    }

    /// The next event or server error; `None` once closed and drained.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.events.recv().await
    }

    /// The state now.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// A watch of the state, to wait for a change (`wait_for(|s| *s == State::Connected)`).
    pub fn watch_state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let s = &self.shared;
        Counters {
            connects: s.connects.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
        }
    }

    /// The sequence of the last event delivered, if any.
    pub fn last_sequence(&self) -> Option<u64> {
        match self.shared.last_sequence.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    fn command(&self, command: Command) -> Result<(), Error> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::QueueFull {
                capacity: self.queue,
            },
            mpsc::error::TrySendError::Closed(_) => Error::Closed,
        })
    }

    /// Adds type globs. New patterns start at the log's head when the server gets them; they
    /// are kept and sent again after every reconnect. Held (up to the queue's capacity) while
    /// offline.
    pub fn subscribe<I, S>(&self, events: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let events: Vec<String> = events.into_iter().map(Into::into).collect();
        self.command(Command::Subscribe(check_patterns(&events, false)?))
    }

    /// Removes type globs.
    pub fn unsubscribe<I, S>(&self, events: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let events: Vec<String> = events.into_iter().map(Into::into).collect();
        self.command(Command::Unsubscribe(check_patterns(&events, false)?))
    }

    /// Closes the connection (with a close frame) and waits for the task to end. Events
    /// already received can still be taken with [`Subscriber::next`].
    pub async fn close(&mut self) {
        let _ = self.close.send(true);
        if let Some(join) = self.join.take() {
            let _ = join.await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.close.send(true);
    }
}

/// Why a connection ended.
enum End {
    /// Closed on purpose (close() or the handle dropped).
    Closed,
    /// Lost; connect again.
    Lost(String),
    /// Refused for good (a bad token).
    Fatal,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Request = tokio_tungstenite::tungstenite::handshake::client::Request;

struct Task {
    request: Request,
    patterns: Vec<String>,
    /// The `since` of the next subscription: the last sequence delivered, or the builder's.
    resume: Option<u64>,
    ping_every: Duration,
    pong_within: Duration,
    backoff: Backoff,
    stable_after: Duration,
    connect_timeout: Duration,
    rng: fastrand::Rng,
    events: mpsc::Sender<Incoming>,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<State>,
    close: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

impl Task {
    fn set(&self, state: State) {
        self.state.send_replace(state);
    }

    fn closing(&self) -> bool {
        *self.close.borrow() || self.close.has_changed().is_err()
    }

    async fn run(mut self) {
        // Retries since the last stable connection: the backoff window grows with it.
        let mut retry = 0u32;
        let mut connected_before = false;
        let mut must_wait = false;
        loop {
            if self.closing() {
                break;
            }
            if must_wait {
                self.set(State::Reconnecting);
                let delay = self.backoff.delay(retry, self.rng.f64());
                retry = retry.saturating_add(1);
                tracing::debug!(
                    ?delay,
                    retry,
                    "nexus subscriber: waiting before reconnecting"
                );
                let mut close = self.close.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = async { close.wait_for(|c| *c).await.map(|_| ()) } => break,
                }
            } else {
                self.set(State::Connecting);
            }
            must_wait = true;
            let ws = match self.open().await {
                Ok(Some(ws)) => ws,
                Ok(None) | Err(End::Fatal) => break,
                Err(_) => continue,
            };
            Shared::bump(&self.shared.connects);
            if connected_before {
                Shared::bump(&self.shared.reconnects);
            }
            connected_before = true;
            self.set(State::Connected);
            let started = Instant::now();
            let end = self.session(ws).await;
            if started.elapsed() >= self.stable_after {
                retry = 0;
            }
            match end {
                End::Closed | End::Fatal => break,
                End::Lost(why) => {
                    Shared::bump(&self.shared.errors);
                    tracing::info!(reason = %why, last_sequence = ?self.resume, "nexus subscriber: connection lost; reconnecting");
                }
            }
        }
        self.set(State::Closed);
    }

    /// One attempt to connect. `Ok(None)` when closed meanwhile.
    async fn open(&mut self) -> Result<Option<Ws>, End> {
        let mut close = self.close.clone();
        let attempt = tokio::time::timeout(
            self.connect_timeout,
            tokio_tungstenite::connect_async_with_config(self.request.clone(), None, true),
        );
        let result = tokio::select! {
            r = attempt => r,
            _ = async { close.wait_for(|c| *c).await.map(|_| ()) } => return Ok(None),
        };
        let error = match result {
            Ok(Ok((ws, _))) => return Ok(Some(ws)),
            Ok(Err(e)) => e,
            Err(_) => {
                Shared::bump(&self.shared.errors);
                tracing::debug!(timeout = ?self.connect_timeout, "nexus subscriber: connect timed out");
                return Err(End::Lost("connect timed out".into()));
            }
        };
        Shared::bump(&self.shared.errors);
        if let tokio_tungstenite::tungstenite::Error::Http(response) = &error {
            let status = response.status().as_u16();
            if status == 401 || status == 403 {
                let message = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice::<Failure>(b).ok())
                    .map(|f| f.error.message)
                    .unwrap_or_else(|| format!("the upgrade was refused with {status}"));
                let code = if status == 401 {
                    "UNAUTHORIZED"
                } else {
                    "FORBIDDEN"
                };
                tracing::warn!(status, %message, "nexus subscriber: refused; not retrying");
                self.set(State::Closing);
                let _ = self
                    .events
                    .send(Incoming::ServerError {
                        code: code.into(),
                        message,
                    })
                    .await;
                return Err(End::Fatal);
            }
        }
        tracing::debug!(error = %error, "nexus subscriber: cannot connect");
        Err(End::Lost(error.to_string()))
    }

    fn subscribe_frame(&self, events: &[String], since: Option<u64>) -> Message {
        client_frame(&ClientFrame::Subscribe {
            events: events.to_vec(),
            since,
        })
    }

    /// One connection, from the subscription to its end.
    async fn session(&mut self, ws: Ws) -> End {
        let (mut sink, mut stream) = ws.split();
        if !self.patterns.is_empty() {
            let frame = self.subscribe_frame(&self.patterns, self.resume);
            if let Err(e) = sink.send(frame).await {
                return End::Lost(format!("cannot subscribe: {e}"));
            }
        }
        let mut ping = tokio::time::interval_at(Instant::now() + self.ping_every, self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut awaiting_pong: Option<Instant> = None;
        let mut close = self.close.clone();
        loop {
            let pong_deadline = async {
                match awaiting_pong {
                    Some(sent) => tokio::time::sleep_until(sent + self.pong_within).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = async { close.wait_for(|c| *c).await.map(|_| ()) } => {
                    self.set(State::Closing);
                    let _ = sink.send(Message::Close(None)).await;
                    // Bounded: the server answers the close, or we stop waiting.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    return End::Closed;
                }
                _ = ping.tick() => {
                    if awaiting_pong.is_none() {
                        awaiting_pong = Some(Instant::now());
                    }
                    if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                        return End::Lost(format!("cannot ping: {e}"));
                    }
                }
                _ = pong_deadline => {
                    return End::Lost(format!("no pong within {:?}", self.pong_within));
                }
                command = self.commands.recv() => {
                    let Some(command) = command else { continue };
                    let frame = match command {
                        Command::Subscribe(events) => {
                            for e in &events {
                                if !self.patterns.contains(e) {
                                    self.patterns.push(e.clone());
                                }
                            }
                            self.subscribe_frame(&events, None)
                        }
                        Command::Unsubscribe(events) => {
                            self.patterns.retain(|p| !events.contains(p));
                            client_frame(&ClientFrame::Unsubscribe { events })
                        }
                    };
                    if let Err(e) = sink.send(frame).await {
                        return End::Lost(format!("cannot send: {e}"));
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if !self.frame(text.as_str()).await {
                            return End::Closed;
                        }
                    }
                    Some(Ok(Message::Pong(_))) => awaiting_pong = None,
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map_or_else(
                            || "closed by the server".to_owned(),
                            |f| format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                        );
                        return End::Lost(why);
                    }
                    Some(Ok(_)) => {} // pings are answered by tungstenite; binary is not used
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    None => return End::Lost("the connection ended".into()),
                },
            }
        }
    }

    /// Handles a text frame; `false` when the handle is gone.
    async fn frame(&mut self, text: &str) -> bool {
        let event = match serde_json::from_str::<ServerFrame>(text) {
            Ok(ServerFrame::Event(event)) => event,
            Ok(ServerFrame::Ack(_) | ServerFrame::Pong(_)) => return true,
            Ok(ServerFrame::Error(ErrorFrame { error })) => {
                Shared::bump(&self.shared.errors);
                return self
                    .events
                    .send(Incoming::ServerError {
                        code: error.code.as_str().to_owned(),
                        message: error.message,
                    })
                    .await
                    .is_ok();
            }
            Err(e) => {
                Shared::bump(&self.shared.errors);
                tracing::warn!(frame = %text, error = %e, "nexus subscriber: a frame it does not know");
                return true;
            }
        };
        if self.resume.is_some_and(|last| event.sequence <= last) {
            // Already delivered (or before the asked `since`): a seam of a replay.
            return true;
        }
        self.resume = Some(event.sequence);
        self.shared
            .last_sequence
            .store(event.sequence, Ordering::Relaxed);
        Shared::bump(&self.shared.messages);
        self.events.send(Incoming::Event(event)).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls_become_ws_urls_with_the_ws_path() {
        assert_eq!(
            ws_url("http://127.0.0.1:3000").expect("ok"),
            "ws://127.0.0.1:3000/ws"
        );
        assert_eq!(ws_url("ws://h:1/").expect("ok"), "ws://h:1/ws");
        assert_eq!(
            ws_url("ws://h:1/custom/ws").expect("ok"),
            "ws://h:1/custom/ws"
        );
        for bad in ["h:1", "ftp://h", "ws://", "ws:///ws"] {
            let e = ws_url(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid url"), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn bad_settings_are_refused_naming_them() {
        let e = Subscriber::builder("ws://h:1", "t")
            .events(["PAY?"])
            .connect()
            .expect_err("bad glob");
        assert!(e.to_string().contains("invalid events: \"PAY?\""), "{e}");
        let e = Subscriber::builder("ws://h:1", "")
            .connect()
            .expect_err("token");
        assert!(e.to_string().contains("invalid token"), "{e}");
        let e = Subscriber::builder("ws://h:1", "t")
            .pong_within(Duration::ZERO)
            .connect()
            .expect_err("zero");
        assert!(e.to_string().contains("invalid pong timeout"), "{e}");
        let e = Subscriber::builder("ws://h:1", "t")
            .backoff(Duration::from_secs(2), Duration::from_secs(1))
            .connect()
            .expect_err("backoff");
        assert!(e.to_string().contains("invalid backoff"), "{e}");
    }

    #[test]
    fn outside_a_runtime_it_says_so() {
        let e = Subscriber::builder("ws://127.0.0.1:1", "t")
            .connect()
            .expect_err("no runtime");
        assert!(matches!(e, Error::NoRuntime), "{e:?}");
    }

    async fn wait_for(sub: &Subscriber, what: &str, f: impl Fn(&Subscriber) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f(sub) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A WebSocket server that accepts and then never reads: pings go unanswered.
    #[tokio::test]
    async fn a_missing_pong_drops_the_connection_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let server = tokio::spawn({
            let accepted = Arc::clone(&accepted);
            async move {
                let mut held = Vec::new();
                while let Ok((tcp, _)) = listener.accept().await {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        held.push(ws); // kept open, never read
                    }
                }
            }
        });
        let mut sub = Subscriber::builder(&format!("ws://{addr}"), "t")
            .ping_every(Duration::from_millis(50))
            .pong_within(Duration::from_millis(100))
            .backoff(Duration::from_millis(10), Duration::from_millis(20))
            .connect()
            .expect("valid");
        wait_for(&sub, "two reconnects", |s| s.counters().reconnects >= 2).await;
        let c = sub.counters();
        assert!(c.connects >= 3, "{c:?}");
        assert!(c.errors >= 2, "each missed pong is an error: {c:?}");
        assert!(accepted.load(Ordering::Relaxed) >= 3);
        sub.close().await;
        assert_eq!(sub.state(), State::Closed);
        server.abort();
    }

    /// A server that accepts and hangs up at once; counts the connections.
    async fn flaky_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                drop(tokio_tungstenite::accept_async(tcp).await);
            }
        });
        (url, task)
    }

    /// With every connection counted as stable the window stays at its base (10 ms), so 12
    /// reconnects come fast; without, the same seeded delays double up to 20 s.
    #[tokio::test]
    async fn a_stable_connection_resets_the_backoff_and_an_unstable_one_does_not() {
        let (url, server) = flaky_server().await;
        let build = |stable_after: Duration| {
            Subscriber::builder(&url, "t")
                .backoff(Duration::from_millis(10), Duration::from_secs(60))
                .stable_after(stable_after)
                .jitter_seed(42)
                .connect()
                .expect("valid")
        };
        let mut stable = build(Duration::ZERO);
        let started = Instant::now();
        wait_for(&stable, "12 reconnects", |s| s.counters().reconnects >= 12).await;
        let fast = started.elapsed();
        stable.close().await;

        let mut unstable = build(Duration::from_secs(3600));
        tokio::time::sleep(fast.max(Duration::from_millis(500))).await;
        let c = unstable.counters();
        assert!(
            c.reconnects < 12,
            "the window grew: {c:?} in {fast:?}, the time the stable one needed for 12"
        );
        unstable.close().await;
        server.abort();
    }

    /// Subscribe requests made while the server is unreachable wait in the bounded queue.
    #[tokio::test]
    async fn offline_requests_are_queued_up_to_the_capacity() {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut sub = Subscriber::builder(&format!("ws://127.0.0.1:{port}"), "t")
            .queue(3)
            .backoff(Duration::from_millis(10), Duration::from_millis(50))
            .connect()
            .expect("valid");
        let mut state = sub.watch_state();
        tokio::time::timeout(
            Duration::from_secs(10),
            state.wait_for(|s| *s == State::Reconnecting),
        )
        .await
        .expect("reconnecting in time")
        .expect("state watch");
        for i in 0..3 {
            sub.subscribe([format!("T{i}")]).expect("room in the queue");
        }
        let e = sub.subscribe(["T3"]).expect_err("full");
        assert!(matches!(e, Error::QueueFull { capacity: 3 }), "{e:?}");
        wait_for(&sub, "failed attempts", |s| s.counters().errors >= 2).await;
        assert_eq!(sub.counters().connects, 0);
        sub.close().await;
        assert_eq!(sub.state(), State::Closed);
        assert!(sub.next().await.is_none(), "closed and drained");
        assert!(matches!(sub.subscribe(["X"]), Err(Error::Closed)));
    }
}
