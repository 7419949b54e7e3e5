//! Load generator for `nexus-server`, in two modes.
//!
//! **Steady load against a live server** (`--url`): signed single publishes at a fixed rate for
//! a fixed time, a progress line every second and a summary table (sent, acknowledged, errors by
//! kind, achieved rate, latency percentiles). Exits 1 when any publish failed.
//!
//! ```sh
//! NEXUS_SECRET=... cargo run --release --example loadgen -- \
//!     --url http://127.0.0.1:3000 --rate 500 --duration 60 [--node loadgen] [--type LOADGEN_TEST]
//! ```
//!
//! **The measurement suite** (no `--url`, or `--url ... --suite`): durable publishes over
//! keep-alive connections, batches, publish-to-WebSocket latency at a steady rate, end-to-end
//! deliveries to a local receiver, WebSocket fan-out, and the server's memory. With
//! `--database-url` the server it starts runs on PostgreSQL, and a baseline of raw single-row
//! insert transactions over one connection to the same server is printed first.
//!
//! ```sh
//! cargo build --release -p nexus-server
//! cargo run --release --example loadgen                  # starts target/release/nexus-server
//! cargo run --release --example loadgen -- --duration 10 --rate 10000 --connections 64
//! cargo run --release --example loadgen -- --suite --url http://127.0.0.1:3000 --secret S --admin-token T
//! ```
//!
//! Started by the load generator, the server gets a fresh data directory, `synchronous=FULL`
//! (the default: every acknowledged event is fsync'd) and no rate limit.

mod http;
mod options;
#[path = "../../benches/support/pg_raw.rs"]
mod pg_raw;
mod receiver;
mod server;
mod steady;
mod suite;

/// The value at `p` (0 to 1) of sorted samples; NaN when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let o = options::options();
    let code = match &o.url {
        Some(url) if o.steady() => steady::run(url, &o).await,
        _ => suite::run(&o).await,
    };
    std::process::exit(code);
}
