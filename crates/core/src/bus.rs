//! The bus, its builder and subscriptions.

use std::sync::{Arc, Mutex, PoisonError};

use nexus_event::{Event, NewEvent, TypeFilter};
use tokio::sync::broadcast;

use crate::stream::EventStream;

/// Events the ring holds by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// The largest ring a bus may have, in events.
pub const MAX_CAPACITY: usize = 1 << 24;

/// Configures a [`Bus`].
///
/// ```
/// let bus = nexus_core::Bus::builder().capacity(4096).build();
/// assert_eq!(bus.capacity(), 4096);
/// ```
#[derive(Debug, Clone)]
pub struct BusBuilder {
    capacity: usize,
    first_sequence: u64,
}

impl Default for BusBuilder {
    fn default() -> Self {
        BusBuilder {
            capacity: DEFAULT_CAPACITY,
            first_sequence: 1,
        }
    }
}

impl BusBuilder {
    /// How many events the ring holds before the slowest subscription starts to lag.
    ///
    /// Default [`DEFAULT_CAPACITY`] (1024) events. Rounded up to a power of two; values outside
    /// 1 to [`MAX_CAPACITY`] are brought to the nearest bound.
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events;
        self
    }

    /// The sequence number [`Bus::emit`] gives its first event. Default 1.
    ///
    /// Only events made by `emit` are numbered by the bus; [`Bus::publish`] keeps the sequence
    /// the caller set.
    pub fn first_sequence(mut self, sequence: u64) -> Self {
        self.first_sequence = sequence;
        self
    }

    /// Builds the bus.
    pub fn build(self) -> Bus {
        let capacity = self.capacity.clamp(1, MAX_CAPACITY).next_power_of_two();
        let (tx, _) = broadcast::channel(capacity);
        Bus {
            tx,
            capacity,
            next_sequence: Arc::new(Mutex::new(self.first_sequence)),
        }
    }
}

/// An in-process, multi-producer, multi-subscriber event bus. Cloning gives another handle to the
/// same bus.
///
/// See the [crate documentation](crate) for the delivery guarantees.
///
/// # Who numbers events: one bus, one numbering, never both
///
/// A bus is fed in exactly one of two ways, chosen by its owner for its whole life:
///
/// - **Behind a durable log** (what `nexus-server` does): the log gives each event its `sequence`
///   at commit and the owner hands the committed event to [`Bus::publish`], which keeps that
///   sequence as it is.
/// - **Without a log** (an embedding service): [`Bus::emit`] numbers drafts with the bus's own
///   counter, starting at [`BusBuilder::first_sequence`].
///
/// Mixing the two on one bus is not allowed: the bus's counter knows nothing of the log's
/// numbers, so subscribers would see repeated or decreasing sequences, and `since`-style resume
/// on top of the bus would skip or repeat events. The bus does not check this at run time (the
/// check would cost every publish); keep one bus per numbering.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
    capacity: usize,
    /// Next number for [`Bus::emit`]; held while sending so emitted events reach every
    /// subscription in sequence order.
    next_sequence: Arc<Mutex<u64>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::builder().build()
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("capacity", &self.capacity())
            .field("subscriptions", &self.subscription_count())
            .finish()
    }
}

impl Bus {
    /// A builder with the documented defaults.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// A bus with the default capacity.
    pub fn new() -> Self {
        Bus::default()
    }

    /// Hands a committed event to every current subscription, without waiting for any of them.
    ///
    /// Returns how many subscriptions will see it (each then applies its own filter); 0 when there
    /// are none, in which case the event is dropped. Events reach each subscription in the order
    /// they were published. Accepts an `Event` or an `Arc<Event>`; passing the `Arc` avoids the
    /// one allocation.
    ///
    /// The event keeps the `sequence` the caller gave it. Do not call `publish` on a bus that
    /// [`Bus::emit`] numbers (see [Who numbers events](Bus#who-numbers-events-one-bus-one-numbering-never-both)).
    ///
    /// ```
    /// use nexus_core::{Bus, TypeFilter};
    /// use nexus_event::{NewEvent, WellKnown};
    ///
    /// let bus = Bus::new();
    /// let mut all = bus.subscribe(TypeFilter::all());
    /// // The sequence comes from the caller's durable log, here 41.
    /// let committed = NewEvent::new(WellKnown::PaymentReceived, "flowpay").into_event(41);
    /// assert_eq!(bus.publish(committed), 1);
    /// assert_eq!(all.try_recv()?.sequence, 41);
    /// # Ok::<(), nexus_core::RecvError>(())
    /// ```
    #[inline]
    pub fn publish(&self, event: impl Into<Arc<Event>>) -> usize {
        self.tx.send(event.into()).unwrap_or(0)
    }

