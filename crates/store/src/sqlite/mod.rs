//! The SQLite backend: WAL with `synchronous=FULL`, one writer thread with group commit, readers
//! on their own connections.

mod schema;
mod writer;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use nexus_core::Bus;
use nexus_event::{
    CorrelationId, Event, EventId, EventType, NewEvent, Pattern, Timestamp, TypeFilter,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::{oneshot, watch};

use crate::error::{Result, StoreError};
use crate::model::{
    Appended, BreakerRecord, Consumer, DeadLetter, Failure, Lease, LeaseToken, NewSubscription,
    Page, QueueStats, ReplayTo, Router, Selection, Subscription, SubscriptionPatch, check_limit,
    target_origin,
};
use crate::traits::{BreakerLog, Cursors, DeliveryQueue, EventLog, Subscriptions};
use writer::{Ctx, EventCache, Job, State, SubRoute, Writer};

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
    max_size_bytes: Option<u64>,
    bus: Option<Bus>,
    router: Option<Arc<dyn Router>>,
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

    /// Opens (creating or migrating) the store.
    pub fn open(self) -> Result<SqliteStore> {
        SqliteStore::open_with(self)
    }
}

/// The SQLite store. Cloning gives another handle to the same store; the writer stops when the
/// last handle is dropped, after finishing what it was given.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// # let dir = tempfile::tempdir()?;
/// use nexus_store::{EventLog, SqliteStore};
/// use nexus_event::{NewEvent, WellKnown};
///
/// let store = SqliteStore::open(dir.path())?;
/// let appended = store.append(vec![NewEvent::new(WellKnown::PaymentReceived, "flowpay")]).await?;
/// assert_eq!(appended[0].sequence, 1);
/// assert_eq!(store.head().await?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    head: Arc<AtomicU64>,
    changes: watch::Receiver<u64>,
    idle_readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    /// Bumped by the writer whenever a commit changed subscriptions.
    subscriptions_version: Arc<AtomicU64>,
    /// Subscriptions read at a version: every delivery looks its subscription up, and a read
    /// on the pool per delivery costs more than the delivery's HTTP call.
    subscription_cache: Mutex<(u64, HashMap<String, Subscription>)>,
    /// Held for the store's life: one store per data directory. Released after the writer.
    _lock: std::fs::File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its group and stop; joining it means the
        // database is closed when the last handle is gone, so the directory can be reopened.
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn db_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database {
        op,
        source: Box::new(e),
    }
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Maps an error met while opening: unreadable files are `Corrupt`, never "fixed".
fn open_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
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
            max_size_bytes: None,
            bus: None,
            router: None,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Size of the database and its write-ahead log, in bytes.
    pub fn size_bytes(&self) -> u64 {
        let wal = self.inner.path.with_extension("db-wal");
        [&self.inner.path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Replaces the extra delivery routes (reactors). Applies to events appended from now on.
    pub async fn set_router(&self, router: Option<Arc<dyn Router>>) -> Result<()> {
        self.call(move |ctx| {
            ctx.state.router = router;
            Ok(())
        })
        .await
    }

    fn open_with(b: SqliteBuilder) -> Result<SqliteStore> {
        check_dir(&b.dir, b.create_dir)?;
        let lock = lock_dir(&b.dir)?;
        let path = b.dir.join(DB_FILE);
        let conn = Connection::open_with_flags(
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
        let sync = match b.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync}; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;"
        ))
        .map_err(open_err(&path))?;
        migrate(&conn, version).map_err(open_err(&path))?;
        if let Some(bytes) = b.max_size_bytes {
            let page: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(open_err(&path))?;
            let pages = (bytes / page.max(512) as u64).max(1);
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
                .map_err(open_err(&path))?;
        }
        conn.set_prepared_statement_cache_capacity(64);

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
        let writer = Writer::new(
            conn,
            state,
            b.bus,
            Arc::clone(&head_cell),
            changes_tx,
            Arc::clone(&subscriptions_version),
        );
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("nexus-store-writer".into())
            .spawn(move || writer.run(jobs_rx))
            .map_err(|e| StoreError::Io {
                path: path.clone(),
                source: e,
            })?;
        tracing::info!(path = %path.display(), head, "store opened");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                jobs: Some(jobs_tx),
                writer: Some(handle),
                head: head_cell,
                changes: changes_rx,
                idle_readers: Mutex::new(Vec::new()),
                max_idle_readers: b.max_idle_readers,
                subscriptions_version,
                subscription_cache: Mutex::new((0, HashMap::new())),
                _lock: lock,
            }),
        })
    }

    /// Runs `f` on the writer thread inside the next group's transaction and answers once that
    /// transaction is committed (or failed).
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let result = f(ctx);
            let failed = result.is_err();
            (
                failed,
                Box::new(move |committed: Result<()>| {
                    let _ = tx.send(committed.and(result));
                }),
            )
        });
        let unavailable = || StoreError::Unavailable {
            reason: "the store writer has stopped".into(),
        };
        self.inner
            .jobs
            .as_ref()
            .ok_or_else(unavailable)?
            .send(job)
            .map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }

    /// Runs `f` on a reader connection on tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner.take_reader()?;
            let result = f(&conn);
            inner.put_reader(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            reason: format!("reader task failed: {e}"),
        })?
    }
}

