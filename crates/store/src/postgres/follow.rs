//! Fan-out across instances (API.md section 13): every instance's bus sees the events committed
//! by every instance on the database, once each, in sequence order, and every instance's retry
//! worker wakes when another instance made work due.
//!
//! Two parts share a [`Fanout`]: the writer, which after each commit offers the events it
//! committed (the fast path: published at once when they are next in order), and the follower, a
//! task with a connection of its own (not from the pool; `application_name` `nexus-follower`)
//! that runs `LISTEN nexus_events`, `LISTEN nexus_work`, `LISTEN nexus_subscriptions` (drops the
//! cache of subscriptions) and `LISTEN nexus_event_types` (moves the event types' watch). On a notification from another
//! instance, on a wake from the writer (its events were not next: another instance committed
//! before them), and on a tick of about a second (a lost notification), it reads the log after
//! the last sequence given to the bus, in bounded pages, and publishes what it finds. The
//! notification's payload is never trusted: it only says that something changed.
//!
//! The log has no holes once a sequence is visible (see `prepare_appends` in `log.rs`: sequences
//! are assigned under an advisory lock held until the commit), so reading "after `published`"
//! in sequence order yields exactly the events the bus still lacks.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Object;
use nexus_core::Bus;
use nexus_event::Event;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, Notification, Socket, Statement};

use super::columns::{db_err, signed, unsigned};
use super::get;
use super::log::{event_columns, event_from_row};
use crate::error::{Result, StoreError};

/// The channel every append group notifies, with its new head sequence as payload.
pub(crate) const EVENTS_CHANNEL: &str = "nexus_events";
/// The channel a group that made deliveries due without appending notifies (retry, release,
/// park, unpark, redrive, replay, subscription enabled), with an empty payload.
pub(crate) const WORK_CHANNEL: &str = "nexus_work";
/// The channel a group that changed subscriptions notifies: every instance drops its cache of
/// subscriptions (`subscription()`, read for every webhook delivery).
pub(crate) const SUBSCRIPTIONS_CHANNEL: &str = "nexus_subscriptions";
/// The channel a transaction that changed event types notifies: every instance's catalogue
/// reads the types again (`EventTypes::event_type_changes`).
pub(crate) const EVENT_TYPES_CHANNEL: &str = "nexus_event_types";
/// The `application_name` of the follower's connection (visible in `pg_stat_activity`).
pub(crate) const FOLLOWER_APPLICATION_NAME: &str = "nexus-follower";

/// Events read per query when catching up: small enough that a page of the largest payloads
/// (256 KiB each) reads well within [`READ_TIMEOUT`].
const PAGE: i64 = 128;
/// How often the follower reads the log without being told to: covers a lost notification.
const TICK: Duration = Duration::from_secs(1);
/// The first wait before connecting again after the connection is lost; doubled each failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one catch-up read may take before the connection counts as lost.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the writer and the follower share: the bus, the last sequence given to it, and how to
/// wake the follower and the retry workers.
pub(crate) struct Fanout {
    bus: Option<Bus>,
    /// The last sequence given to the bus; at open, the head. Publishing happens under this lock,
    /// so the bus sees every sequence once, strictly increasing.
    published: Mutex<u64>,
    /// The backend process id of the writer's connection: notifications it sent are this
    /// instance's own, already published and already woken for.
    writer_pid: AtomicI32,
    /// The writer's events were not next in order: the follower reads the gap.
    wake: Notify,
    /// Moves whenever subscriptions may have changed (a local change committed, another
    /// instance's notification, a reconnect that may have missed one): the cache of
    /// `subscription()` is valid for one value only.
    subscriptions_version: AtomicU64,
    /// The local retry workers' wake-up (`DeliveryQueue::changes`).
    changes: watch::Sender<u64>,
    /// Moves whenever event types may have changed (a local change committed, another
    /// instance's notification, a reconnect that may have missed one).
    event_types: watch::Sender<u64>,
}

