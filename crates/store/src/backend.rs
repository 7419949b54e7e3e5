//! What the SQLite and PostgreSQL backends share, so the two cannot drift: the delivery state and
//! consumer kind as they are stored (the same integers in both schemas, so a copy keeps them),
//! and the checks and changes of subscriptions and list cursors that do not depend on the
//! database.

use nexus_event::{Event, EventId, Pattern, Timestamp, When};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::model::{
    AttemptRecord, Consumer, DeliveryRecord, DeliveryStatus, NewSubscription, Router, Subscription,
    SubscriptionPatch, target_origin,
};

/// Where a delivery is in its life; the `state` column of `deliveries`.
///
/// The integers are the schemas' (their partial indexes name them), so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// Due at `due_ms`.
    Waiting = 0,
    /// Leased to a worker until `due_ms` (the lease's end).
    Leased = 1,
    /// Its target's circuit breaker is open; due at `due_ms` (the next trial) at the latest.
    Parked = 2,
    /// Its subscription is disabled; not due until it is enabled again.
    Held = 3,
}

impl DeliveryState {
    /// The column value.
    pub(crate) const fn code(self) -> i16 {
        self as i16
    }

    /// The state of a `state` column value.
    pub(crate) fn from_code(code: i64) -> Result<DeliveryState, UnknownValue> {
        match code {
            0 => Ok(DeliveryState::Waiting),
            1 => Ok(DeliveryState::Leased),
            2 => Ok(DeliveryState::Parked),
            3 => Ok(DeliveryState::Held),
            other => Err(UnknownValue {
                column: "state",
                value: other,
            }),
        }
    }

    /// The state a delivery of a subscription waits in: held while the subscription is disabled.
    pub(crate) fn waiting_if(enabled: bool) -> DeliveryState {
        if enabled {
            DeliveryState::Waiting
        } else {
            DeliveryState::Held
        }
    }
}

/// Who a delivery or dead letter is for; the `consumer_kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerKind {
    /// A webhook subscription; `consumer` is its id.
    Subscription = 0,
    /// A reactor; `consumer` is its name.
    Reactor = 1,
}

impl ConsumerKind {
    /// The column value.
    pub(crate) const fn code(self) -> i16 {
        self as i16
    }

    /// The kind of a `consumer_kind` column value.
    pub(crate) fn from_code(code: i64) -> Result<ConsumerKind, UnknownValue> {
        match code {
            0 => Ok(ConsumerKind::Subscription),
            1 => Ok(ConsumerKind::Reactor),
            other => Err(UnknownValue {
                column: "consumer_kind",
                value: other,
            }),
        }
    }
}

/// How a finished delivery ended; the `outcome` column of `delivery_history`.
///
/// The integers are the schemas' (the same in both, so a copy keeps them), so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finished {
    /// Acknowledged: a target answered with success.
    Delivered = 0,
    /// Moved to the dead letters.
    Dead = 1,
}

impl Finished {
    /// The column value.
    pub(crate) const fn code(self) -> i16 {
        self as i16
    }

    /// The outcome of an `outcome` column value.
    pub(crate) fn from_code(code: i64) -> Result<Finished, UnknownValue> {
        match code {
            0 => Ok(Finished::Delivered),
            1 => Ok(Finished::Dead),
            other => Err(UnknownValue {
                column: "outcome",
                value: other,
            }),
        }
    }

    /// The status the history shows.
    pub(crate) fn status(self) -> DeliveryStatus {
        match self {
            Finished::Delivered => DeliveryStatus::Delivered,
            Finished::Dead => DeliveryStatus::Dead,
        }
    }
}

/// The status a queued delivery shows at `now_ms`, and when it is due next: a lease past its
/// end is pending again (nobody works on it); a held one waits for its subscription.
pub(crate) fn live_status(
    state: DeliveryState,
    due_ms: i64,
    now_ms: i64,
) -> (DeliveryStatus, Option<i64>) {
    match state {
        DeliveryState::Waiting | DeliveryState::Parked => (DeliveryStatus::Pending, Some(due_ms)),
        DeliveryState::Leased if due_ms > now_ms => (DeliveryStatus::InFlight, None),
        DeliveryState::Leased => (DeliveryStatus::Pending, Some(due_ms)),
        DeliveryState::Held => (DeliveryStatus::Held, None),
    }
}

