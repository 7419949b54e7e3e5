//! Opening a store: the URL and its TLS settings (`tls`), the pool, the schema migrations
//! under an advisory lock, the instance registered and its leases given back, and the writer's
//! and the heartbeat's start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use nexus_core::Bus;
use nexus_event::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio_postgres::Config;
use tokio_postgres::config::Host;

use super::columns::db_err;
use super::instances::{
    DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT, Heartbeat, Identity, give_back, register,
};
use super::subscriptions::load_subscription_routes;
use super::writer::{State, Writer};
use super::{Inner, PgStore, follow, get, schema};
use crate::backend::host_name;
use crate::error::{Result, StoreError};
use crate::model::Router;

/// Connections in the pool by default: the writer's one plus readers.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Operations that may wait for the writer at once, by default (as SQLite's).
const DEFAULT_QUEUE: usize = 16_384;

/// The instance name by default: one instance per database.
pub const DEFAULT_INSTANCE: &str = "local";

/// Opens a [`PgStore`] with options; every option has a documented default.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use nexus_store::PgStore;
/// let store = PgStore::builder("postgres://nexus@127.0.0.1/nexus")
///     .pool_size(8)
///     .open()
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct PgBuilder {
    url: String,
    pool_size: usize,
    writer_queue: usize,
    instance: String,
    version: String,
    heartbeat: Duration,
    dead_after: Duration,
    connect_timeout: Duration,
    bus: Option<Bus>,
    router: Option<Arc<dyn Router>>,
}

impl PgBuilder {
    /// Connections in the pool, the writer's included. Default [`DEFAULT_POOL_SIZE`] (16); at
    /// least 2.
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(2);
        self
    }

    /// How many operations may wait for the writer at once. Default 16,384 (as SQLite's); at
    /// least 1. When it is full `try_append` (ingress) fails at once with [`StoreError::Busy`];
    /// every other write waits for room.
    pub fn writer_queue(mut self, operations: usize) -> Self {
        self.writer_queue = operations.max(1);
        self
    }

    /// The name of this instance; the leases it takes carry it, its row in `instances` is
    /// keyed by it, and at open the leases of the same name (left by its previous process) are
    /// given back, due at once. Default [`DEFAULT_INSTANCE`] (`local`): one instance per
    /// database. Several instances on one database need distinct names: a server gives each
    /// process its own ([`new_instance_id`](crate::new_instance_id)).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }

    /// The version this instance runs, as its row in `instances` says. Default this crate's
    /// version; a server gives its own.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// How often the instance shows it is alive (and takes over from dead instances). Default
    /// [`DEFAULT_HEARTBEAT`] (2 s); at least 1 ms.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// How long an instance may go unseen (by the database's clock) before the others take it
    /// for dead: its leased deliveries are given back, due at once, and it leaves the list of
    /// instances. Default [`DEFAULT_DEAD_AFTER`] (10 s); must be longer than the heartbeat, or
    /// opening is refused. Every instance on a database should use the same value.
    pub fn dead_after(mut self, unseen: Duration) -> Self {
        self.dead_after = unseen;
        self
    }

    /// How long connecting may take before the server counts as unreachable, unless the URL
    /// says (`connect_timeout`). Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// A bus to publish every event committed from now on to, by any instance on the database,
    /// once each and in sequence order: this instance's right after their commit, other
    /// instances' when the follower reads them (told by `NOTIFY`, within a second otherwise).
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

    /// Connects, migrates the schema and starts the writer.
    pub async fn open(self) -> Result<PgStore> {
        PgStore::open_with(self).await
    }
}

/// `host:port/name` of a parsed URL, for messages; never the password.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => config
            .get_hostaddrs()
            .first()
            .map_or_else(|| "localhost".into(), ToString::to_string),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let name = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{name}")
}

impl PgStore {
    /// Opens (creating or migrating) the store at a `postgres://` URL with the default options.
    pub async fn open(url: &str) -> Result<PgStore> {
        PgStore::builder(url).open().await
    }