impl Fanout {
    /// The last sequence given to the bus, locked: publishing happens under it.
    fn lock_published(&self) -> std::sync::MutexGuard<'_, u64> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscriptions may have changed: the cache of `subscription()` starts over.
    pub(crate) fn subscriptions_changed(&self) {
        self.subscriptions_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Event types may have changed: the catalogues watching them read them again.
    pub(crate) fn event_types_changed(&self) {
        self.event_types.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The watch behind `EventTypes::event_type_changes`.
    pub(crate) fn event_type_changes(&self) -> watch::Receiver<u64> {
        self.event_types.subscribe()
    }

    /// The value the cache of `subscription()` is valid for.
    pub(crate) fn subscriptions_version(&self) -> u64 {
        self.subscriptions_version.load(Ordering::Acquire)
    }

    /// Records the backend process id of the writer's (new) connection.
    pub(crate) fn writer_connected(&self, pid: i32) {
        self.writer_pid.store(pid, Ordering::Relaxed);
    }

    /// The fast path, called by the writer right after a commit with the events it committed, in
    /// sequence order: published at once when they are next, otherwise (another instance
    /// committed before them, not read yet) left to the follower, which reads them in order.
    pub(crate) fn committed(&self, events: Vec<Arc<Event>>) {
        let Some(bus) = &self.bus else {
            return;
        };
        let mut published = self.lock_published();
        if bus.subscription_count() == 0 {
            // Nobody listens: nothing to publish and no gap to read (see `unheard`).
            if let Some(last) = events.last() {
                *published = (*published).max(last.sequence);
            }
            return;
        }
        for event in events {
            if event.sequence <= *published {
                // The follower read it first.
                continue;
            }
            if event.sequence != *published + 1 {
                drop(published);
                self.wake.notify_one();
                return;
            }
            *published = event.sequence;
            bus.publish(event);
        }
    }

    /// Publishes events read from the log after `published`, in sequence order; those the writer
    /// published meanwhile are skipped.
    fn publish_read(&self, events: Vec<Event>) {
        let Some(bus) = &self.bus else {
            return;
        };
        let mut published = self.lock_published();
        for event in events {
            if event.sequence <= *published {
                continue;
            }
            if event.sequence != *published + 1 {
                // Sequences are gap-free once visible: only rows deleted by hand leave a hole.
                // Waiting for them would stop the fan-out for good.
                tracing::error!(
                    after = *published,
                    next = event.sequence,
                    "the event log has a hole; the bus skips the missing sequences"
                );
            }
            *published = event.sequence;
            bus.publish(Arc::new(event));
        }
    }

    /// Moves the last published sequence up to `sequence` without publishing: rows the
    /// follower read but could not decode (each logged), so it does not read them forever.
    fn pass(&self, sequence: u64) {
        let mut published = self.lock_published();
        if *published < sequence {
            *published = sequence;
        }
    }

    /// The last sequence given to the bus.
    fn published(&self) -> u64 {
        *self.lock_published()
    }

    /// Takes a notification into account: another instance's wakes the local retry workers
    /// (its append may have enqueued deliveries; its settle made work due). Whether the log is
    /// to be read: a notification on the events channel from another instance.
    fn noted(&self, note: &Notification) -> bool {
        if note.channel() == SUBSCRIPTIONS_CHANNEL {
            self.subscriptions_changed();
            return false;
        }
        if note.channel() == EVENT_TYPES_CHANNEL {
            // Its own too: harmless, and the local change already moved the watch.
            self.event_types_changed();
            return false;
        }
        if note.process_id() == self.writer_pid.load(Ordering::Relaxed) {
            return false;
        }
        self.wake_workers();
        if note.channel() != EVENTS_CHANNEL {
            return false;
        }
        !self.unheard(note.payload())
    }

    /// With no subscription on the bus, another instance's events need not be read at all (a
    /// cluster without WebSocket clients would otherwise read every event back on every
    /// instance): `published` moves to the notified head, which its transaction committed.
    /// Safe for a subscriber that arrives meanwhile: it subscribes to the bus before it reads
    /// the head or replays `since` from the log, so what was passed over is either before its
    /// start or in its replay. Answers whether it passed (no read needed).
    fn unheard(&self, head: &str) -> bool {
        let Some(bus) = &self.bus else {
            return false;
        };
        let Ok(head) = head.parse::<u64>() else {
            return false;
        };
        let mut published = self.lock_published();
        if bus.subscription_count() > 0 {
            return false;
        }
        *published = (*published).max(head);
        true
    }

    /// Moves the local retry workers' watch.
    fn wake_workers(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The follower task's handle, kept by the store: stops the task when dropped or closed.
pub(crate) struct Follower {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Follower {
    /// Stops the follower and waits for it to end.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        if self.task.await.is_err() {
            tracing::error!("the postgres store follower ended abnormally");
        }
    }
}

/// How the follower makes its connections: the pool's TLS connector (`NoTls` without TLS), with
/// what a spawned task needs of it.
pub(crate) trait Connector:
    MakeTlsConnect<
        Socket,
        Stream: Send + 'static,
        TlsConnect: TlsConnect<Socket, Future: Send> + Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Connector for T where
    T: MakeTlsConnect<
            Socket,
            Stream: Send + 'static,
            TlsConnect: TlsConnect<Socket, Future: Send> + Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Reads the head (the bus starts after it) and starts the follower on a connection of its own
/// made from `config` with `tls` (the pool's connector). The connection is made by the task: a
/// follower that cannot connect yet retries with backoff, and the store opens regardless.
pub(crate) async fn start<T: Connector>(
    mut config: Config,
    tls: T,
    client: &Object,
    bus: Option<Bus>,
    changes: watch::Sender<u64>,
) -> Result<(Arc<Fanout>, Follower)> {
    let row = client
        .query_one("SELECT coalesce(max(sequence), 0) FROM events", &[])
        .await
        .map_err(db_err("head"))?;
    let head = unsigned(get(&row, 0, "head")?);
    let fanout = Arc::new(Fanout {
        bus,
        published: Mutex::new(head),
        writer_pid: AtomicI32::new(0),
        wake: Notify::new(),
        subscriptions_version: AtomicU64::new(0),
        changes,
        event_types: watch::channel(0).0,
    });
    config.application_name(FOLLOWER_APPLICATION_NAME);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(config, tls, Arc::clone(&fanout), stopped));
    Ok((fanout, Follower { stop, task }))
}

/// Why following on one connection ended.
enum Ended {
    /// The store is closing.
    Stopped,
    /// The connection was lost or a read failed: connect again.
    Lost(StoreError),
}

/// The follower: connects, follows until the connection is lost, and connects again with a
/// capped, doubling backoff; one warning per outage, one info line when back.
async fn run<T: Connector>(
    config: Config,
    tls: T,
    fanout: Arc<Fanout>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = BACKOFF_FIRST;
    // When the current outage began; `None` while connected (or before the first attempt).
    let mut outage: Option<Instant> = None;
    loop {
        let connected = tokio::select! {
            _ = &mut stop => return,
            connected = listen(&config, tls.clone()) => connected,
        };
        let ended = match connected {
            Ok((client, notes)) => {
                if let Some(since) = outage.take() {
                    tracing::info!(
                        down_ms = since.elapsed().as_millis() as u64,
                        "the event follower is connected again; catching up"
                    );
                    // Notifications sent meanwhile are lost: work may be due.
                    fanout.wake_workers();
                }
                follow(&client, notes, &fanout, &mut stop, &mut backoff).await
            }
            Err(e) => Ended::Lost(e),
        };
        match ended {
            Ended::Stopped => return,
            Ended::Lost(e) => {
                if outage.is_none() {
                    tracing::warn!(
                        error = %e,
                        "the event follower has no connection; other instances' events and \
                         wake-ups wait until it is back"
                    );
                    outage = Some(Instant::now());
                } else {
                    tracing::debug!(error = %e, "the event follower cannot connect yet");
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects, drives the connection in a task of its own that forwards notifications, and
/// listens on both channels.
async fn listen<T: Connector>(
    config: &Config,
    tls: T,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>)> {
    let (client, mut connection) = config
        .connect(tls)
        .await
        .map_err(db_err("connect the event follower"))?;
    // Unbounded: the connection must never wait for the follower, which may itself be waiting
    // for an answer on this connection. Notifications are drained together before each read.
    let (tx, notes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(note))) => {
                    if tx.send(note).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "the event follower's connection ended");
                    return;
                }
                None => return,
            }
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {EVENTS_CHANNEL}; LISTEN {WORK_CHANNEL}; LISTEN {SUBSCRIPTIONS_CHANNEL}; \
             LISTEN {EVENT_TYPES_CHANNEL}"
        ))
        .await
        .map_err(db_err("listen"))?;
    Ok((client, notes))
}

/// Follows on one connection until it is lost or the store closes: reads the log at once (catch
/// up; then `backoff` starts again from its first step), then on each notification from another
/// instance, each wake from the writer and each tick. A read that fails ends it: the connection
/// is made again.
async fn follow(
    client: &Client,
    mut notes: mpsc::UnboundedReceiver<Notification>,
    fanout: &Fanout,
    stop: &mut oneshot::Receiver<()>,
    backoff: &mut Duration,
) -> Ended {
    let read = match client
        .prepare(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE sequence > $1 ORDER BY sequence LIMIT $2"
        ))
        .await
    {
        Ok(statement) => statement,
        Err(e) => return Ended::Lost(db_err("follow the log")(e)),
    };
    if fanout.bus.is_some() {
        match catch_up(client, &read, fanout, stop).await {
            Ok(CaughtUp::Yes) => {}
            Ok(CaughtUp::Stopped) => return Ended::Stopped,
            Err(e) => return Ended::Lost(e),
        }
    }
    *backoff = BACKOFF_FIRST;
    // Notifications sent while there was no connection are lost: subscriptions and event types
    // may have changed.
    fanout.subscriptions_changed();
    fanout.event_types_changed();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wanted = tokio::select! {
            _ = &mut *stop => return Ended::Stopped,
            note = notes.recv() => {
                let Some(note) = note else {
                    return Ended::Lost(StoreError::Unavailable {
                        reason: "the event follower's connection was closed".into(),
                    });
                };
                let mut wanted = fanout.noted(&note);
                while let Ok(note) = notes.try_recv() {
                    wanted |= fanout.noted(&note);
                }
                wanted
            }
            () = fanout.wake.notified() => true,
            _ = tick.tick() => true,
        };
        if wanted && fanout.bus.is_some() {
            match catch_up(client, &read, fanout, stop).await {
                Ok(CaughtUp::Yes) => {}
                Ok(CaughtUp::Stopped) => return Ended::Stopped,
                Err(e) => return Ended::Lost(e),
            }
        }
    }
}