/// Which rows a state filter of the history lets through, as flags the statements take as
/// parameters: queued ones (pending, in flight, held) and finished ones (delivered, dead).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusFlags {
    pub(crate) pending: bool,
    pub(crate) in_flight: bool,
    pub(crate) held: bool,
    pub(crate) delivered: bool,
    pub(crate) dead: bool,
}

impl StatusFlags {
    pub(crate) fn of(state: Option<DeliveryStatus>) -> StatusFlags {
        let is = |s: DeliveryStatus| state.is_none_or(|wanted| wanted == s);
        StatusFlags {
            pending: is(DeliveryStatus::Pending),
            in_flight: is(DeliveryStatus::InFlight),
            held: is(DeliveryStatus::Held),
            delivered: is(DeliveryStatus::Delivered),
            dead: is(DeliveryStatus::Dead),
        }
    }

    /// Whether any queued row can pass.
    pub(crate) fn any_queued(self) -> bool {
        self.pending || self.in_flight || self.held
    }

    /// Whether any finished row can pass.
    pub(crate) fn any_finished(self) -> bool {
        self.delivered || self.dead
    }
}

/// The cursor of a subscription's delivery list: the last delivery id of the previous page
/// (the list goes by id, newest first); `i64::MAX` for the first page.
pub(crate) fn delivery_cursor(cursor: Option<&str>) -> Result<i64, StoreError> {
    dead_letter_cursor(cursor)
}

/// One delivery row of the history, before its attempts are attached.
pub(crate) struct HistoryRow {
    pub(crate) id: i64,
    pub(crate) event_sequence: u64,
    pub(crate) event_id: EventId,
    pub(crate) consumer: Consumer,
    pub(crate) target: String,
    pub(crate) state: DeliveryStatus,
    pub(crate) next_ms: Option<i64>,
    pub(crate) created_ms: i64,
    /// The attempt that delivered it, kept inline in its history row (an ack writes one row);
    /// `None` for queued and dead rows, whose attempts are all in `delivery_attempts`, and for
    /// rows delivered before the history kept it inline.
    pub(crate) succeeded: Option<AttemptRecord>,
}

impl HistoryRow {
    /// The record, with `attempts` (oldest first) and the inline successful attempt last.
    pub(crate) fn record(
        self,
        mut attempts: Vec<AttemptRecord>,
    ) -> Result<DeliveryRecord, StoreError> {
        attempts.extend(self.succeeded);
        let time = |ms: i64| {
            Timestamp::from_unix_millis(ms).map_err(|e| StoreError::Database {
                op: "delivery history",
                source: Box::new(e),
            })
        };
        Ok(DeliveryRecord {
            id: self.id,
            event_id: self.event_id,
            event_sequence: self.event_sequence,
            consumer: self.consumer,
            target: self.target,
            state: self.state,
            attempts,
            next_attempt_at: self.next_ms.map(time).transpose()?,
            created_at: time(self.created_ms)?,
        })
    }
}

/// A page of history rows read with one row more than `limit`: the page and its next cursor.
pub(crate) fn history_page(
    mut rows: Vec<HistoryRow>,
    limit: usize,
) -> (Vec<HistoryRow>, Option<String>) {
    let next = (rows.len() > limit).then(|| rows[limit - 1].id.to_string());
    rows.truncate(limit);
    (rows, next)
}

/// A column held a value this build does not know.
#[derive(Debug, thiserror::Error)]
#[error("column {column} holds {value}, which this build does not know")]
pub(crate) struct UnknownValue {
    column: &'static str,
    value: i64,
}

/// The kind and name columns of a consumer.
pub(crate) fn consumer_parts(c: &Consumer) -> (ConsumerKind, &str) {
    match c {
        Consumer::Subscription(id) => (ConsumerKind::Subscription, id),
        Consumer::Reactor(name) => (ConsumerKind::Reactor, name),
    }
}

/// The consumer of a row's kind and name columns.
pub(crate) fn consumer_of(kind: ConsumerKind, name: String) -> Consumer {
    match kind {
        ConsumerKind::Subscription => Consumer::Subscription(name),
        ConsumerKind::Reactor => Consumer::Reactor(name),
    }
}

