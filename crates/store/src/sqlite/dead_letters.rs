//! Dead letters: moving a delivery's last failure there, listing them, redriving and purging.
//! Redrive and purge count only the ids that exist; unknown ids are skipped, not an error.

use std::collections::HashSet;

use nexus_event::{EventId, EventType, Timestamp};

use super::SqliteStore;
use super::columns::{
    Arg, Finished, bind, consumer_from, conv, db_err, execute, prepare, status_of, ts,
};
use super::history::{AttemptRow, finish, record_attempt};
use super::writer::Ctx;
use crate::error::{Result, StoreError};
use crate::model::{DeadLetter, Failure, LeaseToken, Page, Selection, check_limit};

/// The last attempt failed: count it and move the delivery to the dead letters, or hold it if
/// its subscription is disabled (API.md section 4: never dead-lettered while disabled).
pub(super) fn dead_letter_in(
    ctx: &mut Ctx<'_>,
    token: &LeaseToken,
    failure: &Failure,
) -> Result<()> {
    let err = db_err("dead_letter");
    let attempt = AttemptRow {
        at: failure.at,
        duration_ms: failure.duration_ms,
        status: failure.status,
        error: Some(&failure.error),
    };
    record_attempt(ctx, "dead_letter", token, &attempt)?;
    let owner: &str = &token.owner;
    let at = failure.at.as_unix_millis();
    let args: [Arg<'_>; 6] = [
        (":delivery", &token.delivery),
        (":owner", &owner),
        (":gen", &token.generation),
        (":error", &failure.error),
        (":status", &failure.status),
        (":at", &at),
    ];
    // A disabled subscription's deliveries are never dead-lettered: count the attempt and hold
    // it until the subscription is enabled again.
    let held = execute(
        ctx.conn,
        "UPDATE deliveries SET state = :held, due_ms = :at, attempts = attempts + 1, \
         lease_owner = NULL, last_error = :error, last_status = :status, \
         first_attempt_ms = coalesce(first_attempt_ms, :at), last_attempt_ms = :at \
         WHERE id = :delivery AND state = :leased AND lease_owner = :owner AND lease_gen = :gen \
         AND consumer_kind = :webhook \
         AND consumer IN (SELECT id FROM subscriptions WHERE enabled = 0)",
        &args,
    )
    .map_err(&err)?;
    if held > 0 {
        return Ok(());
    }
    let moved = execute(
        ctx.conn,
        "INSERT INTO dead_letters (event_sequence, event_id, event_type, payload, \
         consumer_kind, consumer, target, error, last_status, attempts, created_ms, \
         first_attempt_ms, failed_ms) \
         SELECT d.event_sequence, e.id, e.type, e.payload, d.consumer_kind, d.consumer, \
         d.target, :error, :status, d.attempts + 1, d.created_ms, \
         coalesce(d.first_attempt_ms, :at), :at \
         FROM deliveries d JOIN events e ON e.sequence = d.event_sequence \
         WHERE d.id = :delivery AND d.state = :leased AND d.lease_owner = :owner \
         AND d.lease_gen = :gen",
        &args,
    )
    .map_err(&err)?;
    if moved == 0 {
        return Err(StoreError::LeaseLost {
            delivery: token.delivery,
        });
    }
    finish(
        ctx,
        "dead_letter",
        token.delivery,
        Finished::Dead,
        failure.at,
    )
}

