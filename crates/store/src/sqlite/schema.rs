//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version up and runs in the same transaction
//! as the `user_version` bump, so a crash mid-migration leaves the previous version intact.

/// Migrations, in order; entry `i` moves from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the event log, the delivery queue, dead letters, subscriptions and cursors.
    r#"
    CREATE TABLE events (
        sequence       INTEGER PRIMARY KEY,
        id             TEXT    NOT NULL UNIQUE,
        source         TEXT    NOT NULL,
        type           TEXT    NOT NULL,
        time_ms        INTEGER NOT NULL,
        payload        TEXT    NOT NULL,
        correlation_id TEXT
    );

    CREATE TABLE subscriptions (
        id         TEXT    PRIMARY KEY,
        url        TEXT    NOT NULL,
        target     TEXT    NOT NULL,
        events     TEXT    NOT NULL,  -- JSON array of globs
        secret     TEXT    NOT NULL,
        ordered    INTEGER NOT NULL,
        enabled    INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );

    -- state (columns::DeliveryState): 0 waiting, 1 leased (due_ms is then the lease expiry), 2 parked (its target's circuit
    -- breaker is open; due_ms is the next trial at the latest), 3 held (subscription disabled)
    -- AUTOINCREMENT: an id is never reused, so a stale lease token or dead-letter id cannot
    -- name another row.
    CREATE TABLE deliveries (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_sequence   INTEGER NOT NULL,
        consumer_kind    INTEGER NOT NULL,  -- 0 subscription, 1 reactor
        consumer         TEXT    NOT NULL,
        target           TEXT    NOT NULL,
        state            INTEGER NOT NULL,
        due_ms           INTEGER NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        lease_owner      TEXT,
        lease_gen        INTEGER NOT NULL DEFAULT 0,
        last_error       TEXT,
        last_status      INTEGER,
        created_ms       INTEGER NOT NULL,
        first_attempt_ms INTEGER,
        last_attempt_ms  INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries (due_ms, id) WHERE state < 3;
    CREATE INDEX deliveries_parked ON deliveries (target) WHERE state = 2;
    CREATE INDEX deliveries_consumer ON deliveries (consumer_kind, consumer, event_sequence);

    CREATE TABLE dead_letters (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        event_sequence   INTEGER NOT NULL,
        event_id         TEXT    NOT NULL,
        event_type       TEXT    NOT NULL,
        payload          TEXT    NOT NULL,
        consumer_kind    INTEGER NOT NULL,
        consumer         TEXT    NOT NULL,
        target           TEXT    NOT NULL,
        error            TEXT    NOT NULL,
        last_status      INTEGER,
        attempts         INTEGER NOT NULL,
        created_ms       INTEGER NOT NULL,
        first_attempt_ms INTEGER,
        failed_ms        INTEGER NOT NULL
    );

    CREATE TABLE cursors (
        name       TEXT    PRIMARY KEY,
        sequence   INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    "#,
    // 2: circuit breaker states, so a restart remembers a target that was down.
    r#"
    CREATE TABLE breakers (
        target               TEXT    PRIMARY KEY,
        open                 INTEGER NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        trips                INTEGER NOT NULL,
        opened_ms            INTEGER,
        updated_ms           INTEGER NOT NULL
    );
    "#,
    // 3: a breaker's generation, bumped by every save, so a reader can tell a save it has not
    // seen (the shared breakers of API.md section 13; PostgreSQL has it from its first version).
    r#"
    ALTER TABLE breakers ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: a subscription's filter on the payload (API.md section 12): the JSON form of its
    // conditions, NULL for none.
    r#"
    ALTER TABLE subscriptions ADD COLUMN filter TEXT;
    "#,
    // 5: the event-type catalogue (API.md section 11). origin (TypeOrigin): 0 the config file,
    // 1 the admin API. schema: JSON text, NULL for none; examples: a JSON array.
    r#"
    CREATE TABLE event_types (
        name        TEXT    PRIMARY KEY,
        description TEXT    NOT NULL,
        schema      TEXT,
        examples    TEXT    NOT NULL,
        deprecated  INTEGER NOT NULL,
        origin      INTEGER NOT NULL,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    "#,
    // 6: the delivery history (API.md section 12). Every settled attempt is a row of
    // `delivery_attempts`, keyed by its delivery and number; a delivery that was acknowledged or
    // became a dead letter leaves `deliveries` for `delivery_history` (outcome, columns::Finished:
    // 0 delivered, 1 dead), its id kept, until the retention prunes it.
    r#"
    CREATE TABLE delivery_attempts (
        delivery    INTEGER NOT NULL,
        attempt     INTEGER NOT NULL,
        started_ms  INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        status      INTEGER,
        error       TEXT,
        PRIMARY KEY (delivery, attempt)
    ) WITHOUT ROWID;

    CREATE TABLE delivery_history (
        id             INTEGER PRIMARY KEY,
        event_sequence INTEGER NOT NULL,
        consumer_kind  INTEGER NOT NULL,
        consumer       TEXT    NOT NULL,
        target         TEXT    NOT NULL,
        outcome        INTEGER NOT NULL,
        created_ms     INTEGER NOT NULL,
        finished_ms    INTEGER NOT NULL
    );
    CREATE INDEX delivery_history_event ON delivery_history (event_sequence);
    CREATE INDEX delivery_history_consumer ON delivery_history (consumer_kind, consumer, id);
    CREATE INDEX delivery_history_finished ON delivery_history (finished_ms);
    "#,
    // 7: an acknowledged delivery keeps the attempt that delivered it inline in its history row
    // (started, duration, status), so an ack writes one row, not two; `delivery_attempts` holds
    // the failed attempts. Rows acknowledged before this keep theirs in `delivery_attempts`.
    r#"
    ALTER TABLE delivery_history ADD COLUMN ok_started_ms INTEGER;
    ALTER TABLE delivery_history ADD COLUMN ok_duration_ms INTEGER;
    ALTER TABLE delivery_history ADD COLUMN ok_status INTEGER;
    "#,
    // 8: parked deliveries (state 2, behind an open breaker) leave the due index: they wait for
    // their breaker's trial or close (`unpark_one`, `unpark`), not for a time, so however many
    // pile up behind a target that stays down, finding due work never walks over them.
    r#"
    DROP INDEX deliveries_due;
    CREATE INDEX deliveries_due ON deliveries (due_ms, id) WHERE state < 2;
    "#,
];

/// The schema version this build writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;
