//! The values that cross the store's traits.

use std::fmt;
use std::sync::Arc;

use nexus_event::{Event, EventId, EventType, Pattern, Timestamp, TypeFilter, When};

use crate::error::{Result, StoreError};

/// What appending one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event's id.
    pub id: EventId,
    /// Its sequence: the new one, or the first event's for a repeat.
    pub sequence: u64,
    /// Whether the id was already in the log from the same source (nothing was written).
    pub duplicate: bool,
}

/// Who a delivery is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Consumer {
    /// A webhook subscription, by id.
    Subscription(String),
    /// A reactor, by name.
    Reactor(String),
}

impl fmt::Display for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consumer::Subscription(id) => write!(f, "subscription:{id}"),
            Consumer::Reactor(name) => write!(f, "reactor:{name}"),
        }
    }
}

/// Extra delivery routes the store adds when it appends an event, beside the webhook subscriptions
/// it keeps itself (reactors, typically). Evaluated inside the append transaction, so it must be
/// quick and must not block.
pub trait Router: Send + Sync {
    /// Pushes `(consumer, target origin)` for every route that wants `event`.
    fn route(&self, event: &Event, out: &mut Vec<(Consumer, String)>);
}

/// A route by type filter: a consumer, the filter it wants, and its target origin.
#[derive(Debug, Clone)]
pub struct Route {
    /// Who gets the deliveries.
    pub consumer: Consumer,
    /// Which types it wants.
    pub filter: TypeFilter,
    /// The origin (`scheme://host:port`) that the circuit breaker guards.
    pub target: String,
}

impl Router for Vec<Route> {
    fn route(&self, event: &Event, out: &mut Vec<(Consumer, String)>) {
        for r in self {
            if r.filter.matches(&event.event_type) {
                out.push((r.consumer.clone(), r.target.clone()));
            }
        }
    }
}

/// Proof that a worker holds the lease on one delivery; every settling call is fenced by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken {
    /// The delivery.
    pub delivery: i64,
    /// The worker that leased it.
    pub owner: Arc<str>,
    /// Which lease of that delivery this is (it grows by one at every lease).
    pub generation: i64,
}

/// A delivery leased to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The fence for `ack`, `retry_at`, `dead_letter` and `release`.
    pub token: LeaseToken,
    /// The event to deliver.
    pub event: Arc<Event>,
    /// Who it is for.
    pub consumer: Consumer,
    /// The target origin, for the circuit breaker.
    pub target: String,
    /// The number of this attempt, from 1: failed attempts so far plus one.
    pub attempt: u32,
    /// When the delivery was enqueued.
    pub created_at: Timestamp,
    /// Until when the lease holds.
    pub expires_at: Timestamp,
}

/// What a failed attempt reported. The delivery's history keeps it as one attempt that started
/// `duration_ms` before `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for operators.
    pub error: String,
    /// The HTTP status, when the target answered.
    pub status: Option<u16>,
    /// When the attempt ended.
    pub at: Timestamp,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
}

/// What a successful attempt reported ([`crate::DeliveryQueue::ack`]). The delivery's history
/// keeps it as one attempt that started `duration_ms` before `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The HTTP status the target answered, when the attempt was an HTTP call.
    pub status: Option<u16>,
    /// When the attempt ended.
    pub at: Timestamp,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
}

/// When an attempt that ended at `at` after `duration_ms` started, in Unix milliseconds
/// (PostgreSQL works it out in its statements).
#[cfg(feature = "sqlite")]
pub(crate) fn started_ms(at: Timestamp, duration_ms: u64) -> i64 {
    at.as_unix_millis()
        .saturating_sub(i64::try_from(duration_ms).unwrap_or(i64::MAX))
}

/// Where a delivery stands, as its history shows it (API.md section 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting in the queue: due now or later, parked behind an open breaker, or leased once
    /// with the lease expired (nobody works on it).
    Pending,
    /// Under a live lease: a worker is attempting it now.
    InFlight,
    /// A target answered with success; it left the queue.
    Delivered,
    /// Waiting for its subscription to be enabled again (a `410 Gone` disabled it).
    Held,
    /// Its retries are spent: it became a dead letter (and stays `dead` in the history after a
    /// redrive, which starts a new delivery).
    Dead,
}

