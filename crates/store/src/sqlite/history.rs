//! The delivery history (API.md section 12): every failed attempt is written in the same job
//! as its settle ([`record_attempt`]), and a delivery that became a dead letter moves from
//! `deliveries` to `delivery_history` ([`finish`]) with its id, so its attempts stay attached.
//! An acknowledged delivery moves there with the attempt that delivered it inline
//! ([`delivered`]): one row written per ack. Reads join the queued and the finished rows; pruning removes
//! finished deliveries past the retention, oldest first, in bounded chunks.

use async_trait::async_trait;
use nexus_event::{EventId, Timestamp};

use super::SqliteStore;
use super::columns::{Arg, ConsumerKind, DeliveryState, Finished, bind, consumer_from, conv};
use super::columns::{db_err, execute, prepare, status_of, ts};
use super::subscriptions::subscription_in;
use super::writer::Ctx;
use crate::backend::{HistoryRow, StatusFlags, delivery_cursor, history_page, live_status};
use crate::error::{Result, StoreError};
use crate::model::{
    AttemptRecord, DeliveryQuery, DeliveryRecord, LeaseToken, Page, SubscriptionStats, Success,
    check_limit, started_ms,
};
use crate::traits::DeliveryHistory;

/// One settled attempt, as the settle calls give it.
pub(super) struct AttemptRow<'a> {
    pub(super) at: Timestamp,
    pub(super) duration_ms: u64,
    pub(super) status: Option<u16>,
    pub(super) error: Option<&'a str>,
}

/// Keeps the attempt the token's delivery just made, numbered after the attempts it counts;
/// fails with [`StoreError::LeaseLost`] (writing nothing) when the token no longer holds it.
/// Runs before the settle changes the row.
pub(super) fn record_attempt(
    ctx: &mut Ctx<'_>,
    op: &'static str,
    token: &LeaseToken,
    attempt: &AttemptRow<'_>,
) -> Result<()> {
    let owner: &str = &token.owner;
    let started = started_ms(attempt.at, attempt.duration_ms);
    let duration = i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX);
    let written = execute(
        ctx.conn,
        "INSERT INTO delivery_attempts (delivery, attempt, started_ms, duration_ms, status, error) \
         SELECT id, attempts + 1, :started, :duration, :status, :error FROM deliveries \
         WHERE id = :delivery AND state = :leased AND lease_owner = :owner AND lease_gen = :gen",
        &[
            (":delivery", &token.delivery),
            (":owner", &owner),
            (":gen", &token.generation),
            (":started", &started),
            (":duration", &duration),
            (":status", &attempt.status),
            (":error", &attempt.error),
        ],
    )
    .map_err(db_err(op))?;
    if written == 0 {
        return Err(StoreError::LeaseLost {
            delivery: token.delivery,
        });
    }
    Ok(())
}

