//! The Nexus event model.
//!
//! What every other crate agrees on: the [`Event`] as stored and delivered, its validated parts
//! ([`EventType`], [`EventId`], [`CorrelationId`], [`Timestamp`]), the [`WellKnown`] protocol
//! types, the type-glob [`Pattern`]s and [`TypeFilter`]s used wherever Nexus filters by type, and
//! the [`When`] conditions used wherever it filters on a payload (reactors' `when`, subscriptions'
//! `filter`).
//! Its JSON forms match the wire contract (API.md section 1) exactly.
//!
//! It is not for I/O: no storage, no HTTP, no signatures. Those live in `nexus-store` and
//! `nexus-transport`.
//!
//! ```
//! use nexus_event::{NewEvent, TypeFilter, WellKnown};
//! let event = NewEvent::new(WellKnown::MintConfirmed, "factory").into_event(7);
//! assert!(TypeFilter::parse(["MINT_*"])?.matches(&event.event_type));
//! # Ok::<(), nexus_event::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod event;
mod event_type;
mod glob;
mod id;
mod timestamp;
pub mod when;

pub use error::Error;
pub use event::{Event, NEXUS_SOURCE, NewEvent, valid_node_name};
pub use event_type::{EventType, MAX_TYPE_LEN, WellKnown};
pub use glob::{Pattern, TypeFilter};
pub use id::{CorrelationId, EventId, MAX_ID_LEN};
pub use timestamp::Timestamp;
pub use when::{Condition, Test, When, WhenError};
