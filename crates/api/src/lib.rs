//! The Nexus wire contract as Rust types.
//!
//! What the server (`nexus-transport`, `nexus-outbound`) and the client (`nexus-client`) agree
//! on, so the two cannot drift: the request and response bodies of API.md as serde types, and
//! the HMAC signatures of section 2 (publishing nodes) and section 4 (webhook deliveries).
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

pub mod signature;