    /// Numbers a draft with the bus's own counter, publishes it, and returns the event.
    ///
    /// For embedding without a durable log. Concurrent `emit` calls are serialised, so every
    /// subscription sees emitted events in strictly increasing sequence order. Do not call
    /// [`Bus::publish`] on a bus that `emit` numbers (see
    /// [Who numbers events](Bus#who-numbers-events-one-bus-one-numbering-never-both)).
    ///
    /// ```
    /// use nexus_core::Bus;
    /// use nexus_event::{NewEvent, WellKnown};
    ///
    /// let bus = Bus::builder().first_sequence(100).build();
    /// let first = bus.emit(NewEvent::new(WellKnown::MintRequested, "orders"));
    /// let second = bus.emit(NewEvent::new(WellKnown::MintConfirmed, "factory"));
    /// assert_eq!((first.sequence, second.sequence), (100, 101));
    /// ```
    pub fn emit(&self, draft: NewEvent) -> Arc<Event> {
        // A panic while the lock was held cannot leave the counter half-written; carry on.
        let mut next = self
            .next_sequence
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let event = Arc::new(draft.into_event(*next));
        *next += 1;
        let _ = self.tx.send(Arc::clone(&event));
        event
    }

    /// A new subscription that sees every event published from now on whose type passes `filter`.
    ///
    /// ```
    /// use nexus_core::{Bus, RecvError, TypeFilter};
    /// use nexus_event::{NewEvent, WellKnown};
    ///
    /// let bus = Bus::new();
    /// let mut payments = bus.subscribe(TypeFilter::parse(["PAYMENT_*"])?);
    /// bus.emit(NewEvent::new(WellKnown::MintConfirmed, "factory"));
    /// bus.emit(NewEvent::new(WellKnown::PaymentReceived, "flowpay"));
    /// assert_eq!(payments.try_recv()?.event_type, WellKnown::PaymentReceived);
    /// assert_eq!(payments.try_recv(), Err(RecvError::Empty));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subscribe(&self, filter: impl Into<TypeFilter>) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            filter: filter.into(),
        }
    }

    /// Live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Events the ring holds (the builder's capacity, rounded up to a power of two).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Why no event was received.
///
/// Loss is reported, never silent: a subscription that falls more than the ring's capacity
/// behind learns how many events it missed, then goes on with the oldest one still held.
///
/// ```
/// use nexus_core::{Bus, RecvError, TypeFilter};
/// use nexus_event::{NewEvent, WellKnown};
///
/// let bus = Bus::builder().capacity(2).build();
/// let mut slow = bus.subscribe(TypeFilter::all());
/// for _ in 0..5 {
///     bus.emit(NewEvent::new(WellKnown::PaymentReceived, "flowpay"));
/// }
/// assert_eq!(slow.try_recv(), Err(RecvError::Lagged { missed: 3 }));
/// assert_eq!(slow.try_recv()?.sequence, 4);
/// drop(bus);
/// assert_eq!(slow.try_recv()?.sequence, 5);
/// assert_eq!(slow.try_recv(), Err(RecvError::Closed));
/// # Ok::<(), RecvError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The subscription fell behind the ring and these many events were dropped for it (matching
    /// its filter or not). The next receive returns the oldest event still held.
    #[error("subscription lagged behind the bus and missed {missed} events")]
    Lagged {
        /// Events published that this subscription will never see.
        missed: u64,
    },
    /// Every `Bus` handle is gone and everything published has been received.
    #[error("the bus is closed")]
    Closed,
    /// Nothing to receive right now ([`Subscription::try_recv`] only).
    #[error("no event is ready")]
    Empty,
}

/// A filtered view of the bus. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    filter: TypeFilter,
}