/// A subscription as routing needs it; the writers keep them in memory.
#[derive(Debug, Clone)]
pub(crate) struct SubRoute {
    pub(crate) id: String,
    pub(crate) target: String,
    pub(crate) patterns: Vec<Pattern>,
    pub(crate) enabled: bool,
    pub(crate) filter: Option<When>,
}

impl SubRoute {
    /// Whether an event goes to this subscription: its type matches a pattern and its payload
    /// passes the filter (the type first: it is the cheaper test).
    pub(crate) fn wants(&self, event: &Event) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches_type(&event.event_type))
            && self.filter.as_ref().is_none_or(|f| f.holds(&event.payload))
    }
}

/// The deliveries a new event gets, in the same commit (the outbox): one per subscription whose
/// patterns match and whose filter the payload passes (held while it is disabled), then one per
/// route of the router (reactors).
/// `enqueue` writes one (kind, consumer, target, state); the answer is whether any of them is
/// due now, so the writer knows to wake the workers.
pub(crate) fn route_event(
    event: &Event,
    subscriptions: &[SubRoute],
    router: Option<&dyn Router>,
    scratch: &mut Vec<(Consumer, String)>,
    mut enqueue: impl FnMut(ConsumerKind, &str, &str, DeliveryState) -> Result<(), StoreError>,
) -> Result<bool, StoreError> {
    let mut due_now = false;
    for sub in subscriptions {
        if sub.wants(event) {
            enqueue(
                ConsumerKind::Subscription,
                &sub.id,
                &sub.target,
                DeliveryState::waiting_if(sub.enabled),
            )?;
            due_now |= sub.enabled;
        }
    }
    if let Some(router) = router {
        scratch.clear();
        router.route(event, scratch);
        for (consumer, target) in scratch.iter() {
            let (kind, name) = consumer_parts(consumer);
            enqueue(kind, name, target, DeliveryState::Waiting)?;
            due_now = true;
        }
    }
    Ok(due_now)
}

/// A subscription needs at least one pattern and a secret.
pub(crate) fn check_subscription(events: &[Pattern], secret: &str) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::Invalid {
            field: "events",
            message: "at least one pattern is needed".into(),
        });
    }
    if secret.is_empty() {
        return Err(StoreError::Invalid {
            field: "secret",
            message: "must not be empty".into(),
        });
    }
    Ok(())
}

/// The `events` column: the patterns as a JSON array of strings.
pub(crate) fn patterns_json(events: &[Pattern]) -> Result<String, StoreError> {
    serde_json::to_string(events).map_err(|e| StoreError::Invalid {
        field: "events",
        message: e.to_string(),
    })
}

/// The `filter` column: the filter's JSON form, `NULL` for none.
pub(crate) fn filter_json(filter: Option<&When>) -> Option<String> {
    filter.map(|f| f.to_value().to_string())
}

/// A `filter` column as read; a value that does not parse is a corrupt row.
pub(crate) fn parse_filter(column: Option<&str>) -> Result<Option<When>, StoreError> {
    let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Database {
        op: "read subscription filter",
        source,
    };
    column
        .map(|text| {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| corrupt(Box::new(e)))?;
            When::from_value(&value).map_err(|e| corrupt(Box::new(e)))
        })
        .transpose()
}

/// A new subscription as it is stored: checked, with a new id, its URL's origin as its target,
/// enabled, created now.
pub(crate) fn subscription_row(new: NewSubscription) -> Result<Subscription, StoreError> {
    let target = target_origin(&new.url)?;
    check_subscription(&new.events, &new.secret)?;
    Ok(Subscription {
        id: EventId::new_v7().to_string(),
        url: new.url,
        target,
        events: new.events,
        secret: new.secret,
        ordered: new.ordered,
        enabled: true,
        filter: new.filter,
        created_at: Timestamp::now(),
    })
}

