//! Copying a SQLite store into an empty PostgreSQL one (`nexus-server copy`, API.md section 13),
//! so a single-node installation can grow.
//!
//! The SQLite side ([`crate::sqlite`]'s `export`) takes the data directory's lock (a server
//! running on it makes the copy fail) and reads every table in pages by key; the PostgreSQL side
//! ([`crate::postgres`]'s `import`) writes each page with one multi-row `INSERT`, all in one
//! transaction: the copy lands whole or not at all. Rows keep their keys: events their
//! sequences, deliveries (queued or in the history) and dead letters their ids, attempts their
//! deliveries and numbers (the identity counters are moved past the
//! highest id SQLite ever gave, so later inserts do not collide and no id is reused). A
//! delivery that was leased is copied due now and unleased, its attempts kept, as a restart
//! would give it back.
//!
//! The rows travel as their columns ([`EventRow`] and the others), not as the model's types:
//! nothing is re-derived on the way, so the copy is the stored data as it was.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::postgres::PgBuilder;
use crate::postgres::import::Import;
use crate::sqlite::export::SqliteExport;

/// Rows per page read from SQLite and per `INSERT` into PostgreSQL.
const PAGE: usize = 1000;

/// A row of `events`.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) sequence: i64,
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) event_type: String,
    pub(crate) time_ms: i64,
    pub(crate) payload: String,
    pub(crate) correlation_id: Option<String>,
}

/// A row of `subscriptions`.
#[derive(Debug, Clone)]
pub(crate) struct SubscriptionRow {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) target: String,
    /// The patterns as the JSON array both schemas store.
    pub(crate) events: String,
    pub(crate) secret: String,
    pub(crate) ordered: bool,
    pub(crate) enabled: bool,
    pub(crate) created_ms: i64,
    /// The filter's JSON form, as both schemas store it; `None` for none.
    pub(crate) filter: Option<String>,
}

/// A row of `deliveries`, never leased (a lease is given back on the way).
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRow {
    pub(crate) id: i64,
    pub(crate) event_sequence: i64,
    pub(crate) consumer_kind: i16,
    pub(crate) consumer: String,
    pub(crate) target: String,
    pub(crate) state: i16,
    pub(crate) due_ms: i64,
    pub(crate) attempts: i32,
    pub(crate) lease_gen: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) last_status: Option<i32>,
    pub(crate) created_ms: i64,
    pub(crate) first_attempt_ms: Option<i64>,
    pub(crate) last_attempt_ms: Option<i64>,
}

/// A row of `dead_letters`.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterRow {
    pub(crate) id: i64,
    pub(crate) event_sequence: i64,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) payload: String,
    pub(crate) consumer_kind: i16,
    pub(crate) consumer: String,
    pub(crate) target: String,
    pub(crate) error: String,
    pub(crate) last_status: Option<i32>,
    pub(crate) attempts: i32,
    pub(crate) created_ms: i64,
    pub(crate) first_attempt_ms: Option<i64>,
    pub(crate) failed_ms: i64,
}

/// A row of `delivery_attempts`: one settled attempt of a delivery (queued or finished).
#[derive(Debug, Clone)]
pub(crate) struct AttemptCopyRow {
    pub(crate) delivery: i64,
    pub(crate) attempt: i32,
    pub(crate) started_ms: i64,
    pub(crate) duration_ms: i64,
    pub(crate) status: Option<i32>,
    pub(crate) error: Option<String>,
}

/// A row of `delivery_history`: a delivery that was acknowledged or became a dead letter.
#[derive(Debug, Clone)]
pub(crate) struct FinishedCopyRow {
    pub(crate) id: i64,
    pub(crate) event_sequence: i64,
    pub(crate) consumer_kind: i16,
    pub(crate) consumer: String,
    pub(crate) target: String,
    pub(crate) outcome: i16,
    pub(crate) created_ms: i64,
    pub(crate) finished_ms: i64,
    /// The inline attempt that delivered it: start, duration, status (none on dead rows).
    pub(crate) ok_started_ms: Option<i64>,
    pub(crate) ok_duration_ms: Option<i64>,
    pub(crate) ok_status: Option<i32>,
}

/// A row of `cursors`.
#[derive(Debug, Clone)]
pub(crate) struct CursorRow {
    pub(crate) name: String,
    pub(crate) sequence: i64,
    pub(crate) updated_ms: i64,
}

/// A row of `breakers`.
#[derive(Debug, Clone)]
pub(crate) struct BreakerRow {
    pub(crate) target: String,
    pub(crate) open: bool,
    pub(crate) consecutive_failures: i64,
    pub(crate) trips: i64,
    pub(crate) opened_ms: Option<i64>,
    pub(crate) updated_ms: i64,
    /// How many times it was saved: instances adopt only a newer one (shared breakers).
    pub(crate) generation: i64,
}

/// A row of `event_types`.
#[derive(Debug, Clone)]
pub(crate) struct EventTypeRow {
    pub(crate) name: String,
    pub(crate) description: String,
    /// The schema as the JSON text both schemas store; `None` for none.
    pub(crate) schema: Option<String>,
    /// The examples as a JSON array.
    pub(crate) examples: String,
    pub(crate) deprecated: bool,
    /// `TypeOrigin`'s code: 0 the config file, 1 the admin API.
    pub(crate) origin: i16,
    pub(crate) created_ms: i64,
    pub(crate) updated_ms: i64,
}

/// The highest ids SQLite ever gave (`sqlite_sequence`, or the highest row when higher), so the
/// PostgreSQL identities continue after them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LastIds {
    pub(crate) deliveries: i64,
    pub(crate) dead_letters: i64,
}

