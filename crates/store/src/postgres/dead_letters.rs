//! Dead letters: moving a delivery's last failure there, listing them, redriving and purging.
//! Redrive and purge count only the ids that exist; unknown ids are skipped, not an error.

use nexus_event::{EventId, EventType, Timestamp};

use super::columns::{
    ConsumerKind, DeliveryState, Finished, consumer_from, corrupt, db_err, signed, status_of, ts,
    unsigned,
};
use super::queue::leased_by_token;
use super::writer::Ctx;
use super::{PgStore, get};
use crate::error::{Result, StoreError};
use crate::model::{DeadLetter, Failure, LeaseToken, Page, Selection, check_limit};

/// The last attempt failed: count it and move the delivery to the dead letters, or hold it if
/// its subscription is disabled (API.md section 4: never dead-lettered while disabled).
pub(super) async fn dead_letter_in(
    ctx: &mut Ctx,
    token: LeaseToken,
    failure: Failure,
) -> Result<()> {
    let err = db_err("dead_letter");
    let owner: &str = &token.owner;
    let at = failure.at.as_unix_millis();
    let status = failure.status.map(i32::from);
    let leased = DeliveryState::Leased.code();
    let duration = signed(failure.duration_ms);
    // Each statement keeps the attempt in the history with the settle (`attempts` counts it
    // once updated; a moved row counts it as `attempts + 1`).
    let held = ctx
        .client
        .execute(
            concat!(
                "WITH u AS (UPDATE deliveries SET state = $5, due_ms = $6, \
                 attempts = attempts + 1, \
                 lease_owner = NULL, lease_instance = NULL, last_error = $7, last_status = $8, \
                 first_attempt_ms = coalesce(first_attempt_ms, $6), last_attempt_ms = $6 \
                 WHERE ",
                leased_by_token!(),
                " AND consumer_kind = $9 \
                 AND consumer IN (SELECT id FROM subscriptions WHERE NOT enabled) \
                 RETURNING id, attempts) \
                 INSERT INTO delivery_attempts (delivery, attempt, started_ms, duration_ms, \
                 status, error) SELECT id, attempts, $6 - $10::bigint, $10::bigint, $8, $7 FROM u"
            ),
            &[
                &token.delivery,
                &leased,
                &owner,
                &token.generation,
                &DeliveryState::Held.code(),
                &at,
                &failure.error,
                &status,
                &ConsumerKind::Subscription.code(),
                &duration,
            ],
        )
        .await
        .map_err(&err)?;
    if held > 0 {
        return Ok(());
    }
    let moved = ctx
        .client
        .execute(
            concat!(
                "WITH d AS (DELETE FROM deliveries WHERE ",
                leased_by_token!(),
                " RETURNING *), \
                 h AS (INSERT INTO delivery_history (id, event_sequence, consumer_kind, consumer, \
                 target, outcome, created_ms, finished_ms) \
                 SELECT id, event_sequence, consumer_kind, consumer, target, $8::smallint, created_ms, $7 \
                 FROM d), \
                 a AS (INSERT INTO delivery_attempts (delivery, attempt, started_ms, duration_ms, \
                 status, error) SELECT id, attempts + 1, $7 - $9::bigint, $9::bigint, $6, $5 FROM d) \
                 INSERT INTO dead_letters (event_sequence, event_id, event_type, payload, \
                 consumer_kind, consumer, target, error, last_status, attempts, created_ms, \
                 first_attempt_ms, failed_ms) \
                 SELECT d.event_sequence, e.id, e.type, e.payload, d.consumer_kind, d.consumer, \
                 d.target, $5, $6, d.attempts + 1, d.created_ms, \
                 coalesce(d.first_attempt_ms, $7), $7 \
                 FROM d JOIN events e ON e.sequence = d.event_sequence"
            ),
            &[
                &token.delivery,
                &leased,
                &owner,
                &token.generation,
                &failure.error,
                &status,
                &at,
                &Finished::Dead.code(),
                &duration,
            ],
        )
        .await
        .map_err(&err)?;
    if moved == 0 {
        return Err(StoreError::LeaseLost {
            delivery: token.delivery,
        });
    }
    Ok(())
}