    /// A builder for a store at a `postgres://` URL.
    pub fn builder(url: impl Into<String>) -> PgBuilder {
        PgBuilder {
            url: url.into(),
            pool_size: DEFAULT_POOL_SIZE,
            writer_queue: DEFAULT_QUEUE,
            instance: DEFAULT_INSTANCE.into(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat: DEFAULT_HEARTBEAT,
            dead_after: DEFAULT_DEAD_AFTER,
            connect_timeout: Duration::from_secs(5),
            bus: None,
            router: None,
        }
    }

    async fn open_with(options: PgBuilder) -> Result<PgStore> {
        check_liveness(options.heartbeat, options.dead_after)?;
        let (mut config, tls) = super::tls::parse(&options.url)?;
        let database = describe(&config);
        let connector = tls.connector(&database)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        let heartbeat_config = config.clone();
        let heartbeat_tls = connector.clone();
        let follow_config = config.clone();
        let follow_tls = connector.clone();
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Unavailable {
                reason: format!("cannot build the connection pool for {database}: {e}"),
            })?;
        // The causes spelled out (tokio-postgres says only "error connecting to server" and
        // keeps the operating system's "Connection refused" as its source); never the URL.
        let mut client = pool.get().await.map_err(|e| {
            if super::tls::tls_failure(&e) {
                StoreError::Tls {
                    database: database.clone(),
                    message: format!("sslmode={}: {}", tls.mode.name(), causes(&e)),
                }
            } else {
                StoreError::Unavailable {
                    reason: format!("PostgreSQL at {database} does not answer: {}", causes(&e)),
                }
            }
        })?;
        migrate(&mut client, &database).await?;
        let instance: Arc<str> = options.instance.into();
        let me = Identity {
            id: Arc::clone(&instance),
            host: host_name(),
            version: options.version,
        };
        let started_ms = register(&**client, &me).await?;
        let released = give_back(&**client, &[&instance], Timestamp::now()).await?;
        if released > 0 {
            tracing::warn!(
                released,
                instance = %instance,
                "deliveries leased by this instance's previous process are due again"
            );
        }
        let subscriptions = load_subscription_routes(&client).await?;
        let (changes_tx, changes) = watch::channel(0);
        let (fanout, follower) = follow::start(
            follow_config,
            follow_tls,
            &client,
            options.bus,
            changes_tx.clone(),
        )
        .await?;
        drop(client);
        let (jobs, rx) = mpsc::channel(options.writer_queue);
        let writer = Writer {
            pool: pool.clone(),
            state: State {
                instance: Arc::clone(&instance),
                subscriptions,
                routes_version: -1,
                router: options.router,
            },
            fanout: Arc::clone(&fanout),
            changes: changes_tx,
        };
        let writer = tokio::spawn(writer.run(rx));
        // The error counter exists from the start, so a rate over it is 0 rather than absent.
        metrics::counter!(crate::metric_names::STORE_ERRORS_TOTAL).increment(0);
        let reachable = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let heartbeat = Heartbeat {
            reachable: Arc::clone(&reachable),
            config: heartbeat_config,
            tls: heartbeat_tls,
            database: database.clone(),
            me,
            started_ms,
            every: options.heartbeat,
            dead_after: options.dead_after,
        }
        .spawn();
        tracing::info!(database = %database, instance = %instance, "postgres store open");
        Ok(PgStore {
            inner: Arc::new(Inner {
                database,
                instance,
                dead_after: options.dead_after,
                pool,
                heartbeat: Some(heartbeat),
                reachable,
                jobs: Some(jobs),
                writer: Some(writer),
                follower: Some(follower),
                fanout,
                subscription_cache: std::sync::Mutex::new(crate::backend::SubscriptionCache::new(
                    Some(super::SUBSCRIPTION_CACHE_TTL),
                )),
                changes,
            }),
        })
    }
}

/// An error and its sources, `: `-separated, on one line.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out.replace('\n', " ")
}

/// Applies the migrations this database lacks, under an advisory lock so instances starting
/// together migrate once; refuses a schema newer than this build.
async fn migrate(client: &mut Object, database: &str) -> Result<()> {
    let err = db_err("migrate");
    let tx = client.transaction().await.map_err(&err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::MIGRATE_LOCK])
        .await
        .map_err(&err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS nexus_schema (\
         only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), \
         version integer NOT NULL)",
    )
    .await
    .map_err(&err)?;
    let found: i32 = match tx
        .query_opt("SELECT version FROM nexus_schema", &[])
        .await
        .map_err(&err)?
    {
        Some(row) => get(&row, 0, "migrate")?,
        None => 0,
    };
    if found > schema::VERSION {
        return Err(StoreError::SchemaTooNew {
            path: PathBuf::from(database),
            found: found.into(),
            supported: schema::VERSION.into(),
        });
    }
    for (index, sql) in schema::MIGRATIONS.iter().enumerate() {
        let to = index as i32 + 1;
        if to <= found {
            continue;
        }
        tx.batch_execute(sql).await.map_err(&err)?;
        tracing::info!(version = to, "store schema migrated");
    }
    tx.execute(
        "INSERT INTO nexus_schema (only_row, version) VALUES (true, $1) \
         ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
        &[&schema::VERSION],
    )
    .await
    .map_err(&err)?;
    tx.commit().await.map_err(&err)
}

/// Refuses a heartbeat of zero, or a `dead_after` no longer than the heartbeat (every instance
/// would take the others for dead between two of their heartbeats).
fn check_liveness(heartbeat: Duration, dead_after: Duration) -> Result<()> {
    if heartbeat < Duration::from_millis(1) {
        return Err(StoreError::Invalid {
            field: "heartbeat",
            message: format!("the heartbeat must be at least 1 ms, got {heartbeat:?}"),
        });
    }
    if dead_after <= heartbeat {
        return Err(StoreError::Invalid {
            field: "dead_after",
            message: format!(
                "dead_after ({dead_after:?}) must be longer than the heartbeat ({heartbeat:?}), \
                 or live instances are taken for dead; a few heartbeats is usual"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_after_must_outlast_the_heartbeat() {
        assert!(check_liveness(DEFAULT_HEARTBEAT, DEFAULT_DEAD_AFTER).is_ok());
        assert!(check_liveness(Duration::from_millis(100), Duration::from_millis(101)).is_ok());
        for (heartbeat, dead_after, field) in [
            (Duration::from_secs(2), Duration::from_secs(2), "dead_after"),
            (Duration::from_secs(5), Duration::from_secs(1), "dead_after"),
            (Duration::ZERO, Duration::from_secs(1), "heartbeat"),
        ] {
            match check_liveness(heartbeat, dead_after) {
                Err(StoreError::Invalid { field: f, message }) => {
                    assert_eq!(f, field, "{message}");
                    assert!(message.contains(&format!("{heartbeat:?}")), "{message}");
                }
                other => panic!("{heartbeat:?}/{dead_after:?}: {other:?}"),
            }
        }
    }
}
