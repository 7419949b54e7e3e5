//! The PostgreSQL backend: a pool of connections for reads, one writer task with group commit
//! for writes, sequences assigned under an advisory lock.
//!
//! One file per concern, as for SQLite: [`open`] (URL, pool, migrations, leases given back),
//! [`instances`] (registration, heartbeat, take-over from dead instances),
//! [`log`] (events and their outbox), [`queue`] (leases and settling), [`dead_letters`],
//! [`subscriptions`], [`cursor`], [`breakers`], [`event_types`]; [`writer`] is the group-commit task they all
//! write through, [`follow`] brings other instances' events to the bus and their wake-ups to the
//! workers (`LISTEN`/`NOTIFY`), [`columns`] maps Rust values to columns and errors to
//! [`StoreError`]s, and [`schema`] holds the migrations. This file holds the handle that ties them together.

mod breakers;
mod columns;
mod cursor;
mod dead_letters;
mod event_types;
mod follow;
mod history;
#[cfg(feature = "sqlite")]
pub(crate) mod import;
mod instances;
mod log;
mod open;
mod queue;
mod schema;
mod subscriptions;
mod tls;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::backend::Admission;
use crate::error::{Result, StoreError};
use crate::model::Router;
use columns::{db_err, pool_err};
use writer::{BoxFuture, Completion, Ctx, Job, JobKind};

pub use instances::{DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT};
pub use open::{DEFAULT_INSTANCE, DEFAULT_POOL_SIZE, PgBuilder};

/// The PostgreSQL schema version this build writes (table `nexus_schema`); opening a store
/// migrates it to this version, and a newer one is refused.
pub const PG_SCHEMA_VERSION: i64 = schema::VERSION as i64;

/// The PostgreSQL store. Cloning gives another handle to the same store; the writer stops when
/// the last handle is dropped, after finishing what it was given, and so does the heartbeat
/// (the instance's row then stays until another instance takes it for dead; [`PgStore::close`]
/// deletes it at once).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use nexus_store::{EventLog, PgStore};
/// use nexus_event::{NewEvent, WellKnown};
///
/// let store = PgStore::open("postgres://nexus@127.0.0.1:5432/nexus").await?;
/// let appended = store.append(vec![NewEvent::new(WellKnown::PaymentReceived, "flowpay")]).await?;
/// assert!(appended[0].sequence >= 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port/name`, for messages (never the password).
    database: String,
    instance: Arc<str>,
    /// How long an instance may go unseen before it counts as dead.
    dead_after: Duration,
    pool: Pool,
    /// Stops when dropped with the last handle, or at close.
    heartbeat: Option<instances::HeartbeatTask>,
    /// What the writer and the follower share; here for the version of the subscription cache.
    fanout: Arc<follow::Fanout>,
    /// Subscriptions read by `subscription()` (every webhook delivery reads its subscription).
    subscription_cache: std::sync::Mutex<crate::backend::SubscriptionCache>,
    /// Whether the heartbeat's last round reached the database.
    reachable: Arc<std::sync::atomic::AtomicBool>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<tokio::task::JoinHandle<()>>,
    /// The task that brings other instances' events to the bus and their wake-ups to the
    /// workers; stopped with the store.
    follower: Option<follow::Follower>,
    changes: watch::Receiver<u64>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.inner.database)
            .field("instance", &self.inner.instance)
            .finish()
    }
}

impl PgStore {
    /// The database, as `host:port/name`.
    pub fn database(&self) -> &str {
        &self.inner.database
    }

    /// The instance name its leases carry.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Size of the database on the server (`pg_database_size(current_database())`), in bytes.
    pub async fn size_bytes(&self) -> Result<u64> {
        let client = self.conn("database size").await?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(db_err("database size"))?;
        let bytes: i64 = get(&row, 0, "database size")?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// The connection pool as it is now, for the pool gauges (`nexus_store_pool_*`).
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.inner.pool.status();
        PoolStatus {
            max: status.max_size,
            open: status.size,
            idle: status.available,
            waiting: status.waiting,
        }
    }

