//! The store the server runs on: the embedded SQLite under `DATA_DIR`, or PostgreSQL when
//! `DATABASE_URL` (or `[store] url` in the config file; the variable wins) names one (API.md
//! section 13). The rest of the server sees only `Arc<dyn Store>`; what differs per backend
//! (its kind, the database size, the schema version, closing) is answered here. Each process
//! opens PostgreSQL as an instance of its own (a new UUID v7), heartbeating with the store's
//! defaults (every 2 s, dead after 10 s unseen).

use std::path::Path;
use std::sync::Arc;

use nexus_api::health::StoreKind;
use nexus_core::Bus;
#[cfg(feature = "postgres")]
use nexus_store::PgStore;
use nexus_store::{Router, SqliteStore, Store};
use nexus_transport::SizeProbe;

use crate::config::{Checked, ConfigError, Settings, config_error};

/// Which store the settings select, before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice<'a> {
    /// SQLite in this directory.
    Sqlite(&'a Path),
    /// PostgreSQL at `url`, which came from the setting `name` (`DATABASE_URL` or `store.url`).
    Postgres { name: &'static str, url: &'a str },
}

impl<'a> Choice<'a> {
    /// `DATABASE_URL`, else `[store] url`, else SQLite under `DATA_DIR`.
    pub(crate) fn of(settings: &'a Settings, checked: &'a Checked) -> Choice<'a> {
        if let Some(url) = &settings.database_url {
            Choice::Postgres {
                name: "DATABASE_URL",
                url: url.expose(),
            }
        } else if let Some(url) = &checked.store_url {
            Choice::Postgres {
                name: "store.url",
                url: url.expose(),
            }
        } else {
            Choice::Sqlite(&settings.data_dir)
        }
    }
}

/// An open store.
#[derive(Debug)]
pub(crate) enum Backend {
    /// The embedded store.
    Sqlite(Arc<SqliteStore>),
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres(Arc<PgStore>),
}

/// What opening needs besides the choice: the bus committed events go to, and the reactors'
/// routes. Both absent for `migrate`.
#[derive(Default)]
pub(crate) struct Wiring {
    pub(crate) bus: Option<Bus>,
    pub(crate) router: Option<Arc<dyn Router>>,
}

impl Backend {
    /// Opens (creating or migrating) the chosen store. An error names the setting it came from;
    /// for PostgreSQL it names the database as `host:port/name`, never the password.
    pub(crate) async fn open(choice: Choice<'_>, wiring: Wiring) -> Result<Backend, ConfigError> {
        match choice {
            Choice::Sqlite(dir) => {
                let mut builder = SqliteStore::builder(dir)
                    .create_dir(true)
                    .version(env!("CARGO_PKG_VERSION"));
                if let Some(bus) = wiring.bus {
                    builder = builder.bus(bus);
                }
                if let Some(router) = wiring.router {
                    builder = builder.router(router);
                }
                let store = builder.open().map_err(|e| config_error("DATA_DIR", e))?;
                Ok(Backend::Sqlite(Arc::new(store)))
            }
            #[cfg(feature = "postgres")]
            Choice::Postgres { name, url } => {
                // Each process is its own instance: its leases, heartbeat and row are its own,
                // so opening never gives back another live process's leases.
                let mut builder = PgStore::builder(url)
                    .instance(nexus_store::new_instance_id())
                    .version(env!("CARGO_PKG_VERSION"));
                if let Some(bus) = wiring.bus {
                    builder = builder.bus(bus);
                }
                if let Some(router) = wiring.router {
                    builder = builder.router(router);
                }
                let store = builder.open().await.map_err(|e| config_error(name, e))?;
                Ok(Backend::Postgres(Arc::new(store)))
            }
            #[cfg(not(feature = "postgres"))]
            Choice::Postgres { name, .. } => Err(config_error(
                name,
                "this nexus-server was built without PostgreSQL (cargo feature postgres)",
            )),
        }
    }

