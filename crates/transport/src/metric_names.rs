//! The metrics `nexus-transport` records (API.md section 8), named beside the code that records them,
//! with their kind and description. The binary that installs the Prometheus exporter describes
//! every crate's [`ALL`]. Names follow `nexus_<what>_<unit>`; the server's ops test checks the
//! convention and that all the lists together are API.md section 8, each name once.

use metrics_util::MetricKind;

/// Events accepted, by `event_type` and `source`.
pub const EVENTS_TOTAL: &str = "nexus_events_total";
/// Time to durably commit published events.
pub const EVENT_PERSIST_DURATION_SECONDS: &str = "nexus_event_persist_duration_seconds";
/// Open WebSocket connections.
pub const WEBSOCKET_CONNECTIONS: &str = "nexus_websocket_connections";
/// Size of the database files.
pub const DATABASE_SIZE_BYTES: &str = "nexus_database_size_bytes";
/// Live server instances on the store (API.md section 13).
pub const INSTANCES: &str = "nexus_instances";

/// Resident set size of the server process, in bytes, under the name Prometheus client libraries
/// use, so stock dashboards and alerts find it. Not one of API.md section 8: see [`PROCESS`].
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        EVENTS_TOTAL,
        MetricKind::Counter,
        "Events accepted, by type and source",
    ),
    (
        EVENT_PERSIST_DURATION_SECONDS,
        MetricKind::Histogram,
        "Time to durably commit published events, in seconds",
    ),
    (
        WEBSOCKET_CONNECTIONS,
        MetricKind::Gauge,
        "Open WebSocket connections",
    ),
    (
        DATABASE_SIZE_BYTES,
        MetricKind::Gauge,
        "Size of the database and its write-ahead log, in bytes",
    ),
    (
        INSTANCES,
        MetricKind::Gauge,
        "Live server instances on the store (1 with the embedded store)",
    ),
];

/// Process metrics the server exports besides [`ALL`] (read at scrape time from
/// [`crate::rss_bytes`]): name, kind and description.
pub const PROCESS: &[(&str, MetricKind, &str)] = &[(
    PROCESS_RESIDENT_MEMORY_BYTES,
    MetricKind::Gauge,
    "Resident memory size of the process, in bytes",
)];