impl DeliveryStatus {
    /// Every status, in the order of the wire names.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::InFlight,
        DeliveryStatus::Delivered,
        DeliveryStatus::Held,
        DeliveryStatus::Dead,
    ];

    /// The wire name: `pending`, `in_flight`, `delivered`, `held`, `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Held => "held",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// The status with this wire name.
    pub fn parse(name: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One attempt of a delivery, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub at: Timestamp,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// The HTTP status, when the target answered.
    pub status: Option<u16>,
    /// What went wrong; `None` for the attempt that succeeded.
    pub error: Option<String>,
}

/// One delivery of an event to one consumer, with its attempts (API.md section 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The delivery's id.
    pub id: i64,
    /// The event's id.
    pub event_id: EventId,
    /// The event's sequence.
    pub event_sequence: u64,
    /// Who it is for.
    pub consumer: Consumer,
    /// The target origin.
    pub target: String,
    /// Where it stands.
    pub state: DeliveryStatus,
    /// Its attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// When it is due next: for a pending delivery only (parked: the breaker's next trial at the
    /// latest); `None` otherwise.
    pub next_attempt_at: Option<Timestamp>,
    /// When it was enqueued.
    pub created_at: Timestamp,
}

/// Which deliveries of one subscription [`crate::DeliveryHistory::subscription_deliveries`]
/// lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only those in this state; all when `None`.
    pub state: Option<DeliveryStatus>,
    /// Only deliveries of events with a sequence above this (exclusive); 0 for all.
    pub after: u64,
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// The cursor a previous page gave.
    pub cursor: Option<String>,
    /// The time that tells a live lease (in flight) from an expired one (pending).
    pub now: Timestamp,
}

/// A subscription's counts over a window (API.md section 12), see
/// [`crate::DeliveryHistory::subscription_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionStats {
    /// Deliveries that succeeded within the window.
    pub delivered: u64,
    /// Failed attempts that started within the window (a delivery retried three times counts
    /// three).
    pub failed: u64,
    /// Deliveries in the queue now, whatever their age: waiting, parked, held or in flight.
    pub pending: u64,
    /// Deliveries that became dead letters within the window.
    pub dead: u64,
}

/// Counts of the delivery queue (`GET /api/retry/stats`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Deliveries waiting (due now or later, parked, held for a disabled subscription, or leased
    /// once but with the lease expired: nobody is working on them).
    pub pending: u64,
    /// Deliveries under a live lease (leased by a worker and not yet expired by the wall clock).
    pub in_flight: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// When the oldest delivery still waiting for a retry (one that has failed at least once) was
    /// enqueued; `None` when none is.
    pub oldest_retry: Option<Timestamp>,
}

/// A delivery that exhausted its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The dead letter's own id.
    pub id: i64,
    /// The event's id.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: EventType,
    /// The event's sequence.
    pub event_sequence: u64,
    /// Who the delivery was for.
    pub consumer: Consumer,
    /// The target origin.
    pub target: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: String,
    /// The last HTTP status, when the target answered.
    pub last_status: Option<u16>,
    /// When the delivery was enqueued.
    pub created_at: Timestamp,
    /// When the first attempt ended.
    pub first_attempt_at: Option<Timestamp>,
    /// When it became a dead letter.
    pub failed_at: Timestamp,
    /// The event's payload.
    pub payload: serde_json::Value,
}

/// Which way [`EventLog::read_range`](crate::EventLog::read_range) walks the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOrder {
    /// Oldest first: ascending sequence (the audit trail's order, and the default).
    #[default]
    Ascending,
    /// Newest first: descending sequence (what an operator looks at first).
    Descending,
}

/// One page of a list, with the cursor of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this as the cursor to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Largest page a list returns.
pub const MAX_PAGE: usize = 1000;

/// Checks a page size: 1 to [`MAX_PAGE`].
pub fn check_limit(limit: usize) -> Result<usize> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(StoreError::Invalid {
            field: "limit",
            message: format!("must be 1 to {MAX_PAGE}, got {limit}"),
        })
    }
}

