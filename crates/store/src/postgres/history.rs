//! The delivery history (API.md section 12). The settles write it in their own statements
//! (`queue.rs`, `dead_letters.rs`): every failed attempt becomes a row of `delivery_attempts`,
//! and a delivery that was acknowledged or became a dead letter moves from `deliveries` to
//! `delivery_history` with its id, so its attempts stay attached; an acknowledged one keeps the
//! attempt that delivered it inline (`ok_*` columns), so an ack writes one row. Reads join the queued and the
//! finished rows; pruning removes finished deliveries past the retention in bounded chunks.

use std::collections::HashMap;

use async_trait::async_trait;
use nexus_event::{EventId, Timestamp};
use tokio_postgres::Row;

use super::columns::{
    ConsumerKind, DeliveryState, Finished, consumer_from, corrupt, db_err, signed, status_of, ts,
    unsigned,
};
use super::subscriptions::subscription_in;
use super::{PgStore, get};
use crate::backend::{HistoryRow, StatusFlags, delivery_cursor, history_page, live_status};
use crate::error::{Result, StoreError};
use crate::model::{
    AttemptRecord, DeliveryQuery, DeliveryRecord, Page, SubscriptionStats, check_limit,
};
use crate::traits::DeliveryHistory;

/// The columns both halves of a history read give, queued rows first: id, event sequence,
/// event id, consumer kind and name, target, queue state (NULL when finished), due time,
/// outcome (NULL when queued), created time, and the inline successful attempt's start,
/// duration and status (NULL but on delivered rows).
macro_rules! queued_rows {
    () => {
        "SELECT d.id, d.event_sequence, e.id, d.consumer_kind, d.consumer, d.target, d.state, \
         d.due_ms, NULL::smallint, d.created_ms, NULL::bigint, NULL::bigint, NULL::integer \
         FROM deliveries d JOIN events e ON e.sequence = d.event_sequence"
    };
}

macro_rules! finished_rows {
    () => {
        "SELECT h.id, h.event_sequence, e.id, h.consumer_kind, h.consumer, h.target, \
         NULL::smallint, NULL::bigint, h.outcome, h.created_ms, h.ok_started_ms, \
         h.ok_duration_ms, h.ok_status \
         FROM delivery_history h JOIN events e ON e.sequence = h.event_sequence"
    };
}

/// A history row of the columns of [`queued_rows`] / [`finished_rows`].
fn history_row(r: &Row, now: i64) -> Result<HistoryRow> {
    let op = "delivery history";
    let unknown = |e| StoreError::Database {
        op,
        source: Box::new(e),
    };
    let (state, next_ms) = match get::<Option<i16>>(r, 6, op)? {
        Some(code) => {
            let queued = DeliveryState::from_code(code.into()).map_err(unknown)?;
            live_status(queued, get(r, 7, op)?, now)
        }
        None => {
            let code: i16 = get(r, 8, op)?;
            (
                Finished::from_code(code.into()).map_err(unknown)?.status(),
                None,
            )
        }
    };
    let event_id: String = get(r, 2, op)?;
    Ok(HistoryRow {
        id: get(r, 0, op)?,
        event_sequence: unsigned(get(r, 1, op)?),
        event_id: EventId::new(&event_id).map_err(corrupt(op))?,
        consumer: consumer_from(get(r, 3, op)?, get(r, 4, op)?)?,
        target: get(r, 5, op)?,
        state,
        next_ms,
        created_ms: get(r, 9, op)?,
        succeeded: match get::<Option<i64>>(r, 10, op)? {
            Some(started) => Some(AttemptRecord {
                at: ts(started)?,
                duration_ms: unsigned(get(r, 11, op)?),
                status: status_of(get(r, 12, op)?),
                error: None,
            }),
            None => None,
        },
    })
}

/// Attaches each row's attempts, oldest first (one query for all of them).
async fn with_attempts(
    client: &tokio_postgres::Client,
    rows: Vec<HistoryRow>,
) -> Result<Vec<DeliveryRecord>> {
    let op = "delivery attempts";
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let found = client
        .query(
            "SELECT delivery, started_ms, duration_ms, status, error FROM delivery_attempts \
             WHERE delivery = ANY($1) ORDER BY delivery, attempt",
            &[&ids],
        )
        .await
        .map_err(db_err(op))?;
    let mut attempts: HashMap<i64, Vec<AttemptRecord>> = HashMap::new();
    for r in &found {
        attempts
            .entry(get(r, 0, op)?)
            .or_default()
            .push(AttemptRecord {
                at: ts(get(r, 1, op)?)?,
                duration_ms: unsigned(get(r, 2, op)?),
                status: status_of(get(r, 3, op)?),
                error: get(r, 4, op)?,
            });
    }
    rows.into_iter()
        .map(|row| {
            let mine = attempts.remove(&row.id).unwrap_or_default();
            row.record(mine)
        })
        .collect()
}

#[async_trait]
impl DeliveryHistory for PgStore {
    async fn event_deliveries(&self, sequence: u64, now: Timestamp) -> Result<Vec<DeliveryRecord>> {
        let op = "event deliveries";
        let client = self.conn(op).await?;
        let rows = client
            .query(
                concat!(
                    queued_rows!(),
                    " WHERE d.event_sequence = $1 UNION ALL ",
                    finished_rows!(),
                    " WHERE h.event_sequence = $1 ORDER BY 1"
                ),
                &[&signed(sequence)],
            )
            .await
            .map_err(db_err(op))?;
        let now = now.as_unix_millis();
        let found = rows
            .iter()
            .map(|r| history_row(r, now))
            .collect::<Result<Vec<_>>>()?;
        with_attempts(&client, found).await
    }

