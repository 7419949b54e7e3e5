//! Shared helpers of the integration tests.

pub mod alloc;
pub mod process;
pub mod server;
