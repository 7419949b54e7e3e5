//! The boundaries every backend implements. One conformance suite (`conformance` feature) checks
//! each implementation against these contracts.

use std::time::Duration;

use async_trait::async_trait;
use nexus_event::{Event, EventId, NewEvent, Timestamp, TypeFilter};
use tokio::sync::watch;

use crate::error::Result;
use crate::model::{
    Appended, BreakerRecord, DeadLetter, DeliveryQuery, DeliveryRecord, EventTypePut,
    EventTypeRecord, Failure, InstanceRecord, Lease, LeaseToken, NewSubscription, Page, PutOutcome,
    QueueStats, ReadOrder, ReplayTo, Selection, Subscription, SubscriptionPatch, SubscriptionStats,
    Success,
};

/// The durable, append-only event log.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends a batch in one atomic commit and answers only once it is durable.
    ///
    /// Each new event gets the next sequence (gap-free, strictly increasing) and, in the same
    /// transaction, one delivery per consumer that wants it (outbox). An id already in the log
    /// from the same source is a repeat: nothing is written for it and its first sequence comes
    /// back with `duplicate = true`. An id already in the log from another source refuses the whole
    /// batch with [`StoreError::Conflict`](crate::StoreError::Conflict), and an id twice in the
    /// batch with [`StoreError::DuplicateInBatch`](crate::StoreError::DuplicateInBatch). Results
    /// are in the order of `events`.
    ///
    /// When the store is overloaded it waits for room: what the store itself emits (reactor
    /// output) and what an embedder appends apply back pressure instead of failing. Ingress, which
    /// should shed load instead, uses [`EventLog::try_append`].
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>>;

    /// [`EventLog::append`], but refused at once with
    /// [`StoreError::Busy`](crate::StoreError::Busy) when the store cannot take more work right
    /// now (a full writer queue), writing nothing: the server answers `503` with `Retry-After`.
    /// A backend with no bound of its own appends as `append` does.
    async fn try_append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append(events).await
    }

    /// The event with this id.
    async fn get(&self, id: &EventId) -> Result<Option<Event>>;

    /// Up to `limit` events with a sequence above `after` whose type passes `filter`, in
    /// ascending sequence order.
    async fn read(&self, after: u64, limit: usize, filter: &TypeFilter) -> Result<Vec<Event>>;

    /// Up to `limit` events with `after < sequence <= until` whose type passes `filter`, in
    /// `order`: oldest first, or newest first (an operator's view of the log, paged backwards by
    /// passing the last sequence of a page minus one as the next `until`). Both bounds are read
    /// through the sequence index, so a page costs the same at the head of a log of any length.
    async fn read_range(
        &self,
        after: u64,
        until: u64,
        order: ReadOrder,
        limit: usize,
        filter: &TypeFilter,
    ) -> Result<Vec<Event>>;

    /// The highest committed sequence, 0 for an empty log.
    async fn head(&self) -> Result<u64>;
}

