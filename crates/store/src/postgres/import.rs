//! Writing a copied store (`crate::copy`): one transaction over the whole copy, refused when the
//! database already holds data, each page one multi-row `INSERT ... SELECT FROM unnest(...)`,
//! rows with their keys; at the end the identity counters are moved past the copied ids and the
//! routes version bumped, so every instance reads the copied subscriptions.

use deadpool_postgres::{Object, Transaction};
use tokio_postgres::types::ToSql;

use super::columns::db_err;
use super::{PgStore, get, schema};
use crate::copy::{
    AttemptCopyRow, BreakerRow, CursorRow, DeadLetterRow, DeliveryRow, EventRow, EventTypeRow,
    FinishedCopyRow, LastIds, SubscriptionRow,
};
use crate::error::{Result, StoreError};

/// The tables a copy fills, in the words of the refusal ("already holds 120 events").
const TABLES: [(&str, &str); 9] = [
    ("events", "events"),
    ("subscriptions", "subscriptions"),
    ("deliveries", "queued deliveries"),
    ("dead_letters", "dead letters"),
    ("delivery_history", "finished deliveries"),
    ("delivery_attempts", "delivery attempts"),
    ("cursors", "cursors"),
    ("breakers", "breakers"),
    ("event_types", "event types"),
];

impl PgStore {
    /// A connection of the pool for a copy's transaction.
    pub(crate) async fn copy_connection(&self) -> Result<Object> {
        self.conn("copy").await
    }
}

/// A copy's open transaction. Dropped without [`Import::finish`], it rolls back.
pub(crate) struct Import<'c> {
    tx: Transaction<'c>,
}

