//! The event log: append (with the outbox of deliveries in the same transaction), get, read.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use nexus_event::{CorrelationId, Event, EventId, EventType, NewEvent, TypeFilter};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::columns::{conv, db_err, prepare, ts};
use super::writer::Ctx;
use crate::backend::{Admission, route_event};
use crate::error::{Result, StoreError};
use crate::model::{Appended, ReadOrder};
use crate::traits::EventLog;

/// The columns of an event, in the order [`event_from_row`] reads them.
macro_rules! event_columns {
    () => {
        "sequence, id, source, type, time_ms, payload, correlation_id"
    };
}
pub(crate) use event_columns;

/// Whether an event's `type` passes a filter given as a JSON array of globs in parameter
/// `:globs` (NULL for no filter). Patterns hold only type characters and `*`, so SQLite's GLOB
/// means the same thing. `events.type`, not `type`: `json_each` has a `type` column of its own.
macro_rules! type_passes {
    () => {
        "(:globs IS NULL OR EXISTS (SELECT 1 FROM json_each(:globs) g WHERE events.type GLOB g.value))"
    };
}
pub(crate) use type_passes;

/// A type filter as the `:globs` parameter of [`type_passes`].
pub(crate) fn globs_param(filter: &TypeFilter) -> Result<Option<String>> {
    let globs: Vec<&str> = filter.patterns().iter().map(|p| p.as_str()).collect();
    if globs.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&globs)
        .map(Some)
        .map_err(|e| StoreError::Invalid {
            field: "types",
            message: e.to_string(),
        })
}

/// An event from a row of [`event_columns`].
pub(crate) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    let sequence: i64 = r.get(0)?;
    let id: String = r.get(1)?;
    let event_type: String = r.get(3)?;
    let payload: String = r.get(5)?;
    let correlation: Option<String> = r.get(6)?;
    Ok(Event {
        sequence: u64::try_from(sequence).map_err(conv(0))?,
        id: EventId::new(&id).map_err(conv(1))?,
        source: r.get(2)?,
        event_type: EventType::new(&event_type).map_err(conv(3))?,
        time: ts(r.get(4)?)?,
        payload: serde_json::from_str(&payload).map_err(conv(5))?,
        correlation_id: correlation
            .map(|c| CorrelationId::new(&c))
            .transpose()
            .map_err(conv(6))?,
    })
}

/// The event with this sequence.
pub(crate) fn event_by_sequence(conn: &Connection, sequence: u64) -> Result<Event> {
    prepare(
        conn,
        concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE sequence = ?1"
        ),
    )
    .and_then(|mut s| s.query_row([sequence as i64], event_from_row))
    .map_err(db_err("read event"))
}

/// The payloads of a batch as the stored JSON text, made on the caller's thread so the writer
/// (the one thread every commit goes through) does not spend its time on them.
fn payload_texts(events: &[NewEvent]) -> Result<Vec<String>> {
    events
        .iter()
        .map(|draft| {
            serde_json::to_string(&draft.payload).map_err(|e| StoreError::Invalid {
                field: "payload",
                message: e.to_string(),
            })
        })
        .collect()
}