/// Applies a patch to a stored subscription and checks the result. `target` is the origin of
/// the patch's new URL, computed before the write began.
pub(crate) fn apply_patch(
    sub: &mut Subscription,
    patch: SubscriptionPatch,
    target: Option<String>,
) -> Result<(), StoreError> {
    if let (Some(url), Some(target)) = (patch.url, target) {
        sub.url = url;
        sub.target = target;
    }
    if let Some(events) = patch.events {
        sub.events = events;
    }
    if let Some(secret) = patch.secret {
        sub.secret = secret;
    }
    if let Some(ordered) = patch.ordered {
        sub.ordered = ordered;
    }
    if let Some(enabled) = patch.enabled {
        sub.enabled = enabled;
    }
    if let Some(filter) = patch.filter {
        sub.filter = filter;
    }
    check_subscription(&sub.events, &sub.secret)
}

/// The dead-letter list's cursor: the id to continue below; `i64::MAX` for the first page.
pub(crate) fn dead_letter_cursor(cursor: Option<&str>) -> Result<i64, StoreError> {
    match cursor {
        None => Ok(i64::MAX),
        Some(c) => c.parse::<i64>().map_err(|_| StoreError::Invalid {
            field: "cursor",
            message: format!("{c:?} is not a cursor this list gave"),
        }),
    }
}

/// What a write does when the writer's queue is full.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Admission {
    /// Wait for room: the retry worker, the admin API, reactor output, embedders.
    Wait,
    /// Fail with [`StoreError::Busy`]: ingress (`try_append`), so a flood is refused (`503`)
    /// instead of queued without bound.
    FailFast,
}

/// Hands `job` to the writer's queue (`None` once the writer has stopped) as `admission` says,
/// then waits for the writer's answer on `answer`.
pub(crate) async fn submit<J, T>(
    jobs: Option<&mpsc::Sender<J>>,
    job: J,
    admission: Admission,
    answer: oneshot::Receiver<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let unavailable = || StoreError::Unavailable {
        reason: "the store writer has stopped".into(),
    };
    let jobs = jobs.ok_or_else(unavailable)?;
    match admission {
        Admission::Wait => jobs.send(job).await.map_err(|_| unavailable())?,
        Admission::FailFast => jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy {
                capacity: jobs.max_capacity(),
            },
            TrySendError::Closed(_) => unavailable(),
        })?,
    }
    answer.await.map_err(|_| unavailable())?
}

/// The host name of this machine, `unknown` when the system does not tell.
pub(crate) fn host_name() -> String {
    match whoami::hostname() {
        Ok(name) if !name.is_empty() => name,
        Ok(_) => "unknown".to_owned(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the host name");
            "unknown".to_owned()
        }
    }
}

/// `subscription()`'s cache, shared by both backends: subscriptions by id as read for one value
/// of the store's subscriptions version, which moves with every committed change of subscriptions
/// (on PostgreSQL also with every other instance's notification and each reconnect of the
/// follower). An entry read while the version moved is kept under the old value and never served
/// after it. With a `ttl`, an entry is also used at most that long (a bound should a change go
/// unnoticed).
pub(crate) struct SubscriptionCache {
    version: u64,
    filled: std::time::Instant,
    entries: std::collections::HashMap<String, Subscription>,
    ttl: Option<std::time::Duration>,
}

impl SubscriptionCache {
    /// An empty cache; `ttl` bounds how long an entry is used.
    pub(crate) fn new(ttl: Option<std::time::Duration>) -> Self {
        SubscriptionCache {
            version: 0,
            filled: std::time::Instant::now(),
            entries: std::collections::HashMap::new(),
            ttl,
        }
    }

    fn expired(&self) -> bool {
        self.ttl.is_some_and(|ttl| self.filled.elapsed() >= ttl)
    }

    /// The subscription cached for `version`, if any (and young enough).
    pub(crate) fn get(&self, version: u64, id: &str) -> Option<Subscription> {
        if self.version != version || self.expired() {
            return None;
        }
        self.entries.get(id).cloned()
    }

    /// Keeps `found`, read at `version` (or later).
    pub(crate) fn put(&mut self, version: u64, found: &Subscription) {
        if self.version < version || self.expired() {
            self.entries.clear();
            self.version = self.version.max(version);
            self.filled = std::time::Instant::now();
        }
        if self.version == version {
            self.entries.insert(found.id.clone(), found.clone());
        }
    }
}

