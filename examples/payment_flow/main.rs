//! The whole system in one command: `cargo run --example payment_flow`.
//!
//! A Nexus composed in-process from the library crates (store, reactors, retry worker, HTTP
//! service), a fake FlowPay, Smart Factory and notifier on loopback, and four scenarios:
//!
//! 1. FlowPay's signed webhook becomes PAYMENT_RECEIVED; the `mint-on-payment` reactor calls the
//!    factory (signed), emits MINT_REQUESTED with the factory's answer; the factory posts
//!    MINT_CONFIRMED back; the notifier, subscribed to `MINT_*`, gets both, signatures verified.
//! 2. The factory fails twice: the call is retried on the schedule and then goes through.
//! 3. The factory fails for good: the call becomes a dead letter, MINT_FAILED is emitted; the
//!    factory recovers and an operator redrives the dead letter through the admin API.
//! 4. The factory goes down: its circuit breaker opens after 5 failures, deliveries wait parked,
//!    a trial after the reset timeout finds it back, the breaker closes and all go through.
//!
//! It prints the timeline as it happens.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod flow;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    println!(
        "Nexus payment -> mint -> notify flow (retry schedule 300 ms, 600 ms; breaker opens after 5 failures, trial after 2 s)\n"
    );
    let flow = flow::Flow::start(true).await;
    let result = flow.run().await;
    flow.nexus.stop().await;
    match result {
        Ok(report) => {
            let verified = report.notified.iter().filter(|(_, ok)| *ok).count();
            println!(
                "\nThe notifier got {} deliveries, {verified} with a verified signature; the factory got {} mint calls.",
                report.notified.len(),
                report.factory_calls.values().sum::<u32>()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nthe flow failed: {e}");
            ExitCode::FAILURE
        }
    }
}
