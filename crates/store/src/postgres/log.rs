//! The event log: append (sequences under the append lock, the outbox of deliveries in the same
//! transaction), get, read, head.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use nexus_event::{CorrelationId, Event, EventId, EventType, NewEvent, TypeFilter};
use tokio_postgres::Row;

use super::columns::{
    ConsumerKind, DeliveryState, corrupt, db_err, like_patterns, signed, ts, unsigned,
};
use super::subscriptions::load_subscription_routes;
use super::writer::{Ctx, JobKind};
use super::{Admission, PgStore, cached, get, schema};
use crate::backend::route_event;
use crate::error::{Result, StoreError};
use crate::model::{Appended, ReadOrder};
use crate::traits::EventLog;
use deadpool_postgres::ClientWrapper;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// The columns of an event, in the order [`event_from_row`] reads them.
macro_rules! event_columns {
    () => {
        "sequence, id, source, type, time_ms, payload, correlation_id"
    };
}
pub(crate) use event_columns;

/// An event from a row of [`event_columns`].
pub(crate) fn event_from_row(r: &Row) -> Result<Event> {
    let op = "read event";
    let id: String = get(r, 1, op)?;
    let event_type: String = get(r, 3, op)?;
    let payload: String = get(r, 5, op)?;
    let correlation: Option<String> = get(r, 6, op)?;
    Ok(Event {
        sequence: unsigned(get(r, 0, op)?),
        id: EventId::new(&id).map_err(corrupt(op))?,
        source: get(r, 2, op)?,
        event_type: EventType::new(&event_type).map_err(corrupt(op))?,
        time: ts(get(r, 4, op)?)?,
        payload: serde_json::from_str(&payload).map_err(corrupt(op))?,
        correlation_id: correlation
            .map(|c| CorrelationId::new(&c))
            .transpose()
            .map_err(corrupt(op))?,
    })
}

/// The events with these sequences, by sequence.
pub(crate) async fn events_by_sequence(
    client: &tokio_postgres::Client,
    sequences: &[i64],
) -> Result<HashMap<u64, Arc<Event>>> {
    let rows = client
        .query(
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE sequence = ANY($1)"
            ),
            &[&sequences],
        )
        .await
        .map_err(db_err("read events"))?;
    rows.iter()
        .map(|r| event_from_row(r).map(|e| (e.sequence, Arc::new(e))))
        .collect()
}

/// Prepares the group's appends and subscription changes, once per group, before its first job
/// runs: takes the append lock for the rest of the transaction, reads the next sequence under it
/// (appends of every instance are serialised, so sequences are gap-free and follow commit
/// order), reads the subscriptions again if another instance changed them, and looks up in one
/// query which of `ids` (every id the group's appends carry) are already stored.
pub(crate) async fn prepare_appends(ctx: &mut Ctx, ids: &[&str]) -> Result<()> {
    let err = db_err("append");
    let rows = if ctx.next_sequence.is_none() {
        // The lock is a transaction lock: held until this group commits or rolls back, and
        // released only after the commit is visible. So the head read below sees every earlier
        // group's rows, sequences follow commit order, and once sequence N is visible every
        // sequence below it is committed and visible too: the follower (`follow.rs`) reads the
        // log after the last sequence it published and finds no hole to wait for.
        //
        // The three statements go out together (pipelined, one round trip instead of three):
        // PostgreSQL runs the statements of a connection one after the other, so the head and
        // the id lookup still run, each with a snapshot of its own, only once the lock is held.
        let lock = cached(&ctx.client, "SELECT pg_advisory_xact_lock($1)", "append").await?;
        let head = cached(
            &ctx.client,
            "SELECT (SELECT coalesce(max(sequence), 0) FROM events), \
             (SELECT version FROM routes_version)",
            "append",
        )
        .await?;
        let client = &ctx.client;
        let (locked, row, rows) = tokio::join!(
            client.execute(&lock, &[&schema::APPEND_LOCK]),
            client.query_one(&head, &[]),
            lookup(client, ids),
        );
        locked.map_err(&err)?;
        let row = row.map_err(&err)?;
        let rows = rows.map_err(&err)?;
        ctx.next_sequence = Some(unsigned(get(&row, 0, "append")?) + 1);
        let routes: i64 = get(&row, 1, "append")?;
        if routes != ctx.state.routes_version {
            // Another instance (or a rolled-back group) changed subscriptions.
            ctx.state.subscriptions = load_subscription_routes(&ctx.client).await?;
            ctx.state.routes_version = routes;
        }
        rows
    } else {
        lookup(&ctx.client, ids).await.map_err(&err)?
    };
    for r in &rows {
        let source: String = get(r, 1, "append")?;
        let sequence: i64 = get(r, 2, "append")?;
        ctx.known
            .insert(get(r, 0, "append")?, (source, unsigned(sequence)));
    }
    Ok(())
}