/// The stored columns of an event type's JSON parts: the schema (`NULL` for none) and the
/// examples (a JSON array), as text in both schemas.
pub(crate) fn event_type_json(
    put: &crate::model::EventTypePut,
) -> Result<(Option<String>, String), StoreError> {
    let invalid = |field: &'static str| {
        move |e: serde_json::Error| StoreError::Invalid {
            field,
            message: e.to_string(),
        }
    };
    let schema = put
        .schema
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(invalid("schema"))?;
    let examples = serde_json::to_string(&put.examples).map_err(invalid("examples"))?;
    Ok((schema, examples))
}

/// The columns of a stored event type, read back: what [`event_type_record`] builds from.
pub(crate) struct EventTypeColumns {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) schema: Option<String>,
    pub(crate) examples: String,
    pub(crate) deprecated: bool,
    pub(crate) origin: i64,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
}

/// An event type from its columns; a value this build cannot read is a database error.
pub(crate) fn event_type_record(
    c: EventTypeColumns,
) -> Result<crate::model::EventTypeRecord, StoreError> {
    let corrupt = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Database {
        op: "read event type",
        source: e,
    };
    Ok(crate::model::EventTypeRecord {
        name: nexus_event::EventType::new(&c.name).map_err(|e| corrupt(Box::new(e)))?,
        description: c.description,
        schema: c
            .schema
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(Box::new(e)))?,
        examples: serde_json::from_str(&c.examples).map_err(|e| corrupt(Box::new(e)))?,
        deprecated: c.deprecated,
        origin: crate::model::TypeOrigin::from_code(c.origin).ok_or_else(|| {
            corrupt(Box::new(UnknownValue {
                column: "origin",
                value: c.origin,
            }))
        })?,
        created_at: Timestamp::from_unix_millis(c.created_ms).map_err(|e| corrupt(Box::new(e)))?,
        updated_at: Timestamp::from_unix_millis(c.updated_ms).map_err(|e| corrupt(Box::new(e)))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: &str, url: &str) -> Subscription {
        Subscription {
            id: id.into(),
            url: url.into(),
            target: "http://a.example:80".into(),
            events: vec![Pattern::new("*").expect("pattern")],
            secret: "s".into(),
            ordered: false,
            enabled: true,
            filter: None,
            created_at: Timestamp::from_unix_millis(0).expect("time"),
        }
    }

    /// An entry serves its version only; one read while the version moved on is never served;
    /// with a ttl, an old entry is not served either.
    #[test]
    fn the_subscription_cache_serves_only_its_version() {
        let mut cache = SubscriptionCache::new(None);
        cache.put(3, &sub("a", "http://a.example/1"));
        assert_eq!(
            cache.get(3, "a").map(|s| s.url),
            Some("http://a.example/1".into())
        );
        assert_eq!(cache.get(4, "a"), None, "a change moved the version on");
        cache.put(5, &sub("b", "http://b.example/1"));
        cache.put(4, &sub("a", "http://a.example/stale"));
        assert_eq!(cache.get(5, "a"), None, "read at 4, never served at 5");
        assert!(cache.get(5, "b").is_some());
        let mut young = SubscriptionCache::new(Some(std::time::Duration::ZERO));
        young.put(1, &sub("a", "http://a.example/1"));
        assert_eq!(young.get(1, "a"), None, "past its ttl");
    }

    #[test]
    fn codes_round_trip_and_unknown_ones_are_refused() {
        for s in [
            DeliveryState::Waiting,
            DeliveryState::Leased,
            DeliveryState::Parked,
            DeliveryState::Held,
        ] {
            assert_eq!(DeliveryState::from_code(s.code().into()).ok(), Some(s));
        }
        for k in [ConsumerKind::Subscription, ConsumerKind::Reactor] {
            assert_eq!(ConsumerKind::from_code(k.code().into()).ok(), Some(k));
        }
        assert!(DeliveryState::from_code(4).is_err());
        assert!(ConsumerKind::from_code(-1).is_err());
    }

    #[test]
    fn cursors_are_ids() {
        assert_eq!(dead_letter_cursor(None).ok(), Some(i64::MAX));
        assert_eq!(dead_letter_cursor(Some("42")).ok(), Some(42));
        assert!(matches!(
            dead_letter_cursor(Some("x")),
            Err(StoreError::Invalid {
                field: "cursor",
                ..
            })
        ));
    }
}
