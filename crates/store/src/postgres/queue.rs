//! The delivery queue: leases (`FOR UPDATE SKIP LOCKED`, so instances never take the same
//! delivery) fenced by token, settling (ack, retry, release, park), stats, replay and the next
//! due time. Dead letters are in `dead_letters.rs`.
//!
//! Every statement takes its values, states included, as parameters. The fragments shared
//! between statements are macros that fix the numbers of the parameters they use; each names
//! them.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::ClientWrapper;
use nexus_event::{Timestamp, TypeFilter};
use tokio::sync::{oneshot, watch};
use tokio_postgres::types::ToSql;

use super::columns::{
    ConsumerKind, DeliveryState, Finished, consumer_from, corrupt, db_err, like_patterns, signed,
    ts, unsigned,
};
use super::dead_letters;
use super::log::{Outbox, event_columns, event_from_row, events_by_sequence};
use super::subscriptions::subscription_in;
use super::writer::{Completion, Ctx, JobKind, job};
use super::{PgStore, cached, get};
use crate::backend::Admission;
use crate::error::{Result, StoreError};
use crate::model::{
    Consumer, DeadLetter, Failure, Lease, LeaseToken, Page, QueueStats, ReplayTo, Selection,
    Success,
};
use crate::traits::DeliveryQueue;

/// Which waiting rows `d` may be leased when due: not an expired lease of a disabled
/// subscription (it waits for the subscription), and for an ordered subscription only its
/// lowest sequence still queued. `$1` is the webhook kind, `$2` the leased state.
macro_rules! leasable {
    () => {
        "NOT (d.consumer_kind = $1 AND ( \
         (d.state = $2 AND d.consumer IN (SELECT id FROM subscriptions WHERE NOT enabled)) \
         OR (d.consumer IN (SELECT id FROM subscriptions WHERE ordered) \
             AND EXISTS (SELECT 1 FROM deliveries e WHERE e.consumer_kind = $1 \
                         AND e.consumer = d.consumer \
                         AND (e.event_sequence < d.event_sequence \
                              OR (e.event_sequence = d.event_sequence AND e.id < d.id))))))"
    };
}

/// The row a lease token names, still leased by it: `$1` delivery, `$2` the leased state, `$3`
/// owner, `$4` generation.
macro_rules! leased_by_token {
    () => {
        "id = $1 AND state = $2 AND lease_owner = $3 AND lease_gen = $4"
    };
}
pub(crate) use leased_by_token;

/// The `state` a delivery of this consumer waits in: held while its subscription is disabled.
/// `$5` is the webhook kind, `$6` the held state, `$7` the waiting state.
macro_rules! wait_state {
    () => {
        "(CASE WHEN consumer_kind = $5 AND consumer IN \
         (SELECT id FROM subscriptions WHERE NOT enabled) THEN $6::smallint ELSE $7::smallint END)"
    };
}

