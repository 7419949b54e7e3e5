//! Cross-crate integration tests: one binary, one module per area, shared helpers in `support`.

mod breakers_pg;
mod bus;
mod cli;
mod client;
mod console;
mod hardening;
mod http;
mod payment_flow;
mod reactors;
mod resilience;
mod store;
mod store_crash;
mod store_pg;
mod support;
mod ws;

#[global_allocator]
static ALLOC: support::alloc::CountingAlloc = support::alloc::CountingAlloc;