impl<'c> Import<'c> {
    /// Begins the copy's transaction: takes the append lock (no instance appends meanwhile)
    /// and refuses a database that holds any row of the tables a copy fills, naming them, or
    /// on which a server other than the copy (`own`, its instance name) is running: that server
    /// would publish the whole copied history to its WebSocket clients as new.
    pub(crate) async fn begin(
        client: &'c mut Object,
        database: &str,
        own: &str,
    ) -> Result<Import<'c>> {
        let err = db_err("copy: begin");
        let tx = client.transaction().await.map_err(&err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::APPEND_LOCK])
            .await
            .map_err(&err)?;
        let counts = TABLES
            .iter()
            .map(|(table, _)| format!("(SELECT count(*) FROM {table})"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = tx
            .query_one(&format!("SELECT {counts}"), &[])
            .await
            .map_err(&err)?;
        let mut holds = Vec::new();
        let running: i64 = get(
            &tx.query_one("SELECT count(*) FROM instances WHERE id <> $1", &[&own])
                .await
                .map_err(&err)?,
            0,
            "copy: begin",
        )?;
        if running > 0 {
            holds.push(format!(
                "{running} running nexus-server instance(s) (stop them before copying)"
            ));
        }
        for (i, (_, words)) in TABLES.iter().enumerate() {
            let count: i64 = get(&row, i, "copy: begin")?;
            if count > 0 {
                holds.push(format!("{count} {words}"));
            }
        }
        if !holds.is_empty() {
            return Err(StoreError::NotEmpty {
                database: database.to_owned(),
                holds: holds.join(", "),
            });
        }
        Ok(Import { tx })
    }

    /// Runs one batch statement.
    async fn insert(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<()> {
        self.tx
            .execute(sql, params)
            .await
            .map(|_| ())
            .map_err(db_err("copy: write"))
    }

    /// Writes events with their sequences.
    pub(crate) async fn events(&self, rows: &[EventRow]) -> Result<()> {
        let col = |f: fn(&EventRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let sequence: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
        let time: Vec<i64> = rows.iter().map(|r| r.time_ms).collect();
        let correlation: Vec<Option<String>> =
            rows.iter().map(|r| r.correlation_id.clone()).collect();
        self.insert(
            "INSERT INTO events (sequence, id, source, type, time_ms, payload, correlation_id) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
             $5::bigint[], $6::text[], $7::text[])",
            &[
                &sequence,
                &col(|r| r.id.clone()),
                &col(|r| r.source.clone()),
                &col(|r| r.event_type.clone()),
                &time,
                &col(|r| r.payload.clone()),
                &correlation,
            ],
        )
        .await
    }

    /// Writes subscriptions with their ids, secrets and creation times.
    pub(crate) async fn subscriptions(&self, rows: &[SubscriptionRow]) -> Result<()> {
        let col = |f: fn(&SubscriptionRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let ordered: Vec<bool> = rows.iter().map(|r| r.ordered).collect();
        let enabled: Vec<bool> = rows.iter().map(|r| r.enabled).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.created_ms).collect();
        let filter: Vec<Option<String>> = rows.iter().map(|r| r.filter.clone()).collect();
        self.insert(
            "INSERT INTO subscriptions (id, url, target, events, secret, ordered, enabled, \
             created_ms, filter) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
             $4::text[], $5::text[], $6::boolean[], $7::boolean[], $8::bigint[], $9::text[])",
            &[
                &col(|r| r.id.clone()),
                &col(|r| r.url.clone()),
                &col(|r| r.target.clone()),
                &col(|r| r.events.clone()),
                &col(|r| r.secret.clone()),
                &ordered,
                &enabled,
                &created,
                &filter,
            ],
        )
        .await
    }

    /// Writes queued deliveries with their ids (none of them leased).
    pub(crate) async fn deliveries(&self, rows: &[DeliveryRow]) -> Result<()> {
        let id: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let sequence: Vec<i64> = rows.iter().map(|r| r.event_sequence).collect();
        let kind: Vec<i16> = rows.iter().map(|r| r.consumer_kind).collect();
        let consumer: Vec<String> = rows.iter().map(|r| r.consumer.clone()).collect();
        let target: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        let state: Vec<i16> = rows.iter().map(|r| r.state).collect();
        let due: Vec<i64> = rows.iter().map(|r| r.due_ms).collect();
        let attempts: Vec<i32> = rows.iter().map(|r| r.attempts).collect();
        let lease_gen: Vec<i64> = rows.iter().map(|r| r.lease_gen).collect();
        let last_error: Vec<Option<String>> = rows.iter().map(|r| r.last_error.clone()).collect();
        let last_status: Vec<Option<i32>> = rows.iter().map(|r| r.last_status).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.created_ms).collect();
        let first: Vec<Option<i64>> = rows.iter().map(|r| r.first_attempt_ms).collect();
        let last: Vec<Option<i64>> = rows.iter().map(|r| r.last_attempt_ms).collect();
        self.insert(
            "INSERT INTO deliveries (id, event_sequence, consumer_kind, consumer, target, state, \
             due_ms, attempts, lease_gen, last_error, last_status, created_ms, first_attempt_ms, \
             last_attempt_ms) OVERRIDING SYSTEM VALUE \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], \
             $5::text[], $6::smallint[], $7::bigint[], $8::integer[], $9::bigint[], $10::text[], \
             $11::integer[], $12::bigint[], $13::bigint[], $14::bigint[])",
            &[
                &id,
                &sequence,
                &kind,
                &consumer,
                &target,
                &state,
                &due,
                &attempts,
                &lease_gen,
                &last_error,
                &last_status,
                &created,
                &first,
                &last,
            ],
        )
        .await
    }

    /// Writes dead letters with their ids.
    pub(crate) async fn dead_letters(&self, rows: &[DeadLetterRow]) -> Result<()> {
        let col = |f: fn(&DeadLetterRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
        let id: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let sequence: Vec<i64> = rows.iter().map(|r| r.event_sequence).collect();
        let kind: Vec<i16> = rows.iter().map(|r| r.consumer_kind).collect();
        let last_status: Vec<Option<i32>> = rows.iter().map(|r| r.last_status).collect();
        let attempts: Vec<i32> = rows.iter().map(|r| r.attempts).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.created_ms).collect();
        let first: Vec<Option<i64>> = rows.iter().map(|r| r.first_attempt_ms).collect();
        let failed: Vec<i64> = rows.iter().map(|r| r.failed_ms).collect();
        self.insert(
            "INSERT INTO dead_letters (id, event_sequence, event_id, event_type, payload, \
             consumer_kind, consumer, target, error, last_status, attempts, created_ms, \
             first_attempt_ms, failed_ms) OVERRIDING SYSTEM VALUE \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
             $6::smallint[], $7::text[], $8::text[], $9::text[], $10::integer[], $11::integer[], \
             $12::bigint[], $13::bigint[], $14::bigint[])",
            &[
                &id,
                &sequence,
                &col(|r| r.event_id.clone()),
                &col(|r| r.event_type.clone()),
                &col(|r| r.payload.clone()),
                &kind,
                &col(|r| r.consumer.clone()),
                &col(|r| r.target.clone()),
                &col(|r| r.error.clone()),
                &last_status,
                &attempts,
                &created,
                &first,
                &failed,
            ],
        )
        .await
    }

    /// Writes finished deliveries of the history with their ids.
    pub(crate) async fn delivery_history(&self, rows: &[FinishedCopyRow]) -> Result<()> {
        let id: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let sequence: Vec<i64> = rows.iter().map(|r| r.event_sequence).collect();
        let kind: Vec<i16> = rows.iter().map(|r| r.consumer_kind).collect();
        let consumer: Vec<String> = rows.iter().map(|r| r.consumer.clone()).collect();
        let target: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        let outcome: Vec<i16> = rows.iter().map(|r| r.outcome).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.created_ms).collect();
        let finished: Vec<i64> = rows.iter().map(|r| r.finished_ms).collect();
        let ok_started: Vec<Option<i64>> = rows.iter().map(|r| r.ok_started_ms).collect();
        let ok_duration: Vec<Option<i64>> = rows.iter().map(|r| r.ok_duration_ms).collect();
        let ok_status: Vec<Option<i32>> = rows.iter().map(|r| r.ok_status).collect();
        self.insert(
            "INSERT INTO delivery_history (id, event_sequence, consumer_kind, consumer, target, \
             outcome, created_ms, finished_ms, ok_started_ms, ok_duration_ms, ok_status) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], \
             $5::text[], $6::smallint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], \
             $11::integer[])",
            &[
                &id,
                &sequence,
                &kind,
                &consumer,
                &target,
                &outcome,
                &created,
                &finished,
                &ok_started,
                &ok_duration,
                &ok_status,
            ],
        )
        .await
    }

    /// Writes settled attempts with their deliveries and numbers.
    pub(crate) async fn delivery_attempts(&self, rows: &[AttemptCopyRow]) -> Result<()> {
        let delivery: Vec<i64> = rows.iter().map(|r| r.delivery).collect();
        let attempt: Vec<i32> = rows.iter().map(|r| r.attempt).collect();
        let started: Vec<i64> = rows.iter().map(|r| r.started_ms).collect();
        let duration: Vec<i64> = rows.iter().map(|r| r.duration_ms).collect();
        let status: Vec<Option<i32>> = rows.iter().map(|r| r.status).collect();
        let error: Vec<Option<String>> = rows.iter().map(|r| r.error.clone()).collect();
        self.insert(
            "INSERT INTO delivery_attempts (delivery, attempt, started_ms, duration_ms, status, \
             error) SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bigint[], \
             $4::bigint[], $5::integer[], $6::text[])",
            &[&delivery, &attempt, &started, &duration, &status, &error],
        )
        .await
    }

    /// Writes cursors.
    pub(crate) async fn cursors(&self, rows: &[CursorRow]) -> Result<()> {
        let name: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let sequence: Vec<i64> = rows.iter().map(|r| r.sequence).collect();
        let updated: Vec<i64> = rows.iter().map(|r| r.updated_ms).collect();
        self.insert(
            "INSERT INTO cursors (name, sequence, updated_ms) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
            &[&name, &sequence, &updated],
        )
        .await
    }

    /// Writes breaker states with their generations, so instances on the copy take them as they
    /// were (a restored record is not news to adopt again).
    pub(crate) async fn breakers(&self, rows: &[BreakerRow]) -> Result<()> {
        let target: Vec<String> = rows.iter().map(|r| r.target.clone()).collect();
        let open: Vec<bool> = rows.iter().map(|r| r.open).collect();
        let failures: Vec<i64> = rows.iter().map(|r| r.consecutive_failures).collect();
        let trips: Vec<i64> = rows.iter().map(|r| r.trips).collect();
        let opened: Vec<Option<i64>> = rows.iter().map(|r| r.opened_ms).collect();
        let updated: Vec<i64> = rows.iter().map(|r| r.updated_ms).collect();
        let generation: Vec<i64> = rows.iter().map(|r| r.generation).collect();
        self.insert(
            "INSERT INTO breakers (target, open, consecutive_failures, trips, opened_ms, \
             updated_ms, generation) SELECT * FROM unnest($1::text[], $2::boolean[], \
             $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])",
            &[
                &target,
                &open,
                &failures,
                &trips,
                &opened,
                &updated,
                &generation,
            ],
        )
        .await
    }

    /// Writes declared event types with their origin and times.
    pub(crate) async fn event_types(&self, rows: &[EventTypeRow]) -> Result<()> {
        let name: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        let description: Vec<String> = rows.iter().map(|r| r.description.clone()).collect();
        let schema: Vec<Option<String>> = rows.iter().map(|r| r.schema.clone()).collect();
        let examples: Vec<String> = rows.iter().map(|r| r.examples.clone()).collect();
        let deprecated: Vec<bool> = rows.iter().map(|r| r.deprecated).collect();
        let origin: Vec<i16> = rows.iter().map(|r| r.origin).collect();
        let created: Vec<i64> = rows.iter().map(|r| r.created_ms).collect();
        let updated: Vec<i64> = rows.iter().map(|r| r.updated_ms).collect();
        self.insert(
            "INSERT INTO event_types (name, description, schema, examples, deprecated, origin, \
             created_ms, updated_ms) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
             $4::text[], $5::boolean[], $6::smallint[], $7::bigint[], $8::bigint[])",
            &[
                &name,
                &description,
                &schema,
                &examples,
                &deprecated,
                &origin,
                &created,
                &updated,
            ],
        )
        .await
    }

    /// Moves the identity counters past the highest ids SQLite gave (so a later insert neither
    /// collides with a copied row nor reuses an id), bumps the routes version (every instance
    /// reads the copied subscriptions before its next append) and commits.
    pub(crate) async fn finish(self, last: LastIds) -> Result<()> {
        let err = db_err("copy: commit");
        for (table, id) in [
            ("deliveries", last.deliveries),
            ("dead_letters", last.dead_letters),
        ] {
            if id > 0 {
                self.tx
                    .execute(
                        "SELECT setval(pg_get_serial_sequence($1, 'id'), $2, true)",
                        &[&table, &id],
                    )
                    .await
                    .map_err(&err)?;
            }
        }
        self.tx
            .execute("UPDATE routes_version SET version = version + 1", &[])
            .await
            .map_err(&err)?;
        self.tx.commit().await.map_err(&err)
    }
}