/// The durable queue of deliveries (retry queue) and its dead letters.
///
/// Every settling call is fenced by the [`LeaseToken`]: once a lease expired and another worker
/// leased the delivery, the first worker's calls fail with
/// [`StoreError::LeaseLost`](crate::StoreError::LeaseLost).
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Leases up to `max` deliveries that are due at `now` (or whose lease expired by `now`),
    /// earliest first, to `owner` for `lease_for`.
    ///
    /// Attempts are counted when an attempt is settled ([`DeliveryQueue::retry_at`],
    /// [`DeliveryQueue::dead_letter`]), never at lease time, so a lease that expires (its worker
    /// died) burns no attempt: leased again, the delivery gets the same attempt number. An
    /// embedded store whose data directory only one process can hold gives back every lease at
    /// open, due at once (API.md section 5).
    async fn lease_due(
        &self,
        owner: &str,
        now: Timestamp,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<Lease>>;

    /// The delivery succeeded: it leaves the queue, and its history keeps the attempt and the
    /// delivery as `delivered` ([`DeliveryHistory`]).
    async fn ack(&self, token: &LeaseToken, success: Success) -> Result<()>;

    /// The attempt failed: count it, keep it in the delivery's history, and try again at `when`.
    async fn retry_at(&self, token: &LeaseToken, when: Timestamp, failure: Failure) -> Result<()>;

    /// The attempt failed and was the last: count it, keep it in the delivery's history, and
    /// move the delivery to the dead letters (its history shows it `dead`). A delivery of a
    /// disabled subscription is held instead (API.md section 4: never dead-lettered while
    /// disabled).
    async fn dead_letter(&self, token: &LeaseToken, failure: Failure) -> Result<()>;

    /// Gives the delivery back without counting an attempt, due again at `when` (an open
    /// breaker, a shutting-down worker).
    async fn release(&self, token: &LeaseToken, when: Timestamp) -> Result<()>;

    /// Gives the delivery back without counting an attempt because its target's circuit breaker
    /// is open: it waits, parked, until [`DeliveryQueue::unpark_one`] makes it the next trial or
    /// [`DeliveryQueue::unpark`] lets its target's parked deliveries go. It is never leased
    /// before, whatever the time: however many wait behind a target that stays down, none of
    /// them costs work until then. `until` (the breaker's next trial) is the due time shown.
    async fn park(&self, token: &LeaseToken, until: Timestamp) -> Result<()>;

    /// Makes every parked delivery of `target` due at `now` at the latest (its breaker closed).
    /// Returns how many.
    async fn unpark(&self, target: &str, now: Timestamp) -> Result<u64>;

    /// Makes the oldest parked delivery of `target` due at `now` at the latest, to be its
    /// breaker's next trial. Returns whether there was one.
    async fn unpark_one(&self, target: &str, now: Timestamp) -> Result<bool>;

    /// The targets that have parked deliveries, in byte order.
    async fn parked_targets(&self) -> Result<Vec<String>>;

    /// Counts for the admin API and the gauges. `in_flight` counts only live leases (not expired
    /// by the wall clock); a delivery whose lease expired is pending work.
    async fn stats(&self) -> Result<QueueStats>;

    /// Dead letters, newest first.
    async fn dead_letters(&self, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>>;

    /// Moves dead letters back to the queue, due at `now`, attempts reset. Returns how many.
    async fn redrive(&self, which: Selection, now: Timestamp) -> Result<u64>;

    /// Deletes dead letters. Returns how many.
    async fn purge(&self, which: Selection) -> Result<u64>;

    /// Enqueues again, due at `now`, the events with a sequence above `after` and up to `until`
    /// (inclusive) whose type passes `filter`, for one subscription or for the reactors (through
    /// the store's router). Returns how many deliveries were enqueued;
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) for an unknown subscription.
    async fn replay(
        &self,
        after: u64,
        until: Option<u64>,
        filter: &TypeFilter,
        to: ReplayTo,
        now: Timestamp,
    ) -> Result<u64>;

    /// When the next delivery falls due (or the next lease expires); `None` when the queue is
    /// empty. A worker sleeps until then or until [`DeliveryQueue::changes`] moves.
    async fn next_due(&self) -> Result<Option<Timestamp>>;

    /// A watch that moves whenever work may have appeared (enqueue, retry, release, redrive), so
    /// a worker can sleep without polling.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// Every delivery's attempts, kept while it is queued and, once it was delivered or became a
/// dead letter, until [`DeliveryHistory::prune_history`] removes it (API.md section 12).
#[async_trait]
pub trait DeliveryHistory: Send + Sync {
    /// Every delivery of the event with this sequence (queued, delivered or dead), each with its
    /// attempts, oldest delivery first. `now` tells a live lease (in flight) from an expired one
    /// (pending).
    async fn event_deliveries(&self, sequence: u64, now: Timestamp) -> Result<Vec<DeliveryRecord>>;

    /// The deliveries of one subscription, newest first, as `query` selects them;
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) for an unknown subscription.
    async fn subscription_deliveries(
        &self,
        id: &str,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryRecord>>;

    /// The counts of each subscription in `ids` (in that order) since `since` (see
    /// [`SubscriptionStats`]); an unknown id counts zeros.
    async fn subscription_stats(
        &self,
        ids: &[String],
        since: Timestamp,
    ) -> Result<Vec<SubscriptionStats>>;

    /// Removes, oldest first, up to `max` finished deliveries (delivered or dead) that finished
    /// before `before`, with their attempts; returns how many. Queued deliveries keep their
    /// attempts whatever their age.
    async fn prune_history(&self, before: Timestamp, max: usize) -> Result<u64>;
}

/// Webhook subscriptions. Creating one starts routing new events to it.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// Creates a subscription with a new id.
    async fn create_subscription(&self, new: NewSubscription) -> Result<Subscription>;
    /// One subscription.
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>>;
    /// Subscriptions in creation order.
    async fn subscriptions(&self, limit: usize, cursor: Option<&str>)
    -> Result<Page<Subscription>>;
    /// Changes a subscription; [`StoreError::NotFound`](crate::StoreError::NotFound) if unknown.
    async fn update_subscription(&self, id: &str, patch: SubscriptionPatch)
    -> Result<Subscription>;
    /// Deletes a subscription and its pending deliveries; `false` if it did not exist.
    async fn delete_subscription(&self, id: &str) -> Result<bool>;
}