impl Inner {
    fn take_reader(&self) -> Result<Connection> {
        let idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db_err("open reader"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db_err("open reader"))?;
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        let mut idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle_readers {
            idle.push(conn);
        }
    }
}

fn check_dir(dir: &Path, create: bool) -> Result<()> {
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
fn lock_dir(dir: &Path) -> Result<std::fs::File> {
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

fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    for (version, sql) in schema::MIGRATIONS.iter().enumerate() {
        let to = version as i64 + 1;
        if to <= from {
            continue;
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {to}; COMMIT;"
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
        tracing::info!(version = to, "store schema migrated");
    }
    Ok(())
}

fn load_subscription_routes(conn: &Connection) -> Result<Vec<SubRoute>> {
    let mut stmt = conn
        .prepare("SELECT id, target, events, enabled FROM subscriptions ORDER BY id")
        .map_err(db_err("load subscriptions"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })
        .map_err(db_err("load subscriptions"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, target, events, enabled) = row.map_err(db_err("load subscriptions"))?;
        out.push(SubRoute {
            patterns: parse_patterns(&events)?,
            id,
            target,
            enabled,
        });
    }
    Ok(out)
}

fn parse_patterns(json: &str) -> Result<Vec<Pattern>> {
    serde_json::from_str(json).map_err(|e| StoreError::Database {
        op: "read subscription patterns",
        source: Box::new(e),
    })
}

fn consumer_parts(c: &Consumer) -> (i64, &str) {
    match c {
        Consumer::Subscription(id) => (0, id),
        Consumer::Reactor(name) => (1, name),
    }
}

fn consumer_from(kind: i64, name: String) -> Consumer {
    if kind == 0 {
        Consumer::Subscription(name)
    } else {
        Consumer::Reactor(name)
    }
}

fn ts(ms: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_unix_millis(ms).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn conv<E: std::error::Error + Send + Sync + 'static>(col: usize) -> impl Fn(E) -> rusqlite::Error {
    move |e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
    }
}

const EVENT_COLUMNS: &str = "sequence, id, source, type, time_ms, payload, correlation_id";

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
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

fn event_by_sequence(conn: &Connection, sequence: u64) -> Result<Event> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE sequence = ?1"
    ))
    .and_then(|mut s| s.query_row([sequence as i64], event_from_row))
    .map_err(db_err("read event"))
}

