//! Nexus over HTTP.
//!
//! The service of API.md: signed ingress (`POST /events`, `/events/batch`, `/webhook/{node}`)
//! with both signature schemes, each event checked against the event-type catalogue
//! (`nexus-catalog`; API.md section 11) before it is stored, the response envelope and its error
//! codes, the admin API (`/api/event-types` among it),
//! health endpoints and `/metrics`, and the operator console under `/ui/` ([`ui`], API.md section
//! 14), behind request ids, security headers, CORS and compression.
//! [`App::router`] gives an axum `Router` that an embedding application can mount; [`serve`]
//! runs it with graceful shutdown.
//!
//! It reads no environment and installs no global state: the binary builds an [`AppConfig`]
//! and installs the log subscriber and metrics recorder.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// The OpenAPI document is one `json!` literal, deeper than the default limit of 128.
#![recursion_limit = "256"]

mod admin;
mod app;
pub mod asyncapi;
pub mod auth;
pub mod envelope;
mod extract;
mod health;
mod ingress;
mod intake;
mod json;
pub mod metric_names;
pub mod openapi;
mod rate_limit;
pub mod request_id;
mod serve;
pub mod ui;
mod ws;

pub use app::{App, AppConfig, AppState, Lifecycle, MetricsRenderer, SizeProbe};
pub use health::rss_bytes;
#[doc(hidden)]
pub use ingress::fuzzing;
pub use ingress::{MAX_BATCH, WebhookMapping};
pub use rate_limit::{Limiter, RateLimit};
pub use serve::{ServeConfig, serve, serve_with};
pub use ws::{
    DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_WS_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_PATTERNS as DEFAULT_WS_MAX_PATTERNS,
    DEFAULT_MAX_PATTERNS_PER_FRAME as DEFAULT_WS_MAX_FRAME_PATTERNS, WsConfig, WsToken,
};
