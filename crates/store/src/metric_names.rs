//! The metrics `nexus-store` records or exposes for the server to record, named beside the code,
//! with their kind and description. None of them is in API.md section 8: they are the cluster's
//! and PostgreSQL's own (section 13), for the dashboard and the alerts of `ops/`. The binary
//! describes them with every other crate's list; the server's ops test checks the convention.

use metrics_util::MetricKind;

/// PostgreSQL statements or connections that failed (database unreachable, statement error).
pub const STORE_ERRORS_TOTAL: &str = "nexus_store_errors_total";
/// Connections of the PostgreSQL pool, by `state`: `busy` (lent out) or `idle`.
pub const STORE_POOL_CONNECTIONS: &str = "nexus_store_pool_connections";
/// The most connections the PostgreSQL pool opens.
pub const STORE_POOL_MAX_CONNECTIONS: &str = "nexus_store_pool_max_connections";
/// Tasks waiting for a connection of the PostgreSQL pool (saturation).
pub const STORE_POOL_WAITING: &str = "nexus_store_pool_waiting";
/// Live instances on the store (1 for the embedded store), read by the server at scrape time.
pub const INSTANCES: &str = "nexus_instances";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        STORE_ERRORS_TOTAL,
        MetricKind::Counter,
        "PostgreSQL statements or connections that failed",
    ),
    (
        STORE_POOL_CONNECTIONS,
        MetricKind::Gauge,
        "Connections of the PostgreSQL pool, by state (busy, idle)",
    ),
    (
        STORE_POOL_MAX_CONNECTIONS,
        MetricKind::Gauge,
        "The most connections the PostgreSQL pool opens",
    ),
    (
        STORE_POOL_WAITING,
        MetricKind::Gauge,
        "Tasks waiting for a PostgreSQL pool connection",
    ),
    (INSTANCES, MetricKind::Gauge, "Live instances on the store"),
];