fn status_of(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

fn selection_ids(which: &Selection) -> Option<&[i64]> {
    match which {
        Selection::All => None,
        Selection::Ids(ids) => Some(ids),
    }
}

/// Which waiting rows `d` may be leased when due: not an expired lease of a disabled
/// subscription (it waits for the subscription), and for an ordered subscription only its
/// lowest sequence still queued (a failing event holds back the later ones; a leased one
/// too, so they go one at a time).
const LEASABLE: &str = "NOT (d.consumer_kind = 0 AND ( \
     (d.state = 1 AND d.consumer IN (SELECT id FROM subscriptions WHERE enabled = 0)) \
     OR (d.consumer IN (SELECT id FROM subscriptions WHERE ordered = 1) \
         AND EXISTS (SELECT 1 FROM deliveries e WHERE e.consumer_kind = 0 AND e.consumer = d.consumer \
                     AND (e.event_sequence < d.event_sequence \
                          OR (e.event_sequence = d.event_sequence AND e.id < d.id))))))";

/// `state` a delivery of this consumer waits in: held while its subscription is disabled.
const WAIT_STATE: &str = "CASE WHEN consumer_kind = 0 AND consumer IN \
     (SELECT id FROM subscriptions WHERE enabled = 0) THEN 3 ELSE 0 END";

fn append_in(ctx: &mut Ctx<'_>, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
    // Ids seen earlier in this batch; checked in order with conflicts, so the first refused
    // position is the one reported.
    let mut seen: HashSet<EventId> = HashSet::new();
    let err = db_err("append");
    let mut insert = ctx
        .conn
        .prepare_cached(
            "INSERT INTO events (sequence, id, source, type, time_ms, payload, correlation_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
        )
        .map_err(&err)?;
    let mut enqueue = ctx
        .conn
        .prepare_cached(
            "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, created_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .map_err(&err)?;
    let mut out = Vec::with_capacity(events.len());
    let mut extra = Vec::new();
    let batch = events.len() > 1;
    for (index, draft) in events.into_iter().enumerate() {
        if batch && !seen.insert(draft.id.clone()) {
            return Err(StoreError::DuplicateInBatch {
                index,
                id: draft.id.to_string(),
            });
        }
        let sequence = ctx.state.next_sequence;
        let payload = serde_json::to_string(&draft.payload).map_err(|e| StoreError::Invalid {
            field: "payload",
            message: e.to_string(),
        })?;
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
            let (source, first): (String, i64) = ctx
                .conn
                .prepare_cached("SELECT source, sequence FROM events WHERE id = ?1")
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
        for sub in &ctx.state.subscriptions {
            if sub
                .patterns
                .iter()
                .any(|p| p.matches_type(&event.event_type))
            {
                let state = if sub.enabled { 0 } else { 3 };
                enqueue
                    .execute(params![sequence as i64, 0, sub.id, sub.target, state, due])
                    .map_err(&err)?;
                ctx.work |= sub.enabled;
            }
        }
        if let Some(router) = &ctx.state.router {
            extra.clear();
            router.route(&event, &mut extra);
            for (consumer, target) in &extra {
                let (kind, name) = consumer_parts(consumer);
                enqueue
                    .execute(params![sequence as i64, kind, name, target, 0, due])
                    .map_err(&err)?;
                ctx.work = true;
            }
        }
        out.push(Appended {
            id: event.id.clone(),
            sequence,
            duplicate: false,
        });
        ctx.appended.push(event);
    }
    Ok(out)
}

fn lease_in(
    ctx: &mut Ctx<'_>,
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
    let mut stmt = ctx
        .conn
        .prepare_cached(
            &format!("UPDATE deliveries SET state = 1, lease_owner = ?1, lease_gen = lease_gen + 1, due_ms = ?2 \
             WHERE id IN (SELECT id FROM deliveries d WHERE state < 3 AND due_ms <= ?3 AND {LEASABLE} \
                          ORDER BY due_ms, id LIMIT ?4) \
             RETURNING id, event_sequence, consumer_kind, consumer, target, attempts, lease_gen, created_ms"),
        )
        .map_err(&err)?;
    let mut raw = stmt
        .query_map(params![&*owner, expires, now, max as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(&err)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(&err)?;
    raw.sort_unstable_by_key(|r| (r.1, r.0));
    let mut leases = Vec::with_capacity(raw.len());
    for (id, sequence, kind, consumer, target, attempts, generation, created) in raw {
        let sequence = sequence as u64;
        let event = match ctx.state.cache.get(sequence) {
            Some(e) => e,
            None => Arc::new(event_by_sequence(ctx.conn, sequence)?),
        };
        leases.push(Lease {
            token: LeaseToken {
                delivery: id,
                owner: Arc::clone(&owner),
                generation,
            },
            event,
            consumer: consumer_from(kind, consumer),
            target,
            attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            created_at: ts(created).map_err(&err)?,
            expires_at,
        });
    }
    Ok(leases)
}

fn lease_lost(token: &LeaseToken) -> StoreError {
    StoreError::LeaseLost {
        delivery: token.delivery,
    }
}

fn settle(
    ctx: &mut Ctx<'_>,
    op: &'static str,
    sql: &str,
    token: &LeaseToken,
    extra: &[&dyn rusqlite::ToSql],
) -> Result<()> {
    let owner: &str = &token.owner;
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&token.delivery, &owner, &token.generation];
    args.extend_from_slice(extra);
    let changed = ctx
        .conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(args.as_slice()))
        .map_err(db_err(op))?;
    if changed == 0 {
        return Err(lease_lost(token));
    }
    Ok(())
}

const LEASED: &str = "id = ?1 AND state = 1 AND lease_owner = ?2 AND lease_gen = ?3";

#[async_trait]
impl EventLog for SqliteStore {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.call(move |ctx| append_in(ctx, events)).await
    }

    async fn get(&self, id: &EventId) -> Result<Option<Event>> {
        let id = id.clone();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))
                .and_then(|mut s| s.query_row([id.as_str()], event_from_row).optional())
                .map_err(db_err("get event"))
        })
        .await
    }

    async fn read(&self, after: u64, limit: usize, filter: &TypeFilter) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let globs: Vec<String> = filter
            .patterns()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        self.read(move |conn| {
            // Patterns hold only type characters and `*`, so SQLite's GLOB means the same thing.
            let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE sequence > ?1");
            if !globs.is_empty() {
                let ors: Vec<String> = (0..globs.len())
                    .map(|i| format!("type GLOB ?{}", i + 3))
                    .collect();
                sql.push_str(&format!(" AND ({})", ors.join(" OR ")));
            }
            sql.push_str(" ORDER BY sequence LIMIT ?2");
            let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(globs.len() + 2);
            let after = i64::try_from(after).unwrap_or(i64::MAX);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            args.push(&after);
            args.push(&limit);
            for g in &globs {
                args.push(g);
            }
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err("read events"))?;
            stmt.query_map(args.as_slice(), event_from_row)
                .and_then(|rows| rows.collect())
                .map_err(db_err("read events"))
        })
        .await
    }

    async fn head(&self) -> Result<u64> {
        Ok(self.inner.head.load(Ordering::Acquire))
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
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
        self.call(move |ctx| lease_in(ctx, owner, now, max, lease_ms))
            .await
    }

    async fn ack(&self, token: &LeaseToken) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            settle(
                ctx,
                "ack",
                &format!("DELETE FROM deliveries WHERE {LEASED}"),
                &token,
                &[],
            )
        })
        .await
    }

    async fn retry_at(&self, token: &LeaseToken, when: Timestamp, failure: Failure) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            let sql = format!(
                "UPDATE deliveries SET state = {WAIT_STATE}, due_ms = ?4, attempts = attempts + 1, \
                 lease_owner = NULL, last_error = ?5, last_status = ?6, \
                 first_attempt_ms = coalesce(first_attempt_ms, ?7), last_attempt_ms = ?7 WHERE {LEASED}"
            );
            let at = failure.at.as_unix_millis();
            settle(
                ctx,
                "retry_at",
                &sql,
                &token,
                &[&when.as_unix_millis(), &failure.error, &failure.status, &at],
            )?;
            ctx.work = true;
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, token: &LeaseToken, failure: Failure) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            let sql = "INSERT INTO dead_letters (event_sequence, event_id, event_type, payload, \
                 consumer_kind, consumer, target, error, last_status, attempts, created_ms, \
                 first_attempt_ms, failed_ms) \
                 SELECT d.event_sequence, e.id, e.type, e.payload, d.consumer_kind, d.consumer, \
                 d.target, ?4, ?5, d.attempts + 1, d.created_ms, coalesce(d.first_attempt_ms, ?6), ?6 \
                 FROM deliveries d JOIN events e ON e.sequence = d.event_sequence \
                 WHERE d.id = ?1 AND d.state = 1 AND d.lease_owner = ?2 AND d.lease_gen = ?3";
            let at = failure.at.as_unix_millis();
            // A disabled subscription's deliveries are never dead-lettered: count the attempt and
            // hold it until the subscription is enabled again.
            let held = format!(
                "UPDATE deliveries SET state = 3, due_ms = ?6, attempts = attempts + 1, \
                 lease_owner = NULL, last_error = ?4, last_status = ?5, \
                 first_attempt_ms = coalesce(first_attempt_ms, ?6), last_attempt_ms = ?6 \
                 WHERE {LEASED} AND {WAIT_STATE} = 3"
            );
            let owner: &str = &token.owner;
            let n = ctx
                .conn
                .prepare_cached(&held)
                .and_then(|mut s| {
                    s.execute(params![token.delivery, owner, token.generation, failure.error, failure.status, at])
                })
                .map_err(db_err("dead_letter"))?;
            if n > 0 {
                return Ok(());
            }
            settle(ctx, "dead_letter", sql, &token, &[&failure.error, &failure.status, &at])?;
            ctx.conn
                .prepare_cached("DELETE FROM deliveries WHERE id = ?1")
                .and_then(|mut s| s.execute([token.delivery]))
                .map_err(db_err("dead_letter"))?;
            Ok(())
        })
        .await
    }

    async fn release(&self, token: &LeaseToken, when: Timestamp) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            let sql = format!(
                "UPDATE deliveries SET state = {WAIT_STATE}, due_ms = ?4, lease_owner = NULL WHERE {LEASED}"
            );
            settle(ctx, "release", &sql, &token, &[&when.as_unix_millis()])?;
            ctx.work = true;
            Ok(())
        })
        .await
    }

    async fn park(&self, token: &LeaseToken, until: Timestamp) -> Result<()> {
        let token = token.clone();
        self.call(move |ctx| {
            let sql = format!(
                "UPDATE deliveries SET state = CASE WHEN {WAIT_STATE} = 3 THEN 3 ELSE 2 END, \
                 due_ms = ?4, lease_owner = NULL WHERE {LEASED}"
            );
            settle(ctx, "park", &sql, &token, &[&until.as_unix_millis()])?;
            ctx.work = true;
            Ok(())
        })
        .await
    }

    async fn unpark(&self, target: &str, now: Timestamp) -> Result<u64> {
        let target = target.to_owned();
        self.call(move |ctx| {
            let n = ctx
                .conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 0, due_ms = min(due_ms, ?2) \
                     WHERE target = ?1 AND state = 2",
                )
                .and_then(|mut s| s.execute(params![target, now.as_unix_millis()]))
                .map_err(db_err("unpark"))? as u64;
            ctx.work |= n > 0;
            Ok(n)
        })
        .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT \
                 (SELECT count(*) FROM deliveries WHERE state <> 1), \
                 (SELECT count(*) FROM deliveries WHERE state = 1), \
                 (SELECT count(*) FROM dead_letters), \
                 (SELECT min(created_ms) FROM deliveries WHERE attempts > 0)",
            )
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok(QueueStats {
                        pending: r.get::<_, i64>(0)? as u64,
                        in_flight: r.get::<_, i64>(1)? as u64,
                        dead_letters: r.get::<_, i64>(2)? as u64,
                        oldest_retry: r.get::<_, Option<i64>>(3)?.map(ts).transpose()?,
                    })
                })
            })
            .map_err(db_err("stats"))
        })
        .await
    }

    async fn dead_letters(&self, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
        let limit = check_limit(limit)?;
        let before = match cursor {
            None => i64::MAX,
            Some(c) => c.parse::<i64>().map_err(|_| StoreError::Invalid {
                field: "cursor",
                message: format!("{c:?} is not a cursor this list gave"),
            })?,
        };
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, event_id, event_type, event_sequence, consumer_kind, consumer, target, \
                     attempts, error, last_status, created_ms, first_attempt_ms, failed_ms, payload \
                     FROM dead_letters WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
                )
                .map_err(db_err("dead_letters"))?;
            let mut items = stmt
                .query_map(params![before, limit as i64 + 1], |r| {
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
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("dead_letters"))?;
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

    async fn redrive(&self, which: Selection, now: Timestamp) -> Result<u64> {
        self.call(move |ctx| {
            let err = db_err("redrive");
            // A webhook dead letter goes back to its subscription's current URL and state; one
            // whose subscription was deleted stays a dead letter (it can still be purged).
            let copy = "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, attempts, created_ms) \
                 SELECT d.event_sequence, d.consumer_kind, d.consumer, coalesce(s.target, d.target), \
                 CASE WHEN s.enabled = 0 THEN 3 ELSE 0 END, ?1, 0, d.created_ms \
                 FROM dead_letters d LEFT JOIN subscriptions s ON d.consumer_kind = 0 AND s.id = d.consumer \
                 WHERE (d.consumer_kind <> 0 OR s.id IS NOT NULL)";
            let now = now.as_unix_millis();
            let moved = match selection_ids(&which) {
                None => {
                    let n = ctx.conn.execute(copy, [now]).map_err(&err)?;
                    ctx.conn
                        .execute(
                            "DELETE FROM dead_letters WHERE consumer_kind <> 0 \
                             OR consumer IN (SELECT id FROM subscriptions)",
                            [],
                        )
                        .map_err(&err)?;
                    n as u64
                }
                Some(ids) => {
                    let mut copy = ctx.conn.prepare_cached(&format!("{copy} AND d.id = ?2")).map_err(&err)?;
                    let mut delete = ctx.conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1").map_err(&err)?;
                    let mut n = 0;
                    for id in ids.iter().collect::<HashSet<_>>() {
                        if copy.execute(params![now, id]).map_err(&err)? > 0 {
                            delete.execute([id]).map_err(&err)?;
                            n += 1;
                        }
                    }
                    n
                }
            };
            ctx.work |= moved > 0;
            Ok(moved)
        })
        .await
    }

    async fn purge(&self, which: Selection) -> Result<u64> {
        self.call(move |ctx| {
            let err = db_err("purge");
            Ok(match selection_ids(&which) {
                None => ctx
                    .conn
                    .execute("DELETE FROM dead_letters", [])
                    .map_err(&err)? as u64,
                Some(ids) => {
                    let mut delete = ctx
                        .conn
                        .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
                        .map_err(&err)?;
                    let mut n = 0;
                    for id in ids.iter().collect::<HashSet<_>>() {
                        n += delete.execute([id]).map_err(&err)? as u64;
                    }
                    n
                }
            })
        })
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
        let globs: Vec<String> = filter
            .patterns()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let until = until.map_or(i64::MAX, |u| i64::try_from(u).unwrap_or(i64::MAX));
        self.call(move |ctx| {
            let err = db_err("replay");
            let now = now.as_unix_millis();
            // Patterns hold only type characters and `*`, so SQLite's GLOB means the same thing.
            let mut range = String::from("sequence > ?1 AND sequence <= ?2");
            if !globs.is_empty() {
                let ors: Vec<String> = (0..globs.len())
                    .map(|i| format!("type GLOB ?{}", i + 3))
                    .collect();
                range.push_str(&format!(" AND ({})", ors.join(" OR ")));
            }
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&after, &until];
            for g in &globs {
                args.push(g);
            }
            let enqueued = match &to {
                ReplayTo::Subscription(id) => {
                    let sub = subscription_in(ctx.conn, id)?.ok_or_else(|| StoreError::NotFound {
                        what: "subscription",
                        id: id.clone(),
                    })?;
                    let state = if sub.enabled { 0 } else { 3 };
                    let sql = format!(
                        "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, created_ms) \
                         SELECT sequence, 0, '{}', '{}', {state}, {now}, {now} FROM events WHERE {range}",
                        sub.id.replace('\'', "''"),
                        sub.target.replace('\'', "''"),
                    );
                    ctx.conn.execute(&sql, args.as_slice()).map_err(&err)? as u64
                }
                ReplayTo::Reactors => {
                    let Some(router) = ctx.state.router.clone() else {
                        return Ok(0);
                    };
                    let mut stmt = ctx
                        .conn
                        .prepare(&format!(
                            "SELECT {EVENT_COLUMNS} FROM events WHERE {range} ORDER BY sequence"
                        ))
                        .map_err(&err)?;
                    let events = stmt
                        .query_map(args.as_slice(), event_from_row)
                        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Event>>>())
                        .map_err(&err)?;
                    let mut insert = ctx
                        .conn
                        .prepare_cached(
                            "INSERT INTO deliveries (event_sequence, consumer_kind, consumer, target, state, due_ms, created_ms) \
                             VALUES (?1, 1, ?2, ?3, 0, ?4, ?4)",
                        )
                        .map_err(&err)?;
                    let mut routes = Vec::new();
                    let mut n = 0;
                    for event in &events {
                        routes.clear();
                        router.route(event, &mut routes);
                        for (consumer, target) in &routes {
                            if let Consumer::Reactor(name) = consumer {
                                insert
                                    .execute(params![event.sequence as i64, name, target, now])
                                    .map_err(&err)?;
                                n += 1;
                            }
                        }
                    }
                    n
                }
            };
            ctx.work |= enqueued > 0;
            Ok(enqueued)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        self.read(|conn| {
            // Leases of a disabled subscription are not leased again (see `lease_in`), so they
            // are not due either; in due order, stopping at the first row that is.
            conn.prepare_cached(&format!(
                "SELECT due_ms FROM deliveries d WHERE state < 3 AND {LEASABLE} \
                 ORDER BY due_ms LIMIT 1"
            ))
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)).optional())
            .and_then(|ms| ms.map(ts).transpose())
            .map_err(db_err("next_due"))
        })
        .await
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.clone()
    }
}

