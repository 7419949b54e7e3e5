//! A PostgreSQL database of one test's own, for the conformance suite on `PgStore` and for any
//! test that needs a real PostgreSQL (the server binary's too): created on the server of
//! `NEXUS_TEST_DATABASE_URL` (default [`DEFAULT_ADMIN_URL`]) and dropped, its connections closed,
//! when the handle is dropped.
//!
//! Nothing here skips: without a server, [`connect`] and [`TestDatabase::create`] panic with a
//! message naming the URL they tried, so a test fails instead of passing silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::NoTls;

/// The server tests create their databases on when `NEXUS_TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("NEXUS_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `name` (user, host, port and query kept).
///
/// ```
/// use nexus_store::conformance::pg::with_database;
/// assert_eq!(
///     with_database("postgres://u:p@h:5433/postgres?sslmode=disable", "t_1"),
///     "postgres://u:p@h:5433/t_1?sslmode=disable"
/// );
/// assert_eq!(with_database("postgres://h", "t_2"), "postgres://h/t_2");
/// ```
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A client on `url` (its connection driven by a task of the current runtime); panics naming
/// the URL when nothing answers within 10 s.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let connect = tokio_postgres::connect(url, NoTls);
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "no PostgreSQL answers at {url} (set NEXUS_TEST_DATABASE_URL; .ci/run starts one): {e}"
        ),
        Err(_) => {
            panic!("no PostgreSQL answers at {url} within 10 s (set NEXUS_TEST_DATABASE_URL)")
        }
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A database of one test's own, dropped (its connections closed) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `<prefix>_<pid>_<nanos>_<n>` on [`admin_url`]'s server. `prefix` is lower-case
    /// letters, digits and `_`, so the name needs no quoting.
    pub async fn create(prefix: &str) -> TestDatabase {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{nanos:x}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = admin_url();
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} at {admin}: {e}"));
        TestDatabase {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL (the admin URL with this database's name).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a test's runtime, or outside any: do the async work on a thread
        // of its own either way.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                connect(&admin_url())
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}
