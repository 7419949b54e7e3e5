//! Reading a whole store for a copy into PostgreSQL (`crate::copy`): the data directory's lock
//! held for the copy's life (a server running on it makes the open fail), every table read in
//! pages by key on tokio's blocking pool.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nexus_event::Timestamp;
use rusqlite::{Connection, OpenFlags, Row};

use super::columns::{Arg, bind, db_err, plan_once, prepare};
use super::open::{DB_FILE, corrupt, lock_dir, migrate, open_err};
use super::queue::wait_state;
use super::schema;
use crate::backend::{ConsumerKind, DeliveryState, Finished};
use crate::copy::{
    AttemptCopyRow, BreakerRow, CursorRow, DeadLetterRow, DeliveryRow, EventRow, EventTypeRow,
    FinishedCopyRow, LastIds, SubscriptionRow,
};
use crate::error::{Result, StoreError};

/// A SQLite store opened for reading it whole. Holds the data directory's lock until dropped.
pub(crate) struct SqliteExport {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// Held while the copy reads: no server may start on the directory meanwhile.
    _lock: File,
}

impl SqliteExport {
    /// Opens the store in `dir` for a copy: the directory must exist and hold a Nexus database
    /// ([`StoreError::MissingDir`], [`StoreError::NoStore`]) that no server has open
    /// ([`StoreError::Locked`]). An older schema is migrated first, as opening it would.
    pub(crate) fn open(dir: &Path) -> Result<SqliteExport> {
        // As a server's open checks it, without creating it: the copy takes the lock file too.
        super::open::check_dir(dir, false)?;
        let path = dir.join(DB_FILE);
        let no_store = || StoreError::NoStore {
            path: dir.to_owned(),
            file: DB_FILE,
        };
        if !path.is_file() {
            return Err(no_store());
        }
        let lock = lock_dir(dir)?;
        // Read-write (never create): a write-ahead log left by a crash is folded in on open.
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err(&path))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err(&path))?;
        plan_once(&conn).map_err(open_err(&path))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err(&path))?;
        if version == 0 {
            return Err(no_store());
        }
        if version > schema::VERSION {
            return Err(StoreError::SchemaTooNew {
                path,
                found: version,
                supported: schema::VERSION,
            });
        }
        migrate(&conn, version).map_err(open_err(&path))?;
        Ok(SqliteExport {
            path,
            conn: Arc::new(Mutex::new(conn)),
            _lock: lock,
        })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&conn).map_err(|e| match e {
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..) => corrupt(&path, e),
                other => db_err("copy: read the SQLite store")(other),
            })
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            reason: format!("copy reader task failed: {e}"),
        })?
    }

    /// Up to `limit` events after sequence `after`, in sequence order.
    pub(crate) async fn events(&self, after: i64, limit: usize) -> Result<Vec<EventRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT sequence, id, source, type, time_ms, payload, correlation_id FROM events \
                 WHERE sequence > :after ORDER BY sequence LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(EventRow {
                        sequence: r.get(0)?,
                        id: r.get(1)?,
                        source: r.get(2)?,
                        event_type: r.get(3)?,
                        time_ms: r.get(4)?,
                        payload: r.get(5)?,
                        correlation_id: r.get(6)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` subscriptions with an id above `after`, in id order.
    pub(crate) async fn subscriptions(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<SubscriptionRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT id, url, target, events, secret, ordered, enabled, created_ms, filter \
                 FROM subscriptions WHERE id > :after ORDER BY id LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(SubscriptionRow {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        target: r.get(2)?,
                        events: r.get(3)?,
                        secret: r.get(4)?,
                        ordered: r.get::<_, i64>(5)? != 0,
                        enabled: r.get::<_, i64>(6)? != 0,
                        created_ms: r.get(7)?,
                        filter: r.get(8)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` queued deliveries with an id above `after`, in id order. A leased one comes
    /// back due now at the latest and unleased (held if its subscription is disabled), its
    /// attempts unchanged: the process that held it is gone, as at a restart (API.md section 5).
    pub(crate) async fn deliveries(&self, after: i64, limit: usize) -> Result<Vec<DeliveryRow>> {
        let now = Timestamp::now().as_unix_millis();
        self.read(move |conn| {
            page(
                conn,
                concat!(
                    "SELECT id, event_sequence, consumer_kind, consumer, target, \
                     CASE WHEN state = :leased THEN ",
                    wait_state!(),
                    " ELSE state END, \
                     CASE WHEN state = :leased THEN min(due_ms, :now) ELSE due_ms END, \
                     attempts, lease_gen, last_error, last_status, created_ms, \
                     first_attempt_ms, last_attempt_ms \
                     FROM deliveries WHERE id > :after ORDER BY id LIMIT :limit"
                ),
                &[(":after", &after), (":now", &now)],
                limit,
                |r| {
                    Ok(DeliveryRow {
                        id: r.get(0)?,
                        event_sequence: r.get(1)?,
                        consumer_kind: r.get::<_, ConsumerKind>(2)?.code(),
                        consumer: r.get(3)?,
                        target: r.get(4)?,
                        state: r.get::<_, DeliveryState>(5)?.code(),
                        due_ms: r.get(6)?,
                        attempts: r.get(7)?,
                        lease_gen: r.get(8)?,
                        last_error: r.get(9)?,
                        last_status: r.get(10)?,
                        created_ms: r.get(11)?,
                        first_attempt_ms: r.get(12)?,
                        last_attempt_ms: r.get(13)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` dead letters with an id above `after`, in id order.
    pub(crate) async fn dead_letters(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetterRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT id, event_sequence, event_id, event_type, payload, consumer_kind, \
                 consumer, target, error, last_status, attempts, created_ms, first_attempt_ms, \
                 failed_ms FROM dead_letters WHERE id > :after ORDER BY id LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(DeadLetterRow {
                        id: r.get(0)?,
                        event_sequence: r.get(1)?,
                        event_id: r.get(2)?,
                        event_type: r.get(3)?,
                        payload: r.get(4)?,
                        consumer_kind: r.get::<_, ConsumerKind>(5)?.code(),
                        consumer: r.get(6)?,
                        target: r.get(7)?,
                        error: r.get(8)?,
                        last_status: r.get(9)?,
                        attempts: r.get(10)?,
                        created_ms: r.get(11)?,
                        first_attempt_ms: r.get(12)?,
                        failed_ms: r.get(13)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` finished deliveries of the history with an id above `after`, in id order.
    pub(crate) async fn delivery_history(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<FinishedCopyRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT id, event_sequence, consumer_kind, consumer, target, outcome, created_ms, \
                 finished_ms, ok_started_ms, ok_duration_ms, ok_status FROM delivery_history \
                 WHERE id > :after ORDER BY id LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(FinishedCopyRow {
                        id: r.get(0)?,
                        event_sequence: r.get(1)?,
                        consumer_kind: r.get::<_, ConsumerKind>(2)?.code(),
                        consumer: r.get(3)?,
                        target: r.get(4)?,
                        outcome: r.get::<_, Finished>(5)?.code(),
                        created_ms: r.get(6)?,
                        finished_ms: r.get(7)?,
                        ok_started_ms: r.get(8)?,
                        ok_duration_ms: r.get(9)?,
                        ok_status: r.get(10)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` attempts after `(delivery, attempt)`, in that order.
    pub(crate) async fn delivery_attempts(
        &self,
        after: (i64, i32),
        limit: usize,
    ) -> Result<Vec<AttemptCopyRow>> {
        let (delivery, attempt) = after;
        self.read(move |conn| {
            page(
                conn,
                "SELECT delivery, attempt, started_ms, duration_ms, status, error \
                 FROM delivery_attempts WHERE (delivery, attempt) > (:delivery, :attempt) \
                 ORDER BY delivery, attempt LIMIT :limit",
                &[(":delivery", &delivery), (":attempt", &attempt)],
                limit,
                |r| {
                    Ok(AttemptCopyRow {
                        delivery: r.get(0)?,
                        attempt: r.get(1)?,
                        started_ms: r.get(2)?,
                        duration_ms: r.get(3)?,
                        status: r.get(4)?,
                        error: r.get(5)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` cursors named above `after`, in name order.
    pub(crate) async fn cursors(&self, after: String, limit: usize) -> Result<Vec<CursorRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT name, sequence, updated_ms FROM cursors WHERE name > :after \
                 ORDER BY name LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(CursorRow {
                        name: r.get(0)?,
                        sequence: r.get(1)?,
                        updated_ms: r.get(2)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` breakers of a target above `after`, in target order.
    pub(crate) async fn breakers(&self, after: String, limit: usize) -> Result<Vec<BreakerRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT target, open, consecutive_failures, trips, opened_ms, updated_ms, \
                 generation FROM breakers WHERE target > :after ORDER BY target LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(BreakerRow {
                        target: r.get(0)?,
                        open: r.get::<_, i64>(1)? != 0,
                        consecutive_failures: r.get(2)?,
                        trips: r.get(3)?,
                        opened_ms: r.get(4)?,
                        updated_ms: r.get(5)?,
                        generation: r.get(6)?,
                    })
                },
            )
        })
        .await
    }

    /// Up to `limit` event types named above `after`, in name order.
    pub(crate) async fn event_types(
        &self,
        after: String,
        limit: usize,
    ) -> Result<Vec<EventTypeRow>> {
        self.read(move |conn| {
            page(
                conn,
                "SELECT name, description, schema, examples, deprecated, origin, created_ms, \
                 updated_ms FROM event_types WHERE name > :after ORDER BY name LIMIT :limit",
                &[(":after", &after)],
                limit,
                |r| {
                    Ok(EventTypeRow {
                        name: r.get(0)?,
                        description: r.get(1)?,
                        schema: r.get(2)?,
                        examples: r.get(3)?,
                        deprecated: r.get::<_, i64>(4)? != 0,
                        origin: r.get(5)?,
                        created_ms: r.get(6)?,
                        updated_ms: r.get(7)?,
                    })
                },
            )
        })
        .await
    }

    /// The highest delivery and dead-letter ids ever given (`AUTOINCREMENT` keeps them in
    /// `sqlite_sequence` even once the rows are gone).
    pub(crate) async fn last_ids(&self) -> Result<LastIds> {
        self.read(|conn| {
            let last = |table: &str| -> rusqlite::Result<i64> {
                conn.query_row(
                    &format!(
                        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
                         coalesce((SELECT max(id) FROM {table}), 0))"
                    ),
                    [],
                    |r| r.get(0),
                )
            };
            Ok(LastIds {
                deliveries: last("deliveries")?,
                dead_letters: last("dead_letters")?,
            })
        })
        .await
    }
}

/// Runs a keyed page query: `args` and `:limit` bound, each row mapped by `map`.
fn page<T>(
    conn: &Connection,
    sql: &'static str,
    args: &[Arg<'_>],
    limit: usize,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut all: Vec<Arg<'_>> = args.to_vec();
    all.push((":limit", &limit));
    let mut stmt = prepare(conn, sql)?;
    bind(&mut stmt, &all)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}