/// Dead letters, newest first; see [`crate::DeliveryQueue::dead_letters`].
pub(super) async fn list(
    store: &SqliteStore,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Page<DeadLetter>> {
    let limit = check_limit(limit)?;
    let before = crate::backend::dead_letter_cursor(cursor)?;
    store
        .read(move |conn| {
            let err = db_err("dead_letters");
            let mut stmt = prepare(
                conn,
                "SELECT id, event_id, event_type, event_sequence, consumer_kind, consumer, \
                     target, attempts, error, last_status, created_ms, first_attempt_ms, \
                     failed_ms, payload \
                     FROM dead_letters WHERE id < :before ORDER BY id DESC LIMIT :limit",
            )
            .map_err(&err)?;
            let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
            bind(&mut stmt, &[(":before", &before), (":limit", &fetch)]).map_err(&err)?;
            let mut items = stmt
                .raw_query()
                .mapped(|r| {
                    let event_id: String = r.get(1)?;
                    let event_type: String = r.get(2)?;
                    let payload: String = r.get(13)?;
                    Ok(DeadLetter {
                        id: r.get(0)?,
                        event_id: EventId::new(&event_id).map_err(conv(1))?,
                        event_type: EventType::new(&event_type).map_err(conv(2))?,
                        event_sequence: r.get::<_, i64>(3)? as u64,
                        consumer: consumer_from(r.get(4)?, r.get(5)?),
                        target: r.get(6)?,
                        attempts: u32::try_from(r.get::<_, i64>(7)?).unwrap_or(u32::MAX),
                        last_error: r.get(8)?,
                        last_status: status_of(r.get(9)?),
                        created_at: ts(r.get(10)?)?,
                        first_attempt_at: r.get::<_, Option<i64>>(11)?.map(ts).transpose()?,
                        failed_at: ts(r.get(12)?)?,
                        payload: serde_json::from_str(&payload).map_err(conv(13))?,
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&err)?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|d| d.id.to_string())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
}

/// Copies dead letters back into the queue: a webhook one goes to its subscription's current
/// target and state; one whose subscription was deleted stays a dead letter (it can still be
/// purged).
macro_rules! redrive_copy {
    () => {
        "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, \
         attempts, created_ms) \
         SELECT d.event_sequence, d.consumer_kind, d.consumer, coalesce(s.target, d.target), \
         CASE WHEN s.enabled = 0 THEN :held ELSE :waiting END, :now, 0, d.created_ms \
         FROM dead_letters d \
         LEFT JOIN subscriptions s ON d.consumer_kind = :webhook AND s.id = d.consumer \
         WHERE (d.consumer_kind <> :webhook OR s.id IS NOT NULL)"
    };
}

/// Moves dead letters back to the queue, due at `now`, attempts reset; how many moved. Ids that
/// do not exist are skipped.
pub(super) fn redrive_in(ctx: &mut Ctx<'_>, which: &Selection, now: Timestamp) -> Result<u64> {
    let err = db_err("redrive");
    let now = now.as_unix_millis();
    let moved = match which {
        Selection::All => {
            let n = execute(ctx.conn, redrive_copy!(), &[(":now", &now)]).map_err(&err)?;
            execute(
                ctx.conn,
                "DELETE FROM dead_letters WHERE consumer_kind <> :webhook \
                 OR consumer IN (SELECT id FROM subscriptions)",
                &[],
            )
            .map_err(&err)?;
            n as u64
        }
        Selection::Ids(ids) => {
            let mut n = 0;
            for id in ids.iter().collect::<HashSet<_>>() {
                let copied = execute(
                    ctx.conn,
                    concat!(redrive_copy!(), " AND d.id = :id"),
                    &[(":now", &now), (":id", id)],
                )
                .map_err(&err)?;
                if copied > 0 {
                    execute(
                        ctx.conn,
                        "DELETE FROM dead_letters WHERE id = :id",
                        &[(":id", id)],
                    )
                    .map_err(&err)?;
                    n += 1;
                }
            }
            n
        }
    };
    ctx.work |= moved > 0;
    Ok(moved)
}

/// Deletes dead letters; how many. Ids that do not exist are skipped.
pub(super) fn purge_in(ctx: &mut Ctx<'_>, which: &Selection) -> Result<u64> {
    let err = db_err("purge");
    Ok(match which {
        Selection::All => execute(ctx.conn, "DELETE FROM dead_letters", &[]).map_err(&err)? as u64,
        Selection::Ids(ids) => {
            let mut n = 0;
            for id in ids.iter().collect::<HashSet<_>>() {
                n += execute(
                    ctx.conn,
                    "DELETE FROM dead_letters WHERE id = :id",
                    &[(":id", id)],
                )
                .map_err(&err)? as u64;
            }
            n
        }
    })
}