/// Appends a batch inside the writer's transaction, `payloads` being [`payload_texts`] of
/// `events`; see [`EventLog::append`].
fn append_in(
    ctx: &mut Ctx<'_>,
    events: Vec<NewEvent>,
    payloads: Vec<String>,
) -> Result<Vec<Appended>> {
    // Ids seen earlier in this batch; checked in order with conflicts, so the first refused
    // position is the one reported.
    let mut seen: HashSet<EventId> = HashSet::new();
    let err = db_err("append");
    let mut insert = prepare(
        ctx.conn,
        "INSERT INTO events (sequence, id, source, type, time_ms, payload, correlation_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
    )
    .map_err(&err)?;
    let mut enqueue = prepare(ctx.conn,
            "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .map_err(&err)?;
    let mut out = Vec::with_capacity(events.len());
    let mut extra = Vec::new();
    let batch = events.len() > 1;
    for (index, (draft, payload)) in events.into_iter().zip(payloads).enumerate() {
        if batch && !seen.insert(draft.id.clone()) {
            return Err(StoreError::DuplicateInBatch {
                index,
                id: draft.id.to_string(),
            });
        }
        let sequence = ctx.state.next_sequence;
        let inserted = insert
            .execute(params![
                sequence as i64,
                draft.id.as_str(),
                draft.source,
                draft.event_type.as_str(),
                draft.time.as_unix_millis(),
                payload,
                draft.correlation_id.as_ref().map(CorrelationId::as_str),
            ])
            .map_err(&err)?;
        if inserted == 0 {
            let (source, first): (String, i64) = prepare(
                ctx.conn,
                "SELECT source, sequence FROM events WHERE id = ?1",
            )
            .and_then(|mut s| s.query_row([draft.id.as_str()], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(&err)?;
            if source != draft.source {
                return Err(StoreError::Conflict {
                    index,
                    id: draft.id.to_string(),
                });
            }
            out.push(Appended {
                id: draft.id,
                sequence: first as u64,
                duplicate: true,
            });
            continue;
        }
        ctx.state.next_sequence += 1;
        let event = Arc::new(draft.into_event(sequence));
        let due = event.time.as_unix_millis();
        ctx.work |= route_event(
            &event,
            &ctx.state.subscriptions,
            ctx.state.router.as_deref(),
            &mut extra,
            |kind, name, target, state| {
                enqueue
                    .execute(params![sequence as i64, kind, name, target, state, due])
                    .map(drop)
                    .map_err(&err)
            },
        )?;
        out.push(Appended {
            id: event.id.clone(),
            sequence,
            duplicate: false,
        });
        ctx.appended.push(event);
    }
    Ok(out)
}

impl SqliteStore {
    /// Appends on the writer; with [`Admission::FailFast`] (`try_append`, ingress) a full writer
    /// queue fails at once with `Busy`, so a flood of publishes is refused (`503`) instead of
    /// growing memory without bound. A single event runs without a savepoint of its own: it fails only
    /// before it writes (a conflict is found by an insert that wrote nothing) or, should writing
    /// its deliveries fail after its event row, with its whole group rolled back and answered
    /// `Unavailable` (see `writer::Job`); the savepoint's statements were a tenth of the
    /// writer's time per single publish. A batch keeps one, so a conflict at its tenth event
    /// undoes its first nine and nothing else.
    async fn append_with(
        &self,
        events: Vec<NewEvent>,
        admission: Admission,
    ) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let payloads = payload_texts(&events)?;
        let savepoint = events.len() > 1;
        self.submit(
            move |ctx| append_in(ctx, events, payloads),
            admission,
            savepoint,
        )
        .await
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append_with(events, Admission::Wait).await
    }

    async fn try_append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        self.append_with(events, Admission::FailFast).await
    }

    async fn get(&self, id: &EventId) -> Result<Option<Event>> {
        let id = id.clone();
        self.read(move |conn| {
            prepare(
                conn,
                concat!("SELECT ", event_columns!(), " FROM events WHERE id = ?1"),
            )
            .and_then(|mut s| s.query_row([id.as_str()], event_from_row).optional())
            .map_err(db_err("get event"))
        })
        .await
    }

    async fn read(&self, after: u64, limit: usize, filter: &TypeFilter) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let globs = globs_param(filter)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let sql = concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE sequence > :after AND ",
                type_passes!(),
                " ORDER BY sequence LIMIT :limit"
            );
            let mut stmt = prepare(conn, sql).map_err(db_err("read events"))?;
            stmt.query_map(
                rusqlite::named_params! { ":after": after, ":limit": limit, ":globs": globs },
                event_from_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(db_err("read events"))
        })
        .await
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
        let globs = globs_param(filter)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let until = i64::try_from(until).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = prepare(conn, range_sql(order)).map_err(db_err("read events"))?;
            stmt.query_map(
                rusqlite::named_params! {
                    ":after": after, ":until": until, ":limit": limit, ":globs": globs,
                },
                event_from_row,
            )
            .and_then(|rows| rows.collect())
            .map_err(db_err("read events"))
        })
        .await
    }

    async fn head(&self) -> Result<u64> {
        Ok(self.inner.head.load(Ordering::Acquire))
    }
}

/// The query of [`EventLog::read_range`]: a range of the rowid (`sequence` is the `INTEGER
/// PRIMARY KEY`), walked one way or the other, so a page never scans the table.
fn range_sql(order: ReadOrder) -> &'static str {
    macro_rules! range {
        ($dir:literal) => {
            concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE sequence > :after AND sequence <= :until AND ",
                type_passes!(),
                " ORDER BY sequence ",
                $dir,
                " LIMIT :limit"
            )
        };
    }
    match order {
        ReadOrder::Ascending => range!("ASC"),
        ReadOrder::Descending => range!("DESC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both directions are a search of the primary key, not a scan of the table.
    #[test]
    fn ranges_search_the_sequence_index() {
        let conn = Connection::open_in_memory().expect("in-memory database");
        // Planned as the store's connections plan: from the SQL alone.
        crate::sqlite::columns::plan_once(&conn).expect("plan once");
        conn.execute_batch(
            "CREATE TABLE events (sequence INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, \
             source TEXT NOT NULL, type TEXT NOT NULL, time_ms INTEGER NOT NULL, \
             payload TEXT NOT NULL, correlation_id TEXT)",
        )
        .expect("schema");
        for order in [ReadOrder::Ascending, ReadOrder::Descending] {
            let sql = format!("EXPLAIN QUERY PLAN {}", range_sql(order));
            let mut stmt = conn.prepare(&sql).expect("plan");
            let plan: Vec<String> = stmt
                .query_map(
                    rusqlite::named_params! {
                        ":after": 0, ":until": 10, ":limit": 5, ":globs": None::<String>,
                    },
                    |r| r.get::<_, String>(3),
                )
                .and_then(|rows| rows.collect())
                .expect("plan rows");
            let events = plan
                .iter()
                .find(|line| line.contains("events"))
                .unwrap_or_else(|| panic!("{order:?}: no step reads events: {plan:?}"));
            assert!(
                events.starts_with("SEARCH events USING INTEGER PRIMARY KEY"),
                "{order:?}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|line| line.contains("TEMP B-TREE")),
                "{order:?} sorts instead of walking the index: {plan:?}"
            );
        }
    }
}