/// Where a replay sends the events again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTo {
    /// One webhook subscription, by id.
    Subscription(String),
    /// Every reactor whose route wants the event.
    Reactors,
}

/// Which dead letters an operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every dead letter.
    All,
    /// These ids; ids that do not exist are skipped.
    Ids(Vec<i64>),
}

/// A circuit breaker's state as kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerRecord {
    /// The target origin.
    pub target: String,
    /// Open (or half-open, which resumes as open) rather than closed.
    pub open: bool,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Moves to open so far.
    pub trips: u64,
    /// When it last opened, while open.
    pub opened_at: Option<Timestamp>,
    /// The record's version, assigned by the store: it grows with every save of this target, so
    /// instances sharing the store can tell a record they have not seen yet (API.md section 13).
    /// [`crate::BreakerLog::save_breaker`] ignores the value it is given and answers the new one.
    pub generation: u64,
}

/// A webhook subscription.
#[derive(Clone, PartialEq)]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The origin of `url`, which the circuit breaker guards.
    pub target: String,
    /// Which types it wants.
    pub events: Vec<Pattern>,
    /// The signing secret.
    pub secret: String,
    /// Whether deliveries go strictly in sequence order.
    pub ordered: bool,
    /// Whether deliveries are attempted (a `410 Gone` disables it).
    pub enabled: bool,
    /// Conditions on the payload an event must meet to be delivered (API.md section 12); `None`
    /// takes every event whose type matches.
    pub filter: Option<When>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A subscription to create.
#[derive(Clone, PartialEq)]
pub struct NewSubscription {
    /// Where deliveries are POSTed: an absolute `http` or `https` URL.
    pub url: String,
    /// Which types it wants (at least one pattern).
    pub events: Vec<Pattern>,
    /// The signing secret.
    pub secret: String,
    /// Strict sequence order.
    pub ordered: bool,
    /// Conditions on the payload; `None` for none.
    pub filter: Option<When>,
}

/// Changes to a subscription; `None` leaves a field as it is.
#[derive(Clone, PartialEq, Default)]
pub struct SubscriptionPatch {
    /// A new URL.
    pub url: Option<String>,
    /// New patterns.
    pub events: Option<Vec<Pattern>>,
    /// A new secret.
    pub secret: Option<String>,
    /// New ordering.
    pub ordered: Option<bool>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// A new filter (`Some(Some(_))`) or none any more (`Some(None)`); it applies to events
    /// appended after the change.
    pub filter: Option<Option<When>>,
}

/// The origin `scheme://host:port` of an absolute `http` or `https` URL, with the port always
/// written (`http://example.com` is `http://example.com:80`).
///
/// This is the one check of every outbound URL (subscriptions from the API and the config file,
/// reactors): the URL is parsed as a URI, then held to what a webhook target can be. The scheme
/// is `http` or `https`; the host is a DNS name, an IPv4 address or a bracketed IPv6 address; a
/// port, when written, is 1 to 65535 in decimal; userinfo (`user:pw@`) is refused, so no
/// credentials end up in the store, the logs or the admin API. Messages never repeat the URL.
///
/// ```
/// assert_eq!(nexus_store::target_origin("https://crm.example/hooks?x=1").unwrap(), "https://crm.example:443");
/// assert_eq!(nexus_store::target_origin("http://127.0.0.1:4000/mint").unwrap(), "http://127.0.0.1:4000");
/// assert!(nexus_store::target_origin("ftp://x/").is_err());
/// assert!(nexus_store::target_origin("http://x:99999/").is_err());
/// ```
pub fn target_origin(url: &str) -> Result<String> {
    let invalid = |message: String| StoreError::Invalid {
        field: "url",
        message,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid(format!("not a URL: {e}")))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| invalid("not an absolute URL (http:// or https://)".into()))?
        .to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(invalid(format!(
                "scheme {other:?} is not allowed; use http or https"
            )));
        }
    };
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("the URL has no host".into()))?;
    if authority.contains('@') {
        return Err(invalid("credentials in the URL are not allowed".into()));
    }
    let (host, port) = split_authority(authority).map_err(invalid)?;
    check_host(host).map_err(invalid)?;
    let port = match port {
        None => default_port,
        Some(p) => check_port(p).map_err(invalid)?,
    };
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