const SUBSCRIPTION_COLUMNS: &str = "id, url, target, events, secret, ordered, enabled, created_ms";

fn subscription_from_row(r: &Row<'_>) -> rusqlite::Result<Subscription> {
    let events: String = r.get(3)?;
    Ok(Subscription {
        id: r.get(0)?,
        url: r.get(1)?,
        target: r.get(2)?,
        events: serde_json::from_str(&events).map_err(conv(3))?,
        secret: r.get(4)?,
        ordered: r.get(5)?,
        enabled: r.get(6)?,
        created_at: ts(r.get(7)?)?,
    })
}

fn subscription_in(conn: &Connection, id: &str) -> Result<Option<Subscription>> {
    conn.prepare_cached(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], subscription_from_row).optional())
    .map_err(db_err("read subscription"))
}

fn check_subscription(events: &[Pattern], secret: &str) -> Result<()> {
    if events.is_empty() {
        return Err(StoreError::Invalid {
            field: "events",
            message: "at least one pattern is needed".into(),
        });
    }
    if secret.is_empty() {
        return Err(StoreError::Invalid {
            field: "secret",
            message: "must not be empty".into(),
        });
    }
    Ok(())
}

fn patterns_json(events: &[Pattern]) -> Result<String> {
    serde_json::to_string(events).map_err(|e| StoreError::Invalid {
        field: "events",
        message: e.to_string(),
    })
}