/// How a catch-up ended without an error.
enum CaughtUp {
    /// A page was not full: the bus has everything committed when it was read.
    Yes,
    /// The store is closing: it stopped between pages.
    Stopped,
}

/// Reads the log after `published` page by page and publishes it, until a page is not full or
/// the store closes (a backlog of millions of events must not hold `close` up). A row that
/// cannot be read as an event (changed by hand) is skipped with an error line, as a hole is: it
/// must not stop the fan-out for every later event.
async fn catch_up(
    client: &Client,
    read: &Statement,
    fanout: &Fanout,
    stop: &mut oneshot::Receiver<()>,
) -> Result<CaughtUp> {
    loop {
        let after = signed(fanout.published());
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after, &PAGE];
        let rows = tokio::select! {
            _ = &mut *stop => return Ok(CaughtUp::Stopped),
            read = tokio::time::timeout(READ_TIMEOUT, client.query(read, &params)) => read,
        }
        .map_err(|_| StoreError::Unavailable {
            reason: format!(
                "the event follower's read took more than {} s",
                READ_TIMEOUT.as_secs()
            ),
        })?
        .map_err(db_err("follow the log"))?;
        let full = rows.len() as i64 == PAGE;
        let last = rows.last().and_then(|row| row.try_get::<_, i64>(0).ok());
        let events = rows
            .iter()
            .filter_map(|row| match event_from_row(row) {
                Ok(event) => Some(event),
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        sequence = row.try_get::<_, i64>(0).ok(),
                        "an event of the log cannot be read; the bus skips it"
                    );
                    None
                }
            })
            .collect();
        fanout.publish_read(events);
        // Unreadable rows at the end of a page are passed, so the next page starts after them.
        if let Some(last) = last {
            fanout.pass(unsigned(last));
        }
        if !full {
            return Ok(CaughtUp::Yes);
        }
    }
}

