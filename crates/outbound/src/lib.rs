//! Nexus outbound delivery: every HTTP call the server makes to the outside.
//!
//! - [`HttpClient`]: the pooled client shared by webhook deliveries and reactor calls (keep-alive
//!   per origin, rustls, a timeout per call, bodies read up to a cap), which records
//!   `nexus_http_calls_total` and `nexus_http_call_duration_seconds`.
//! - [`WebhookTarget`]: the [`nexus_resilience::Target`] of webhook subscriptions, signed the
//!   Standard Webhooks way ([`delivery_headers`], with `nexus_api`'s one signing module), and
//!   [`classify`], which turns an answer into the retry worker's [`nexus_resilience::Outcome`].
//! - The private-address guard: [`is_private`], [`refuse_private`] for a URL before it is
//!   stored, and the same check at connect time inside [`HttpClient`], refusals typed as
//!   [`PrivateAddress`].
//!
//! It is not the inbound server (`nexus-transport`), not the retry policy (`nexus-resilience`
//! decides when to call again) and not the reactors (`nexus-reactors` builds its calls on this
//! crate). It pulls in hyper's client and rustls, and no server framework.
//!
//! ```no_run
//! use nexus_outbound::{Bytes, Call, HttpClient, Method, OutboundConfig};
//!
//! # async fn demo() -> Result<(), nexus_resilience::AttemptError> {
//! let client = HttpClient::new(OutboundConfig::default());
//! let answer = client
//!     .send(Call {
//!         method: Method::POST,
//!         url: "https://example.com/hook",
//!         target: "https://example.com:443",
//!         headers: Vec::new(),
//!         body: Bytes::from_static(b"{}"),
//!         timeout: None,
//!     })
//!     .await?;
//! println!("HTTP {}", answer.status);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod guard;
pub mod metric_names;
mod webhook;

pub use client::{Answer, Call, HttpClient, OutboundConfig};
pub use guard::{GuardError, PrivateAddress, is_private, refuse_private};
pub use hyper::Method;
pub use hyper::body::Bytes;
pub use webhook::{WebhookTarget, classify, delivery_headers};
