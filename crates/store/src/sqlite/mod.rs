//! The SQLite backend: WAL with `synchronous=FULL`, one writer thread with group commit, readers
//! on their own connections.
//!
//! One file per concern: [`open`] (directory, lock, pragmas, migrations), [`log`] (events and
//! their outbox), [`queue`] (leases and settling), [`dead_letters`], [`subscriptions`],
//! [`history`] (attempts and finished deliveries), [`cursor`], [`breakers`], [`event_types`]; [`writer`] is the group-commit thread they all write through and
//! [`columns`] maps Rust values to columns. This file holds the handle that ties them together.

mod breakers;
mod checkpoint;
mod columns;
mod cursor;
mod dead_letters;
mod event_types;
#[cfg(feature = "postgres")]
pub(crate) mod export;
mod history;
mod log;
mod open;
mod queue;
mod schema;
mod subscriptions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use nexus_event::Timestamp;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot, watch};

use crate::backend::Admission;
use crate::error::{Result, StoreError};
use crate::model::{InstanceRecord, Router};
use crate::traits::Instances;
use columns::db_err;
use writer::{Ctx, Job};

pub use open::{DB_FILE, DEFAULT_WRITER_QUEUE, Durability, LOCK_FILE, SqliteBuilder};

/// The SQLite schema version this build writes (`PRAGMA user_version`); opening a store migrates
/// it to this version, and a newer one is refused.
pub const SQLITE_SCHEMA_VERSION: i64 = schema::VERSION;

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
    /// This process, the one instance on the store.
    instance: Instance,
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
    subscription_cache: Mutex<crate::backend::SubscriptionCache>,
    /// Moves after every committed change of event types (`EventTypes::event_type_changes`).
    event_types: watch::Sender<u64>,
    /// Held for the store's life: one store per data directory. Released after the writer.
    _lock: std::fs::File,
}

/// The process that holds the store, as [`Instances::instances`] lists it.
struct Instance {
    /// Made at open: a UUID v7.
    id: String,
    host: String,
    started_at: Timestamp,
    version: String,
}

impl Inner {
    /// Closes the writer's queue, so the writer finishes what it was given and stops, and hands
    /// back its thread to join. Joining it closes the database, so the directory can be opened
    /// again once the lock (dropped after) is released.
    fn stop_writer(&mut self) -> Option<JoinHandle<()>> {
        drop(self.jobs.take());
        self.writer.take()
    }
}

impl Drop for Inner {
    /// The synchronous path (the last handle dropped without [`SqliteStore::close`]): the join
    /// waits for at most the writer's last group. Inside a multi-threaded tokio runtime the wait
    /// runs in `block_in_place`, so the runtime moves its other tasks off this thread; elsewhere
    /// (no runtime, a blocking-pool thread, a current-thread runtime, where nothing else could
    /// run meanwhile anyway) it blocks in place. The writer never waits on the runtime, so the
    /// join cannot deadlock it.
    fn drop(&mut self) {
        let Some(writer) = self.stop_writer() else {
            return;
        };
        let join = move || {
            let _ = writer.join();
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(join),
            _ => join(),
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

impl SqliteStore {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The id of this process's instance, made at open (a UUID v7).
    pub fn instance(&self) -> &str {
        &self.inner.instance.id
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

    /// Closes this handle and, if it is the last one, shuts the store down without blocking the
    /// runtime: the writer finishes what it was given, stops and closes the database (joined on
    /// the blocking pool), then the data directory's lock is released, so the directory can be
    /// opened again as soon as this returns. With other handles still alive it only drops this
    /// one; the store stops when the last goes. Dropping the last handle does the same
    /// synchronously.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// use nexus_store::SqliteStore;
    ///
    /// let store = SqliteStore::open(dir.path())?;
    /// store.close().await;
    /// let again = SqliteStore::open(dir.path())?;
    /// # drop(again);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })
    /// # }
    /// ```
    pub async fn close(self) {
        let Ok(mut inner) = Arc::try_unwrap(self.inner) else {
            return;
        };
        if let Some(writer) = inner.stop_writer() {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the store writer ended abnormally");
            }
        }
        drop(inner);
    }

    /// Replaces the extra delivery routes (reactors). Applies to events appended from now on.
    pub async fn set_router(&self, router: Option<Arc<dyn Router>>) -> Result<()> {
        self.call(move |ctx| {
            ctx.state.router = router;
            Ok(())
        })
        .await
    }

    /// Runs `f` on the writer thread inside the next group's transaction and answers once that
    /// transaction is committed (or failed). Waits for room when the writer's queue is full: the
    /// worker's and the admin's operations apply back pressure rather than fail.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(f, Admission::Wait, true).await
    }

    /// Like [`SqliteStore::call`], without a savepoint around `f`: for settles, which fail only
    /// before they write (a lease lost is found by the statement that would write). Should `f`
    /// fail after writing, the whole group is rolled back (see `writer::Job`).
    async fn call_settle<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(f, Admission::Wait, false).await
    }

    async fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T> + Send + 'static,
        admission: Admission,
        savepoint: bool,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            run: Box::new(move |ctx| {
                let result = f(ctx);
                let failed = result.is_err();
                (
                    failed,
                    Box::new(move |committed: Result<()>| {
                        let _ = tx.send(committed.and(result));
                    }),
                )
            }),
            savepoint,
        };
        crate::backend::submit(self.inner.jobs.as_ref(), job, admission, rx).await
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
        columns::plan_once(&conn).map_err(db_err("open reader"))?;
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

/// One process holds the data directory (its lock file), so it is the only instance, seen now.
#[async_trait]
impl Instances for SqliteStore {
    async fn instances(&self) -> Result<Vec<InstanceRecord>> {
        let me = &self.inner.instance;
        Ok(vec![InstanceRecord {
            id: me.id.clone(),
            host: me.host.clone(),
            started_at: me.started_at,
            last_seen_at: Timestamp::now().max(me.started_at),
            version: me.version.clone(),
        }])
    }
}
