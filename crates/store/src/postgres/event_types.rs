//! The event-type catalogue (API.md section 11): one row per declared type, its schema and
//! examples as JSON text. A change notifies `nexus_event_types` in its transaction, so every
//! instance's watch of [`EventTypes::event_type_changes`] moves once it is committed (the
//! follower listens; see `follow.rs`).

use async_trait::async_trait;
use nexus_event::Timestamp;
use tokio::sync::watch;
use tokio_postgres::Row;

use super::columns::db_err;
use super::follow::EVENT_TYPES_CHANNEL;
use super::{PgStore, get};
use crate::backend::{EventTypeColumns, event_type_json, event_type_record};
use crate::error::{Result, StoreError};
use crate::model::{EventTypePut, EventTypeRecord, Page, PutOutcome, TypeOrigin, check_limit};
use crate::traits::EventTypes;

/// The columns of an event type, in the order [`record_of`] reads them.
macro_rules! event_type_columns {
    () => {
        "name, description, schema, examples, deprecated, origin, created_ms, updated_ms"
    };
}

fn record_of(r: &Row) -> Result<EventTypeRecord> {
    let op = "read event type";
    event_type_record(EventTypeColumns {
        name: get(r, 0, op)?,
        description: get(r, 1, op)?,
        schema: get(r, 2, op)?,
        examples: get(r, 3, op)?,
        deprecated: get(r, 4, op)?,
        origin: i64::from(get::<i16>(r, 5, op)?),
        created_ms: get(r, 6, op)?,
        updated_ms: get(r, 7, op)?,
    })
}

/// Tells every instance, at the commit, that event types changed.
async fn notify(client: &tokio_postgres::Client, op: &'static str) -> Result<()> {
    client
        .execute("SELECT pg_notify($1, '')", &[&EVENT_TYPES_CHANNEL])
        .await
        .map_err(db_err(op))?;
    Ok(())
}

