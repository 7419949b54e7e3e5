//! The one error type of this crate.

use std::path::PathBuf;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory does not exist (and the options did not ask to create it).
    #[error("data dir {path} does not exist")]
    MissingDir {
        /// The directory.
        path: PathBuf,
    },
    /// The data directory path is a file or something else that is not a directory.
    #[error("data dir {path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Nexus cannot write in the data directory.
    #[error("data dir {path} is not writable: {source}")]
    ReadOnly {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another store (in this or another process) has the data directory open.
    #[error("data dir {path} is in use by another Nexus store (lock file {lock} is held)")]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Some other I/O failure on the data directory.
    #[error("data dir {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The data directory holds no Nexus store (no database file, or an empty one).
    #[error("data dir {path} holds no Nexus store (no {file} with a Nexus schema)")]
    NoStore {
        /// The directory.
        path: PathBuf,
        /// The database file looked for.
        file: &'static str,
    },
    /// A copy's target database already holds data; a copy only goes into an empty store.
    #[error("the target database {database} already holds {holds}; copy into an empty database")]
    NotEmpty {
        /// The database (`host:port/name`; never the password).
        database: String,
        /// What it holds, such as `120 events, 2 subscriptions`.
        holds: String,
    },
    /// The database file cannot be read as a Nexus store. Nothing was changed or deleted.
    #[error("database {path} is corrupt or not a Nexus database (left untouched): {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the schema check said.
        detail: String,
    },
    /// The database was written by a newer Nexus whose schema this build does not know.
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this build knows"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// TLS with the database failed: its certificate did not pass the check `sslmode` asks
    /// for, the server does not offer TLS, or the root certificates cannot be read.
    #[error("database {database}: TLS failed: {message}")]
    Tls {
        /// The database (`host:port/name`; never the password).
        database: String,
        /// What went wrong, with the `sslmode`.
        message: String,
    },
    /// An event id is already in the log, published by another node.
    #[error("event {index} of the batch: id {id:?} was already published by another node")]
    Conflict {
        /// 0-based position in the batch.
        index: usize,
        /// The id.
        id: String,
    },
    /// The same event id appears twice in one batch.
    #[error("event {index} of the batch repeats id {id:?} of an earlier event in the same batch")]
    DuplicateInBatch {
        /// 0-based position of the second occurrence.
        index: usize,
        /// The id.
        id: String,
    },
    /// The lease is no longer held by this token: it expired and another worker took it, or the
    /// delivery was already settled.
    #[error("lease on delivery {delivery} is lost")]
    LeaseLost {
        /// The delivery id.
        delivery: i64,
    },
    /// Nothing has this id.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing (`subscription`, `event`, ...).
        what: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// An event type declared in the config file: the admin API may not change or delete it
    /// (API.md section 11, `409 CONFLICT`).
    #[error("event type {name} is declared in the config file; change it there")]
    Declared {
        /// The type's name.
        name: String,
    },
    /// A value handed to the store is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as named in the wire contract.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The writer's queue is full (a flood of writes): nothing was written; retry shortly.
    #[error("store is busy: {capacity} operations already wait for the writer")]
    Busy {
        /// The queue's capacity (the `writer_queue` option).
        capacity: usize,
    },
    /// The store is closed or its writer stopped; nothing was written.
    #[error("store is unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The database failed during an operation.
    #[error("database error during {op}: {source}")]
    Database {
        /// The operation, such as `append` or `lease_due`.
        op: &'static str,
        /// What the backend said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether the caller may retry the same operation later and expect it to work (the
    /// `503 UNAVAILABLE` class), as opposed to an answer about its input.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Busy { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Database { .. }
                | StoreError::Io { .. }
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
