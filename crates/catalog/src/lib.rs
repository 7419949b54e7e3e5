//! Nexus event-type catalogue (API.md section 11).
//!
//! Declared types with a description, a JSON Schema (draft 2020-12) for their payloads and
//! examples, kept by the store ([`nexus_store::EventTypes`]) and cached here with each schema
//! compiled once. [`Catalog::check`] is what ingress and the reactors ask before an event is
//! stored: an undeclared type when declared types are required, or a payload that fails its
//! type's schema, is a [`Refusal`] with the JSON pointer of the first failing value and up to
//! ten errors; a deprecated type is accepted and says so. [`check_declaration`] is what a
//! declaration must pass (a schema that compiles, examples that match it), from the admin API
//! or the config file.
//!
//! It is not HTTP (the routes and their answers are `nexus-transport`'s) and not storage (the
//! store keeps the declarations as given); `jsonschema` stays out of `nexus-core`. Schemas are
//! self-contained: no remote or file `$ref` is fetched.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod catalog;
mod error;
pub mod metric_names;
mod schema;

pub use catalog::{Accepted, Catalog, Refusal, SyncReport, check_declaration, wire};
pub use error::CatalogError;
pub use schema::{MAX_ERRORS, Schema, SchemaError, Violation, Violations};

#[cfg(test)]
mod tests;
