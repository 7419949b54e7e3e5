//! Shared helpers of the integration tests.

pub mod alloc;
pub mod browser;
pub mod catalogue;
pub mod process;
pub mod server;
