//! The delivery queue: leases fenced by token, settling (ack, retry, release, park), stats,
//! replay and the next due time. Dead letters are in `dead_letters.rs`.
//!
//! Every statement names its values, states included, as parameters (`columns::bind`); the
//! fragments shared between statements are macros so they join the statement text at compile
//! time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nexus_event::{Event, Timestamp, TypeFilter, When};
use rusqlite::Connection;
use tokio::sync::watch;

use super::SqliteStore;
use super::columns::{
    Arg, ConsumerKind, DeliveryState, bind, consumer_from, conv, db_err, execute, prepare, ts,
};
use super::dead_letters;
use super::history::{AttemptRow, delivered, record_attempt};
use super::log::{event_by_sequence, event_columns, event_from_row, globs_param, type_passes};
use super::subscriptions::subscription_in;
use super::writer::Ctx;
use crate::error::{Result, StoreError};
use crate::model::{
    Consumer, DeadLetter, Failure, Lease, LeaseToken, Page, QueueStats, ReplayTo, Selection,
    Subscription, Success,
};
use crate::traits::DeliveryQueue;

/// Which waiting rows `d` may be leased when due: not an expired lease of a disabled
/// subscription (it waits for the subscription), and for an ordered subscription only its
/// lowest sequence still queued (a failing event holds back the later ones; a leased one
/// too, so they go one at a time).
macro_rules! leasable {
    () => {
        "NOT (d.consumer_kind = :webhook AND ( \
         (d.state = :leased AND d.consumer IN (SELECT id FROM subscriptions WHERE enabled = 0)) \
         OR (d.consumer IN (SELECT id FROM subscriptions WHERE ordered = 1) \
             AND EXISTS (SELECT 1 FROM deliveries e WHERE e.consumer_kind = :webhook \
                         AND e.consumer = d.consumer \
                         AND (e.event_sequence < d.event_sequence \
                              OR (e.event_sequence = d.event_sequence AND e.id < d.id))))))"
    };
}

/// The `state` a delivery of this consumer waits in: held while its subscription is disabled.
macro_rules! wait_state {
    () => {
        "(CASE WHEN consumer_kind = :webhook AND consumer IN \
         (SELECT id FROM subscriptions WHERE enabled = 0) THEN :held ELSE :waiting END)"
    };
}

pub(super) use wait_state;

/// The row a lease token names, still leased by it.
macro_rules! leased_by_token {
    () => {
        "id = :delivery AND state = :leased AND lease_owner = :owner AND lease_gen = :gen"
    };
}

/// The targets with parked deliveries, one index probe each (a skip scan of
/// `deliveries_parked`): the cost does not grow with how many are parked.
const PARKED_TARGETS: &str = "WITH RECURSIVE t(target) AS ( \
     SELECT min(target) FROM deliveries WHERE state = :parked \
     UNION ALL SELECT (SELECT min(target) FROM deliveries WHERE state = :parked \
     AND target > t.target) FROM t WHERE t.target IS NOT NULL) \
     SELECT target FROM t WHERE target IS NOT NULL";

/// Leases the due deliveries, oldest first; the rows and their lease's generation.
const LEASE: &str = concat!(
    "UPDATE deliveries SET state = :leased, lease_owner = :owner, \
     lease_gen = lease_gen + 1, due_ms = :expires \
     WHERE id IN (SELECT id FROM deliveries d WHERE state < :parked AND due_ms <= :now AND ",
    leasable!(),
    " ORDER BY due_ms, id LIMIT :max) \
     RETURNING id, event_sequence, consumer_kind, consumer, target, attempts, lease_gen, \
     created_ms"
);

/// When the next delivery is due. Leases of a disabled subscription are not leased again (see
/// [`LEASE`]), so they are not due either; in due order, stopping at the first row that is.
const NEXT_DUE: &str = concat!(
    "SELECT due_ms FROM deliveries d WHERE state < :parked AND ",
    leasable!(),
    " ORDER BY due_ms LIMIT 1"
);