#[async_trait]
impl EventTypes for PgStore {
    async fn event_types(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<EventTypeRecord>> {
        let limit = check_limit(limit)?;
        let after = cursor.unwrap_or("");
        let op = "list event types";
        let client = self.conn(op).await?;
        let rows = client
            .query(
                concat!(
                    "SELECT ",
                    event_type_columns!(),
                    " FROM event_types WHERE name > $1 ORDER BY name LIMIT $2"
                ),
                &[&after, &i64::try_from(limit + 1).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(db_err(op))?;
        let mut items = rows.iter().map(record_of).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|t| t.name.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn event_type(&self, name: &str) -> Result<Option<EventTypeRecord>> {
        let op = "read event type";
        let client = self.conn(op).await?;
        client
            .query_opt(
                concat!(
                    "SELECT ",
                    event_type_columns!(),
                    " FROM event_types WHERE name = $1"
                ),
                &[&name],
            )
            .await
            .map_err(db_err(op))?
            .as_ref()
            .map(record_of)
            .transpose()
    }

    async fn put_event_type(&self, put: EventTypePut) -> Result<PutOutcome> {
        let (schema, examples) = event_type_json(&put)?;
        let outcome = self
            .call(move |ctx| {
                Box::pin(async move {
                    let op = "put event type";
                    let name = put.name.to_string();
                    // Locks the row (when there is one) until the commit: a concurrent put on
                    // another instance waits and then sees this one.
                    let existing = ctx
                        .client
                        .query_opt(
                            concat!(
                                "SELECT ",
                                event_type_columns!(),
                                " FROM event_types WHERE name = $1 FOR UPDATE"
                            ),
                            &[&name],
                        )
                        .await
                        .map_err(db_err(op))?
                        .as_ref()
                        .map(record_of)
                        .transpose()?;
                    if existing
                        .as_ref()
                        .is_some_and(|found| found.origin == TypeOrigin::Config)
                        && put.origin == TypeOrigin::Api
                    {
                        return Err(StoreError::Declared { name });
                    }
                    let now = Timestamp::now();
                    let record = EventTypeRecord {
                        name: put.name,
                        description: put.description,
                        schema: put.schema,
                        examples: put.examples,
                        deprecated: put.deprecated,
                        origin: put.origin,
                        created_at: existing.as_ref().map_or(now, |e| e.created_at),
                        updated_at: now,
                    };
                    if let Some(found) = existing.as_ref() {
                        let same = EventTypeRecord {
                            updated_at: found.updated_at,
                            ..record.clone()
                        };
                        if &same == found {
                            // Nothing changed (a config synced again at start): keep its times.
                            return Ok(PutOutcome {
                                record: same,
                                created: false,
                            });
                        }
                    }
                    // `xmax = 0` only for a row this statement inserted: a put that raced
                    // another instance's first put of the name still says which one created it.
                    let row = ctx
                        .client
                        .query_one(
                            concat!(
                                "INSERT INTO event_types (",
                                event_type_columns!(),
                                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                                 ON CONFLICT (name) DO UPDATE SET \
                                 description = excluded.description, schema = excluded.schema, \
                                 examples = excluded.examples, deprecated = excluded.deprecated, \
                                 origin = excluded.origin, updated_ms = excluded.updated_ms \
                                 RETURNING created_ms, (xmax = 0) AS inserted"
                            ),
                            &[
                                &name,
                                &record.description,
                                &schema,
                                &examples,
                                &record.deprecated,
                                &record.origin.code(),
                                &record.created_at.as_unix_millis(),
                                &record.updated_at.as_unix_millis(),
                            ],
                        )
                        .await
                        .map_err(db_err(op))?;
                    let created_ms: i64 = get(&row, 0, op)?;
                    let created: bool = get(&row, 1, op)?;
                    notify(&ctx.client, op).await?;
                    Ok(PutOutcome {
                        record: EventTypeRecord {
                            created_at: super::columns::ts(created_ms)?,
                            ..record
                        },
                        created,
                    })
                })
            })
            .await?;
        self.inner.fanout.event_types_changed();
        Ok(outcome)
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        let deleted = self
            .call(move |ctx| {
                Box::pin(async move {
                    let op = "delete event type";
                    let origin = ctx
                        .client
                        .query_opt(
                            "SELECT origin FROM event_types WHERE name = $1 FOR UPDATE",
                            &[&name],
                        )
                        .await
                        .map_err(db_err(op))?
                        .map(|r| get::<i16>(&r, 0, op))
                        .transpose()?;
                    match origin.map(|o| TypeOrigin::from_code(o.into())) {
                        None => Ok(false),
                        Some(Some(TypeOrigin::Config)) => Err(StoreError::Declared { name }),
                        Some(_) => {
                            ctx.client
                                .execute("DELETE FROM event_types WHERE name = $1", &[&name])
                                .await
                                .map_err(db_err(op))?;
                            notify(&ctx.client, op).await?;
                            Ok(true)
                        }
                    }
                })
            })
            .await?;
        if deleted {
            self.inner.fanout.event_types_changed();
        }
        Ok(deleted)
    }

    async fn release_event_type(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        let released = self
            .call(move |ctx| {
                Box::pin(async move {
                    let op = "release event type";
                    let changed = ctx
                        .client
                        .execute(
                            "UPDATE event_types SET origin = $2, updated_ms = $3 \
                             WHERE name = $1 AND origin = $4",
                            &[
                                &name,
                                &TypeOrigin::Api.code(),
                                &Timestamp::now().as_unix_millis(),
                                &TypeOrigin::Config.code(),
                            ],
                        )
                        .await
                        .map_err(db_err(op))?;
                    if changed > 0 {
                        notify(&ctx.client, op).await?;
                    }
                    Ok(changed > 0)
                })
            })
            .await?;
        if released {
            self.inner.fanout.event_types_changed();
        }
        Ok(released)
    }

    fn event_type_changes(&self) -> watch::Receiver<u64> {
        self.inner.fanout.event_type_changes()
    }
}