    async fn subscription_deliveries(
        &self,
        id: &str,
        query: DeliveryQuery,
    ) -> Result<Page<DeliveryRecord>> {
        let limit = check_limit(query.limit)?;
        let before = delivery_cursor(query.cursor.as_deref())?;
        let flags = StatusFlags::of(query.state);
        let now = query.now.as_unix_millis();
        let op = "subscription deliveries";
        let client = self.conn(op).await?;
        if subscription_in(&client, id).await?.is_none() {
            return Err(StoreError::NotFound {
                what: "subscription",
                id: id.to_owned(),
            });
        }
        let rows = client
            .query(
                concat!(
                    queued_rows!(),
                    " WHERE d.consumer_kind = $1 AND d.consumer = $2 AND d.event_sequence > $3 \
                     AND d.id < $4 AND $5 AND ( \
                     ($7 AND (d.state IN ($12, $13) OR (d.state = $14 AND d.due_ms <= $17))) \
                     OR ($8 AND d.state = $14 AND d.due_ms > $17) \
                     OR ($9 AND d.state = $15)) \
                     UNION ALL ",
                    finished_rows!(),
                    " WHERE h.consumer_kind = $1 AND h.consumer = $2 AND h.event_sequence > $3 \
                     AND h.id < $4 AND $6 AND (($10 AND h.outcome = $16) \
                     OR ($11 AND h.outcome = $18)) \
                     ORDER BY 1 DESC LIMIT $19"
                ),
                &[
                    &ConsumerKind::Subscription.code(),
                    &id,
                    &signed(query.after),
                    &before,
                    &flags.any_queued(),
                    &flags.any_finished(),
                    &flags.pending,
                    &flags.in_flight,
                    &flags.held,
                    &flags.delivered,
                    &flags.dead,
                    &DeliveryState::Waiting.code(),
                    &DeliveryState::Parked.code(),
                    &DeliveryState::Leased.code(),
                    &DeliveryState::Held.code(),
                    &Finished::Delivered.code(),
                    &now,
                    &Finished::Dead.code(),
                    &i64::try_from(limit + 1).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_err(op))?;
        let found = rows
            .iter()
            .map(|r| history_row(r, now))
            .collect::<Result<Vec<_>>>()?;
        let (page, next_cursor) = history_page(found, limit);
        Ok(Page {
            items: with_attempts(&client, page).await?,
            next_cursor,
        })
    }

    async fn subscription_stats(
        &self,
        ids: &[String],
        since: Timestamp,
    ) -> Result<Vec<SubscriptionStats>> {
        let op = "subscription stats";
        let client = self.conn(op).await?;
        let rows = client
            .query(
                "SELECT s.id, \
                 (SELECT count(*) FROM delivery_history WHERE consumer_kind = $2 \
                  AND consumer = s.id AND outcome = $4 AND finished_ms >= $3), \
                 (SELECT count(*) FROM delivery_attempts WHERE error IS NOT NULL \
                  AND started_ms >= $3 AND delivery IN \
                  (SELECT id FROM deliveries WHERE consumer_kind = $2 AND consumer = s.id \
                   UNION ALL SELECT id FROM delivery_history WHERE consumer_kind = $2 \
                   AND consumer = s.id AND finished_ms >= $3)), \
                 (SELECT count(*) FROM deliveries WHERE consumer_kind = $2 AND consumer = s.id), \
                 (SELECT count(*) FROM delivery_history WHERE consumer_kind = $2 \
                  AND consumer = s.id AND outcome = $5 AND finished_ms >= $3) \
                 FROM unnest($1::text[]) AS s(id)",
                &[
                    &ids,
                    &ConsumerKind::Subscription.code(),
                    &since.as_unix_millis(),
                    &Finished::Delivered.code(),
                    &Finished::Dead.code(),
                ],
            )
            .await
            .map_err(db_err(op))?;
        let mut by_id = HashMap::with_capacity(rows.len());
        for r in &rows {
            let id: String = get(r, 0, op)?;
            by_id.insert(
                id,
                SubscriptionStats {
                    delivered: unsigned(get(r, 1, op)?),
                    failed: unsigned(get(r, 2, op)?),
                    pending: unsigned(get(r, 3, op)?),
                    dead: unsigned(get(r, 4, op)?),
                },
            );
        }
        Ok(ids
            .iter()
            .map(|id| by_id.get(id).copied().unwrap_or_default())
            .collect())
    }

    /// On a connection of its own, not the writer's: a chunk of pruning never holds up the
    /// group commit of appends and settles.
    async fn prune_history(&self, before: Timestamp, max: usize) -> Result<u64> {
        let op = "prune history";
        let client = self.conn(op).await?;
        // Instances pruning at once skip each other's rows rather than wait on them.
        let row = client
            .query_one(
                "WITH h AS (DELETE FROM delivery_history WHERE ctid IN \
                 (SELECT ctid FROM delivery_history WHERE finished_ms < $1 LIMIT $2 \
                  FOR UPDATE SKIP LOCKED) RETURNING id), \
                 a AS (DELETE FROM delivery_attempts WHERE delivery IN (SELECT id FROM h)) \
                 SELECT count(*) FROM h",
                &[
                    &before.as_unix_millis(),
                    &i64::try_from(max).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_err(op))?;
        Ok(unsigned(get(&row, 0, op)?))
    }
}