    /// Closes this handle and, if it is the last one, shuts the store down: the writer finishes
    /// what it was given and stops, the heartbeat stops, the instance gives back its leases and
    /// deletes its row (so it leaves the list at once), then the pool's connections are closed.
    /// With other handles still alive it only drops this one.
    pub async fn close(self) {
        let Ok(mut inner) = Arc::try_unwrap(self.inner) else {
            return;
        };
        drop(inner.jobs.take());
        if let Some(writer) = inner.writer.take()
            && writer.await.is_err()
        {
            tracing::error!("the postgres store writer ended abnormally");
        }
        if let Some(follower) = inner.follower.take() {
            follower.stop().await;
        }
        if let Some(heartbeat) = inner.heartbeat.take() {
            heartbeat.stop().await;
        }
        let left = match inner.pool.get().await {
            Ok(mut client) => instances::leave(&mut client, &inner.instance).await,
            Err(e) => Err(pool_err("close instance")(e)),
        };
        match left {
            Ok(released) => tracing::debug!(
                instance = %inner.instance,
                released,
                "instance left the database"
            ),
            Err(e) => tracing::warn!(
                instance = %inner.instance,
                error = %e,
                "cannot delete this instance's row at close; the others take it for dead after \
                 dead_after"
            ),
        }
        inner.pool.close();
    }

    /// Replaces the extra delivery routes (reactors). Applies to events appended from now on.
    pub async fn set_router(&self, router: Option<Arc<dyn Router>>) -> Result<()> {
        self.call(move |ctx| {
            Box::pin(async move {
                ctx.state.router = router;
                Ok(())
            })
        })
        .await
    }

    /// Runs `f` in the writer's next group transaction and answers once that transaction is
    /// committed (or failed). Waits for room when the writer's queue is full.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(f, Admission::Wait, JobKind::Other).await
    }

    /// Queues `f` for the writer as a job of `kind`. With [`Admission::FailFast`] (`try_append`) it
    /// fails at once with [`StoreError::Busy`] when the writer's queue is full, so a flood is
    /// refused (`503`) instead of queued without bound.
    async fn submit<T, F>(&self, f: F, admission: Admission, kind: JobKind) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job = writer::job(kind, move |ctx| {
            Box::pin(async move {
                match ctx {
                    Err(refused) => {
                        let _ = tx.send(Err(refused));
                        None
                    }
                    Ok(ctx) => {
                        let result = f(&mut *ctx).await;
                        // A failure in the database aborted the transaction; a refusal (lost
                        // lease, duplicate id, unknown id) wrote nothing and leaves it usable.
                        if result.as_ref().is_err_and(StoreError::is_transient) {
                            ctx.broken = true;
                        }
                        let completion: Completion = Box::new(move |committed: Result<()>| {
                            let _ = tx.send(committed.and(result));
                        });
                        Some(completion)
                    }
                }
            })
        });
        crate::backend::submit(self.inner.jobs.as_ref(), job, admission, rx).await
    }

    /// A pooled connection for a read.
    async fn conn(&self, op: &'static str) -> Result<Object> {
        self.inner.pool.get().await.map_err(pool_err(op))
    }
}

/// The longest a cached subscription is used on PostgreSQL: a bound should a notification of
/// another instance's change go astray.
pub(crate) const SUBSCRIPTION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Connections of a [`PgStore`]'s pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// The most connections the pool opens.
    pub max: usize,
    /// Connections open now (busy and idle).
    pub open: usize,
    /// Open connections not lent out.
    pub idle: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
}

impl PoolStatus {
    /// Connections lent out now.
    pub fn busy(&self) -> usize {
        self.open.saturating_sub(self.idle)
    }
}

/// A prepared statement from the connection's cache, for the statements every append and settle
/// runs: a statement given as text costs a prepare round trip each time. (Leasing and `next_due`
/// stay unprepared: PostgreSQL plans those with their values, which is what lets it use the
/// partial due index.)
async fn cached(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    op: &'static str,
) -> Result<tokio_postgres::Statement> {
    client.prepare_cached(sql).await.map_err(db_err(op))
}

/// Column `idx` of a row, a type mismatch being a database error rather than a panic.
fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, op: &'static str) -> Result<T> {
    row.try_get(idx).map_err(db_err(op))
}