    /// The store as the rest of the server uses it.
    pub(crate) fn dyn_store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => Arc::clone(s) as _,
            #[cfg(feature = "postgres")]
            Backend::Postgres(s) => Arc::clone(s) as _,
        }
    }

    /// The store as the retry worker uses it.
    pub(crate) fn work_queue(&self) -> Arc<dyn nexus_resilience::WorkQueue> {
        match self {
            Backend::Sqlite(s) => Arc::clone(s) as _,
            #[cfg(feature = "postgres")]
            Backend::Postgres(s) => Arc::clone(s) as _,
        }
    }

    /// `sqlite` or `postgres`, for `/health/detailed`.
    pub(crate) fn kind(&self) -> StoreKind {
        match self {
            Backend::Sqlite(_) => StoreKind::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => StoreKind::Postgres,
        }
    }

    /// The kind's name, for lines.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Where it is: the database file, or `host:port/name` (never the password).
    pub(crate) fn location(&self) -> String {
        match self {
            Backend::Sqlite(s) => s.path().display().to_string(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(s) => s.database().to_owned(),
        }
    }

    /// The schema version it has once open: opening migrated it to this build's, or refused it.
    pub(crate) fn schema_version(&self) -> i64 {
        match self {
            Backend::Sqlite(_) => nexus_store::SQLITE_SCHEMA_VERSION,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => nexus_store::PG_SCHEMA_VERSION,
        }
    }

    /// The database size, read when asked (`/health/detailed`, `nexus_database_size_bytes`):
    /// the file and its WAL, or `pg_database_size(current_database())`.
    pub(crate) fn size_probe(&self) -> SizeProbe {
        match self {
            Backend::Sqlite(s) => {
                let store = Arc::clone(s);
                Arc::new(move || {
                    let size = store.size_bytes();
                    Box::pin(async move { Some(size) })
                })
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(s) => {
                let store = Arc::clone(s);
                Arc::new(move || {
                    let store = Arc::clone(&store);
                    Box::pin(async move {
                        match store.size_bytes().await {
                            Ok(size) => Some(size),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the database size");
                                None
                            }
                        }
                    })
                })
            }
        }
    }

    /// What sets the gauges read rather than counted from the store, called at scrape time: the
    /// PostgreSQL pool's connections (busy, idle), its maximum and the tasks waiting for one. The
    /// embedded store has no pool and sets none.
    pub(crate) fn gauges(&self) -> Arc<dyn Fn() + Send + Sync> {
        match self {
            Backend::Sqlite(_) => Arc::new(|| {}),
            #[cfg(feature = "postgres")]
            Backend::Postgres(s) => {
                let store = Arc::clone(s);
                Arc::new(move || {
                    use nexus_store::metric_names as m;
                    let pool = store.pool_status();
                    metrics::gauge!(m::STORE_POOL_CONNECTIONS, "state" => "busy")
                        .set(pool.busy() as f64);
                    metrics::gauge!(m::STORE_POOL_CONNECTIONS, "state" => "idle")
                        .set(pool.idle as f64);
                    metrics::gauge!(m::STORE_POOL_MAX_CONNECTIONS).set(pool.max as f64);
                    metrics::gauge!(m::STORE_POOL_WAITING).set(pool.waiting as f64);
                })
            }
        }
    }

    /// Shuts the store down once the server is done with it: the writer finishes its last
    /// commit, then the file lock is released or the pool's connections closed. A handle still
    /// held elsewhere (a task that outlived the drain) stops the store when it goes.
    pub(crate) async fn close(self) {
        fn last<T>(store: Arc<T>) -> Option<T> {
            match Arc::try_unwrap(store) {
                Ok(store) => Some(store),
                Err(shared) => {
                    tracing::warn!(
                        handles = Arc::strong_count(&shared),
                        "the store is still held after the drain; it closes when the last handle goes"
                    );
                    None
                }
            }
        }
        match self {
            Backend::Sqlite(s) => {
                if let Some(store) = last(s) {
                    store.close().await;
                    tracing::debug!("store closed");
                }
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(s) => {
                if let Some(store) = last(s) {
                    store.close().await;
                    tracing::debug!("store closed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Mode, test_env as env};

    #[test]
    fn the_variable_wins_over_the_file() {
        let file = FileConfig::parse("[store]\nurl = \"postgres://file@db/nexus\"\n")
            .and_then(|f| f.check(Mode::Development, env(&[])))
            .expect("valid");
        let plain = Settings::from_env(env(&[("DATA_DIR", "/srv/nexus")])).expect("settings");
        let with_url = Settings::from_env(env(&[("DATABASE_URL", "postgres://env@db/nexus")]))
            .expect("settings");
        assert_eq!(
            Choice::of(&plain, &Checked::default()),
            Choice::Sqlite(Path::new("/srv/nexus"))
        );
        assert_eq!(
            Choice::of(&plain, &file),
            Choice::Postgres {
                name: "store.url",
                url: "postgres://file@db/nexus"
            }
        );
        assert_eq!(
            Choice::of(&with_url, &file),
            Choice::Postgres {
                name: "DATABASE_URL",
                url: "postgres://env@db/nexus"
            }
        );
    }
}