/// The host and the port text (after the colon, when there is one) of an authority without
/// userinfo. An IPv6 host keeps its brackets.
fn split_authority(authority: &str) -> std::result::Result<(&str, Option<&str>), String> {
    if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| "an IPv6 host is not closed with ]".to_owned())?;
        let (host, rest) = authority.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("an IPv6 host must be followed by :port or nothing".to_owned()),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// A DNS name or IPv4 address (letters, digits, `-`, `_`, dots between non-empty labels, one
/// trailing dot allowed), or `[<IPv6 address>]`.
fn check_host(host: &str) -> std::result::Result<(), String> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(drop)
            .map_err(|_| format!("host [{inner}] is not an IPv6 address"));
    }
    if host.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    if host.len() > 253 {
        return Err(format!(
            "the host is {} characters long; a DNS name has at most 253",
            host.len()
        ));
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the host may not contain {bad:?} (a DNS name, an IPv4 address or [IPv6])"
        ));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.split('.').any(str::is_empty) {
        return Err(format!("host {host:?} has an empty label"));
    }
    Ok(())
}

/// A written port: 1 to 65535 in decimal digits.
fn check_port(port: &str) -> std::result::Result<u16, String> {
    let refused = || format!("port {port:?} is not a port number (1 to 65535)");
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused());
    }
    match port.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(refused()),
    }
}

/// Stands in for a secret in `Debug` output, so logs and panics never carry one.
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("target", &self.target)
            .field("events", &self.events)
            .field("secret", &Redacted)
            .field("ordered", &self.ordered)
            .field("enabled", &self.enabled)
            .field("filter", &self.filter)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for NewSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSubscription")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &Redacted)
            .field("ordered", &self.ordered)
            .field("filter", &self.filter)
            .finish()
    }
}

