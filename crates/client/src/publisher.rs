//! The blocking publisher: signed `POST /events` and `POST /events/batch` with retries that
//! reuse the event ids, so the server deduplicates a retry of a request that did commit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nexus_api::publish::{BatchAck, PublishBatch, PublishEvent};
use nexus_event::{CorrelationId, EventId, EventType};
use serde_json::Value;

use crate::http::{Http, base_url};
use crate::{Error, RetryPolicy, Scheme, SigningKey};

/// Most events in one batch (API.md section 2).
pub const MAX_BATCH: usize = 1000;

/// An event to publish: its type, and optionally its id, payload and correlation id.
///
/// The id is what makes retries safe: the publisher gives a draft without one a new UUIDv7
/// before the first attempt and sends that same id on every retry, so a retry of a request
/// the server did commit answers `duplicate: true` instead of storing the event twice.
///
/// ```
/// use nexus_client::Draft;
/// use nexus_event::WellKnown;
/// let draft = Draft::new(WellKnown::PaymentReceived)
///     .id("pay-1")?
///     .payload(serde_json::json!({"amount": 5}));
/// assert_eq!(draft.event_type().as_str(), "PAYMENT_RECEIVED");
/// assert!(Draft::of_type("not a type!").is_err());
/// # Ok::<(), nexus_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    event_type: EventType,
    id: Option<EventId>,
    payload: Option<Value>,
    correlation_id: Option<CorrelationId>,
}

impl Draft {
    /// A draft of a type already checked (a [`nexus_event::WellKnown`] or an [`EventType`]).
    pub fn new(event_type: impl Into<EventType>) -> Draft {
        Draft {
            event_type: event_type.into(),
            id: None,
            payload: None,
            correlation_id: None,
        }
    }

    /// A draft of a type given as text, checked (1 to 128 of `A-Z a-z 0-9 _ . : -`).
    pub fn of_type(event_type: &str) -> Result<Draft, Error> {
        EventType::new(event_type)
            .map(Draft::new)
            .map_err(|e| Error::invalid("event type", e.to_string()))
    }

    /// Sets the event's id (1 to 128 visible ASCII characters), for events that have one of
    /// their own (a payment id): the server deduplicates by it.
    pub fn id(mut self, id: &str) -> Result<Draft, Error> {
        self.id = Some(EventId::new(id).map_err(|e| Error::invalid("event id", e.to_string()))?);
        Ok(self)
    }

    /// Sets the payload (any JSON; `{}` when left out).
    pub fn payload(mut self, payload: Value) -> Draft {
        self.payload = Some(payload);
        self
    }

    /// Sets the correlation id (1 to 128 visible ASCII characters).
    pub fn correlation_id(mut self, id: &str) -> Result<Draft, Error> {
        self.correlation_id = Some(
            CorrelationId::new(id).map_err(|e| Error::invalid("correlation id", e.to_string()))?,
        );
        Ok(self)
    }

    /// Its type.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// Its id, when it has one yet.
    pub fn event_id(&self) -> Option<&EventId> {
        self.id.as_ref()
    }

    /// Reads a draft from the JSON of `POST /events`: `{"type", "id"?, "payload"?,
    /// "correlation_id"?}`. Unknown keys are refused, naming them.
    pub fn from_json(value: &Value) -> Result<Draft, Error> {
        let Value::Object(map) = value else {
            return Err(Error::invalid("event", "an event must be a JSON object"));
        };
        if let Some(key) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "type" | "id" | "payload" | "correlation_id"))
        {
            return Err(Error::invalid("event", format!("unknown key {key:?}")));
        }
        let text = |key: &str| match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Error::invalid("event", format!("{key} must be a string"))),
        };
        let event_type =
            text("type")?.ok_or_else(|| Error::invalid("event", "type is required"))?;
        let mut draft = Draft::of_type(event_type)?;
        if let Some(id) = text("id")? {
            draft = draft.id(id)?;
        }
        if let Some(c) = text("correlation_id")? {
            draft = draft.correlation_id(c)?;
        }
        if let Some(p) = map.get("payload") {
            draft = draft.payload(p.clone());
        }
        Ok(draft)
    }

    /// The payload, if one was set.
    #[cfg_attr(not(feature = "schema"), allow(dead_code))]
    pub(crate) fn payload_value(&self) -> Option<&Value> {
        self.payload.as_ref()
    }

    /// Gives the draft an id if it has none; returns it.
    fn ensure_id(&mut self) -> EventId {
        self.id.get_or_insert_with(EventId::new_v7).clone()
    }

    /// The wire body (nexus-api's [`PublishEvent`]): an explicit `null` payload is sent as
    /// `null`, a payload never set is left out (the server stores `{}`).
    fn to_wire(&self) -> PublishEvent {
        PublishEvent {
            event_type: self.event_type.clone(),
            id: self.id.clone(),
            payload: self.payload.clone(),
            correlation_id: self.correlation_id.clone(),
        }
    }
}