#[async_trait]
impl Subscriptions for SqliteStore {
    async fn create_subscription(&self, new: NewSubscription) -> Result<Subscription> {
        let target = target_origin(&new.url)?;
        check_subscription(&new.events, &new.secret)?;
        let sub = Subscription {
            id: EventId::new_v7().to_string(),
            url: new.url,
            target,
            events: new.events,
            secret: new.secret,
            ordered: new.ordered,
            enabled: true,
            created_at: Timestamp::now(),
        };
        let events = patterns_json(&sub.events)?;
        self.call(move |ctx| {
            ctx.conn
                .execute(
                    &format!("INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                    params![sub.id, sub.url, sub.target, events, sub.secret, sub.ordered, sub.enabled, sub.created_at.as_unix_millis()],
                )
                .map_err(db_err("create subscription"))?;
            ctx.subscriptions_changed = true;
            ctx.state.subscriptions = load_subscription_routes(ctx.conn)?;
            Ok(sub)
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let version = self.inner.subscriptions_version.load(Ordering::Acquire);
        {
            let cache = self
                .inner
                .subscription_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if cache.0 == version
                && let Some(found) = cache.1.get(id)
            {
                return Ok(Some(found.clone()));
            }
        }
        let owned = id.to_owned();
        let found = self.read(move |conn| subscription_in(conn, &owned)).await?;
        if let Some(sub) = &found {
            let mut cache = self
                .inner
                .subscription_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if cache.0 < version {
                *cache = (version, HashMap::new());
            }
            // Read at `version` (or later): a change committed meanwhile has moved the version
            // on, so this entry is never served after it.
            if cache.0 == version {
                cache.1.insert(id.to_owned(), sub.clone());
            }
        }
        Ok(found)
    }

    async fn subscriptions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>> {
        let limit = check_limit(limit)?;
        let after = cursor.unwrap_or("").to_owned();
        self.read(move |conn| {
            let mut items = conn
                .prepare_cached(&format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id > ?1 ORDER BY id LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![after, limit as i64 + 1], subscription_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(db_err("list subscriptions"))?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|s| s.id.clone())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn update_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
    ) -> Result<Subscription> {
        let target = patch.url.as_deref().map(target_origin).transpose()?;
        let id = id.to_owned();
        self.call(move |ctx| {
            let mut sub = subscription_in(ctx.conn, &id)?.ok_or_else(|| StoreError::NotFound {
                what: "subscription",
                id: id.clone(),
            })?;
            let was_enabled = sub.enabled;
            if let (Some(url), Some(target)) = (patch.url, target) {
                sub.url = url;
                sub.target = target;
            }
            if let Some(events) = patch.events {
                sub.events = events;
            }
            if let Some(secret) = patch.secret {
                sub.secret = secret;
            }
            if let Some(ordered) = patch.ordered {
                sub.ordered = ordered;
            }
            if let Some(enabled) = patch.enabled {
                sub.enabled = enabled;
            }
            check_subscription(&sub.events, &sub.secret)?;
            let err = db_err("update subscription");
            ctx.conn
                .execute(
                    "UPDATE subscriptions SET url = ?2, target = ?3, events = ?4, secret = ?5, ordered = ?6, enabled = ?7 WHERE id = ?1",
                    params![sub.id, sub.url, sub.target, patterns_json(&sub.events)?, sub.secret, sub.ordered, sub.enabled],
                )
                .map_err(&err)?;
            // Waiting deliveries follow the subscription's target and its enabled state.
            ctx.conn
                .execute(
                    "UPDATE deliveries SET target = ?2 WHERE consumer_kind = 0 AND consumer = ?1",
                    params![sub.id, sub.target],
                )
                .map_err(&err)?;
            if was_enabled != sub.enabled {
                // Disabling holds waiting and parked deliveries (3); enabling lets them go (0).
                let sql = if sub.enabled {
                    "UPDATE deliveries SET state = 0 WHERE consumer_kind = 0 AND consumer = ?1 AND state = 3"
                } else {
                    "UPDATE deliveries SET state = 3 WHERE consumer_kind = 0 AND consumer = ?1 AND state IN (0, 2)"
                };
                ctx.conn.execute(sql, [&sub.id]).map_err(&err)?;
                ctx.work |= sub.enabled;
            }
            ctx.subscriptions_changed = true;
            ctx.state.subscriptions = load_subscription_routes(ctx.conn)?;
            Ok(sub)
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |ctx| {
            let err = db_err("delete subscription");
            let deleted = ctx
                .conn
                .execute("DELETE FROM subscriptions WHERE id = ?1", [&id])
                .map_err(&err)?;
            ctx.conn
                .execute(
                    "DELETE FROM deliveries WHERE consumer_kind = 0 AND consumer = ?1",
                    [&id],
                )
                .map_err(&err)?;
            ctx.subscriptions_changed = true;
            ctx.state.subscriptions = load_subscription_routes(ctx.conn)?;
            Ok(deleted > 0)
        })
        .await
    }
}

#[async_trait]
impl Cursors for SqliteStore {
    async fn cursor(&self, name: &str) -> Result<Option<u64>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT sequence FROM cursors WHERE name = ?1")
                .and_then(|mut s| s.query_row([&name], |r| r.get::<_, i64>(0)).optional())
                .map(|v| v.map(|s| s as u64))
                .map_err(db_err("read cursor"))
        })
        .await
    }

    async fn set_cursor(&self, name: &str, sequence: u64) -> Result<()> {
        let name = name.to_owned();
        let sequence = i64::try_from(sequence).map_err(|_| StoreError::Invalid {
            field: "sequence",
            message: "too large".into(),
        })?;
        self.call(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO cursors (name, sequence, updated_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name) DO UPDATE SET sequence = excluded.sequence, updated_ms = excluded.updated_ms",
                )
                .and_then(|mut s| s.execute(params![name, sequence, Timestamp::now().as_unix_millis()]))
                .map_err(db_err("set cursor"))?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl BreakerLog for SqliteStore {
    async fn save_breaker(&self, record: BreakerRecord) -> Result<()> {
        self.call(move |ctx| {
            ctx.conn
                .prepare_cached(
                    "INSERT INTO breakers (target, open, consecutive_failures, trips, opened_ms, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (target) DO UPDATE SET \
                     open = excluded.open, consecutive_failures = excluded.consecutive_failures, \
                     trips = excluded.trips, opened_ms = excluded.opened_ms, updated_ms = excluded.updated_ms",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        record.target,
                        record.open,
                        record.consecutive_failures,
                        i64::try_from(record.trips).unwrap_or(i64::MAX),
                        record.opened_at.map(Timestamp::as_unix_millis),
                        Timestamp::now().as_unix_millis(),
                    ])
                })
                .map_err(db_err("save breaker"))?;
            Ok(())
        })
        .await
    }

    async fn breakers(&self) -> Result<Vec<BreakerRecord>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT target, open, consecutive_failures, trips, opened_ms FROM breakers ORDER BY target",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(BreakerRecord {
                        target: r.get(0)?,
                        open: r.get(1)?,
                        consecutive_failures: r.get(2)?,
                        trips: r.get::<_, i64>(3)?.max(0) as u64,
                        opened_at: r.get::<_, Option<i64>>(4)?.map(ts).transpose()?,
                    })
                })?
                .collect()
            })
            .map_err(db_err("read breakers"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let version: i64 = Connection::open(dir.path().join(DB_FILE))
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .expect("version");
        assert_eq!(version, schema::VERSION);
        assert_eq!(schema::VERSION, 2);
    }
}