/// Leases inside the writer's transaction; see [`DeliveryQueue::lease_due`].
fn lease_in(
    ctx: &mut Ctx<'_>,
    owner: Arc<str>,
    now: i64,
    max: usize,
    lease_ms: i64,
) -> Result<Vec<Lease>> {
    let err = db_err("lease_due");
    let expires = now.saturating_add(lease_ms);
    let expires_at = Timestamp::from_unix_millis(expires).map_err(|e| StoreError::Invalid {
        field: "lease_for",
        message: e.to_string(),
    })?;
    let mut stmt = prepare(ctx.conn, LEASE).map_err(&err)?;
    let owner_str: &str = &owner;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    bind(
        &mut stmt,
        &[
            (":owner", &owner_str),
            (":expires", &expires),
            (":now", &now),
            (":max", &max),
        ],
    )
    .map_err(&err)?;
    let mut raw = stmt
        .raw_query()
        .mapped(|r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, ConsumerKind>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&err)?;
    raw.sort_unstable_by_key(|r| (r.1, r.0));
    let mut leases = Vec::with_capacity(raw.len());
    // The rows are in sequence order, so the deliveries of one event (one per subscription)
    // come together: an event older than the cache is read and parsed once for all of them.
    let mut previous: Option<Arc<Event>> = None;
    for (id, sequence, kind, consumer, target, attempts, generation, created) in raw {
        let sequence = sequence as u64;
        let event = match ctx.state.cache.get(sequence) {
            Some(e) => e,
            None => match previous.take() {
                Some(e) if e.sequence == sequence => e,
                _ => Arc::new(event_by_sequence(ctx.conn, sequence)?),
            },
        };
        previous = Some(Arc::clone(&event));
        leases.push(Lease {
            token: LeaseToken {
                delivery: id,
                owner: Arc::clone(&owner),
                generation,
            },
            event,
            consumer: consumer_from(kind, consumer),
            target,
            attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            created_at: ts(created).map_err(&err)?,
            expires_at,
        });
    }
    Ok(leases)
}

/// Runs `sql` (which names the row with [`leased_by_token`]) for the token's delivery; fails
/// with [`StoreError::LeaseLost`] if the token no longer holds it.
fn settle(
    ctx: &mut Ctx<'_>,
    op: &'static str,
    sql: &'static str,
    token: &LeaseToken,
    extra: &[Arg<'_>],
) -> Result<()> {
    let owner: &str = &token.owner;
    let mut args: Vec<Arg<'_>> = vec![
        (":delivery", &token.delivery),
        (":owner", &owner),
        (":gen", &token.generation),
    ];
    args.extend_from_slice(extra);
    let changed = execute(ctx.conn, sql, &args).map_err(db_err(op))?;
    if changed == 0 {
        return Err(StoreError::LeaseLost {
            delivery: token.delivery,
        });
    }
    Ok(())
}