/// Dead letters, newest first; see [`crate::DeliveryQueue::dead_letters`].
pub(super) async fn list(
    store: &PgStore,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<DeadLetter>> {
    let limit = check_limit(limit)?;
    let before = crate::backend::dead_letter_cursor(cursor)?;
    let op = "dead_letters";
    let client = store.conn(op).await?;
    let rows = client
        .query(
            "SELECT id, event_id, event_type, event_sequence, consumer_kind, consumer, target, \
             attempts, error, last_status, created_ms, first_attempt_ms, failed_ms, payload \
             FROM dead_letters WHERE id < $1 ORDER BY id DESC LIMIT $2",
            &[&before, &i64::try_from(limit + 1).unwrap_or(i64::MAX)],
        )
        .await
        .map_err(db_err(op))?;
    let mut items = rows
        .iter()
        .map(|r| {
            let event_id: String = get(r, 1, op)?;
            let event_type: String = get(r, 2, op)?;
            let payload: String = get(r, 13, op)?;
            Ok(DeadLetter {
                id: get(r, 0, op)?,
                event_id: EventId::new(&event_id).map_err(corrupt(op))?,
                event_type: EventType::new(&event_type).map_err(corrupt(op))?,
                event_sequence: unsigned(get(r, 3, op)?),
                consumer: consumer_from(get(r, 4, op)?, get(r, 5, op)?)?,
                target: get(r, 6, op)?,
                attempts: u32::try_from(get::<i32>(r, 7, op)?).unwrap_or(0),
                last_error: get(r, 8, op)?,
                last_status: status_of(get(r, 9, op)?),
                created_at: ts(get(r, 10, op)?)?,
                first_attempt_at: get::<Option<i64>>(r, 11, op)?.map(ts).transpose()?,
                failed_at: ts(get(r, 12, op)?)?,
                payload: serde_json::from_str(&payload).map_err(corrupt(op))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// The ids of a selection as a `bigint[]` parameter, `None` for all.
fn ids_param(which: &Selection) -> Option<Vec<i64>> {
    match which {
        Selection::All => None,
        Selection::Ids(ids) => Some(ids.clone()),
    }
}

/// Moves dead letters back to the queue, due at `now`, attempts reset; how many moved. A
/// webhook one goes to its subscription's current target and state; one whose subscription was
/// deleted stays a dead letter (it can still be purged). Ids that do not exist are skipped.
pub(super) async fn redrive_in(ctx: &mut Ctx, which: Selection, now: Timestamp) -> Result<u64> {
    let moved = ctx
        .client
        .execute(
            "WITH m AS (DELETE FROM dead_letters d \
             WHERE ($1::bigint[] IS NULL OR d.id = ANY($1)) \
             AND (d.consumer_kind <> $2 OR d.consumer IN (SELECT id FROM subscriptions)) \
             RETURNING d.*) \
             INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, \
             due_ms, attempts, created_ms) \
             SELECT m.event_sequence, m.consumer_kind, m.consumer, coalesce(s.target, m.target), \
             CASE WHEN s.enabled = false THEN $3::smallint ELSE $4::smallint END, $5::bigint, 0, \
             m.created_ms \
             FROM m LEFT JOIN subscriptions s ON m.consumer_kind = $2 AND s.id = m.consumer",
            &[
                &ids_param(&which),
                &ConsumerKind::Subscription.code(),
                &DeliveryState::Held.code(),
                &DeliveryState::Waiting.code(),
                &now.as_unix_millis(),
            ],
        )
        .await
        .map_err(db_err("redrive"))?;
    ctx.work |= moved > 0;
    Ok(moved)
}

/// Deletes dead letters; how many. Ids that do not exist are skipped.
pub(super) async fn purge_in(ctx: &mut Ctx, which: Selection) -> Result<u64> {
    ctx.client
        .execute(
            "DELETE FROM dead_letters WHERE $1::bigint[] IS NULL OR id = ANY($1)",
            &[&ids_param(&which)],
        )
        .await
        .map_err(db_err("purge"))
}