#[cfg(test)]
mod tests {
    use nexus_event::{NewEvent, TypeFilter, WellKnown};

    use super::*;

    fn fanout(bus: &Bus, published: u64) -> Fanout {
        Fanout {
            bus: Some(bus.clone()),
            published: Mutex::new(published),
            writer_pid: AtomicI32::new(0),
            wake: Notify::new(),
            subscriptions_version: AtomicU64::new(0),
            changes: watch::channel(0).0,
            event_types: watch::channel(0).0,
        }
    }

    fn event(sequence: u64) -> Event {
        NewEvent::new(WellKnown::PaymentReceived, "flowpay").into_event(sequence)
    }

    fn shared(sequences: impl IntoIterator<Item = u64>) -> Vec<Arc<Event>> {
        sequences.into_iter().map(|s| Arc::new(event(s))).collect()
    }

    fn received(sub: &mut nexus_core::Subscription) -> Vec<u64> {
        std::iter::from_fn(|| sub.try_recv().ok())
            .map(|e| e.sequence)
            .collect()
    }

    /// The writer's events next in order are published at once; events after a gap wait (and
    /// wake the follower), and the read fills the gap and publishes them, each sequence once.
    #[tokio::test]
    async fn the_bus_sees_each_sequence_once_in_order() {
        let bus = Bus::new();
        let mut sub = bus.subscribe(TypeFilter::all());
        let f = fanout(&bus, 10);
        f.committed(shared([11, 12]));
        assert_eq!(received(&mut sub), [11, 12]);
        // 13 and 14 were committed by another instance: 15 and 16 wait for them.
        f.committed(shared([15, 16]));
        assert_eq!(received(&mut sub), Vec::<u64>::new());
        tokio::time::timeout(Duration::from_secs(1), f.wake.notified())
            .await
            .expect("the follower is woken for the gap");
        f.publish_read((12..=16).map(event).collect());
        assert_eq!(received(&mut sub), [13, 14, 15, 16]);
        // Read first, offered by the writer after: not again.
        f.publish_read(vec![event(17)]);
        f.committed(shared([17, 18]));
        assert_eq!(received(&mut sub), [17, 18]);
        assert_eq!(f.published(), 18);
    }

    /// With nobody subscribed, neither the writer's events nor another instance's head make the
    /// follower read: `published` just moves on. Once someone subscribes, events after it are
    /// published in order again.
    #[tokio::test]
    async fn without_subscribers_nothing_is_read_back() {
        let bus = Bus::new();
        let f = fanout(&bus, 10);
        f.committed(shared([13, 14]));
        assert_eq!(f.published(), 14, "no gap to read for nobody");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), f.wake.notified())
                .await
                .is_err(),
            "the follower is not woken"
        );
        assert!(
            f.unheard("20"),
            "another instance's head is passed, not read"
        );
        assert_eq!(f.published(), 20);
        assert!(
            !f.unheard("not a number"),
            "a payload it cannot read is read the long way"
        );
        let mut sub = bus.subscribe(TypeFilter::all());
        assert!(!f.unheard("22"), "with a subscriber the follower reads");
        f.publish_read((21..=22).map(event).collect());
        f.committed(shared([23]));
        assert_eq!(received(&mut sub), [21, 22, 23]);
    }
}