impl Subscription {
    /// Waits for the next event that passes the filter.
    ///
    /// Cancel-safe: dropping the future loses no event. Never returns [`RecvError::Empty`].
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        loop {
            match self.rx.recv().await {
                Ok(event) if self.filter.matches(&event.event_type) => return Ok(event),
                Ok(_) => continue,
                Err(e) => return Err(from_recv(e)),
            }
        }
    }

    /// The next ready event that passes the filter, without waiting.
    #[inline]
    pub fn try_recv(&mut self) -> Result<Arc<Event>, RecvError> {
        loop {
            match self.rx.try_recv() {
                Ok(event) if self.filter.matches(&event.event_type) => return Ok(event),
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Empty) => return Err(RecvError::Empty),
                Err(broadcast::error::TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    return Err(RecvError::Lagged { missed });
                }
            }
        }
    }

    /// The filter this subscription applies.
    pub fn filter(&self) -> &TypeFilter {
        &self.filter
    }

    /// Events published but not yet received by this subscription (before filtering), including
    /// those it has already fallen too far behind for, which the next receive reports as missed.
    ///
    /// ```
    /// use nexus_core::{Bus, TypeFilter};
    /// use nexus_event::{NewEvent, WellKnown};
    ///
    /// let bus = Bus::new();
    /// let mut mints = bus.subscribe(TypeFilter::parse(["MINT_*"])?);
    /// bus.emit(NewEvent::new(WellKnown::PaymentReceived, "flowpay"));
    /// bus.emit(NewEvent::new(WellKnown::MintConfirmed, "factory"));
    /// assert_eq!(mints.backlog(), 2); // counted before the filter
    /// mints.try_recv()?;
    /// assert_eq!(mints.backlog(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backlog(&self) -> usize {
        self.rx.len()
    }

    /// Turns the subscription into a [`futures_core::Stream`] of the same events and errors. The
    /// stream ends after [`RecvError::Closed`].
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    /// use nexus_core::{Bus, TypeFilter};
    /// use nexus_event::{NewEvent, WellKnown};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let bus = Bus::new();
    /// let mut stream = bus.subscribe(TypeFilter::all()).into_stream();
    /// bus.emit(NewEvent::new(WellKnown::PaymentReceived, "flowpay"));
    /// drop(bus);
    /// let first = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await;
    /// assert_eq!(first.map(|r| r.map(|e| e.sequence)), Some(Ok(1)));
    /// // Closed and drained: the stream ends.
    /// assert!(poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await.is_none());
    /// # });
    /// ```
    pub fn into_stream(self) -> EventStream {
        EventStream::new(self.rx, self.filter)
    }
}

