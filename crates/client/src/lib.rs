//! The Nexus client SDK.
//!
//! What a node or an operator tool needs to talk to a Nexus server over its wire contract
//! (`../shared/spec/API.md`), with the right behaviour by default:
//!
//! - [`Publisher`]: a blocking publisher (on `ureq`, for nodes that are not async) that signs
//!   with either [`Scheme`], sends single events and batches, and retries network failures,
//!   timeouts, 429 and 5xx with full-jitter exponential backoff honouring `Retry-After`. It gives
//!   every event an id before the first attempt and sends the same id on every retry, so the
//!   server deduplicates a retry of a request that did commit. Client errors (400, 401, 403,
//!   409, 413, 415) come back at once as [`Error::Api`] with the server's code, message and
//!   request id.
//! - [`Subscriber`]: an async WebSocket subscriber (tokio) that reconnects by itself, resumes
//!   with `since` so nothing is lost or repeated, resubscribes, pings, and counts.
//! - [`Admin`]: a blocking client of the admin API and the health endpoints, the event-type
//!   catalogue included ([`Admin::event_types`], [`Admin::put_event_type`], ...).
//! - With the `schema` feature (on by default): [`PayloadSchema`], a type's schema fetched from
//!   the catalogue ([`Admin::payload_schema`]) and compiled once, and [`Draft::check`], which
//!   refuses a payload before it is sent with the `{pointer, message}` violations the server
//!   would answer. `default-features = false` leaves out the `jsonschema` dependency.
//!
//! It is not the server: it depends on `nexus-event` for the event model and on `nexus-api`
//! for every wire body (the same types the server writes, so the two cannot drift), and on no
//! server crate, so a node pulls in an HTTP client, a WebSocket client and `ring`, nothing more.
//! `https`/`wss` URLs need the `tls` feature; the local schema check needs `schema` (default).
//!
//! Publishing from a node:
//!
//! ```no_run
//! use nexus_client::{Draft, Publisher};
//! use nexus_event::WellKnown;
//!
//! let publisher = Publisher::builder("http://127.0.0.1:3000", "flowpay", "the-node-secret").build()?;
//! let draft = Draft::new(WellKnown::PaymentReceived).id("pay-1")?.payload(serde_json::json!({"amount": 5}));
//! let ack = publisher.publish(draft)?;           // retried with the same id until stored
//! assert!(ack.sequence > 0);
//! # Ok::<(), nexus_client::Error>(())
//! ```
//!
//! Errors are classified, so a caller can tell what to do:
//!
//! ```
//! use nexus_client::{Draft, Error, Publisher, RetryPolicy};
//! // Nothing listens on port 9 of loopback: a network error, retryable, after one attempt.
//! let publisher = Publisher::builder("http://127.0.0.1:9", "flowpay", "secret")
//!     .retry(RetryPolicy::no_retries())
//!     .build()?;
//! let err = publisher.publish(Draft::of_type("PAYMENT_RECEIVED")?).unwrap_err();
//! assert!(matches!(err, Error::Network { .. }) && err.is_retryable());
//! # Ok::<(), nexus_client::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod backoff;
mod error;
mod http;
mod publisher;
#[cfg(feature = "schema")]
mod schema;
mod sign;
mod subscriber;

pub use admin::{
    Admin, Attempt, Breaker, BreakerState, DeadLetter, Declaration, DeclaredType, DeclaredTypePut,
    Delivery, DeliveryQuery, DeliveryState, EventOrder, EventQuery, Instance, NewSubscription,
    Node, NodeWebhook, Page, PageRequest, Reactor, ReactorCall, Replay, RetryStats, Selection,
    Subscription, SubscriptionStats, SubscriptionUpdate, TestSend, When, WhenError,
};
pub use backoff::{Backoff, RetryPolicy, parse_retry_after};
pub use error::{ApiError, Error, SchemaViolation};
pub use publisher::{Ack, Draft, MAX_BATCH, Publisher, PublisherBuilder};
#[cfg(feature = "schema")]
pub use schema::{MAX_SCHEMA_ERRORS, PayloadSchema};
pub use sign::{Scheme, SigningKey};
pub use subscriber::{Counters, Incoming, State, Subscriber, SubscriberBuilder, WsEvent};
