//! The metrics `nexus-catalog` records (API.md section 11), named beside the code that records
//! them, with their kind and description. The binary that installs the Prometheus exporter
//! describes every crate's [`ALL`]. Names follow `nexus_<what>_<unit>`.

use metrics_util::MetricKind;

/// Events refused by the catalogue, by `event_type` and `reason` (`schema`, `undeclared`).
pub const EVENTS_REJECTED_TOTAL: &str = "nexus_events_rejected_total";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[(
    EVENTS_REJECTED_TOTAL,
    MetricKind::Counter,
    "Events refused by the event-type catalogue, by type and reason (schema, undeclared)",
)];