/// Named sequence cursors, for consumers that resume from where they were.
#[async_trait]
pub trait Cursors: Send + Sync {
    /// The stored sequence of a cursor.
    async fn cursor(&self, name: &str) -> Result<Option<u64>>;
    /// Stores a cursor durably.
    async fn set_cursor(&self, name: &str, sequence: u64) -> Result<()>;
}

/// Circuit breaker states, kept so a restart does not hammer a target that was down, and shared
/// by the instances of one store (each reads the others' saves back).
#[async_trait]
pub trait BreakerLog: Send + Sync {
    /// Stores a breaker's state, replacing the one kept for its target, and answers the record's
    /// new generation: higher than any generation kept before for this target (the first save
    /// answers 1). `record.generation` is ignored.
    async fn save_breaker(&self, record: BreakerRecord) -> Result<u64>;
    /// Every kept breaker, by target, each with its generation.
    async fn breakers(&self) -> Result<Vec<BreakerRecord>>;
}

/// The server instances working on the store (API.md section 13): with PostgreSQL every process
/// on the database that heartbeats; with the embedded store, which one process holds, that
/// process alone.
#[async_trait]
pub trait Instances: Send + Sync {
    /// The live instances, earliest started first.
    async fn instances(&self) -> Result<Vec<InstanceRecord>>;

    /// Whether this instance reached the store the last time it checked on its own (the
    /// heartbeat, on a connection of its own): `false` while a database is away. Readiness
    /// uses it when a probe only timed out, which a busy pool also causes. A store without a
    /// heartbeat (the embedded one) is always reachable.
    fn reachable(&self) -> bool {
        true
    }
}

/// The event-type catalogue (API.md section 11): declared types with their schema and examples,
/// by name. The store keeps them as given; compiling schemas and checking examples is the
/// catalogue's (`nexus-catalog`), before a put.
#[async_trait]
pub trait EventTypes: Send + Sync {
    /// Declared types in name order (byte order), after `cursor` (a name) when given.
    async fn event_types(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<EventTypeRecord>>;

    /// One declared type.
    async fn event_type(&self, name: &str) -> Result<Option<EventTypeRecord>>;

    /// Creates or replaces a type as a whole, keeping its creation time when it existed.
    /// An API put of a config-declared type is refused with
    /// [`StoreError::Declared`](crate::StoreError::Declared) and changes nothing.
    async fn put_event_type(&self, put: EventTypePut) -> Result<PutOutcome>;

    /// Deletes a type declared through the API; `false` if there was none. A config-declared
    /// type is refused with [`StoreError::Declared`](crate::StoreError::Declared). Stored
    /// events of the type are kept.
    async fn delete_event_type(&self, name: &str) -> Result<bool>;

    /// Hands a config-declared type over to the API (its entry left the config file): its
    /// content stays, the API may change or delete it from now on. `false` if no
    /// config-declared type has this name.
    async fn release_event_type(&self, name: &str) -> Result<bool>;

    /// A watch that moves after every committed change of event types, this process's and, on a
    /// shared database, every other instance's (and whenever one may have been missed, such as
    /// after a reconnect), so a cache of the catalogue knows to read it again.
    fn event_type_changes(&self) -> watch::Receiver<u64>;
}

/// Everything a Nexus server needs from its storage.
pub trait Store:
    EventLog
    + DeliveryQueue
    + DeliveryHistory
    + Subscriptions
    + Cursors
    + BreakerLog
    + Instances
    + EventTypes
{
}

impl<
    T: EventLog
        + DeliveryQueue
        + DeliveryHistory
        + Subscriptions
        + Cursors
        + BreakerLog
        + Instances
        + EventTypes,
> Store for T
{
}
