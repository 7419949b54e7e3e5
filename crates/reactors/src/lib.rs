//! Nexus reactors: IF an event matches THEN call a service THEN emit an event (API.md section 10).
//!
//! - [`Rule`]: a type glob ([`nexus_event::Pattern`]), [`When`] conditions on JSON pointers into
//!   the payload, an [`Action`] (an HTTP call signed like a webhook delivery, or an in-process
//!   [`Reactor`]), and the events emitted on success (the answer as payload, `correlation_id` =
//!   the trigger's id) and once dead-lettered. [`ReactorConfig`] is the `[[reactors]]` entry of
//!   the config file.
//! - [`Reactors`]: the set of rules. It is a [`nexus_store::Router`]: set on the store, it gives
//!   each matching event a durable delivery per reactor, which the retry worker runs through
//!   [`DeliveryTarget`] with the same retries, dead letters and circuit breakers as webhooks.
//! - Cycles: a reactor refuses an event whose correlation chain is already
//!   [`DEFAULT_MAX_DEPTH`] (configurable) events deep, and the delivery becomes a dead letter
//!   that says so, so a reactor that emits what it matches cannot loop forever.
//! - Emitted events go through the event-type catalogue when [`DeliveryTarget::catalog`] gives
//!   one: an event that fails its type's schema is not stored, and the delivery becomes a dead
//!   letter saying why (API.md section 11).
//! - [`BusReactors`]: in-process reactors straight on a [`nexus_core::Bus`], for a service that
//!   embeds the bus without a store (no retries there).
//!
//! It is not the HTTP client (that is `nexus-outbound`'s) and not the queue (`nexus-store`). A
//! reactor's HTTP call is the same signed outbound call as a webhook delivery, on the same
//! connection pool; it does not depend on the inbound server (`nexus-transport`) or axum.
//!
//! ```
//! use nexus_event::Event;
//! use nexus_reactors::{When, ReactorConfig};
//!
//! let config: ReactorConfig = serde_json::from_value(serde_json::json!({
//!     "name": "mint-on-payment",
//!     "on": "PAYMENT_RECEIVED",
//!     "when": { "/amount": { "gte": 1 } },
//!     "http": { "method": "POST", "url": "http://127.0.0.1:4000/mint", "timeout_ms": 10000 },
//!     "emit_on_success": "MINT_REQUESTED",
//!     "emit_on_failure": "MINT_FAILED"
//! }))?;
//! let rule = config.build("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=")?;
//! let payment: Event = serde_json::from_str(
//!     r#"{"id":"pay-1","type":"PAYMENT_RECEIVED","source":"flowpay","sequence":1,
//!         "time":"2026-02-09T20:30:00.123Z","payload":{"amount":5}}"#,
//! )?;
//! assert!(rule.fires_on(&payment));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bus;
mod engine;
mod error;
pub mod metric_names;
mod rule;

pub use bus::BusReactors;
pub use engine::{DEFAULT_MAX_DEPTH, DeliveryTarget, Reactors, emitted, emitted_id};
pub use error::ReactorError;
/// The condition language of `when`, shared with subscriptions' `filter` (`nexus_event::when`).
pub use nexus_event::when::{Condition, Test, When, WhenError};
pub use rule::{Action, HttpAction, HttpConfig, ReactFailure, Reactor, ReactorConfig, Rule};
