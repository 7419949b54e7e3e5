//! Opening a store: the data directory checks, its lock, the connection's pragmas, the schema
//! migrations, and the writer thread's start.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use nexus_core::Bus;
use nexus_event::Timestamp;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, watch};

use super::checkpoint;
use super::columns::{execute, plan_once};
use super::queue::wait_state;
use super::subscriptions::load_subscription_routes;
use super::writer::{EventCache, State, Writer};
use super::{Inner, Instance, SqliteStore, schema};
use crate::backend::host_name;
use crate::error::{Result, StoreError};
use crate::model::{Router, new_instance_id};

/// Pragmas of the writer's connection beside `synchronous`.
macro_rules! session_pragmas {
    () => {
        "PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;"
    };
}

/// Operations that may wait for the writer at once, by default: 32 full groups of the writer's
/// 512. A writer at a few hundred thousand events a second drains it in well under a second;
/// at bench rates (64 producers, one operation each) it is never close to full.
pub const DEFAULT_WRITER_QUEUE: usize = 16_384;

/// The database file inside the data directory.
pub const DB_FILE: &str = "nexus.db";

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous=FULL`: a commit is fsync'd before it is acknowledged; survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process but may lose the last commits on
    /// power loss. Not durable; for benchmarks and tests that say so.
    Normal,
}

/// Opens a [`SqliteStore`] with options; every option has a documented default.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use nexus_store::{SqliteStore, Durability};
/// let store = SqliteStore::builder(dir.path())
///     .durability(Durability::Full)
///     .event_cache(4096)
///     .open()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteBuilder {
    dir: PathBuf,
    durability: Durability,
    create_dir: bool,
    event_cache: usize,
    max_idle_readers: usize,
    writer_queue: usize,
    max_size_bytes: Option<u64>,
    bus: Option<Bus>,
    router: Option<Arc<dyn Router>>,
    version: String,
}

impl SqliteBuilder {
    /// Durability of commits. Default [`Durability::Full`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Create the data directory (and its parents) when it is missing. Default `false`: a
    /// missing directory is an error, so a typo does not start an empty store.
    pub fn create_dir(mut self, create: bool) -> Self {
        self.create_dir = create;
        self
    }

    /// How many of the most recent events are kept in memory so leasing their deliveries does not
    /// read them back. Default 4096 events; 0 turns the cache off.
    pub fn event_cache(mut self, events: usize) -> Self {
        self.event_cache = events;
        self
    }

    /// How many operations may wait for the writer at once. Default [`DEFAULT_WRITER_QUEUE`]
    /// (16,384); at least 1. When it is full [`try_append`](crate::EventLog::try_append) (ingress) fails at once
    /// with [`StoreError::Busy`] (the server answers `503` with `Retry-After`) instead of
    /// queueing without bound; every other write (the retry worker's, the admin's, reactor
    /// output through [`append`](crate::EventLog::append)) waits for room instead.
    pub fn writer_queue(mut self, operations: usize) -> Self {
        self.writer_queue = operations.max(1);
        self
    }

    /// Reader connections kept open between reads. Default 4.
    pub fn max_idle_readers(mut self, readers: usize) -> Self {
        self.max_idle_readers = readers;
        self
    }

    /// Caps the database file at about this many bytes (SQLite's `max_page_count`); an
    /// operation that would grow it further fails and writes nothing. Default: no cap.
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }

    /// A bus to publish every committed event to, in commit order, right after the commit.
    /// Default none.
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Extra delivery routes (reactors) evaluated at append, beside the stored webhook
    /// subscriptions. Default none.
    pub fn router(mut self, router: Arc<dyn Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// The version this process runs, as [`Instances::instances`](crate::Instances::instances)
    /// lists it. Default this crate's version; a server gives its own.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Opens (creating or migrating) the store.
    pub fn open(self) -> Result<SqliteStore> {
        SqliteStore::open_with(self)
    }
}

/// An error that says the file is not a Nexus database (it is left untouched).
pub(super) fn corrupt(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Maps an error met while opening: unreadable files are `Corrupt`, never "fixed".
pub(super) fn open_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => corrupt(path, &e),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            StoreError::ReadOnly {
                path: path.to_owned(),
                source: std::io::Error::other(e.to_string()),
            }
        }
        _ => StoreError::Database {
            op: "open",
            source: Box::new(e),
        },
    }
}

impl SqliteStore {
    /// Opens the store in `dir` with the default options (durable commits; the directory must
    /// exist). Creates the database on first use and migrates an older schema.
    ///
    /// Fails with a clear error for a missing or unwritable directory, a file that is not a
    /// Nexus database, or a schema newer than this build; it never deletes or rewrites data it
    /// cannot read.
    pub fn open(dir: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::builder(dir).open()
    }

    /// A builder with the documented defaults.
    pub fn builder(dir: impl AsRef<Path>) -> SqliteBuilder {
        SqliteBuilder {
            dir: dir.as_ref().to_owned(),
            durability: Durability::Full,
            create_dir: false,
            event_cache: 4096,
            max_idle_readers: 4,
            writer_queue: DEFAULT_WRITER_QUEUE,
            max_size_bytes: None,
            bus: None,
            router: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn open_with(b: SqliteBuilder) -> Result<SqliteStore> {
        check_dir(&b.dir, b.create_dir)?;
        let lock = lock_dir(&b.dir)?;
        let path = b.dir.join(DB_FILE);
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err(&path))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err(&path))?;
        if version > schema::VERSION {
            return Err(StoreError::SchemaTooNew {
                path,
                found: version,
                supported: schema::VERSION,
            });
        }
        if version > 0 {
            // An existing store must really be ours before anything is written to it.
            let known: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
                    [],
                    |r| r.get(0),
                )
                .map_err(open_err(&path))?;
            if known != 1 {
                return Err(corrupt(
                    &path,
                    format!("schema version {version} but no events table"),
                ));
            }
        } else {
            let tables: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                    [],
                    |r| r.get(0),
                )
                .map_err(open_err(&path))?;
            if tables > 0 {
                return Err(corrupt(
                    &path,
                    "a SQLite database of another program (it has tables but no Nexus schema version)",
                ));
            }
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err(&path))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(corrupt(
                &path,
                format!("cannot switch to WAL (journal mode stays {mode})"),
            ));
        }
        let pragmas = match b.durability {
            Durability::Full => concat!("PRAGMA synchronous = FULL; ", session_pragmas!()),
            Durability::Normal => concat!("PRAGMA synchronous = NORMAL; ", session_pragmas!()),
        };
        conn.execute_batch(pragmas).map_err(open_err(&path))?;
        migrate(&conn, version).map_err(open_err(&path))?;
        if let Some(bytes) = b.max_size_bytes {
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(open_err(&path))?;
            let pages = (bytes / page.max(512) as u64).max(1);
            let pages = i64::try_from(pages).unwrap_or(i64::MAX);
            conn.pragma_update_and_check(None, "max_page_count", pages, |_| Ok(()))
                .map_err(open_err(&path))?;
        }
        plan_once(&conn).map_err(open_err(&path))?;
        let released = release_leases(&conn, Timestamp::now()).map_err(open_err(&path))?;
        if released > 0 {
            tracing::info!(
                released,
                "deliveries leased by the previous process are due again"
            );
        }

        let head: i64 = conn
            .query_row("SELECT coalesce(max(sequence), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(open_err(&path))?;
        let head = u64::try_from(head).map_err(|_| corrupt(&path, "negative sequence"))?;
        let subscriptions = load_subscription_routes(&conn).map_err(|e| corrupt(&path, e))?;

        let head_cell = Arc::new(AtomicU64::new(head));
        let (changes_tx, changes_rx) = watch::channel(0u64);
        let state = State {
            next_sequence: head + 1,
            subscriptions,
            router: b.router,
            cache: EventCache::new(b.event_cache, head + 1),
        };
        let subscriptions_version = Arc::new(AtomicU64::new(0));
        let synchronous = match b.durability {
            Durability::Full => "PRAGMA synchronous = FULL;",
            Durability::Normal => "PRAGMA synchronous = NORMAL;",
        };
        let checkpointer = checkpoint::install(
            &mut conn,
            &path,
            synchronous,
            (checkpoint::STEP, checkpoint::LIMIT),
        )?;
        let writer = Writer::new(
            conn,
            checkpointer,
            state,
            b.bus,
            Arc::clone(&head_cell),
            changes_tx,
            Arc::clone(&subscriptions_version),
        );
        let (jobs_tx, jobs_rx) = mpsc::channel(b.writer_queue);
        let handle = std::thread::Builder::new()
            .name("nexus-store-writer".into())
            .spawn(move || writer.run(jobs_rx))
            .map_err(|e| StoreError::Io {
                path: path.clone(),
                source: e,
            })?;
        let instance = Instance {
            id: new_instance_id(),
            host: host_name(),
            started_at: Timestamp::now(),
            version: b.version,
        };
        tracing::info!(path = %path.display(), head, instance = %instance.id, "store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                instance,
                jobs: Some(jobs_tx),
                writer: Some(handle),
                head: head_cell,
                changes: changes_rx,
                idle_readers: Mutex::new(Vec::new()),
                max_idle_readers: b.max_idle_readers,
                subscriptions_version,
                subscription_cache: Mutex::new(crate::backend::SubscriptionCache::new(None)),
                event_types: watch::channel(0).0,
                _lock: lock,
            }),
        })
    }
}

/// Gives back every lease, due at `now` at the latest, without counting an attempt.
///
/// The store holds the data directory's lock, so at open no other process can hold a lease: each
/// one belonged to a process that died (or stopped without settling), and waiting out its expiry
/// would only delay the delivery (API.md section 5).
fn release_leases(conn: &Connection, now: Timestamp) -> rusqlite::Result<usize> {
    let now = now.as_unix_millis();
    execute(
        conn,
        concat!(
            "UPDATE deliveries SET state = ",
            wait_state!(),
            ", due_ms = min(due_ms, :now), lease_owner = NULL WHERE state = :leased"
        ),
        &[(":now", &now)],
    )
}

pub(super) fn check_dir(dir: &Path, create: bool) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(StoreError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(StoreError::MissingDir {
                    path: dir.to_owned(),
                });
            }
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        Err(source) => {
            return Err(StoreError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    }
    // Permissions alone do not tell (root ignores them, read-only mounts do not show in them):
    // try to write.
    let probe = dir.join(".nexus-write-probe");
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe);
    match written {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(source) => Err(StoreError::ReadOnly {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "nexus.lock";

/// Takes the directory's lock, so a second store (a second server on the same data) fails at
/// open instead of fighting over sequence numbers.
pub(super) fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.to_owned(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io { path, source }),
    }
}

pub(super) fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    for (version, sql) in schema::MIGRATIONS.iter().enumerate() {
        let to = version as i64 + 1;
        if to <= from {
            continue;
        }
        // The schema change and the version bump commit together or not at all.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        conn.execute_batch(sql)
            .and_then(|()| conn.pragma_update(None, "user_version", to))
            .and_then(|()| conn.execute_batch("COMMIT"))
            .inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            })?;
        tracing::info!(version = to, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::{BreakerLog, DeliveryQueue, EventLog, EventTypes, Subscriptions};

    /// A database left at schema version 1 is migrated at open and keeps its data.
    #[tokio::test]
    async fn an_old_schema_is_migrated_at_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            conn.execute_batch(schema::MIGRATIONS[0])
                .expect("schema v1");
            conn.execute_batch(
                "INSERT INTO events (sequence, id, source, type, time_ms, payload) \
                 VALUES (1, 'old', 'flowpay', 'PAYMENT_RECEIVED', 0, '{}'); PRAGMA user_version = 1;",
            )
            .expect("v1 data");
        }
        let store = SqliteStore::open(dir.path()).expect("open and migrate");
        assert_eq!(store.head().await.expect("head"), 1);
        assert!(store.breakers().await.expect("v2 table").is_empty());
        assert!(
            store
                .event_types(10, None)
                .await
                .expect("v5 table")
                .items
                .is_empty(),
            "the event-type catalogue's table"
        );
        let version: i64 = Connection::open(dir.path().join(DB_FILE))
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .expect("version");
        assert_eq!(version, schema::VERSION);
        assert_eq!(schema::VERSION, 8);
        let history = crate::traits::DeliveryHistory::event_deliveries(
            &store,
            1,
            nexus_event::Timestamp::now(),
        )
        .await
        .expect("v7 tables");
        assert!(history.is_empty());
    }

    /// A database left at schema version 2 keeps its breakers, each at generation 0, and their
    /// next save moves them on from there.
    #[tokio::test]
    async fn breakers_of_version_2_get_a_generation() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            conn.execute_batch(schema::MIGRATIONS[0])
                .and_then(|()| conn.execute_batch(schema::MIGRATIONS[1]))
                .expect("schema v2");
            conn.execute_batch(
                "INSERT INTO breakers (target, open, consecutive_failures, trips, opened_ms, updated_ms) \
                 VALUES ('http://old.example:80', 1, 5, 2, 1000, 1000); PRAGMA user_version = 2;",
            )
            .expect("v2 data");
        }
        let store = SqliteStore::open(dir.path()).expect("open and migrate");
        let kept = store.breakers().await.expect("breakers");
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].open, kept[0].trips, kept[0].generation),
            (true, 2, 0)
        );
        let saved = store
            .save_breaker(kept[0].clone())
            .await
            .expect("save after the migration");
        assert_eq!(saved, 1);
    }

    /// A database left at schema version 3 keeps its subscriptions, without a filter, and
    /// routes to them as before.
    #[tokio::test]
    async fn subscriptions_of_version_3_have_no_filter() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            for m in &schema::MIGRATIONS[..3] {
                conn.execute_batch(m).expect("schema v3");
            }
            conn.execute_batch(
                "INSERT INTO subscriptions (id, url, target, events, secret, ordered, enabled, created_ms) \
                 VALUES ('old', 'http://old.example/h', 'http://old.example:80', '[\"*\"]', 's', 0, 1, 0); \
                 PRAGMA user_version = 3;",
            )
            .expect("v3 data");
        }
        let store = SqliteStore::open(dir.path()).expect("open and migrate");
        let sub = store
            .subscription("old")
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(sub.filter, None);
        store
            .append(vec![nexus_event::NewEvent::new(
                nexus_event::WellKnown::PaymentReceived,
                "flowpay",
            )])
            .await
            .expect("append");
        assert_eq!(store.stats().await.expect("stats").pending, 1);
    }

    /// A delivery acknowledged under schema version 6 kept its successful attempt in
    /// `delivery_attempts`; after the migration to 7 (attempt inline) it still reads with every
    /// attempt, in order, and a new ack keeps its own inline.
    #[tokio::test]
    async fn deliveries_acknowledged_under_version_6_keep_their_attempts() {
        use crate::model::{AttemptRecord, DeliveryStatus, Success};
        use crate::traits::DeliveryHistory;
        use nexus_event::Timestamp;
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            for m in &schema::MIGRATIONS[..6] {
                conn.execute_batch(m).expect("schema v6");
            }
            conn.execute_batch(
                "INSERT INTO events (sequence, id, source, type, time_ms, payload) \
                 VALUES (1, 'old', 'flowpay', 'PAYMENT_RECEIVED', 0, '{}'); \
                 INSERT INTO delivery_history (id, event_sequence, consumer_kind, consumer, target, \
                 outcome, created_ms, finished_ms) VALUES (7, 1, 0, 's1', 'http://a:80', 0, 0, 300); \
                 INSERT INTO delivery_attempts (delivery, attempt, started_ms, duration_ms, status, \
                 error) VALUES (7, 1, 100, 10, 500, 'HTTP 500'), (7, 2, 280, 20, 204, NULL); \
                 PRAGMA user_version = 6;",
            )
            .expect("v6 data");
        }
        let store = SqliteStore::open(dir.path()).expect("open and migrate");
        let at = |ms| Timestamp::from_unix_millis(ms).expect("time");
        let old = store.event_deliveries(1, at(1_000)).await.expect("history");
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].state, DeliveryStatus::Delivered);
        assert_eq!(
            old[0].attempts,
            vec![
                AttemptRecord {
                    at: at(100),
                    duration_ms: 10,
                    status: Some(500),
                    error: Some("HTTP 500".into()),
                },
                AttemptRecord {
                    at: at(280),
                    duration_ms: 20,
                    status: Some(204),
                    error: None,
                },
            ]
        );

        store
            .create_subscription(crate::model::NewSubscription {
                url: "http://b.example/h".into(),
                events: vec![nexus_event::Pattern::new("*").expect("glob")],
                secret: "s".into(),
                ordered: false,
                filter: None,
            })
            .await
            .expect("subscription");
        store
            .append(vec![nexus_event::NewEvent::new(
                nexus_event::WellKnown::PaymentReceived,
                "flowpay",
            )])
            .await
            .expect("append");
        // The new delivery is due at its creation (now, by the clock).
        let now = Timestamp::now().as_unix_millis() + 1_000;
        let leased = store
            .lease_due("w", at(now), 10, std::time::Duration::from_secs(10))
            .await
            .expect("lease");
        assert_eq!(leased.len(), 1);
        let success = Success {
            status: Some(200),
            at: at(now + 50),
            duration_ms: 50,
        };
        store.ack(&leased[0].token, success).await.expect("ack");
        let new = store
            .event_deliveries(2, at(now + 100))
            .await
            .expect("history");
        assert_eq!(
            new[0].attempts,
            vec![AttemptRecord {
                at: at(now),
                duration_ms: 50,
                status: Some(200),
                error: None,
            }]
        );
        let rows: i64 = store
            .read(|conn| {
                conn.query_row("SELECT count(*) FROM delivery_attempts", [], |r| r.get(0))
                    .map_err(crate::sqlite::columns::db_err("count"))
            })
            .await
            .expect("count");
        assert_eq!(rows, 2, "the ack kept its attempt inline, not as a row");
    }
}
