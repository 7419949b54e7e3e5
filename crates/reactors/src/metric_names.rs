//! The metrics nexus-reactors records (API.md section 8), named once beside the code that records them,
//! with their kind and description. The binary that installs the Prometheus exporter describes
//! every crate's [`ALL`]; names follow `nexus_<what>_<unit>`.

use metrics_util::MetricKind;

/// Reactor executions, by `reactor` and `status`.
pub const REACTOR_EXECUTIONS_TOTAL: &str = "nexus_reactor_executions_total";
/// Reactor execution time, by `reactor`.
pub const REACTOR_DURATION_SECONDS: &str = "nexus_reactor_duration_seconds";

/// Every metric of this crate: name, kind and description.
pub const ALL: &[(&str, MetricKind, &str)] = &[
    (
        REACTOR_EXECUTIONS_TOTAL,
        MetricKind::Counter,
        "Reactor executions, by reactor and status",
    ),
    (
        REACTOR_DURATION_SECONDS,
        MetricKind::Histogram,
        "Reactor execution time in seconds",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, description) in ALL {
            assert!(name.starts_with("nexus_"), "{name}");
            assert!(seen.insert(name), "{name} twice");
            assert!(!description.is_empty());
            match kind {
                MetricKind::Counter => assert!(name.ends_with("_total"), "{name}"),
                MetricKind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                MetricKind::Gauge => {}
            }
        }
    }
}
