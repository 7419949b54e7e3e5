//! The PostgreSQL schema and its migrations, versioned in the one-row table `nexus_schema`.
//!
//! Each entry of [`MIGRATIONS`] moves the schema one version up and runs in the same transaction
//! as the version bump, under an advisory lock, so instances starting together migrate once and
//! a crash mid-migration leaves the previous version intact.
//!
//! Designed for several instances on one database (API.md section 13): a lease names the
//! instance that holds it (`lease_instance`), the worker (`lease_owner`) and its generation
//! (`lease_gen`, the fence); while `state` is leased, `due_ms` is the lease's end (`lease_until`).
//! Sequences are assigned under an advisory lock in the appending transaction, so they are
//! gap-free and follow commit order whichever instance appends. Each instance heartbeats its row
//! in `instances`; the leases of one not seen for a while are given back by the others.

/// Migrations, in order; entry `i` moves from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the event log, the delivery queue, dead letters, subscriptions, cursors and breakers.
    r#"
    CREATE TABLE events (
        sequence       bigint  PRIMARY KEY,
        id             text    NOT NULL UNIQUE,
        source         text    NOT NULL,
        type           text    NOT NULL,
        time_ms        bigint  NOT NULL,
        payload        text    NOT NULL,
        correlation_id text
    );

    CREATE TABLE subscriptions (
        id         text    COLLATE "C" PRIMARY KEY,
        url        text    NOT NULL,
        target     text    NOT NULL,
        events     text    NOT NULL,  -- JSON array of globs
        secret     text    NOT NULL,
        ordered    boolean NOT NULL,
        enabled    boolean NOT NULL,
        created_ms bigint  NOT NULL
    );

    -- state (columns::DeliveryState): 0 waiting, 1 leased (due_ms is then the lease's end),
    -- 2 parked (its target's breaker is open; due_ms is the next trial at the latest),
    -- 3 held (subscription disabled). Identity ids are never reused, so a stale lease token or
    -- dead-letter id cannot name another row.
    CREATE TABLE deliveries (
        id               bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_sequence   bigint   NOT NULL,
        consumer_kind    smallint NOT NULL,  -- 0 subscription, 1 reactor
        consumer         text     NOT NULL,
        target           text     NOT NULL,
        state            smallint NOT NULL,
        due_ms           bigint   NOT NULL,
        attempts         integer  NOT NULL DEFAULT 0,
        lease_instance   text,
        lease_owner      text,
        lease_gen        bigint   NOT NULL DEFAULT 0,
        last_error       text,
        last_status      integer,
        created_ms       bigint   NOT NULL,
        first_attempt_ms bigint,
        last_attempt_ms  bigint
    );
    CREATE INDEX deliveries_due ON deliveries (due_ms, id) WHERE state < 3;
    CREATE INDEX deliveries_parked ON deliveries (target) WHERE state = 2;
    CREATE INDEX deliveries_consumer ON deliveries (consumer_kind, consumer, event_sequence);
    CREATE INDEX deliveries_instance ON deliveries (lease_instance) WHERE state = 1;

    CREATE TABLE dead_letters (
        id               bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_sequence   bigint   NOT NULL,
        event_id         text     NOT NULL,
        event_type       text     NOT NULL,
        payload          text     NOT NULL,
        consumer_kind    smallint NOT NULL,
        consumer         text     NOT NULL,
        target           text     NOT NULL,
        error            text     NOT NULL,
        last_status      integer,
        attempts         integer  NOT NULL,
        created_ms       bigint   NOT NULL,
        first_attempt_ms bigint,
        failed_ms        bigint   NOT NULL
    );

    CREATE TABLE cursors (
        name       text   PRIMARY KEY,
        sequence   bigint NOT NULL,
        updated_ms bigint NOT NULL
    );

    -- Moves with every subscription change (made under the append lock), so every instance's
    -- writer routes its next appends by the subscriptions as they are.
    CREATE TABLE routes_version (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        version  bigint  NOT NULL
    );
    INSERT INTO routes_version (only_row, version) VALUES (true, 0);

    -- generation: bumped by a reset, so instances sharing a breaker see it (issue 14).
    CREATE TABLE breakers (
        target               text    COLLATE "C" PRIMARY KEY,
        open                 boolean NOT NULL,
        consecutive_failures bigint  NOT NULL,
        trips                bigint  NOT NULL,
        opened_ms            bigint,
        updated_ms           bigint  NOT NULL,
        generation           bigint  NOT NULL DEFAULT 0
    );
    "#,
    // 2: the instances on the database and their heartbeats (times by the database's clock).
    r#"
    CREATE TABLE instances (
        id           text   COLLATE "C" PRIMARY KEY,
        host         text   NOT NULL,
        started_ms   bigint NOT NULL,
        last_seen_ms bigint NOT NULL,
        version      text   NOT NULL
    );
    "#,
    // 3: a subscription's filter on the payload (API.md section 12): the JSON form of its
    // conditions, NULL for none.
    r#"
    ALTER TABLE subscriptions ADD COLUMN filter text;
    "#,
    // 4: the event-type catalogue (API.md section 11). origin (TypeOrigin): 0 the config file,
    // 1 the admin API. schema: JSON text, NULL for none; examples: a JSON array. Names in byte
    // order (COLLATE "C"), as SQLite lists them, so list cursors mean the same in both.
    r#"
    CREATE TABLE event_types (
        name        text     COLLATE "C" PRIMARY KEY,
        description text     NOT NULL,
        schema      text,
        examples    text     NOT NULL,
        deprecated  boolean  NOT NULL,
        origin      smallint NOT NULL,
        created_ms  bigint   NOT NULL,
        updated_ms  bigint   NOT NULL
    );
    "#,
    // 5: the delivery history (API.md section 12). Every settled attempt is a row of
    // `delivery_attempts`, keyed by its delivery and number; a delivery that was acknowledged or
    // became a dead letter leaves `deliveries` for `delivery_history` (outcome, backend::Finished:
    // 0 delivered, 1 dead), its id kept, until the retention prunes it. The history has no
    // primary key (its ids come from `deliveries`, each moved once): one index fewer to write on
    // every ack. Pruning goes by `finished_ms`, which grows with the table: a BRIN index, which
    // costs next to nothing to keep.
    r#"
    CREATE TABLE delivery_attempts (
        delivery    bigint  NOT NULL,
        attempt     integer NOT NULL,
        started_ms  bigint  NOT NULL,
        duration_ms bigint  NOT NULL,
        status      integer,
        error       text,
        PRIMARY KEY (delivery, attempt)
    );

    CREATE TABLE delivery_history (
        id             bigint   NOT NULL,
        event_sequence bigint   NOT NULL,
        consumer_kind  smallint NOT NULL,
        consumer       text     NOT NULL,
        target         text     NOT NULL,
        outcome        smallint NOT NULL,
        created_ms     bigint   NOT NULL,
        finished_ms    bigint   NOT NULL
    );
    CREATE INDEX delivery_history_event ON delivery_history (event_sequence);
    CREATE INDEX delivery_history_consumer ON delivery_history (consumer_kind, consumer, id);
    CREATE INDEX delivery_history_finished ON delivery_history USING brin (finished_ms);
    "#,
    // 6: an acknowledged delivery keeps the attempt that delivered it inline in its history row
    // (started, duration, status), so an ack writes one row, not two; `delivery_attempts` holds
    // the failed attempts. Rows acknowledged before this keep theirs in `delivery_attempts`.
    r#"
    ALTER TABLE delivery_history ADD COLUMN ok_started_ms bigint,
        ADD COLUMN ok_duration_ms bigint, ADD COLUMN ok_status integer;
    "#,
    // 7: parked deliveries (state 2, behind an open breaker) leave the due index: they wait for
    // their breaker's trial or close (`unpark_one`, `unpark`), not for a time, so however many
    // pile up behind a target that stays down, finding due work never walks over them. The
    // parked index gains the id, so the oldest parked delivery of a target is one index probe.
    r#"
    DROP INDEX deliveries_due;
    CREATE INDEX deliveries_due ON deliveries (due_ms, id) WHERE state < 2;
    DROP INDEX deliveries_parked;
    CREATE INDEX deliveries_parked ON deliveries (target, id) WHERE state = 2;
    "#,
];

/// The schema version this build writes.
pub(crate) const VERSION: i32 = MIGRATIONS.len() as i32;

/// The advisory lock key that serialises appends (sequence assignment) and subscription changes
/// (routes) across instances. A group takes it before any other lock, so it cannot deadlock
/// with another instance's leases.
pub(crate) const APPEND_LOCK: i64 = 0x6e65_7875_7301; // "nexus" 01
/// The advisory lock key that serialises migrations across instances.
pub(crate) const MIGRATE_LOCK: i64 = 0x6e65_7875_7302;
