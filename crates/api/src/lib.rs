//! The Nexus wire contract as Rust types.
//!
//! What the server (`nexus-transport`, `nexus-outbound`) and the client (`nexus-client`) agree
//! on, so the two cannot drift: the request and response bodies of API.md as serde types, and
//! the HMAC signatures of section 2 (publishing nodes) and section 4 (webhook deliveries).
//!
//! - [`envelope`], the success and error envelopes, error codes, list meta and list query;
//! - [`publish`], the bodies of `POST /events` and `/events/batch` and their acks;
//! - [`subscriptions`], [`dead_letters`] (with the retry stats and the counts), [`breakers`],
//!   [`log`] (event listing and replay), [`nodes`], [`reactors`] and [`instances`], the admin
//!   API;
//! - [`event_types`], the event-type catalogue (section 11);
//! - [`health`], the body of `/health/detailed`;
//! - [`ws`], the WebSocket frames;
//! - [`signature`], both signature schemes.
//!
//! The event itself is [`nexus_event::Event`]. Request bodies that the contract closes carry
//! `#[serde(deny_unknown_fields)]` and a `REQUIRED` list of their mandatory keys, so a server
//! can name a missing one in `details.field`.
//!
//! It is not for I/O: no HTTP, no storage, no clock. Callers pass the timestamp they sign.
//!
//! ```
//! use nexus_api::signature::Secret;
//! let secret = Secret::parse("whsec_bm90aWZpZXItc2VjcmV0")?;
//! let header = secret.sign_standard("msg-1", 1_700_000_000, b"{}");
//! assert!(header.starts_with("v1,"));
//! # Ok::<(), nexus_api::signature::SecretError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod breakers;
pub mod dead_letters;
pub mod deliveries;
pub mod envelope;
pub mod event_types;
pub mod health;
pub mod instances;
pub mod log;
pub mod nodes;
pub mod publish;
pub mod reactors;
pub mod retry_after;
pub mod signature;
pub mod subscriptions;
pub mod ws;
