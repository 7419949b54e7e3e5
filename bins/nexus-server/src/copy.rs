//! `nexus-server copy --from <data dir> --to <postgres url>`: copies a SQLite store into an
//! empty PostgreSQL database (API.md section 13), one line per table and a last line, in the
//! format of the logs.

use std::path::Path;

#[cfg(feature = "postgres")]
use nexus_store::StoreError;

use crate::config::{ConfigError, config_error};
use crate::logging::Console;

#[cfg(feature = "postgres")]
/// The argument an error is about: `--from` for the SQLite side, `--to` for PostgreSQL.
fn argument(e: &StoreError) -> &'static str {
    match e {
        StoreError::MissingDir { .. }
        | StoreError::NotADirectory { .. }
        | StoreError::ReadOnly { .. }
        | StoreError::Locked { .. }
        | StoreError::Io { .. }
        | StoreError::NoStore { .. }
        | StoreError::Corrupt { .. } => "--from",
        StoreError::SchemaTooNew { path, .. }
            if path.file_name() == Some(std::ffi::OsStr::new(nexus_store::DB_FILE)) =>
        {
            "--from"
        }
        _ => "--to",
    }
}

/// Runs the copy and prints its lines; an error names the argument it is about.
#[cfg(feature = "postgres")]
pub(crate) async fn copy(from: &Path, to: &str, console: Console) -> Result<(), ConfigError> {
    let report = nexus_store::copy_sqlite_to_postgres(from, nexus_store::PgStore::builder(to))
        .await
        .map_err(|e| config_error(argument(&e), e))?;
    for (table, rows) in report.tables() {
        console.copied_table(table, rows);
    }
    console.copied(
        &report.source.display().to_string(),
        &report.database,
        report.head,
    );
    Ok(())
}

/// Without PostgreSQL there is nothing to copy into.
#[cfg(not(feature = "postgres"))]
pub(crate) async fn copy(_from: &Path, _to: &str, _console: Console) -> Result<(), ConfigError> {
    Err(config_error(
        "--to",
        "this nexus-server was built without PostgreSQL (cargo feature postgres)",
    ))
}