/// Moves the token's delivery, acknowledged, from the queue to the history, with the attempt
/// that delivered it inline; fails with [`StoreError::LeaseLost`] (writing nothing) when the
/// token no longer holds it.
///
/// The row is deleted first and its columns taken from the `RETURNING`, then written with
/// `INSERT ... VALUES`. The other order (`INSERT ... SELECT` from the queue, then `DELETE`) made
/// SQLite open a statement journal for the insert, a copy of every page it touched (an
/// `INSERT ... SELECT` that gives an `INTEGER PRIMARY KEY` its value may abort halfway for
/// all SQLite knows): about a tenth of the writer's time in a drain to 10 subscriptions.
pub(super) fn delivered(ctx: &mut Ctx<'_>, token: &LeaseToken, success: &Success) -> Result<()> {
    let err = db_err("ack");
    let owner: &str = &token.owner;
    let mut stmt = prepare(
        ctx.conn,
        "DELETE FROM deliveries \
         WHERE id = :delivery AND state = :leased AND lease_owner = :owner AND lease_gen = :gen \
         RETURNING event_sequence, consumer_kind, consumer, target, created_ms",
    )
    .map_err(&err)?;
    bind(
        &mut stmt,
        &[
            (":delivery", &token.delivery),
            (":owner", &owner),
            (":gen", &token.generation),
        ],
    )
    .map_err(&err)?;
    // SQLite makes every change of a statement with `RETURNING` at its first step, so reading
    // the one row and dropping the rest of the statement leaves the delete done.
    let row = stmt
        .raw_query()
        .mapped(|r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, ConsumerKind>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .next()
        .transpose()
        .map_err(&err)?;
    drop(stmt);
    let Some((sequence, kind, consumer, target, created)) = row else {
        return Err(StoreError::LeaseLost {
            delivery: token.delivery,
        });
    };
    let started = started_ms(success.at, success.duration_ms);
    let duration = i64::try_from(success.duration_ms).unwrap_or(i64::MAX);
    let at = success.at.as_unix_millis();
    execute(
        ctx.conn,
        "INSERT INTO delivery_history (id, event_sequence, consumer_kind, consumer, target, \
         outcome, created_ms, finished_ms, ok_started_ms, ok_duration_ms, ok_status) \
         VALUES (:delivery, :sequence, :kind, :consumer, :target, :outcome, :created, :at, \
         :started, :duration, :status)",
        &[
            (":delivery", &token.delivery),
            (":sequence", &sequence),
            (":kind", &kind),
            (":consumer", &consumer),
            (":target", &target),
            (":outcome", &Finished::Delivered),
            (":created", &created),
            (":at", &at),
            (":started", &started),
            (":duration", &duration),
            (":status", &success.status),
        ],
    )
    .map_err(&err)?;
    Ok(())
}

/// Moves a delivery that ended (`how`) at `at` from the queue to the history.
pub(super) fn finish(
    ctx: &mut Ctx<'_>,
    op: &'static str,
    delivery: i64,
    how: Finished,
    at: Timestamp,
) -> Result<()> {
    let err = db_err(op);
    let at = at.as_unix_millis();
    execute(
        ctx.conn,
        "INSERT INTO delivery_history (id, event_sequence, consumer_kind, consumer, target, \
         outcome, created_ms, finished_ms) \
         SELECT id, event_sequence, consumer_kind, consumer, target, :outcome, created_ms, :at \
         FROM deliveries WHERE id = :delivery",
        &[(":delivery", &delivery), (":outcome", &how), (":at", &at)],
    )
    .map_err(&err)?;
    execute(
        ctx.conn,
        "DELETE FROM deliveries WHERE id = :delivery",
        &[(":delivery", &delivery)],
    )
    .map_err(&err)?;
    Ok(())
}

/// The columns both halves of a history read give, queued rows first: id, event sequence,
/// event id, consumer kind and name, target, queue state (NULL when finished), due time,
/// outcome (NULL when queued), created time, and the inline successful attempt's start,
/// duration and status (NULL but on delivered rows).
macro_rules! queued_rows {
    () => {
        "SELECT d.id, d.event_sequence, e.id, d.consumer_kind, d.consumer, d.target, d.state, \
         d.due_ms, NULL, d.created_ms, NULL, NULL, NULL \
         FROM deliveries d JOIN events e ON e.sequence = d.event_sequence"
    };
}

macro_rules! finished_rows {
    () => {
        "SELECT h.id, h.event_sequence, e.id, h.consumer_kind, h.consumer, h.target, NULL, NULL, \
         h.outcome, h.created_ms, h.ok_started_ms, h.ok_duration_ms, h.ok_status \
         FROM delivery_history h JOIN events e ON e.sequence = h.event_sequence"
    };
}

/// The state filter on queued rows `d`, with the flags as parameters.
macro_rules! queued_filter {
    () => {
        "((:pending AND (d.state IN (:waiting, :parked) OR (d.state = :leased AND d.due_ms <= :now))) \
         OR (:in_flight AND d.state = :leased AND d.due_ms > :now) \
         OR (:held_too AND d.state = :held))"
    };
}

/// The state filter on finished rows `h`.
macro_rules! finished_filter {
    () => {
        "((:delivered_too AND h.outcome = :delivered) OR (:dead_too AND h.outcome = :dead))"
    };
}

/// Reads history rows with `sql` (the columns of [`queued_rows`] / [`finished_rows`]).
fn rows(
    conn: &rusqlite::Connection,
    sql: &'static str,
    args: &[Arg<'_>],
    now: i64,
) -> Result<Vec<HistoryRow>> {
    let err = db_err("delivery history");
    let mut stmt = prepare(conn, sql).map_err(&err)?;
    bind(&mut stmt, args).map_err(&err)?;
    stmt.raw_query()
        .mapped(|r| {
            let event_id: String = r.get(2)?;
            let kind: ConsumerKind = r.get(3)?;
            let (state, next_ms) = match r.get::<_, Option<DeliveryState>>(6)? {
                Some(queued) => live_status(queued, r.get(7)?, now),
                None => (r.get::<_, Finished>(8)?.status(), None),
            };
            Ok(HistoryRow {
                id: r.get(0)?,
                event_sequence: r.get::<_, i64>(1)? as u64,
                event_id: EventId::new(&event_id).map_err(conv(2))?,
                consumer: consumer_from(kind, r.get(4)?),
                target: r.get(5)?,
                state,
                next_ms,
                created_ms: r.get(9)?,
                succeeded: match r.get::<_, Option<i64>>(10)? {
                    Some(started) => Some(AttemptRecord {
                        at: ts(started)?,
                        duration_ms: u64::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
                        status: status_of(r.get(12)?),
                        error: None,
                    }),
                    None => None,
                },
            })
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&err)
}

/// Attaches each row's attempts, oldest first.
fn with_attempts(
    conn: &rusqlite::Connection,
    rows: Vec<HistoryRow>,
) -> Result<Vec<DeliveryRecord>> {
    let err = db_err("delivery attempts");
    let mut stmt = prepare(
        conn,
        "SELECT started_ms, duration_ms, status, error FROM delivery_attempts \
             WHERE delivery = ?1 ORDER BY attempt",
    )
    .map_err(&err)?;
    rows.into_iter()
        .map(|row| {
            let attempts = stmt
                .query_map([row.id], |r| {
                    Ok(AttemptRecord {
                        at: ts(r.get(0)?)?,
                        duration_ms: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        status: status_of(r.get(2)?),
                        error: r.get(3)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(&err)?;
            row.record(attempts)
        })
        .collect()
}

#[async_trait]
impl DeliveryHistory for SqliteStore {
    async fn event_deliveries(&self, sequence: u64, now: Timestamp) -> Result<Vec<DeliveryRecord>> {
        let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
        let now = now.as_unix_millis();
        self.read(move |conn| {
            let sql = concat!(
                queued_rows!(),
                " WHERE d.event_sequence = :sequence UNION ALL ",
                finished_rows!(),
                " WHERE h.event_sequence = :sequence ORDER BY 1"
            );
            let found = rows(conn, sql, &[(":sequence", &sequence)], now)?;
            with_attempts(conn, found)
        })
        .await
    }

    async fn subscription_deliveries(
        &self,
        id: &str,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryRecord>> {
        let limit = check_limit(query.limit)?;
        let before = delivery_cursor(query.cursor.as_deref())?;
        let flags = StatusFlags::of(query.state);
        let after = i64::try_from(query.after).unwrap_or(i64::MAX);
        let now = query.now.as_unix_millis();
        let id = id.to_owned();
        self.read(move |conn| {
            if subscription_in(conn, &id)?.is_none() {
                return Err(StoreError::NotFound {
                    what: "subscription",
                    id,
                });
            }
            let sql = concat!(
                queued_rows!(),
                " WHERE d.consumer_kind = :webhook AND d.consumer = :id \
                 AND d.event_sequence > :after AND d.id < :before AND :queued AND ",
                queued_filter!(),
                " UNION ALL ",
                finished_rows!(),
                " WHERE h.consumer_kind = :webhook AND h.consumer = :id \
                 AND h.event_sequence > :after AND h.id < :before AND :finished AND ",
                finished_filter!(),
                " ORDER BY 1 DESC LIMIT :fetch"
            );
            let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
            let found = rows(
                conn,
                sql,
                &[
                    (":id", &id),
                    (":after", &after),
                    (":before", &before),
                    (":now", &now),
                    (":fetch", &fetch),
                    (":queued", &flags.any_queued()),
                    (":finished", &flags.any_finished()),
                    (":pending", &flags.pending),
                    (":in_flight", &flags.in_flight),
                    (":held_too", &flags.held),
                    (":delivered_too", &flags.delivered),
                    (":dead_too", &flags.dead),
                ],
                now,
            )?;
            let (page, next_cursor) = history_page(found, limit);
            Ok(Page {
                items: with_attempts(conn, page)?,
                next_cursor,
            })
        })
        .await
    }

    async fn subscription_stats(
        &self,
        ids: &[String],
        since: Timestamp,
    ) -> Result<Vec<SubscriptionStats>> {
        let ids = ids.to_vec();
        let since = since.as_unix_millis();
        self.read(move |conn| {
            let err = db_err("subscription stats");
            let mut stmt = prepare(
                conn,
                "SELECT \
                     (SELECT count(*) FROM delivery_history WHERE consumer_kind = :webhook \
                      AND consumer = :id AND outcome = :delivered AND finished_ms >= :since), \
                     (SELECT count(*) FROM delivery_attempts WHERE error IS NOT NULL \
                      AND started_ms >= :since AND delivery IN \
                      (SELECT id FROM deliveries WHERE consumer_kind = :webhook AND consumer = :id \
                       UNION ALL SELECT id FROM delivery_history WHERE consumer_kind = :webhook \
                       AND consumer = :id AND finished_ms >= :since)), \
                     (SELECT count(*) FROM deliveries WHERE consumer_kind = :webhook \
                      AND consumer = :id), \
                     (SELECT count(*) FROM delivery_history WHERE consumer_kind = :webhook \
                      AND consumer = :id AND outcome = :dead AND finished_ms >= :since)",
            )
            .map_err(&err)?;
            let mut all = Vec::with_capacity(ids.len());
            for id in &ids {
                bind(&mut stmt, &[(":id", id), (":since", &since)]).map_err(&err)?;
                let stats = stmt
                    .raw_query()
                    .mapped(|r| {
                        let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
                        Ok(SubscriptionStats {
                            delivered: n(0)?,
                            failed: n(1)?,
                            pending: n(2)?,
                            dead: n(3)?,
                        })
                    })
                    .next()
                    .transpose()
                    .map_err(&err)?
                    .unwrap_or_default();
                all.push(stats);
            }
            Ok(all)
        })
        .await
    }

    async fn prune_history(&self, before: Timestamp, max: usize) -> Result<u64> {
        let before = before.as_unix_millis();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.call(move |ctx| {
            let err = db_err("prune history");
            let args: [Arg<'_>; 2] = [(":before", &before), (":max", &max)];
            execute(
                ctx.conn,
                "DELETE FROM delivery_attempts WHERE delivery IN (SELECT id FROM delivery_history \
                 WHERE finished_ms < :before ORDER BY finished_ms LIMIT :max)",
                &args,
            )
            .map_err(&err)?;
            let pruned = execute(
                ctx.conn,
                "DELETE FROM delivery_history WHERE id IN (SELECT id FROM delivery_history \
                 WHERE finished_ms < :before ORDER BY finished_ms LIMIT :max)",
                &args,
            )
            .map_err(&err)?;
            Ok(pruned as u64)
        })
        .await
    }
}
