//! Nexus resilience: every outbound call (webhook deliveries, reactor calls) goes through it.
//!
//! - [`Schedule`]: the retry schedule (2, 4, 8, 16, 32 s by default) as an iterator of delays with
//!   bounded jitter, and the `Retry-After` floor.
//! - [`CircuitBreaker`] and [`Breakers`]: one breaker per target origin, with time injected and an
//!   instrument hook for metrics ([`MetricsInstrument`]), shared by the instances of one store
//!   through its [`nexus_store::BreakerLog`] ([`Breakers::persist`], [`Breakers::sync`]).
//! - [`RetryWorker`]: leases due deliveries from a [`nexus_store::DeliveryQueue`], runs them
//!   through a [`Target`] with bounded concurrency, acks, retries, dead-letters, parks deliveries
//!   of open breakers, and stops gracefully. It sleeps until the next due time or new work, and
//!   syncs the breakers with the store every 500 ms.
//! - [`Clock`]: [`SystemClock`] in production, [`ManualClock`] in tests.
//!
//! It is not the HTTP client: [`Target`] is implemented in `nexus-outbound` (webhooks),
//! `nexus-reactors` (reactor calls), and by fakes in
//! tests.
//!
//! ```
//! use nexus_resilience::{Breakers, Admission, CallResult};
//! use nexus_event::Timestamp;
//! let breakers = Breakers::default();
//! let now = Timestamp::now();
//! assert_eq!(breakers.admit("http://127.0.0.1:4000", now), Admission::Allowed { trial: false });
//! breakers.record("http://127.0.0.1:4000", false, CallResult::Success, now);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod breaker;
mod breakers;
mod clock;
mod error;
mod instrument;
pub mod metric_names;
mod reason;
mod worker;

pub use backoff::{Backoff, DEFAULT_JITTER, DEFAULT_STEPS_MS, Schedule};
pub use breaker::{
    Admission, BreakerConfig, BreakerInstrument, BreakerSnapshot, BreakerState, CallResult,
    CircuitBreaker, Gate, NoInstrument,
};
pub use breakers::Breakers;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ConfigError;
pub use instrument::MetricsInstrument;
pub use reason::Reason;
pub use worker::{
    Activity, AttemptError, Outcome, RetryWorker, StopReport, Target, WorkQueue, WorkerConfig,
    WorkerHandle, WorkerStats, record_queue_gauges,
};