/// The stored `(id, source, sequence)` of those of `ids` already in the log; no query for none.
///
/// One probe of the unique id index per id, forced by the shape of the query: with
/// `id = ANY($1)` PostgreSQL chooses, for a log of up to about 100k rows (or any log never
/// analysed), a sequential scan that hashes the ids: measured with `auto_explain` in the batch
/// bench, 15 ms per 1000-event group against 1.4 ms for the probes, and the scan grows with the
/// log; a join from `unnest` is planned as a hash join over the same scan. The `LIMIT 1` of the
/// lateral subquery (`id` is unique, so it changes nothing) keeps PostgreSQL from flattening it
/// into such a join, so every plan, the generic plan of the cached statement included, is a
/// nested loop of index probes.
async fn lookup(
    client: &ClientWrapper,
    ids: &[&str],
) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let statement = client
        .prepare_cached(
            "SELECT e.id, e.source, e.sequence FROM unnest($1::text[]) AS u(id) \
             CROSS JOIN LATERAL \
             (SELECT id, source, sequence FROM events WHERE events.id = u.id LIMIT 1) e",
        )
        .await?;
    client.query(&statement, &[&ids]).await
}

/// Events appended by the group's jobs and their deliveries, inserted together (one `unnest`
/// insert each) before the next job that is not an append and before the commit.
#[derive(Default)]
pub(crate) struct Pending {
    sequences: Vec<i64>,
    ids: Vec<String>,
    sources: Vec<String>,
    types: Vec<String>,
    times: Vec<i64>,
    payloads: Vec<String>,
    correlations: Vec<Option<String>>,
    pub(crate) outbox: Outbox,
}

impl Pending {
    fn push(&mut self, event: &Event, payload: String) {
        self.sequences.push(signed(event.sequence));
        self.ids.push(event.id.to_string());
        self.sources.push(event.source.clone());
        self.types.push(event.event_type.as_str().to_owned());
        self.times.push(event.time.as_unix_millis());
        self.payloads.push(payload);
        self.correlations
            .push(event.correlation_id.as_ref().map(|c| c.as_str().to_owned()));
    }

    /// Inserts what is pending and forgets it.
    pub(crate) async fn flush(&mut self, client: &ClientWrapper) -> Result<()> {
        if self.sequences.len() >= COPY_FROM {
            // COPY holds the connection until it ends: the deliveries follow it.
            self.copy(client).await?;
            self.outbox.insert(client).await?;
        } else if !self.sequences.is_empty() {
            let insert = cached(
                client,
                "INSERT INTO events (sequence, id, source, type, time_ms, payload, \
                     correlation_id) \
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
                     $5::bigint[], $6::text[], $7::text[])",
                "append",
            )
            .await?;
            let params: [&(dyn ToSql + Sync); 7] = [
                &self.sequences,
                &self.ids,
                &self.sources,
                &self.types,
                &self.times,
                &self.payloads,
                &self.correlations,
            ];
            // The events and their deliveries go out together (pipelined, one round trip).
            let (events, deliveries) =
                tokio::join!(client.execute(&insert, &params), self.outbox.insert(client),);
            events.map_err(db_err("append"))?;
            deliveries?;
        } else {
            self.outbox.insert(client).await?;
        }
        *self = Pending::default();
        Ok(())
    }
}

/// From this many rows on, a group's events and deliveries go in with `COPY ... FROM STDIN
/// BINARY` rather than one `unnest` insert: COPY costs a second round trip but skips the
/// executor's work per row, which measured about 1.4 times the rows per second of server CPU on
/// large batches.
const COPY_FROM: usize = 256;

/// Writes `rows` rows of `columns` (their types) through `COPY <target> FROM STDIN BINARY`;
/// `row(i)` gives the values of row `i`.
async fn copy_rows<'a>(
    client: &ClientWrapper,
    sql: &str,
    columns: &[Type],
    rows: usize,
    row: impl Fn(usize) -> [&'a (dyn ToSql + Sync); 7],
) -> Result<u64> {
    let err = db_err("append (copy)");
    let statement = cached(client, sql, "append (copy)").await?;
    let sink = client.copy_in(&statement).await.map_err(&err)?;
    let writer = BinaryCopyInWriter::new(sink, columns);
    let mut writer = std::pin::pin!(writer);
    for i in 0..rows {
        writer.as_mut().write(&row(i)).await.map_err(&err)?;
    }
    writer.as_mut().finish().await.map_err(&err)
}

