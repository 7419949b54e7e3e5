//! The Nexus in-process event bus.
//!
//! A [`Bus`] fans committed [`Event`]s out to any number of [`Subscription`]s, each with its own
//! [`TypeFilter`]. It is what `nexus-server` dispatches through, and what a Rust service embeds to
//! get the same model in-process.
//!
//! - [`Bus::publish`] never waits for a subscriber: events go into one bounded ring shared by all
//!   subscriptions, and each event is one `Arc<Event>` that every subscriber shares.
//! - A subscription that falls more than the ring's capacity behind gets
//!   [`RecvError::Lagged`] with the number of events it missed, then resumes at the oldest event
//!   still held: loss is always reported, never silent.
//! - Subscriptions are dropped cleanly at any time; when the last `Bus` handle is dropped, every
//!   subscription drains what is left and then reports [`RecvError::Closed`].
//!
//! It is not a store: nothing here survives a restart, and sequence numbers of published events
//! are whatever the caller (normally the durable log of `nexus-store`) gave them. It does no I/O,
//! and depends on `nexus-event` and tokio's sync primitives only.
//!
//! ```
//! use nexus_core::Bus;
//! use nexus_event::{NewEvent, TypeFilter, WellKnown};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let bus = Bus::builder().capacity(1024).build();
//! let mut mints = bus.subscribe(TypeFilter::parse(["MINT_*"])?);
//!
//! bus.emit(NewEvent::new(WellKnown::PaymentReceived, "flowpay"));
//! bus.emit(NewEvent::new(WellKnown::MintConfirmed, "factory"));
//!
//! let event = mints.recv().await?;
//! assert_eq!(event.event_type, WellKnown::MintConfirmed);
//! assert_eq!(event.sequence, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bus;
mod stream;

pub use bus::{Bus, BusBuilder, DEFAULT_CAPACITY, MAX_CAPACITY, RecvError, Subscription};
pub use nexus_event::{Event, NewEvent, TypeFilter};
pub use stream::EventStream;