pub(crate) fn from_recv(e: broadcast::error::RecvError) -> RecvError {
    match e {
        broadcast::error::RecvError::Lagged(missed) => RecvError::Lagged { missed },
        broadcast::error::RecvError::Closed => RecvError::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_event::{EventType, WellKnown};
    use std::time::Duration;

    fn draft(t: WellKnown) -> NewEvent {
        NewEvent::new(t, "test")
    }

    fn filter(globs: &[&str]) -> TypeFilter {
        TypeFilter::parse(globs).expect("test globs are valid")
    }

    #[test]
    fn capacity_defaults_rounds_and_clamps() {
        assert_eq!(Bus::new().capacity(), DEFAULT_CAPACITY);
        assert_eq!(Bus::builder().capacity(1000).build().capacity(), 1024);
        assert_eq!(Bus::builder().capacity(0).build().capacity(), 1);
        assert_eq!(
            Bus::builder().capacity(usize::MAX).build().capacity(),
            MAX_CAPACITY
        );
    }

    #[test]
    fn filters_apply_per_subscription() {
        let bus = Bus::new();
        let mut all = bus.subscribe(TypeFilter::all());
        let mut mints = bus.subscribe(filter(&["MINT_*"]));
        let mut none = bus.subscribe(filter(&["NOTHING"]));
        for t in [
            WellKnown::PaymentReceived,
            WellKnown::MintRequested,
            WellKnown::MintConfirmed,
        ] {
            assert_eq!(bus.publish(draft(t).into_event(1)), 3);
        }
        let types = |sub: &mut Subscription| {
            std::iter::from_fn(|| sub.try_recv().ok())
                .map(|e| e.event_type.clone())
                .collect::<Vec<EventType>>()
        };
        assert_eq!(types(&mut all).len(), 3);
        assert_eq!(
            types(&mut mints),
            vec![
                EventType::from(WellKnown::MintRequested),
                WellKnown::MintConfirmed.into()
            ]
        );
        assert_eq!(none.try_recv(), Err(RecvError::Empty));
    }

    #[test]
    fn subscribers_share_one_event() {
        let bus = Bus::new();
        let mut a = bus.subscribe(TypeFilter::all());
        let mut b = bus.subscribe(TypeFilter::all());
        let sent = bus.emit(draft(WellKnown::MintFailed));
        let (ra, rb) = (a.try_recv(), b.try_recv());
        assert!(Arc::ptr_eq(&sent, &ra.expect("a got it")));
        assert!(Arc::ptr_eq(&sent, &rb.expect("b got it")));
    }

    #[test]
    fn publish_without_subscribers_is_fine() {
        let bus = Bus::new();
        assert_eq!(bus.publish(draft(WellKnown::MintFailed).into_event(1)), 0);
        let e = bus.emit(draft(WellKnown::MintFailed));
        assert_eq!(e.sequence, 1);
    }

    #[test]
    fn a_slow_subscriber_is_told_how_much_it_missed() {
        let bus = Bus::builder().capacity(4).build();
        let mut slow = bus.subscribe(TypeFilter::all());
        // Publishing never waits for the subscriber that reads nothing.
        for _ in 0..10 {
            bus.emit(draft(WellKnown::PaymentReceived));
        }
        assert_eq!(slow.backlog(), 10);
        assert_eq!(slow.try_recv(), Err(RecvError::Lagged { missed: 6 }));
        let resumed: Vec<u64> = std::iter::from_fn(|| slow.try_recv().ok())
            .map(|e| e.sequence)
            .collect();
        assert_eq!(resumed, vec![7, 8, 9, 10]);
    }

    #[test]
    fn dropping_subscriptions_and_the_bus() {
        let bus = Bus::new();
        let sub = bus.subscribe(TypeFilter::all());
        let mut kept = bus.subscribe(TypeFilter::all());
        assert_eq!(bus.subscription_count(), 2);
        drop(sub);
        assert_eq!(bus.subscription_count(), 1);
        let clone = bus.clone();
        bus.emit(draft(WellKnown::MintConfirmed));
        drop(bus);
        clone.emit(draft(WellKnown::MintConfirmed));
        drop(clone);
        assert_eq!(kept.try_recv().map(|e| e.sequence), Ok(1));
        assert_eq!(kept.try_recv().map(|e| e.sequence), Ok(2));
        assert_eq!(kept.try_recv(), Err(RecvError::Closed));
    }

    async fn producer_and_consumers(bus: Bus) {
        const N: u64 = 5_000;
        let mut tasks = Vec::new();
        for globs in [vec!["*"], vec!["PAYMENT_*"], vec!["MINT_CONFIRMED"]] {
            let mut sub = bus.subscribe(filter(&globs));
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    match sub.recv().await {
                        Ok(e) => seen.push(e.sequence),
                        Err(RecvError::Closed) => return seen,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }));
        }
        let producer = tokio::spawn(async move {
            for i in 0..N {
                let t = if i % 2 == 0 {
                    WellKnown::PaymentReceived
                } else {
                    WellKnown::MintConfirmed
                };
                bus.emit(draft(t));
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), producer)
            .await
            .expect("producer finished in time")
            .expect("producer did not panic");
        let mut results = Vec::new();
        for t in tasks {
            results.push(
                tokio::time::timeout(Duration::from_secs(30), t)
                    .await
                    .expect("consumer finished in time")
                    .expect("consumer did not panic"),
            );
        }
        assert_eq!(results[0], (1..=N).collect::<Vec<_>>());
        assert_eq!(results[1], (1..=N).step_by(2).collect::<Vec<_>>());
        assert_eq!(results[2], (2..=N).step_by(2).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn works_on_the_current_thread_runtime() {
        producer_and_consumers(Bus::builder().capacity(8192).build()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_on_the_multi_thread_runtime() {
        producer_and_consumers(Bus::builder().capacity(8192).build()).await;
    }

    #[test]
    fn concurrent_emitters_keep_sequence_order() {
        let bus = Bus::builder().capacity(1 << 16).build();
        let mut sub = bus.subscribe(TypeFilter::all());
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        bus.emit(draft(WellKnown::PaymentReceived));
                    }
                });
            }
        });
        let seqs: Vec<u64> = std::iter::from_fn(|| sub.try_recv().ok())
            .map(|e| e.sequence)
            .collect();
        assert_eq!(seqs, (1..=20_000).collect::<Vec<_>>());
    }
}