impl Pending {
    /// The events through `COPY`, then the deliveries (see [`COPY_FROM`]).
    async fn copy(&self, client: &ClientWrapper) -> Result<()> {
        copy_rows(
            client,
            "COPY events (sequence, id, source, type, time_ms, payload, correlation_id) \
             FROM STDIN BINARY",
            &[
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
            ],
            self.sequences.len(),
            |i| {
                [
                    &self.sequences[i],
                    &self.ids[i],
                    &self.sources[i],
                    &self.types[i],
                    &self.times[i],
                    &self.payloads[i],
                    &self.correlations[i],
                ]
            },
        )
        .await?;
        Ok(())
    }
}

/// Rows to insert into `deliveries`, as the columns of one `unnest` insert.
#[derive(Default)]
pub(crate) struct Outbox {
    sequences: Vec<i64>,
    kinds: Vec<i16>,
    consumers: Vec<String>,
    targets: Vec<String>,
    states: Vec<i16>,
    due: Vec<i64>,
}

impl Outbox {
    pub(crate) fn push(
        &mut self,
        sequence: u64,
        kind: ConsumerKind,
        consumer: &str,
        target: &str,
        state: DeliveryState,
        due_ms: i64,
    ) {
        self.sequences.push(signed(sequence));
        self.kinds.push(kind.code());
        self.consumers.push(consumer.to_owned());
        self.targets.push(target.to_owned());
        self.states.push(state.code());
        self.due.push(due_ms);
    }

    /// Inserts the rows (enqueued at their due time); how many.
    pub(crate) async fn insert(&self, client: &ClientWrapper) -> Result<u64> {
        if self.sequences.is_empty() {
            return Ok(0);
        }
        if self.sequences.len() >= COPY_FROM {
            // created_ms is the due time, as in the insert below.
            return copy_rows(
                client,
                "COPY deliveries (event_sequence, consumer_kind, consumer, target, state, \
                 due_ms, created_ms) FROM STDIN BINARY",
                &[
                    Type::INT8,
                    Type::INT2,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT2,
                    Type::INT8,
                    Type::INT8,
                ],
                self.sequences.len(),
                |i| {
                    [
                        &self.sequences[i],
                        &self.kinds[i],
                        &self.consumers[i],
                        &self.targets[i],
                        &self.states[i],
                        &self.due[i],
                        &self.due[i],
                    ]
                },
            )
            .await;
        }
        let insert = cached(
            client,
            "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, \
             due_ms, created_ms) \
             SELECT s, k, c, t, st, d, d FROM unnest($1::bigint[], $2::smallint[], \
             $3::text[], $4::text[], $5::smallint[], $6::bigint[]) AS x(s, k, c, t, st, d)",
            "enqueue deliveries",
        )
        .await?;
        client
            .execute(
                &insert,
                &[
                    &self.sequences,
                    &self.kinds,
                    &self.consumers,
                    &self.targets,
                    &self.states,
                    &self.due,
                ],
            )
            .await
            .map_err(db_err("enqueue deliveries"))
    }
}

