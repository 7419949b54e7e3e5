//! The event-type catalogue (API.md section 11): one row per declared type, its schema and
//! examples as JSON text. Changes go through the writer; the watch of
//! [`EventTypes::event_type_changes`] moves once they are committed.

use async_trait::async_trait;
use nexus_event::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::watch;

use super::SqliteStore;
use super::columns::{db_err, prepare};
use crate::backend::{EventTypeColumns, event_type_json, event_type_record};
use crate::error::{Result, StoreError};
use crate::model::{EventTypePut, EventTypeRecord, Page, PutOutcome, TypeOrigin, check_limit};
use crate::traits::EventTypes;

/// The columns of an event type, in the order [`columns_of`] reads them.
macro_rules! event_type_columns {
    () => {
        "name, description, schema, examples, deprecated, origin, created_ms, updated_ms"
    };
}

fn columns_of(r: &Row<'_>) -> rusqlite::Result<EventTypeColumns> {
    Ok(EventTypeColumns {
        name: r.get(0)?,
        description: r.get(1)?,
        schema: r.get(2)?,
        examples: r.get(3)?,
        deprecated: r.get(4)?,
        origin: r.get(5)?,
        created_ms: r.get(6)?,
        updated_ms: r.get(7)?,
    })
}

/// One type, read on `conn`.
fn event_type_in(conn: &Connection, name: &str) -> Result<Option<EventTypeRecord>> {
    prepare(
        conn,
        concat!(
            "SELECT ",
            event_type_columns!(),
            " FROM event_types WHERE name = ?1"
        ),
    )
    .and_then(|mut s| s.query_row([name], columns_of).optional())
    .map_err(db_err("read event type"))?
    .map(event_type_record)
    .transpose()
}

impl SqliteStore {
    /// Tells the catalogue's watchers that event types changed (after the commit).
    fn event_types_changed(&self) {
        self.inner
            .event_types
            .send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl EventTypes for SqliteStore {
    async fn event_types(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<EventTypeRecord>> {
        let limit = check_limit(limit)?;
        let after = cursor.unwrap_or("").to_owned();
        self.read(move |conn| {
            let rows = prepare(
                conn,
                concat!(
                    "SELECT ",
                    event_type_columns!(),
                    " FROM event_types WHERE name > ?1 ORDER BY name LIMIT ?2"
                ),
            )
            .and_then(|mut s| {
                s.query_map(params![after, limit as i64 + 1], columns_of)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("list event types"))?;
            let mut items = rows
                .into_iter()
                .map(event_type_record)
                .collect::<Result<Vec<_>>>()?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|t| t.name.to_string())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn event_type(&self, name: &str) -> Result<Option<EventTypeRecord>> {
        let name = name.to_owned();
        self.read(move |conn| event_type_in(conn, &name)).await
    }

    async fn put_event_type(&self, put: EventTypePut) -> Result<PutOutcome> {
        let (schema, examples) = event_type_json(&put)?;
        let outcome = self
            .call(move |ctx| {
                let err = db_err("put event type");
                let name = put.name.to_string();
                let existing = event_type_in(ctx.conn, &name)?;
                if existing
                    .as_ref()
                    .is_some_and(|found| found.origin == TypeOrigin::Config)
                    && put.origin == TypeOrigin::Api
                {
                    return Err(StoreError::Declared { name });
                }
                let created = existing.is_none();
                let now = Timestamp::now();
                let created_at = existing.as_ref().map_or(now, |e| e.created_at);
                let record = EventTypeRecord {
                    name: put.name,
                    description: put.description,
                    schema: put.schema,
                    examples: put.examples,
                    deprecated: put.deprecated,
                    origin: put.origin,
                    created_at,
                    updated_at: now,
                };
                if let Some(found) = existing {
                    let same = EventTypeRecord {
                        updated_at: found.updated_at,
                        ..record.clone()
                    };
                    if same == found {
                        // Nothing changed (a config synced again at start): keep its times.
                        return Ok(PutOutcome {
                            record: found,
                            created: false,
                        });
                    }
                }
                prepare(ctx.conn, concat!(
                        "INSERT INTO event_types (",
                        event_type_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (name) DO UPDATE SET \
                         description = excluded.description, schema = excluded.schema, \
                         examples = excluded.examples, deprecated = excluded.deprecated, \
                         origin = excluded.origin, updated_ms = excluded.updated_ms"
                    ))
                    .and_then(|mut s| {
                        s.execute(params![
                            name,
                            record.description,
                            schema,
                            examples,
                            record.deprecated,
                            record.origin.code(),
                            record.created_at.as_unix_millis(),
                            record.updated_at.as_unix_millis(),
                        ])
                    })
                    .map_err(err)?;
                Ok(PutOutcome { record, created })
            })
            .await?;
        self.event_types_changed();
        Ok(outcome)
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        let deleted = self
            .call(move |ctx| {
                let origin: Option<i64> =
                    prepare(ctx.conn, "SELECT origin FROM event_types WHERE name = ?1")
                        .and_then(|mut s| s.query_row([&name], |r| r.get(0)).optional())
                        .map_err(db_err("delete event type"))?;
                match origin.map(TypeOrigin::from_code) {
                    None => Ok(false),
                    Some(Some(TypeOrigin::Config)) => Err(StoreError::Declared { name }),
                    Some(_) => {
                        prepare(ctx.conn, "DELETE FROM event_types WHERE name = ?1")
                            .and_then(|mut s| s.execute([&name]))
                            .map_err(db_err("delete event type"))?;
                        Ok(true)
                    }
                }
            })
            .await?;
        if deleted {
            self.event_types_changed();
        }
        Ok(deleted)
    }

    async fn release_event_type(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        let released = self
            .call(move |ctx| {
                prepare(
                    ctx.conn,
                    "UPDATE event_types SET origin = ?2, updated_ms = ?3 \
                         WHERE name = ?1 AND origin = ?4",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        name,
                        TypeOrigin::Api.code(),
                        Timestamp::now().as_unix_millis(),
                        TypeOrigin::Config.code()
                    ])
                })
                .map(|n| n > 0)
                .map_err(db_err("release event type"))
            })
            .await?;
        if released {
            self.event_types_changed();
        }
        Ok(released)
    }

    fn event_type_changes(&self) -> watch::Receiver<u64> {
        self.inner.event_types.subscribe()
    }
}
