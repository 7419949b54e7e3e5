//! The one error type of this crate.

/// A resilience setting that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The retry schedule has no steps, or a step of zero.
    #[error("retry.schedule_ms: {0}")]
    Schedule(String),
    /// Jitter outside 0 to 1.
    #[error("retry.jitter must be between 0 and 1, got {0}")]
    Jitter(f64),
    /// A breaker threshold of zero.
    #[error("breaker.{field} must be at least 1")]
    Threshold {
        /// `failure_threshold` or `success_threshold`.
        field: &'static str,
    },
    /// A breaker reset timeout of zero.
    #[error("breaker.reset_timeout_ms must be more than 0")]
    ResetTimeout,
    /// A worker setting of zero.
    #[error("worker {field} must be at least 1")]
    Worker {
        /// The setting.
        field: &'static str,
    },
}
