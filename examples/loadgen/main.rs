//! Load generator for `nexus-server`, in three modes.
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
//! **A soak** (`--soak`): a server of its own, `--subscriptions` local receivers of which
//! `--failing` answer `500` (so retries, breakers and dead letters run the whole time), one
//! subscription each, and signed single publishes at `--rate` over keep-alive connections for
//! `--minutes`. Every `--sample-seconds` a CSV row: elapsed seconds, events acknowledged in the
//! interval, publish p50/p99/max (ms), the server's RSS (KiB, `/proc/<pid>/status`), its open
//! descriptors (`/proc/<pid>/fd`), queue depth (`pending + inFlight` of `/api/retry/stats`),
//! pending, in flight, dead letters, deliveries succeeded and 500 answers (the receivers'
//! counts, cumulative) and publish errors in the interval. At the end a verdict against the
//! goals: RSS after warm-up (the first 20 % of the run) within ±10 % of its median; open
//! descriptors not growing (the last quarter's median no higher than the first quarter's
//! maximum); no latency drift (publish p99 of the last quarter at most 1.5 x the second
//! quarter's, or 1 ms more). Exits 1 naming each missed goal, or when publishes failed or the
//! rate was not held. `ops/soak/plot.py` draws the CSV.
//!
//! ```sh
//! cargo run --release --example loadgen -- --soak [--minutes 30] [--rate 5000] \
//!     [--subscriptions 10] [--failing 2] [--sample-seconds 10] [--csv PATH] [--server-bin PATH]
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
mod soak;
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
    let code = match (&o.soak, &o.url) {
        (Some(soak), _) => soak::run(&o, soak).await,
        (None, Some(url)) if o.steady() => steady::run(url, &o).await,
        _ => suite::run(&o).await,
    };
    std::process::exit(code);
}