/// Leases inside the writer's transaction; see [`DeliveryQueue::lease_due`].
///
/// `state < parked` (waiting or leased) rather than `state IN (...)`: it is what the partial
/// index `deliveries_due` (`WHERE state < 2`) is defined by, and PostgreSQL plans an unnamed
/// statement with its parameters' values, so it sees that the index applies. With `<>` it scans
/// the whole queue (measured: 512 leases + acks/s instead of thousands with 400k queued).
async fn lease_in(
    ctx: &mut Ctx,
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
    let owner_str: &str = &owner;
    let instance: &str = &ctx.state.instance;
    let rows = ctx
        .client
        .query(
            concat!(
                "UPDATE deliveries SET state = $2, lease_owner = $3, lease_instance = $4, \
                 lease_gen = lease_gen + 1, due_ms = $5 \
                 WHERE id IN (SELECT d.id FROM deliveries d WHERE d.state < $6 \
                 AND d.due_ms <= $7 AND ",
                leasable!(),
                " ORDER BY d.due_ms, d.id LIMIT $8 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, event_sequence, consumer_kind, consumer, target, attempts, \
                 lease_gen, created_ms"
            ),
            &[
                &ConsumerKind::Subscription.code(),
                &DeliveryState::Leased.code(),
                &owner_str,
                &instance,
                &expires,
                &DeliveryState::Parked.code(),
                &now,
                &i64::try_from(max).unwrap_or(i64::MAX),
            ],
        )
        .await
        .map_err(&err)?;
    let op = "lease_due";
    let mut raw = rows
        .iter()
        .map(|r| {
            Ok((
                get::<i64>(r, 0, op)?,
                get::<i64>(r, 1, op)?,
                get::<i16>(r, 2, op)?,
                get::<String>(r, 3, op)?,
                get::<String>(r, 4, op)?,
                get::<i32>(r, 5, op)?,
                get::<i64>(r, 6, op)?,
                get::<i64>(r, 7, op)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    raw.sort_unstable_by_key(|r| (r.1, r.0));
    let mut sequences: Vec<i64> = raw.iter().map(|r| r.1).collect();
    sequences.dedup();
    let events = events_by_sequence(&ctx.client, &sequences).await?;
    let mut leases = Vec::with_capacity(raw.len());
    for (id, sequence, kind, consumer, target, attempts, generation, created) in raw {
        let event =
            events
                .get(&unsigned(sequence))
                .cloned()
                .ok_or_else(|| StoreError::Database {
                    op,
                    source: format!("delivery {id} names event {sequence}, which is not stored")
                        .into(),
                })?;
        leases.push(Lease {
            token: LeaseToken {
                delivery: id,
                owner: Arc::clone(&owner),
                generation,
            },
            event,
            consumer: consumer_from(kind, consumer)?,
            target,
            attempt: u32::try_from(attempts.saturating_add(1)).unwrap_or(u32::MAX),
            created_at: ts(created)?,
            expires_at,
        });
    }
    Ok(leases)
}

/// Runs `sql` (which names the row with [`leased_by_token`], `$1` to `$4`) for the token's
/// delivery, `extra` being `$5` on; fails with [`StoreError::LeaseLost`] if the token no longer
/// holds it.
async fn settle(
    ctx: &mut Ctx,
    op: &'static str,
    sql: &str,
    token: &LeaseToken,
    extra: &[&(dyn ToSql + Sync)],
) -> Result<()> {
    let owner: &str = &token.owner;
    let leased = DeliveryState::Leased.code();
    let mut args: Vec<&(dyn ToSql + Sync)> =
        vec![&token.delivery, &leased, &owner, &token.generation];
    args.extend_from_slice(extra);
    let stmt = cached(&ctx.client, sql, op).await?;
    let changed = ctx.client.execute(&stmt, &args).await.map_err(db_err(op))?;
    if changed == 0 {
        return Err(StoreError::LeaseLost {
            delivery: token.delivery,
        });
    }
    Ok(())
}

/// Whether one settle (ack or retry) of a group changed its delivery: set when the group's
/// settles ran, read once the group committed.
type Outcome = Arc<OnceLock<bool>>;

/// The columns every batched settle has: the token and the outcome to set.
#[derive(Default)]
struct Tokens {
    deliveries: Vec<i64>,
    owners: Vec<String>,
    generations: Vec<i64>,
    outcomes: Vec<Outcome>,
}

impl Tokens {
    fn push(&mut self, token: &LeaseToken) -> Outcome {
        let outcome = Outcome::default();
        self.deliveries.push(token.delivery);
        self.owners.push(token.owner.to_string());
        self.generations.push(token.generation);
        self.outcomes.push(Arc::clone(&outcome));
        outcome
    }

    /// Tells each settle whether its delivery is among the `changed` ones; hands back whether
    /// any was.
    fn answer(&self, rows: &[tokio_postgres::Row], op: &'static str) -> Result<bool> {
        let changed = rows
            .iter()
            .map(|r| get::<i64>(r, 0, op))
            .collect::<Result<HashSet<i64>>>()?;
        for (delivery, outcome) in self.deliveries.iter().zip(&self.outcomes) {
            // Each outcome is set once: the settles are forgotten after their statement.
            let _ = outcome.set(changed.contains(delivery));
        }
        Ok(!changed.is_empty())
    }
}

/// The acks and retries of a group not run yet, each kind as the columns of one statement over
/// `unnest(...)` (`DELETE ... USING`, `UPDATE ... FROM`): one statement settles them all, and
/// each learns from the ids it returns whether its token still held the lease.
#[derive(Default)]
pub(crate) struct PendingSettles {
    acks: Tokens,
    ack_ats: Vec<i64>,
    ack_durations: Vec<i64>,
    ack_statuses: Vec<Option<i32>>,
    retries: Tokens,
    retry_durations: Vec<i64>,
    retry_dues: Vec<i64>,
    retry_errors: Vec<String>,
    retry_statuses: Vec<Option<i32>>,
    retry_ats: Vec<i64>,
    /// The deliveries pending, to see a second settle of one of them in the group.
    named: HashSet<i64>,
    /// A retry made a delivery due again since the group's work was last noted.
    pub(crate) retried: bool,
}

impl PendingSettles {
    /// Flushes first when `delivery` is already pending, so a second settle of it sees the row
    /// as the first left it (and answers [`StoreError::LeaseLost`] if the first settled it).
    async fn make_room(&mut self, client: &ClientWrapper, delivery: i64) -> Result<()> {
        if self.named.contains(&delivery) {
            self.flush(client).await?;
        }
        self.named.insert(delivery);
        Ok(())
    }

    /// Records `token`'s ack; its outcome is known once the settles are flushed.
    async fn push_ack(
        &mut self,
        client: &ClientWrapper,
        token: &LeaseToken,
        success: Success,
    ) -> Result<Outcome> {
        self.make_room(client, token.delivery).await?;
        self.ack_ats.push(success.at.as_unix_millis());
        self.ack_durations.push(signed(success.duration_ms));
        self.ack_statuses.push(success.status.map(i32::from));
        Ok(self.acks.push(token))
    }

    /// Records `token`'s retry at `when` after `failure`; its outcome is known once the settles
    /// are flushed.
    async fn push_retry(
        &mut self,
        client: &ClientWrapper,
        token: &LeaseToken,
        when: Timestamp,
        failure: Failure,
    ) -> Result<Outcome> {
        self.make_room(client, token.delivery).await?;
        self.retry_dues.push(when.as_unix_millis());
        self.retry_errors.push(failure.error);
        self.retry_statuses.push(failure.status.map(i32::from));
        self.retry_ats.push(failure.at.as_unix_millis());
        self.retry_durations.push(signed(failure.duration_ms));
        Ok(self.retries.push(token))
    }

    /// Runs the pending acks and retries on the deliveries their tokens still hold, tells each
    /// whether its did, and forgets them. On a failure in the database the outcomes stay
    /// unknown (the group is lost and every settle of it answers the failure).
    pub(crate) async fn flush(&mut self, client: &ClientWrapper) -> Result<()> {
        if self.named.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(self);
        self.retried = pending.retried;
        let leased = DeliveryState::Leased.code();
        if !pending.acks.deliveries.is_empty() {
            let op = "ack";
            // The acknowledged rows move to the history, each with the attempt that delivered it
            // inline, in the same statement.
            let stmt = cached(
                client,
                "WITH d AS (DELETE FROM deliveries d \
                 USING unnest($1::bigint[], $2::text[], $3::bigint[], $5::bigint[], \
                 $6::bigint[], $7::integer[]) AS t(id, owner, generation, at, duration, status) \
                 WHERE d.id = t.id AND d.lease_owner = t.owner AND d.lease_gen = t.generation \
                 AND d.state = $4 RETURNING d.id, d.event_sequence, d.consumer_kind, d.consumer, \
                 d.target, d.created_ms, t.at, t.duration, t.status), \
                 h AS (INSERT INTO delivery_history (id, event_sequence, consumer_kind, consumer, \
                 target, outcome, created_ms, finished_ms, ok_started_ms, ok_duration_ms, \
                 ok_status) \
                 SELECT id, event_sequence, consumer_kind, consumer, target, $8::smallint, \
                 created_ms, at, at - duration, duration, status FROM d) \
                 SELECT id FROM d",
                op,
            )
            .await?;
            let acks = &pending.acks;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &acks.deliveries,
                        &acks.owners,
                        &acks.generations,
                        &leased,
                        &pending.ack_ats,
                        &pending.ack_durations,
                        &pending.ack_statuses,
                        &Finished::Delivered.code(),
                    ],
                )
                .await
                .map_err(db_err(op))?;
            acks.answer(&rows, op)?;
        }
        if !pending.retries.deliveries.is_empty() {
            let op = "retry_at";
            let stmt = cached(
                client,
                concat!(
                    "WITH u AS (UPDATE deliveries SET state = ",
                    wait_state!(),
                    ", due_ms = t.due, attempts = attempts + 1, lease_owner = NULL, \
                     lease_instance = NULL, last_error = t.error, last_status = t.status, \
                     first_attempt_ms = coalesce(first_attempt_ms, t.at), last_attempt_ms = t.at \
                     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $8::bigint[], \
                     $9::text[], $10::integer[], $11::bigint[], $12::bigint[]) \
                     AS t(id, owner, generation, due, error, status, at, duration) \
                     WHERE deliveries.id = t.id AND deliveries.lease_owner = t.owner \
                     AND deliveries.lease_gen = t.generation AND deliveries.state = $4 \
                     RETURNING deliveries.id, deliveries.attempts, t.at, t.duration, t.status, \
                     t.error), \
                     a AS (INSERT INTO delivery_attempts (delivery, attempt, started_ms, \
                     duration_ms, status, error) \
                     SELECT id, attempts, at - duration, duration, status, error FROM u) \
                     SELECT id FROM u"
                ),
                op,
            )
            .await?;
            let retries = &pending.retries;
            let [webhook, held, waiting] = wait_args();
            let rows = client
                .query(
                    &stmt,
                    &[
                        &retries.deliveries,
                        &retries.owners,
                        &retries.generations,
                        &leased,
                        &webhook,
                        &held,
                        &waiting,
                        &pending.retry_dues,
                        &pending.retry_errors,
                        &pending.retry_statuses,
                        &pending.retry_ats,
                        &pending.retry_durations,
                    ],
                )
                .await
                .map_err(db_err(op))?;
            self.retried |= retries.answer(&rows, op)?;
        }
        Ok(())
    }
}

/// Queues a settle for the writer: `push` records it in the group's [`PendingSettles`], and the
/// caller is answered from its outcome once the group committed.
async fn submit_settle<P>(store: &PgStore, delivery: i64, push: P) -> Result<()>
where
    P: for<'c> FnOnce(&'c mut Ctx) -> super::writer::BoxFuture<'c, Result<Outcome>>
        + Send
        + 'static,
{
    let (tx, rx) = oneshot::channel::<Result<()>>();
    let settle = job(JobKind::Settle, move |ctx| {
        Box::pin(async move {
            let ctx = match ctx {
                Ok(ctx) => ctx,
                Err(refused) => {
                    let _ = tx.send(Err(refused));
                    return None;
                }
            };
            let completion: Completion = match push(&mut *ctx).await {
                Ok(outcome) => Box::new(move |committed: Result<()>| {
                    let _ = tx.send(settle_answer(delivery, committed, &outcome));
                }),
                Err(e) => {
                    // Only a failure in the database refuses a push: the group is lost.
                    ctx.broken = true;
                    Box::new(move |committed: Result<()>| {
                        let _ = tx.send(committed.and(Err(e)));
                    })
                }
            };
            Some(completion)
        })
    });
    crate::backend::submit(store.inner.jobs.as_ref(), settle, Admission::Wait, rx).await
}

/// The answer to a settle once its group committed (`committed`), from its outcome.
fn settle_answer(delivery: i64, committed: Result<()>, outcome: &Outcome) -> Result<()> {
    committed?;
    match outcome.get() {
        Some(true) => Ok(()),
        Some(false) => Err(StoreError::LeaseLost { delivery }),
        None => Err(StoreError::Unavailable {
            reason: format!("the settle of delivery {delivery} was not run before the commit"),
        }),
    }
}

/// The parameters `$5` to `$7` of [`wait_state`].
fn wait_args() -> [i16; 3] {
    [
        ConsumerKind::Subscription.code(),
        DeliveryState::Held.code(),
        DeliveryState::Waiting.code(),
    ]
}

/// Releases every parked delivery of target `$3`, due at `$2` at the latest.
const UNPARK_ALL: &str = "UPDATE deliveries SET state = $1, due_ms = least(due_ms, $2) \
     WHERE target = $3 AND state = $4";

/// Releases the oldest parked delivery of target `$3` (its breaker's next trial).
const UNPARK_OLDEST: &str = "UPDATE deliveries SET state = $1, due_ms = least(due_ms, $2) \
     WHERE id IN (SELECT id FROM deliveries WHERE target = $3 AND state = $4 \
     ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)";

impl PgStore {
    /// Runs [`UNPARK_ALL`] or [`UNPARK_OLDEST`]; how many deliveries it released.
    async fn release_parked(&self, target: &str, now: Timestamp, sql: &'static str) -> Result<u64> {
        let target = target.to_owned();
        self.call(move |ctx| {
            Box::pin(async move {
                let n = ctx
                    .client
                    .execute(
                        sql,
                        &[
                            &DeliveryState::Waiting.code(),
                            &now.as_unix_millis(),
                            &target,
                            &DeliveryState::Parked.code(),
                        ],
                    )
                    .await
                    .map_err(db_err("unpark"))?;
                ctx.work |= n > 0;
                Ok(n)
            })
        })
        .await
    }
}

#[async_trait]
impl DeliveryQueue for PgStore {
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
        self.call(move |ctx| Box::pin(lease_in(ctx, owner, now, max, lease_ms)))
            .await
    }

    /// Batched: the acks of a group are deleted by one statement (see `PendingSettles`), and
    /// each answers once the group committed.
    async fn ack(&self, token: &LeaseToken, success: Success) -> Result<()> {
        let token = token.clone();
        submit_settle(self, token.delivery, move |ctx| {
            Box::pin(async move { ctx.settles.push_ack(&ctx.client, &token, success).await })
        })
        .await
    }

    /// Batched as acks are (see `PendingSettles`).
    async fn retry_at(&self, token: &LeaseToken, when: Timestamp, failure: Failure) -> Result<()> {
        let token = token.clone();
        submit_settle(self, token.delivery, move |ctx| {
            Box::pin(async move {
                ctx.settles
                    .push_retry(&ctx.client, &token, when, failure)
                    .await
            })
        })
        .await
    }

    async fn dead_letter(&self, token: &LeaseToken, failure: Failure) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| Box::pin(dead_letters::dead_letter_in(ctx, token, failure)))
            .await
    }

    async fn release(&self, token: &LeaseToken, when: Timestamp) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            Box::pin(async move {
                let sql = concat!(
                    "UPDATE deliveries SET state = ",
                    wait_state!(),
                    ", due_ms = $8, lease_owner = NULL, lease_instance = NULL WHERE ",
                    leased_by_token!()
                );
                let [webhook, held, waiting] = wait_args();
                let due = when.as_unix_millis();
                settle(
                    ctx,
                    "release",
                    sql,
                    &token,
                    &[&webhook, &held, &waiting, &due],
                )
                .await?;
                ctx.work = true;
                Ok(())
            })
        })
        .await
    }

    async fn park(&self, token: &LeaseToken, until: Timestamp) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            Box::pin(async move {
                let sql = concat!(
                    "UPDATE deliveries SET state = CASE WHEN ",
                    wait_state!(),
                    " = $6::smallint THEN $6::smallint ELSE $8::smallint END, due_ms = $9, \
                     lease_owner = NULL, lease_instance = NULL WHERE ",
                    leased_by_token!()
                );
                let [webhook, held, waiting] = wait_args();
                let parked = DeliveryState::Parked.code();
                let due = until.as_unix_millis();
                settle(
                    ctx,
                    "park",
                    sql,
                    &token,
                    &[&webhook, &held, &waiting, &parked, &due],
                )
                .await?;
                // No work to signal: a parked delivery is not leasable until it is unparked.
                Ok(())
            })
        })
        .await
    }

    async fn unpark(&self, target: &str, now: Timestamp) -> Result<u64> {
        self.release_parked(target, now, UNPARK_ALL).await
    }

    async fn unpark_one(&self, target: &str, now: Timestamp) -> Result<bool> {
        Ok(self.release_parked(target, now, UNPARK_OLDEST).await? > 0)
    }

    async fn parked_targets(&self) -> Result<Vec<String>> {
        let client = self.conn("parked_targets").await?;
        // A skip scan of `deliveries_parked`: one index probe per target, however many wait.
        let rows = client
            .query(
                "WITH RECURSIVE t(target) AS ( \
                 SELECT min(target) FROM deliveries WHERE state = $1 \
                 UNION ALL SELECT (SELECT min(target) FROM deliveries WHERE state = $1 \
                 AND target > t.target) FROM t WHERE t.target IS NOT NULL) \
                 SELECT target FROM t WHERE target IS NOT NULL",
                &[&DeliveryState::Parked.code()],
            )
            .await
            .map_err(db_err("parked_targets"))?;
        rows.iter()
            .map(|r| get::<String>(r, 0, "parked_targets"))
            .collect()
    }

    async fn stats(&self) -> Result<QueueStats> {
        let client = self.conn("stats").await?;
        // A lease past its expiry is work waiting to be leased again, not work in flight.
        let now = Timestamp::now().as_unix_millis();
        let row = client
            .query_one(
                // One pass over the queue's rows for all three figures, as on SQLite; pending is
                // every row not under a live lease.
                "SELECT count(*), \
                 count(*) FILTER (WHERE state = $1 AND due_ms > $2), \
                 min(created_ms) FILTER (WHERE attempts > 0), \
                 (SELECT count(*) FROM dead_letters) \
                 FROM deliveries",
                &[&DeliveryState::Leased.code(), &now],
            )
            .await
            .map_err(db_err("stats"))?;
        let op = "stats";
        let (all, in_flight): (i64, i64) = (get(&row, 0, op)?, get(&row, 1, op)?);
        Ok(QueueStats {
            pending: unsigned(all.saturating_sub(in_flight)),
            in_flight: unsigned(in_flight),
            dead_letters: unsigned(get(&row, 3, op)?),
            oldest_retry: get::<Option<i64>>(&row, 2, op)?.map(ts).transpose()?,
        })
    }

    async fn dead_letters(&self, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
        dead_letters::list(self, limit, cursor).await
    }

    async fn redrive(&self, which: Selection, now: Timestamp) -> Result<u64> {
        self.call(move |ctx| Box::pin(dead_letters::redrive_in(ctx, which, now)))
            .await
    }

    async fn purge(&self, which: Selection) -> Result<u64> {
        self.call(move |ctx| Box::pin(dead_letters::purge_in(ctx, which)))
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
        let likes = like_patterns(filter);
        let after = signed(after);
        let until = until.map_or(i64::MAX, signed);
        self.call(move |ctx| {
            Box::pin(async move {
                let err = db_err("replay");
                let now = now.as_unix_millis();
                let enqueued = match &to {
                    ReplayTo::Subscription(id) => {
                        let sub = subscription_in(&ctx.client, id).await?.ok_or_else(|| {
                            StoreError::NotFound {
                                what: "subscription",
                                id: id.clone(),
                            }
                        })?;
                        let state = DeliveryState::waiting_if(sub.enabled);
                        if let Some(filter) = &sub.filter {
                            // As routing would have chosen (API.md section 12): only the events
                            // whose payload passes the filter.
                            let rows = ctx
                                .client
                                .query(
                                    "SELECT sequence, payload FROM events \
                                     WHERE sequence > $1 AND sequence <= $2 \
                                     AND ($3::text[] IS NULL OR type LIKE ANY($3)) \
                                     ORDER BY sequence",
                                    &[&after, &until, &likes],
                                )
                                .await
                                .map_err(&err)?;
                            let mut outbox = Outbox::default();
                            for row in &rows {
                                let sequence: i64 = get(row, 0, "replay")?;
                                let payload: String = get(row, 1, "replay")?;
                                let payload: serde_json::Value =
                                    serde_json::from_str(&payload).map_err(corrupt("replay"))?;
                                if filter.holds(&payload) {
                                    outbox.push(
                                        unsigned(sequence),
                                        ConsumerKind::Subscription,
                                        &sub.id,
                                        &sub.target,
                                        state,
                                        now,
                                    );
                                }
                            }
                            let n = outbox.insert(&ctx.client).await?;
                            ctx.work |= n > 0;
                            return Ok(n);
                        }
                        ctx.client
                            .execute(
                                "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, \
                                 target, state, due_ms, created_ms) \
                                 SELECT sequence, $1::smallint, $2::text, $3::text, $4::smallint, \
                                 $5::bigint, $5::bigint FROM events \
                                 WHERE sequence > $6 AND sequence <= $7 \
                                 AND ($8::text[] IS NULL OR type LIKE ANY($8))",
                                &[
                                    &ConsumerKind::Subscription.code(),
                                    &sub.id,
                                    &sub.target,
                                    &state.code(),
                                    &now,
                                    &after,
                                    &until,
                                    &likes,
                                ],
                            )
                            .await
                            .map_err(&err)?
                    }
                    ReplayTo::Reactors => {
                        let Some(router) = ctx.state.router.clone() else {
                            return Ok(0);
                        };
                        let rows = ctx
                            .client
                            .query(
                                concat!(
                                    "SELECT ",
                                    event_columns!(),
                                    " FROM events WHERE sequence > $1 AND sequence <= $2 \
                                     AND ($3::text[] IS NULL OR type LIKE ANY($3)) \
                                     ORDER BY sequence"
                                ),
                                &[&after, &until, &likes],
                            )
                            .await
                            .map_err(&err)?;
                        let mut outbox = Outbox::default();
                        let mut routes = Vec::new();
                        for row in &rows {
                            let event = event_from_row(row)?;
                            routes.clear();
                            router.route(&event, &mut routes);
                            for (consumer, target) in &routes {
                                if let Consumer::Reactor(name) = consumer {
                                    outbox.push(
                                        event.sequence,
                                        ConsumerKind::Reactor,
                                        name,
                                        target,
                                        DeliveryState::Waiting,
                                        now,
                                    );
                                }
                            }
                        }
                        outbox.insert(&ctx.client).await?
                    }
                };
                ctx.work |= enqueued > 0;
                Ok(enqueued)
            })
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        let client = self.conn("next_due").await?;
        // Leases of a disabled subscription are not leased again (see `lease_in`), so they are
        // not due either.
        let row = client
            .query_opt(
                concat!(
                    "SELECT d.due_ms FROM deliveries d WHERE d.state < $3 AND ",
                    leasable!(),
                    " ORDER BY d.due_ms LIMIT 1"
                ),
                &[
                    &ConsumerKind::Subscription.code(),
                    &DeliveryState::Leased.code(),
                    &DeliveryState::Parked.code(),
                ],
            )
            .await
            .map_err(db_err("next_due"))?;
        row.map(|r| get::<i64>(&r, 0, "next_due").and_then(ts))
            .transpose()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.clone()
    }
}