/// Replays to a subscription with a filter: the events in the range whose payload passes it, as
/// routing would have chosen them (API.md section 12). Read one at a time, so a long range does
/// not sit in memory.
fn replay_filtered(
    conn: &Connection,
    range: &[Arg<'_>],
    filter: &When,
    sub: &Subscription,
    state: DeliveryState,
    now: i64,
) -> rusqlite::Result<u64> {
    let mut select = prepare(
        conn,
        concat!(
            "SELECT sequence, payload FROM events \
         WHERE sequence > :after AND sequence <= :until AND ",
            type_passes!(),
            " ORDER BY sequence"
        ),
    )?;
    bind(&mut select, range)?;
    let mut insert = prepare(
        conn,
        "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, \
         created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?;
    let mut rows = select.raw_query();
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let sequence: i64 = row.get(0)?;
        let payload: String = row.get(1)?;
        let payload: serde_json::Value = serde_json::from_str(&payload).map_err(conv(1))?;
        if filter.holds(&payload) {
            insert.execute(rusqlite::params![
                sequence,
                ConsumerKind::Subscription,
                sub.id,
                sub.target,
                state,
                now
            ])?;
            n += 1;
        }
    }
    Ok(n)
}

/// Releases every parked delivery of `:target`, due at `:now` at the latest.
const UNPARK_ALL: &str = "UPDATE deliveries SET state = :waiting, due_ms = min(due_ms, :now) \
     WHERE target = :target AND state = :parked";

/// Releases the oldest parked delivery of `:target` (its breaker's next trial).
const UNPARK_OLDEST: &str = "UPDATE deliveries SET state = :waiting, due_ms = min(due_ms, :now) \
     WHERE id = (SELECT id FROM deliveries WHERE target = :target AND state = :parked \
     ORDER BY id LIMIT 1)";

impl SqliteStore {
    /// Runs [`UNPARK_ALL`] or [`UNPARK_OLDEST`]; how many deliveries it released.
    async fn release_parked(&self, target: &str, now: Timestamp, sql: &'static str) -> Result<u64> {
        let target = target.to_owned();
        self.call(move |ctx| {
            let now = now.as_unix_millis();
            let n = execute(ctx.conn, sql, &[(":target", &target), (":now", &now)])
                .map_err(db_err("unpark"))? as u64;
            ctx.work |= n > 0;
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn lease_due(
        &self,
        owner: &str,
        now: Timestamp,
        max: usize,
        lease_for: Duration,
    ) -> Result<Vec<Lease>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let owner: Arc<str> = owner.into();
        let lease_ms = i64::try_from(lease_for.as_millis()).unwrap_or(i64::MAX);
        let now = now.as_unix_millis();
        self.call(move |ctx| lease_in(ctx, owner, now, max, lease_ms))
            .await
    }

    async fn ack(&self, token: &LeaseToken, success: Success) -> Result<()> {
        let token = token.clone();
        self.call_settle(move |ctx| delivered(ctx, &token, &success))
            .await
    }

    async fn retry_at(&self, token: &LeaseToken, when: Timestamp, failure: Failure) -> Result<()> {
        let token = token.clone();
        self.call_settle(move |ctx| {
            let attempt = AttemptRow {
                at: failure.at,
                duration_ms: failure.duration_ms,
                status: failure.status,
                error: Some(&failure.error),
            };
            record_attempt(ctx, "retry_at", &token, &attempt)?;
            let sql = concat!(
                "UPDATE deliveries SET state = ",
                wait_state!(),
                ", due_ms = :due, attempts = attempts + 1, \
                 lease_owner = NULL, last_error = :error, last_status = :status, \
                 first_attempt_ms = coalesce(first_attempt_ms, :at), last_attempt_ms = :at WHERE ",
                leased_by_token!()
            );
            let (due, at) = (when.as_unix_millis(), failure.at.as_unix_millis());
            settle(
                ctx,
                "retry_at",
                sql,
                &token,
                &[
                    (":due", &due),
                    (":error", &failure.error),
                    (":status", &failure.status),
                    (":at", &at),
                ],
            )?;
            ctx.work = true;
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, token: &LeaseToken, failure: Failure) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| dead_letters::dead_letter_in(ctx, &token, &failure))
            .await
    }

    async fn release(&self, token: &LeaseToken, when: Timestamp) -> Result<()> {
        let token = token.clone();
        self.call_settle(move |ctx| {
            let sql = concat!(
                "UPDATE deliveries SET state = ",
                wait_state!(),
                ", due_ms = :due, lease_owner = NULL WHERE ",
                leased_by_token!()
            );
            let due = when.as_unix_millis();
            settle(ctx, "release", sql, &token, &[(":due", &due)])?;
            ctx.work = true;
            Ok(())
        })
        .await
    }

    async fn park(&self, token: &LeaseToken, until: Timestamp) -> Result<()> {
        let token = token.clone();
        self.call_settle(move |ctx| {
            let sql = concat!(
                "UPDATE deliveries SET state = CASE WHEN ",
                wait_state!(),
                " = :held THEN :held ELSE :parked END, due_ms = :due, lease_owner = NULL WHERE ",
                leased_by_token!()
            );
            let due = until.as_unix_millis();
            // No work to signal: a parked delivery is not leasable until it is unparked.
            settle(ctx, "park", sql, &token, &[(":due", &due)])?;
            Ok(())
        })
        .await
    }

    async fn unpark_one(&self, target: &str, now: Timestamp) -> Result<bool> {
        Ok(self.release_parked(target, now, UNPARK_OLDEST).await? > 0)
    }

    async fn parked_targets(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let err = db_err("parked_targets");
            let mut stmt = prepare(conn, PARKED_TARGETS).map_err(&err)?;
            bind(&mut stmt, &[]).map_err(&err)?;
            stmt.raw_query()
                .mapped(|r| r.get::<_, String>(0))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&err)
        })
        .await
    }

    async fn unpark(&self, target: &str, now: Timestamp) -> Result<u64> {
        self.release_parked(target, now, UNPARK_ALL).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.read(move |conn| {
            // One pass over the queue's rows for all three figures (three subqueries were
            // three scans); pending is every row not under a live lease.
            let mut stmt = prepare(
                conn,
                "SELECT count(*), \
                     coalesce(sum(state = :leased AND due_ms > :now), 0), \
                     min(CASE WHEN attempts > 0 THEN created_ms END), \
                     (SELECT count(*) FROM dead_letters) \
                     FROM deliveries",
            )
            .map_err(db_err("stats"))?;
            // A lease past its expiry is work waiting to be leased again, not work in flight.
            let now = Timestamp::now().as_unix_millis();
            bind(&mut stmt, &[(":now", &now)]).map_err(db_err("stats"))?;
            stmt.raw_query()
                .mapped(|r| {
                    let (all, in_flight) = (r.get::<_, i64>(0)?, r.get::<_, i64>(1)?);
                    Ok(QueueStats {
                        pending: all.saturating_sub(in_flight) as u64,
                        in_flight: in_flight as u64,
                        dead_letters: r.get::<_, i64>(3)? as u64,
                        oldest_retry: r.get::<_, Option<i64>>(2)?.map(ts).transpose()?,
                    })
                })
                .next()
                .transpose()
                .map_err(db_err("stats"))?
                .ok_or_else(|| db_err("stats")(rusqlite::Error::QueryReturnedNoRows))
        })
        .await
    }

    async fn dead_letters(&self, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
        dead_letters::list(self, limit, cursor).await
    }

    async fn redrive(&self, which: Selection, now: Timestamp) -> Result<u64> {
        self.call(move |ctx| dead_letters::redrive_in(ctx, &which, now))
            .await
    }

    async fn purge(&self, which: Selection) -> Result<u64> {
        self.call(move |ctx| dead_letters::purge_in(ctx, &which))
            .await
    }

    async fn replay(
        &self,
        after: u64,
        until: Option<u64>,
        filter: &TypeFilter,
        to: ReplayTo,
        now: Timestamp,
    ) -> Result<u64> {
        let globs = globs_param(filter)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let until = until.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
        self.call(move |ctx| {
            let err = db_err("replay");
            let now = now.as_unix_millis();
            let range: [Arg<'_>; 3] = [(":after", &after), (":until", &until), (":globs", &globs)];
            let enqueued = match &to {
                ReplayTo::Subscription(id) => {
                    let sub = subscription_in(ctx.conn, id)?.ok_or_else(|| StoreError::NotFound {
                        what: "subscription",
                        id: id.clone(),
                    })?;
                    let state = DeliveryState::waiting_if(sub.enabled);
                    if let Some(filter) = &sub.filter {
                        let n = replay_filtered(ctx.conn, &range, filter, &sub, state, now)
                            .map_err(&err)?;
                        ctx.work |= n > 0;
                        return Ok(n);
                    }
                    let sql = concat!(
                        "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, \
                         state, due_ms, created_ms) \
                         SELECT sequence, :webhook, :consumer, :target, :state, :now, :now \
                         FROM events WHERE sequence > :after AND sequence <= :until AND ",
                        type_passes!()
                    );
                    let mut args = range.to_vec();
                    args.extend_from_slice(&[
                        (":consumer", &sub.id),
                        (":target", &sub.target),
                        (":state", &state),
                        (":now", &now),
                    ]);
                    execute(ctx.conn, sql, &args).map_err(&err)? as u64
                }
                ReplayTo::Reactors => {
                    let Some(router) = ctx.state.router.clone() else {
                        return Ok(0);
                    };
                    let mut stmt = prepare(ctx.conn, concat!(
                            "SELECT ",
                            event_columns!(),
                            " FROM events WHERE sequence > :after AND sequence <= :until AND ",
                            type_passes!(),
                            " ORDER BY sequence"
                        ))
                        .map_err(&err)?;
                    bind(&mut stmt, &range).map_err(&err)?;
                    let events = stmt
                        .raw_query()
                        .mapped(event_from_row)
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(&err)?;
                    let mut insert = prepare(ctx.conn,
                            "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, \
                             target, state, due_ms, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                        )
                        .map_err(&err)?;
                    let mut routes = Vec::new();
                    let mut n = 0;
                    for event in &events {
                        routes.clear();
                        router.route(event, &mut routes);
                        for (consumer, target) in &routes {
                            if let Consumer::Reactor(name) = consumer {
                                insert
                                    .execute(rusqlite::params![
                                        event.sequence as i64,
                                        ConsumerKind::Reactor,
                                        name,
                                        target,
                                        DeliveryState::Waiting,
                                        now
                                    ])
                                    .map_err(&err)?;
                                n += 1;
                            }
                        }
                    }
                    n
                }
            };
            ctx.work |= enqueued > 0;
            Ok(enqueued)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        self.read(|conn| {
            let mut stmt = prepare(conn, NEXT_DUE).map_err(db_err("next_due"))?;
            bind(&mut stmt, &[]).map_err(db_err("next_due"))?;
            stmt.raw_query()
                .mapped(|r| r.get::<_, i64>(0))
                .next()
                .transpose()
                .and_then(|ms| ms.map(ts).transpose())
                .map_err(db_err("next_due"))
        })
        .await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nexus_event::{NewEvent, Pattern, WellKnown};
    use rusqlite::Connection;

    use super::*;
    use crate::sqlite::columns::{plan_once, reprepared};
    use crate::sqlite::schema;
    use crate::{DeliveryHistory, EventLog, Failure, NewSubscription, Subscriptions, Success};

    /// A subscription of `url` to every event.
    async fn subscribe(store: &SqliteStore, url: &str) {
        store
            .create_subscription(NewSubscription {
                url: url.into(),
                events: vec![Pattern::new("*").expect("glob")],
                secret: "s3cret".into(),
                ordered: false,
                filter: None,
            })
            .await
            .expect("subscription");
    }

    /// `n` payments, the `i`th with the payload `{"i": i}`.
    fn payments(n: i64) -> Vec<NewEvent> {
        (0..n)
            .map(|i| {
                NewEvent::new(WellKnown::PaymentReceived, "flowpay")
                    .payload(serde_json::json!({ "i": i }))
            })
            .collect()
    }

    /// One round of what a running server asks of the queue: events appended with their
    /// deliveries, leases, every way of settling one, the due time, stats, dead letters and
    /// their redrive, a delivery's history.
    async fn queue_round(store: &SqliteStore, round: i64) {
        // Deliveries are due when appended (the wall clock); each round leases later than that.
        let start = Timestamp::now().as_unix_millis() + 1_000 + 100_000 * round;
        let t = |ms: i64| Timestamp::from_unix_millis(start + ms).expect("time");
        let appended = store.append(payments(6)).await.expect("append");
        let mut leases = store
            .lease_due("w", t(0), 6, Duration::from_secs(10))
            .await
            .expect("lease");
        assert_eq!(leases.len(), 6, "round {round}: every delivery due");
        let failure = || Failure {
            error: "HTTP 500".into(),
            status: Some(500),
            at: t(1),
            duration_ms: 1,
        };
        let success = Success {
            status: Some(204),
            at: t(1),
            duration_ms: 1,
        };
        let target = leases[0].target.clone();
        let mut next = leases.drain(..);
        let mut token = || next.next().expect("a lease").token;
        store.ack(&token(), success.clone()).await.expect("ack");
        store
            .retry_at(&token(), t(5), failure())
            .await
            .expect("retry");
        store.release(&token(), t(5)).await.expect("release");
        store.park(&token(), t(60_000)).await.expect("park");
        store.park(&token(), t(60_000)).await.expect("park");
        store
            .dead_letter(&token(), failure())
            .await
            .expect("dead letter");
        assert_eq!(store.next_due().await.expect("next due"), Some(t(5)));
        assert_eq!(
            store.parked_targets().await.expect("parked"),
            vec![target.clone()]
        );
        assert!(store.unpark_one(&target, t(6)).await.expect("unpark one"));
        assert_eq!(store.unpark(&target, t(6)).await.expect("unpark"), 1);
        let stats = store.stats().await.expect("stats");
        assert_eq!(stats.pending, 4, "round {round}: {stats:?}");
        let dead = store.dead_letters(10, None).await.expect("dead letters");
        assert_eq!(
            store
                .redrive(Selection::Ids(vec![dead.items[0].id]), t(7))
                .await
                .expect("redrive"),
            1
        );
        for lease in store
            .lease_due("w", t(10), 10, Duration::from_secs(10))
            .await
            .expect("lease again")
        {
            store.ack(&lease.token, success.clone()).await.expect("ack");
        }
        let history = store
            .event_deliveries(appended[0].sequence, t(11))
            .await
            .expect("event deliveries");
        assert_eq!(history.len(), 1);
    }

    /// Each cached statement is parsed and planned once. Statements naming a state beside a
    /// partial index (`state < :parked` against `deliveries_due`'s `state < 2`) were prepared
    /// again by SQLite at every use while the states were bound as parameters: every lease,
    /// settle and `next_due` (a sixth of the server's CPU per publish in a profile was
    /// `sqlite3Reprepare`). Three rounds of queue work on one store must prepare none again (a
    /// use counts the re-preparations of the use before it, so the last round checks the second).
    #[tokio::test]
    async fn cached_statements_are_prepared_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("open");
        subscribe(&store, "http://127.0.0.1:4000/hook").await;
        let before = reprepared();
        for round in 0..3 {
            queue_round(&store, round).await;
        }
        assert_eq!(
            reprepared() - before,
            0,
            "SQLite prepared cached statements again (RUST_LOG=debug names them)"
        );
    }

    /// Without the event cache, a lease reads each event back from the log: once for all the
    /// deliveries of one event in the batch (one per subscription), each lease carrying the
    /// event its delivery is for.
    #[tokio::test]
    async fn a_lease_reads_an_old_event_once_for_all_its_deliveries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::builder(dir.path())
            .event_cache(0)
            .open()
            .expect("open");
        for i in 0..3 {
            subscribe(&store, &format!("http://127.0.0.1:4000/hook/{i}")).await;
        }
        let appended = store.append(payments(4)).await.expect("append");
        let later =
            Timestamp::from_unix_millis(Timestamp::now().as_unix_millis() + 1_000).expect("time");
        let leases = store
            .lease_due("w", later, 100, Duration::from_secs(10))
            .await
            .expect("lease");
        assert_eq!(leases.len(), 12, "three deliveries of each of four events");
        for (i, event) in appended.iter().enumerate() {
            let of_event: Vec<&Lease> = leases
                .iter()
                .filter(|l| l.event.sequence == event.sequence)
                .collect();
            assert_eq!(of_event.len(), 3, "event {}", event.sequence);
            for lease in &of_event {
                assert_eq!(lease.event.id, event.id);
                assert_eq!(lease.event.payload, serde_json::json!({ "i": i }));
                assert!(
                    Arc::ptr_eq(&lease.event, &of_event[0].event),
                    "event {} read more than once",
                    event.sequence
                );
            }
        }
    }

    /// The query plan of `sql` as the store prepares it (the states written in, on a connection
    /// that plans from the text alone), as SQLite reports it.
    fn plan(conn: &Connection, sql: impl Into<String>, args: &[Arg<'_>]) -> Vec<String> {
        // `prepare` keeps what it expands by the text's address, so its text lives for good.
        let sql: &'static str = Box::leak(sql.into().into_boxed_str());
        let mut stmt = prepare(conn, sql).expect("prepare");
        bind(&mut stmt, args).expect("bind");
        stmt.raw_query()
            .mapped(|r| r.get::<_, String>(3))
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan")
    }

    /// Leasing runs on the partial index `deliveries_due` (`WHERE state < 2`, parked deliveries
    /// left out) on a connection that plans from the SQL alone ([`plan_once`]): the states are
    /// written into the text, so SQLite sees the query fits the index without a bound value,
    /// and finding due work never scans the whole queue.
    #[test]
    fn leasing_and_next_due_use_the_due_index() {
        let conn = Connection::open_in_memory().expect("memory db");
        plan_once(&conn).expect("plan once");
        for migration in schema::MIGRATIONS {
            conn.execute_batch(migration).expect("schema");
        }
        let now: i64 = 0;
        let max: i64 = 10;
        let owner = "w";
        let in_due_order = |steps: &[String]| {
            steps
                .iter()
                .any(|step| step.starts_with("SEARCH d USING INDEX deliveries_due"))
                && !steps.iter().any(|step| step.contains("TEMP B-TREE"))
        };
        let lease = plan(
            &conn,
            format!("EXPLAIN QUERY PLAN {LEASE}"),
            &[
                (":owner", &owner),
                (":expires", &now),
                (":now", &now),
                (":max", &max),
            ],
        );
        assert!(in_due_order(&lease), "{lease:?}");
        let next = plan(&conn, format!("EXPLAIN QUERY PLAN {NEXT_DUE}"), &[]);
        assert!(
            next.iter()
                .any(|step| step.starts_with("SCAN d USING INDEX deliveries_due"))
                && !next.iter().any(|step| step.contains("TEMP B-TREE")),
            "{next:?}"
        );
        let target = String::from("http://x:80");
        for sql in [UNPARK_ALL, UNPARK_OLDEST] {
            let unpark = plan(
                &conn,
                format!("EXPLAIN QUERY PLAN {sql}"),
                &[(":target", &target), (":now", &now)],
            );
            assert!(
                unpark.iter().any(|step| step.contains("deliveries_parked"))
                    && !unpark.iter().any(|step| step.contains("TEMP B-TREE")),
                "{unpark:?}"
            );
        }
        let targets = plan(&conn, format!("EXPLAIN QUERY PLAN {PARKED_TARGETS}"), &[]);
        assert!(
            targets
                .iter()
                .any(|step| step.contains("deliveries_parked"))
                && !targets.iter().any(|step| step.contains("SCAN deliveries")),
            "{targets:?}"
        );
    }
}