/// What the server answered for one stored event: nexus-api's [`nexus_api::publish::Ack`]
/// (`{id, sequence, duplicate}`; `duplicate` is `true` when the server already had it, a retry
/// or the same id published again: it was not stored or dispatched again, and `sequence` is the
/// first one's).
pub use nexus_api::publish::Ack;

type Sleep = Arc<dyn Fn(Duration) + Send + Sync>;
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Builds a [`Publisher`]; see [`Publisher::builder`].
pub struct PublisherBuilder {
    url: String,
    node: String,
    secret: String,
    scheme: Scheme,
    retry: RetryPolicy,
    timeout: Duration,
    sleep: Sleep,
    clock: Clock,
    seed: Option<u64>,
}

impl std::fmt::Debug for PublisherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherBuilder")
            .field("url", &self.url)
            .field("node", &self.node)
            .field("scheme", &self.scheme)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PublisherBuilder {
    /// The signature scheme. Default [`Scheme::Nexus`].
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// When to try again. Default [`RetryPolicy::default`]: 5 attempts, 250 ms doubling to
    /// 10 s with full jitter, `Retry-After` honoured up to 60 s.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The time one attempt may take, connecting and reading the answer included.
    /// Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How to wait between attempts. Default `std::thread::sleep`; tests record instead.
    pub fn sleeper(mut self, sleep: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        self.sleep = Arc::new(sleep);
        self
    }

    /// The wall clock, for signature timestamps and `Retry-After` dates. Default
    /// `SystemTime::now`.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Seeds the jitter, for reproducible delays. Default: a random seed.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks everything and builds the publisher.
    pub fn build(self) -> Result<Publisher, Error> {
        let base = base_url(&self.url)?;
        if !nexus_event::valid_node_name(&self.node) {
            return Err(Error::invalid(
                "node",
                format!(
                    "{:?}: a node name is 1 to 64 characters of A-Z a-z 0-9 _ . -",
                    self.node
                ),
            ));
        }
        let key = SigningKey::parse(&self.secret)?;
        if self.retry.max_attempts == 0 {
            return Err(Error::invalid(
                "retry policy",
                "max_attempts must be at least 1",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid("timeout", "it must not be zero"));
        }
        Ok(Publisher {
            http: Http::new(base, self.timeout),
            node: self.node,
            key,
            scheme: self.scheme,
            retry: self.retry,
            sleep: self.sleep,
            clock: self.clock,
            rng: Mutex::new(match self.seed {
                Some(seed) => fastrand::Rng::with_seed(seed),
                None => fastrand::Rng::new(),
            }),
        })
    }
}

/// A blocking, signing publisher for nodes that are not async. Cheap to share between threads
/// (`&Publisher` is enough; it keeps a pool of keep-alive connections).
///
/// Retryable failures (network, timeout, 429, 5xx) are tried again per the [`RetryPolicy`],
/// with the same event ids and a fresh signature timestamp each time; 400, 401, 403, 409,
/// 413 and 415 come back at once as [`Error::Api`] with the server's code, message and request id.
///
/// ```no_run
/// use nexus_client::{Draft, Publisher};
/// use nexus_event::WellKnown;
/// let publisher = Publisher::builder("http://127.0.0.1:3000", "flowpay", "the-node-secret").build()?;
/// let ack = publisher.publish(Draft::new(WellKnown::PaymentReceived).payload(serde_json::json!({"amount": 5})))?;
/// println!("stored as #{} ({})", ack.sequence, ack.id);
/// # Ok::<(), nexus_client::Error>(())
/// ```
pub struct Publisher {
    http: Http,
    node: String,
    key: SigningKey,
    scheme: Scheme,
    retry: RetryPolicy,
    sleep: Sleep,
    clock: Clock,
    rng: Mutex<fastrand::Rng>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.http.base())
            .field("node", &self.node)
            .field("scheme", &self.scheme)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A builder for a publisher to the server at `url` (`http://host:port`), as node `node`
    /// with its secret (`whsec_<base64>` or plain text, as in the server's configuration).
    pub fn builder(url: &str, node: &str, secret: &str) -> PublisherBuilder {
        PublisherBuilder {
            url: url.to_owned(),
            node: node.to_owned(),
            secret: secret.to_owned(),
            scheme: Scheme::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            sleep: Arc::new(std::thread::sleep),
            clock: Arc::new(SystemTime::now),
            seed: None,
        }
    }

    /// The node it publishes as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Publishes one event; answers once the server has durably stored it (or had it).
    pub fn publish(&self, mut draft: Draft) -> Result<Ack, Error> {
        let id = draft.ensure_id();
        let body = serde_json::to_vec(&draft.to_wire()).map_err(|e| Error::Protocol {
            url: self.http.base().to_owned(),
            reason: format!("cannot serialize the event: {e}"),
        })?;
        let data = self.send_retrying("/events", id.as_str(), &body)?;
        serde_json::from_value(data).map_err(|e| Error::Protocol {
            url: format!("{}/events", self.http.base()),
            reason: format!("the answer's data is not {{id, sequence, duplicate}}: {e}"),
        })
    }

    /// Publishes 1 to 1000 events in one all-or-nothing commit; the acks come in order.
    pub fn publish_batch(&self, drafts: Vec<Draft>) -> Result<Vec<Ack>, Error> {
        if drafts.is_empty() || drafts.len() > MAX_BATCH {
            return Err(Error::invalid(
                "batch",
                format!(
                    "a batch holds 1 to {MAX_BATCH} events, not {}",
                    drafts.len()
                ),
            ));
        }
        let events: Vec<PublishEvent> = drafts
            .into_iter()
            .map(|mut d| {
                d.ensure_id();
                d.to_wire()
            })
            .collect();
        let count = events.len();
        let body = serde_json::to_vec(&PublishBatch { events }).map_err(|e| Error::Protocol {
            url: self.http.base().to_owned(),
            reason: format!("cannot serialize the batch: {e}"),
        })?;
        // The message id of a Standard Webhooks batch; the events carry their own ids.
        let message_id = EventId::new_v7();
        let data = self.send_retrying("/events/batch", message_id.as_str(), &body)?;
        let BatchAck { events: acks } =
            serde_json::from_value(data).map_err(|e| Error::Protocol {
                url: format!("{}/events/batch", self.http.base()),
                reason: format!(
                    "the answer's data is not {{events: [{{id, sequence, duplicate}}]}}: {e}"
                ),
            })?;
        if acks.len() != count {
            return Err(Error::Protocol {
                url: format!("{}/events/batch", self.http.base()),
                reason: format!("{count} events sent, {} acknowledged", acks.len()),
            });
        }
        Ok(acks)
    }

    /// Sends the same body until it is answered with success, a failure that is not
    /// retryable, or the attempts run out.
    fn send_retrying(&self, path: &str, message_id: &str, body: &[u8]) -> Result<Value, Error> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self.attempt(path, message_id, body);
            let error = match result {
                Ok(data) => return Ok(data),
                Err(e) => e,
            };
            if !error.is_retryable() {
                return Err(error);
            }
            if attempt >= self.retry.max_attempts {
                return Err(if attempt == 1 {
                    error
                } else {
                    Error::GaveUp {
                        attempts: attempt,
                        last: Box::new(error),
                    }
                });
            }
            let retry_after = error.api().and_then(|a| a.retry_after);
            let unit = self.rng.lock().map(|mut r| r.f64()).unwrap_or(1.0);
            let wait = self.retry.wait(attempt - 1, unit, retry_after);
            tracing::debug!(path, attempt, ?wait, error = %error, "publish failed; retrying");
            (self.sleep)(wait);
        }
    }

    fn attempt(&self, path: &str, message_id: &str, body: &[u8]) -> Result<Value, Error> {
        let now = (self.clock)();
        let ts = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let ts_text = ts.to_string();
        let signature;
        let headers: Vec<(&str, &str)> = match self.scheme {
            Scheme::Nexus => {
                signature = self.key.sign_nexus(ts, body);
                vec![
                    ("x-nexus-node", self.node.as_str()),
                    ("x-nexus-timestamp", ts_text.as_str()),
                    ("x-nexus-signature", signature.as_str()),
                ]
            }
            Scheme::StandardWebhooks => {
                signature = self.key.sign_standard(message_id, ts, body);
                vec![
                    ("x-nexus-node", self.node.as_str()),
                    ("webhook-id", message_id),
                    ("webhook-timestamp", ts_text.as_str()),
                    ("webhook-signature", signature.as_str()),
                ]
            }
        };
        let answer = self.http.send("POST", path, &headers, Some(body), now)?;
        answer.data().map(|(data, _)| data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_payload_is_sent_as_null_and_an_unset_one_is_left_out() {
        let null = Draft::of_type("T").expect("valid").payload(Value::Null);
        assert_eq!(
            serde_json::to_value(null.to_wire()).expect("ser"),
            serde_json::json!({"type": "T", "payload": null})
        );
        let unset = Draft::of_type("T").expect("valid");
        assert_eq!(
            serde_json::to_value(unset.to_wire()).expect("ser"),
            serde_json::json!({"type": "T"})
        );
        let read = Draft::from_json(&serde_json::json!({"type": "T", "payload": null}))
            .expect("null is a payload");
        assert_eq!(read.to_wire().payload, Some(Value::Null));
    }
    use crate::Backoff;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A request as the fake server saw it.
    #[derive(Debug)]
    struct Seen {
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A canned answer: status, extra headers, body.
    type Canned = (u16, Vec<(&'static str, String)>, String);

    /// A loopback HTTP server that answers each request with the next canned answer (status,
    /// extra headers, body) and reports what it got; one request per connection.
    fn fake(answers: Vec<Canned>) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (status, headers, body) in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                reader.read_line(&mut line).expect("request line");
                let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                let mut seen_headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).expect("header");
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        seen_headers.push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                }
                let len: usize = seen_headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut buf = vec![0; len];
                reader.read_exact(&mut buf).expect("body");
                let _ = tx.send(Seen {
                    path,
                    headers: seen_headers,
                    body: String::from_utf8_lossy(&buf).into_owned(),
                });
                let mut stream = stream;
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = stream.write_all(out.as_bytes());
            }
        });
        (base, rx)
    }

    fn error_body(code: &str) -> String {
        format!(
            r#"{{"success":false,"error":{{"code":"{code}","message":"m of {code}"}},"timestamp":"2026-02-09T20:30:00.123Z","requestId":"rid-{code}"}}"#
        )
    }

    fn accepted(id: &str, duplicate: bool) -> String {
        format!(
            r#"{{"success":true,"data":{{"id":"{id}","sequence":7,"duplicate":{duplicate}}},"timestamp":"2026-02-09T20:30:00.123Z","requestId":"r"}}"#
        )
    }

    fn publisher(base: &str, sleeps: Arc<Mutex<Vec<Duration>>>) -> Publisher {
        Publisher::builder(base, "flowpay", "flowpay-secret")
            .retry(RetryPolicy {
                max_attempts: 4,
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
                    .expect("valid"),
                max_retry_after: Duration::from_secs(30),
            })
            .sleeper(move |d| sleeps.lock().expect("lock").push(d))
            .jitter_seed(1)
            .build()
            .expect("valid publisher")
    }

    #[test]
    fn retries_429_and_503_with_the_same_id_and_honours_retry_after() {
        let (base, seen) = fake(vec![
            (
                429,
                vec![("retry-after", "3".into())],
                error_body("RATE_LIMITED"),
            ),
            (
                503,
                vec![("retry-after", "2".into())],
                error_body("UNAVAILABLE"),
            ),
            (500, vec![], error_body("INTERNAL")),
            (200, vec![], accepted("pay-1", true)),
        ]);
        let sleeps = Arc::new(Mutex::new(Vec::new()));
        let p = publisher(&base, Arc::clone(&sleeps));
        let ack = p
            .publish(
                Draft::of_type("PAYMENT_RECEIVED")
                    .expect("valid")
                    .id("pay-1")
                    .expect("valid"),
            )
            .expect("published on the fourth attempt");
        assert_eq!(
            ack,
            Ack {
                id: "pay-1".into(),
                sequence: 7,
                duplicate: true
            }
        );
        let seen: Vec<Seen> = seen.try_iter().collect();
        assert_eq!(seen.len(), 4);
        let bodies: Vec<&str> = seen.iter().map(|s| s.body.as_str()).collect();
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "same body every time: {bodies:?}"
        );
        assert!(bodies[0].contains(r#""id":"pay-1""#));
        for s in &seen {
            assert_eq!(s.path, "/events");
            assert_eq!(s.header("x-nexus-node"), Some("flowpay"));
            let ts: i64 = s
                .header("x-nexus-timestamp")
                .expect("ts")
                .parse()
                .expect("secs");
            let expected = SigningKey::parse("flowpay-secret")
                .expect("k")
                .sign_nexus(ts, s.body.as_bytes());
            assert_eq!(s.header("x-nexus-signature"), Some(expected.as_str()));
        }
        let sleeps = sleeps.lock().expect("lock").clone();
        assert_eq!(sleeps.len(), 3);
        assert!(
            sleeps[0] >= Duration::from_secs(3),
            "Retry-After 3 s: {sleeps:?}"
        );
        assert!(
            sleeps[1] >= Duration::from_secs(2),
            "Retry-After 2 s: {sleeps:?}"
        );
        assert!(
            sleeps[2] <= Duration::from_millis(400),
            "backoff window of retry 2: {sleeps:?}"
        );
    }

    #[test]
    fn an_id_is_given_before_the_first_attempt_and_kept_across_retries() {
        let (base, seen) = fake(vec![
            (502, vec![], "Bad Gateway".into()),
            (502, vec![], "Bad Gateway".into()),
        ]);
        let sleeps = Arc::new(Mutex::new(Vec::new()));
        let p = Publisher::builder(&base, "flowpay", "s")
            .retry(RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::default()
            })
            .sleeper({
                let sleeps = Arc::clone(&sleeps);
                move |d| sleeps.lock().expect("lock").push(d)
            })
            .build()
            .expect("valid");
        let e = p
            .publish(Draft::of_type("X").expect("valid"))
            .expect_err("both 502");
        match &e {
            Error::GaveUp { attempts: 2, last } => {
                let api = last.api().expect("an API error");
                assert_eq!((api.status, api.code.as_str()), (502, "HTTP_502"));
            }
            other => panic!("expected GaveUp, got {other:?}"),
        }
        let seen: Vec<Seen> = seen.try_iter().collect();
        let ids: Vec<Value> = seen
            .iter()
            .map(|s| serde_json::from_str::<Value>(&s.body).expect("json")["id"].clone())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(
            ids[0].as_str().is_some_and(|id| id.len() == 36),
            "a UUID: {ids:?}"
        );
        assert_eq!(ids[0], ids[1]);
    }

    #[test]
    fn client_errors_are_returned_at_once_with_code_message_and_request_id() {
        for (status, code) in [
            (400, "VALIDATION_ERROR"),
            (401, "UNAUTHORIZED"),
            (403, "FORBIDDEN"),
            (413, "PAYLOAD_TOO_LARGE"),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
        ] {
            let (base, seen) = fake(vec![(status, vec![], error_body(code))]);
            let sleeps = Arc::new(Mutex::new(Vec::new()));
            let p = publisher(&base, Arc::clone(&sleeps));
            let e = p
                .publish(Draft::of_type("X").expect("valid"))
                .expect_err("refused");
            let Error::Api(api) = &e else {
                panic!("{status}: expected Api, got {e:?}")
            };
            assert_eq!(api.status, status);
            assert_eq!(api.code, code);
            assert_eq!(api.message, format!("m of {code}"));
            assert_eq!(
                api.request_id.as_deref(),
                Some(format!("rid-{code}").as_str())
            );
            assert!(
                sleeps.lock().expect("lock").is_empty(),
                "{status} is not retried"
            );
            assert_eq!(seen.try_iter().count(), 1);
        }
    }

    #[test]
    fn a_refused_connection_is_a_retryable_network_error() {
        // A port nobody listens on: bind, note it, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("a")
            .port();
        let sleeps = Arc::new(Mutex::new(Vec::new()));
        let p = publisher(&format!("http://127.0.0.1:{port}"), Arc::clone(&sleeps));
        let e = p
            .publish(Draft::of_type("X").expect("valid"))
            .expect_err("nobody listens");
        let Error::GaveUp { attempts: 4, last } = &e else {
            panic!("{e:?}")
        };
        assert!(matches!(**last, Error::Network { .. }), "{last:?}");
        assert_eq!(sleeps.lock().expect("lock").len(), 3);
    }

    #[test]
    fn standard_webhooks_signs_id_timestamp_and_body_and_batches_keep_order() {
        let body = r#"{"success":true,"data":{"events":[{"id":"a","sequence":1,"duplicate":false},{"id":"b","sequence":2,"duplicate":false}]},"timestamp":"2026-02-09T20:30:00.123Z","requestId":"r"}"#;
        let (base, seen) = fake(vec![(202, vec![], body.into())]);
        let p = Publisher::builder(&base, "notifier", "whsec_bm90aWZpZXItc2VjcmV0")
            .scheme(Scheme::StandardWebhooks)
            .build()
            .expect("valid");
        let acks = p
            .publish_batch(vec![
                Draft::of_type("A").expect("v").id("a").expect("v"),
                Draft::of_type("B").expect("v").id("b").expect("v"),
            ])
            .expect("stored");
        assert_eq!(acks.iter().map(|a| a.sequence).collect::<Vec<_>>(), [1, 2]);
        let s = seen.recv().expect("one request");
        assert_eq!(s.path, "/events/batch");
        let id = s.header("webhook-id").expect("webhook-id");
        let ts: i64 = s
            .header("webhook-timestamp")
            .expect("ts")
            .parse()
            .expect("secs");
        let key = SigningKey::parse("notifier-secret").expect("k");
        assert_eq!(
            s.header("webhook-signature"),
            Some(key.sign_standard(id, ts, s.body.as_bytes()).as_str())
        );
        assert_eq!(s.header("x-nexus-node"), Some("notifier"));
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_sent() {
        let e = Publisher::builder("localhost:3000", "flowpay", "s")
            .build()
            .expect_err("url");
        assert!(e.to_string().contains("invalid url"), "{e}");
        let e = Publisher::builder("http://h", "flow pay", "s")
            .build()
            .expect_err("node");
        assert!(e.to_string().contains("invalid node"), "{e}");
        let e = Publisher::builder("http://h", "flowpay", "whsec_!!")
            .build()
            .expect_err("secret");
        assert!(e.to_string().contains("invalid secret"), "{e}");
        let p = Publisher::builder("http://127.0.0.1:9", "flowpay", "s")
            .build()
            .expect("valid");
        let e = p.publish_batch(Vec::new()).expect_err("empty");
        assert!(e.to_string().contains("1 to 1000 events, not 0"), "{e}");
        let e = Draft::from_json(&serde_json::json!({"type": "X", "amount": 5})).expect_err("key");
        assert!(e.to_string().contains("unknown key \"amount\""), "{e}");
        let e = Draft::from_json(&serde_json::json!({"payload": {}})).expect_err("no type");
        assert!(e.to_string().contains("type is required"), "{e}");
    }
}