/// What a copy wrote, table by table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// The SQLite database file copied from.
    pub source: PathBuf,
    /// The PostgreSQL database copied into (`host:port/name`; never the password).
    pub database: String,
    /// Events, with their sequences.
    pub events: u64,
    /// Webhook subscriptions, with their ids, secrets and creation times.
    pub subscriptions: u64,
    /// Queued deliveries (a leased one copied due now, unleased).
    pub deliveries: u64,
    /// Dead letters, with their ids.
    pub dead_letters: u64,
    /// Finished deliveries (delivered or dead) of the delivery history, with their ids.
    pub delivery_history: u64,
    /// Settled attempts of queued and finished deliveries.
    pub delivery_attempts: u64,
    /// Named cursors.
    pub cursors: u64,
    /// Circuit breaker states.
    pub breakers: u64,
    /// Declared event types (the catalogue), with their origin and times.
    pub event_types: u64,
    /// The highest sequence copied (0 for an empty log); the next append gets the one after.
    pub head: u64,
}

impl CopyReport {
    /// Each table's name (as in the schemas) and how many rows were copied, in copy order.
    pub fn tables(&self) -> [(&'static str, u64); 9] {
        [
            ("event_types", self.event_types),
            ("subscriptions", self.subscriptions),
            ("events", self.events),
            ("deliveries", self.deliveries),
            ("dead_letters", self.dead_letters),
            ("delivery_history", self.delivery_history),
            ("delivery_attempts", self.delivery_attempts),
            ("cursors", self.cursors),
            ("breakers", self.breakers),
        ]
    }
}

/// Copies the SQLite store in `from` (a data directory) into the PostgreSQL store `to` opens
/// (migrating its schema), whose database must hold no Nexus data yet (else
/// [`StoreError::NotEmpty`](crate::StoreError::NotEmpty), naming what it holds). Everything is
/// written in one transaction: on any failure nothing is left behind.
///
/// The source is opened first, so a missing one leaves the target untouched: it fails with
/// [`StoreError::MissingDir`](crate::StoreError::MissingDir) or
/// [`StoreError::NoStore`](crate::StoreError::NoStore) when there is no store in `from`, and
/// [`StoreError::Locked`](crate::StoreError::Locked) when a server runs on it. The target
/// store is opened under an instance name of the copy's own (so the leases of a server already
/// on it are left alone) and closed at the end; open it again to serve from it.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use nexus_store::{PgStore, copy_sqlite_to_postgres};
///
/// let target = PgStore::builder("postgres://nexus@127.0.0.1/nexus");
/// let report = copy_sqlite_to_postgres("/var/lib/nexus".as_ref(), target).await?;
/// println!("{} events, head {}", report.events, report.head);
/// # Ok(())
/// # }
/// ```
pub async fn copy_sqlite_to_postgres(from: &Path, to: PgBuilder) -> Result<CopyReport> {
    let source = SqliteExport::open(from)?;
    // An instance name of the copy's own: opening gives back the leases of its name, and a
    // server already on the target (which the copy then refuses) must keep its own.
    let to = to
        .instance(format!("nexus-copy-{}", std::process::id()))
        .pool_size(2)
        .open()
        .await?;
    let report = copy_into(&source, &to).await;
    to.close().await;
    report
}

/// The copy proper, between two open stores.
async fn copy_into(source: &SqliteExport, to: &crate::postgres::PgStore) -> Result<CopyReport> {
    let mut client = to.copy_connection().await?;
    let import = Import::begin(&mut client, to.database(), to.instance()).await?;
    let mut report = CopyReport {
        source: source.path().to_owned(),
        database: to.database().to_owned(),
        events: 0,
        subscriptions: 0,
        deliveries: 0,
        dead_letters: 0,
        delivery_history: 0,
        delivery_attempts: 0,
        cursors: 0,
        breakers: 0,
        event_types: 0,
        head: 0,
    };

    let mut after = String::new();
    loop {
        let rows = source.event_types(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.name.clone();
        import.event_types(&rows).await?;
        report.event_types += rows.len() as u64;
    }

    let mut after = String::new();
    loop {
        let rows = source.subscriptions(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id.clone();
        import.subscriptions(&rows).await?;
        report.subscriptions += rows.len() as u64;
    }

    let mut after = 0;
    loop {
        let rows = source.events(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.sequence;
        import.events(&rows).await?;
        report.events += rows.len() as u64;
        report.head = u64::try_from(after).unwrap_or(0);
    }

    let mut after = 0;
    loop {
        let rows = source.deliveries(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        import.deliveries(&rows).await?;
        report.deliveries += rows.len() as u64;
    }

    let mut after = 0;
    loop {
        let rows = source.dead_letters(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        import.dead_letters(&rows).await?;
        report.dead_letters += rows.len() as u64;
    }

    let mut after = 0;
    loop {
        let rows = source.delivery_history(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        import.delivery_history(&rows).await?;
        report.delivery_history += rows.len() as u64;
    }

    let mut after = (0, 0);
    loop {
        let rows = source.delivery_attempts(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = (last.delivery, last.attempt);
        import.delivery_attempts(&rows).await?;
        report.delivery_attempts += rows.len() as u64;
    }

    let mut after = String::new();
    loop {
        let rows = source.cursors(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.name.clone();
        import.cursors(&rows).await?;
        report.cursors += rows.len() as u64;
    }

    let mut after = String::new();
    loop {
        let rows = source.breakers(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.target.clone();
        import.breakers(&rows).await?;
        report.breakers += rows.len() as u64;
    }

    import.finish(source.last_ids().await?).await?;
    tracing::info!(
        source = %report.source.display(),
        database = %report.database,
        events = report.events,
        head = report.head,
        "store copied"
    );
    Ok(report)
}
