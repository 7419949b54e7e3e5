//! Nexus persistence.
//!
//! The traits at the storage boundary — [`EventLog`], [`DeliveryQueue`], [`Subscriptions`],
//! [`Cursors`], [`BreakerLog`], [`Instances`], [`EventTypes`], [`DeliveryHistory`], together [`Store`] — and their SQLite
//! implementation, [`SqliteStore`]: WAL with
//! `synchronous=FULL`, one writer thread that groups concurrent operations into one transaction and
//! one fsync (group commit) before answering any of them, and readers on their own connections.
//!
//! Appending an event enqueues its deliveries in the same transaction (outbox), so an event is
//! never stored without its deliveries or the other way round; an append is answered only once it
//! is durable.
//!
//! With the `postgres` feature, `PgStore` implements the same traits on PostgreSQL: a pool of
//! connections, one writer task with the same group commit, sequences assigned under an
//! advisory lock so they stay gap-free, leases taken with `FOR UPDATE SKIP LOCKED` and fenced by
//! owner and generation. Each open store is an instance on the database with a heartbeat; the
//! instances take over the leases of one not seen for `dead_after`.
//!
//! With the `conformance` feature, the `conformance` module holds the generic test suite every backend
//! must pass.
//!
//! It is not for delivering anything: the retry worker and circuit breakers live in
//! `nexus-resilience`, HTTP in `nexus-transport`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod copy;
mod error;
pub mod metric_names;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod traits;

#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub use copy::{CopyReport, copy_sqlite_to_postgres};
pub use error::{Result, StoreError};
pub use model::{
    Appended, AttemptRecord, BreakerRecord, Consumer, DeadLetter, DeliveryQuery, DeliveryRecord,
    DeliveryStatus, EventTypePut, EventTypeRecord, Failure, InstanceRecord, Lease, LeaseToken,
    MAX_PAGE, NewSubscription, Page, PutOutcome, QueueStats, ReadOrder, ReplayTo, Route, Router,
    Selection, Subscription, SubscriptionPatch, SubscriptionStats, Success, TypeOrigin,
    check_limit, new_instance_id, target_origin,
};
#[cfg(feature = "postgres")]
pub use postgres::{
    DEFAULT_DEAD_AFTER, DEFAULT_HEARTBEAT, DEFAULT_INSTANCE, DEFAULT_POOL_SIZE, PG_SCHEMA_VERSION,
    PgBuilder, PgStore, PoolStatus,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{
    DB_FILE, DEFAULT_WRITER_QUEUE, Durability, LOCK_FILE, SQLITE_SCHEMA_VERSION, SqliteBuilder,
    SqliteStore,
};
pub use traits::{
    BreakerLog, Cursors, DeliveryHistory, DeliveryQueue, EventLog, EventTypes, Instances, Store,
    Subscriptions,
};