impl fmt::Debug for SubscriptionPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionPatch")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| Redacted))
            .field("ordered", &self.ordered)
            .field("enabled", &self.enabled)
            .field("filter", &self.filter)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            target_origin("HTTP://Example.COM/a").ok().as_deref(),
            Some("http://example.com:80")
        );
        assert_eq!(
            target_origin("http://[::1]:8080/").ok().as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(
            target_origin("https://crm.example.:8443").ok().as_deref(),
            Some("https://crm.example.:8443")
        );
        assert_eq!(
            target_origin("http://x:65535/").ok().as_deref(),
            Some("http://x:65535")
        );
        assert_eq!(
            target_origin("http://x:00080/").ok().as_deref(),
            Some("http://x:80")
        );
        for bad in [
            "",
            "/relative",
            "mailto:x@y",
            "http://user:pw@host/",
            "http://user@host/",
            "ws://x/",
            "http://x:99999/",
            "http://x:65536/",
            "http://x:-1/",
            "http://x:0/",
            "http://x:/",
            "http://x:80:80/",
            "http://x:8o/",
            "http://x:+80/",
            "http://x:123456/",
            "http://:80/",
            "http:///path",
            "http://a..b/",
            "http://.a/",
            "http://a!b/",
            "http://a%20b/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[zz::1]/",
            "http://exa mple/",
            "https://x/\n",
        ] {
            assert!(target_origin(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn url_refusals_name_the_part_and_never_repeat_credentials() {
        let message = |url: &str| match target_origin(url) {
            Err(StoreError::Invalid { field, message }) => {
                assert_eq!(field, "url");
                message
            }
            other => panic!("{url:?} gave {other:?}"),
        };
        assert!(message("http://x:99999/").contains("99999"));
        assert!(message("http://x:-1/").contains("-1"));
        for url in [
            "http://user:hunter2@x:99999/",
            "http://user:hunter2@x/",
            "ftp://user:hunter2@x/",
            "http://user:hunter2@[::1/",
        ] {
            assert!(!message(url).contains("hunter2"), "{url:?}");
        }
    }

    #[test]
    fn limits() {
        assert!(check_limit(0).is_err());
        assert_eq!(check_limit(1000).ok(), Some(1000));
        assert!(check_limit(1001).is_err());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let events = vec![Pattern::new("*").expect("valid")];
        let new = NewSubscription {
            url: "https://crm.example/hook".into(),
            events: events.clone(),
            secret: "hunter2-new".into(),
            ordered: false,
            filter: None,
        };
        let sub = Subscription {
            id: "s1".into(),
            url: new.url.clone(),
            target: "https://crm.example:443".into(),
            events,
            secret: "hunter2-stored".into(),
            ordered: false,
            enabled: true,
            filter: None,
            created_at: Timestamp::now(),
        };
        let patch = SubscriptionPatch {
            secret: Some("hunter2-patch".into()),
            ..SubscriptionPatch::default()
        };
        for shown in [
            format!("{new:?}"),
            format!("{sub:?}"),
            format!("{patch:?}"),
            format!(
                "{:?}",
                Page {
                    items: vec![sub.clone()],
                    next_cursor: None
                }
            ),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
            assert!(shown.contains("crm.example") || shown.contains("SubscriptionPatch"));
        }
        assert!(format!("{:?}", SubscriptionPatch::default()).contains("secret: None"));
    }
}

/// A live server instance on the store (API.md section 13): `GET /api/instances`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// The instance id, unique per process (a UUID v7 for a server).
    pub id: String,
    /// The host name of the machine it runs on.
    pub host: String,
    /// When it opened the store (by the database's clock on PostgreSQL).
    pub started_at: Timestamp,
    /// When it last showed it is alive (its last heartbeat on PostgreSQL; now on SQLite).
    pub last_seen_at: Timestamp,
    /// The version it runs.
    pub version: String,
}

/// A new instance id: a UUID v7 (time-ordered, random), as text. Each process that opens a store
/// takes one, so no two processes on one database share leases.
pub fn new_instance_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Who declared an event type (API.md section 11): the config file or the admin API. A type the
/// config file declares cannot be changed or deleted through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeOrigin {
    /// `[[event_types]]` in the config file; synced into the store at start.
    Config,
    /// `PUT /api/event-types/{name}`.
    Api,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl TypeOrigin {
    /// The `origin` column's value (the same in both schemas, so a copy keeps it).
    pub(crate) fn code(self) -> i16 {
        match self {
            TypeOrigin::Config => 0,
            TypeOrigin::Api => 1,
        }
    }

    /// The origin of an `origin` column value.
    pub(crate) fn from_code(code: i64) -> Option<TypeOrigin> {
        match code {
            0 => Some(TypeOrigin::Config),
            1 => Some(TypeOrigin::Api),
            _ => None,
        }
    }
}

/// A declared event type as stored: the catalogue's entry (API.md section 11). The store keeps
/// the schema and examples as JSON; compiling and checking them is the catalogue's business
/// (`nexus-catalog`), done before they reach the store.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTypeRecord {
    /// The type's name.
    pub name: EventType,
    /// What it means (may be empty).
    pub description: String,
    /// Its payloads' JSON Schema (draft 2020-12); `None` accepts any payload.
    pub schema: Option<serde_json::Value>,
    /// Example payloads.
    pub examples: Vec<serde_json::Value>,
    /// Still accepted, but answered with `Deprecation: true`.
    pub deprecated: bool,
    /// Who declared it.
    pub origin: TypeOrigin,
    /// When it was first declared.
    pub created_at: Timestamp,
    /// When it was last replaced.
    pub updated_at: Timestamp,
}

/// A declaration to store: the whole type, replacing any stored one of the same name.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTypePut {
    /// The type's name.
    pub name: EventType,
    /// What it means.
    pub description: String,
    /// Its payloads' JSON Schema; `None` for none.
    pub schema: Option<serde_json::Value>,
    /// Example payloads.
    pub examples: Vec<serde_json::Value>,
    /// Deprecated or not.
    pub deprecated: bool,
    /// Who writes it: an [`TypeOrigin::Api`] put of a type the config declared is refused with
    /// [`StoreError::Declared`]; a [`TypeOrigin::Config`] put always takes, and the type is the
    /// config's from then on.
    pub origin: TypeOrigin,
}

/// What [`crate::EventTypes::put_event_type`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    /// The type as stored now.
    pub record: EventTypeRecord,
    /// Whether it was new (`201`) rather than replaced (`200`).
    pub created: bool,
}