/// Appends a batch inside the writer's transaction; see [`EventLog::append`]. Everything that
/// can refuse the batch is checked before anything is recorded; the rows themselves are
/// inserted with the rest of the group's (see [`Pending`]).
async fn append_in(ctx: &mut Ctx, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
    if ctx.next_sequence.is_none() {
        // Not prepared by the writer (it prepares groups that hold appends): do it for this one.
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        prepare_appends(ctx, &ids).await?;
    }
    let Some(mut next) = ctx.next_sequence else {
        return Err(StoreError::Unavailable {
            reason: "the append lock was not taken".into(),
        });
    };
    // Ids seen earlier in this batch; checked in order with conflicts, so the first refused
    // position is the one reported.
    let mut seen: HashSet<&str> = HashSet::new();
    let batch = events.len() > 1;
    let mut out = Vec::with_capacity(events.len());
    let mut fresh = Vec::new();
    for (index, draft) in events.iter().enumerate() {
        if batch && !seen.insert(draft.id.as_str()) {
            return Err(StoreError::DuplicateInBatch {
                index,
                id: draft.id.to_string(),
            });
        }
        if let Some((source, first)) = ctx.known.get(draft.id.as_str()) {
            if *source != draft.source {
                return Err(StoreError::Conflict {
                    index,
                    id: draft.id.to_string(),
                });
            }
            out.push(Appended {
                id: draft.id.clone(),
                sequence: *first,
                duplicate: true,
            });
            continue;
        }
        let payload = serde_json::to_string(&draft.payload).map_err(|e| StoreError::Invalid {
            field: "payload",
            message: e.to_string(),
        })?;
        out.push(Appended {
            id: draft.id.clone(),
            sequence: next,
            duplicate: false,
        });
        fresh.push((next, index, payload));
        next += 1;
    }
    if fresh.is_empty() {
        return Ok(out);
    }
    let mut drafts: Vec<Option<NewEvent>> = events.into_iter().map(Some).collect();
    let mut extra = Vec::new();
    for (sequence, index, payload) in fresh {
        let Some(draft) = drafts.get_mut(index).and_then(Option::take) else {
            continue;
        };
        let event = Arc::new(draft.into_event(sequence));
        ctx.pending.push(&event, payload);
        ctx.known
            .insert(event.id.to_string(), (event.source.clone(), sequence));
        let due = event.time.as_unix_millis();
        let outbox = &mut ctx.pending.outbox;
        ctx.work |= route_event(
            &event,
            &ctx.state.subscriptions,
            ctx.state.router.as_deref(),
            &mut extra,
            |kind, name, target, state| {
                outbox.push(sequence, kind, name, target, state, due);
                Ok(())
            },
        )?;
        ctx.appended.push(event);
    }
    ctx.next_sequence = Some(next);
    Ok(out)
}

impl PgStore {
    /// Appends through the writer; `admission` says what a full queue does (wait, or `Busy`).
    async fn append_with(
        &self,
        events: Vec<NewEvent>,
        admission: Admission,
    ) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let ids = events.iter().map(|e| e.id.to_string()).collect();
        self.submit(
            move |ctx| Box::pin(append_in(ctx, events)),
            admission,
            JobKind::Append { ids },
        )
        .await
    }
}

#[async_trait]
impl EventLog for PgStore {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append_with(events, Admission::Wait).await
    }

    async fn try_append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append_with(events, Admission::FailFast).await
    }

    async fn get(&self, id: &EventId) -> Result<Option<Event>> {
        let client = self.conn("get event").await?;
        client
            .query_opt(
                concat!("SELECT ", event_columns!(), " FROM events WHERE id = $1"),
                &[&id.as_str()],
            )
            .await
            .map_err(db_err("get event"))?
            .map(|r| event_from_row(&r))
            .transpose()
    }

    async fn read(&self, after: u64, limit: usize, filter: &TypeFilter) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let likes = like_patterns(filter);
        let client = self.conn("read events").await?;
        let rows = client
            .query(
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE sequence > $1 \
                     AND ($2::text[] IS NULL OR type LIKE ANY($2)) \
                     ORDER BY sequence LIMIT $3"
                ),
                &[
                    &signed(after),
                    &likes,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_err("read events"))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_range(
        &self,
        after: u64,
        until: u64,
        order: ReadOrder,
        limit: usize,
        filter: &TypeFilter,
    ) -> Result<Vec<Event>> {
        if limit == 0 || until <= after {
            return Ok(Vec::new());
        }
        // Two fixed statements, not a direction spliced into the SQL: each walks the primary
        // key one way between the bounds.
        macro_rules! range {
            ($dir:literal) => {
                concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE sequence > $1 AND sequence <= $2 \
                     AND ($3::text[] IS NULL OR type LIKE ANY($3)) \
                     ORDER BY sequence ",
                    $dir,
                    " LIMIT $4"
                )
            };
        }
        let sql = match order {
            ReadOrder::Ascending => range!("ASC"),
            ReadOrder::Descending => range!("DESC"),
        };
        let likes = like_patterns(filter);
        let client = self.conn("read events").await?;
        let rows = client
            .query(
                sql,
                &[
                    &signed(after),
                    &signed(until),
                    &likes,
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
            .await
            .map_err(db_err("read events"))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn head(&self) -> Result<u64> {
        let client = self.conn("head").await?;
        let row = client
            .query_one("SELECT coalesce(max(sequence), 0) FROM events", &[])
            .await
            .map_err(db_err("head"))?;
        Ok(unsigned(get(&row, 0, "head")?))
    }
}
