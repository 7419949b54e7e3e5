//! A Rust service that embeds `nexus-core` as its in-process event bus.
//!
//! A shop's payment handler publishes typed protocol events; a minter subscribes to payments and
//! answers each with a mint confirmation that carries the payment's id as its correlation id; a
//! notifier subscribes to confirmations, as a `Stream`, and tells the customer. Two filtered
//! subscribers, one bus, no I/O.
//!
//! Run it with `cargo run --example embed`.

use std::error::Error;

use nexus_core::{Bus, RecvError};
use nexus_event::{CorrelationId, NewEvent, TypeFilter, WellKnown};
use serde_json::json;
use tokio::task::JoinHandle;

const PAYMENTS: u64 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let bus = Bus::builder().capacity(256).build();

    // Subscribe before anything is published: a subscription sees events published from then on.
    let payments = bus.subscribe(TypeFilter::parse(["PAYMENT_*"])?);
    let confirmations = bus.subscribe(TypeFilter::parse(["MINT_CONFIRMED"])?);
    let minter = spawn_minter(bus.clone(), payments);
    let notifier = spawn_notifier(confirmations);

    for (order, amount) in [("order-17", 25), ("order-18", 140), ("order-19", 9)] {
        let event = bus.emit(
            NewEvent::new(WellKnown::PaymentReceived, "flowpay")
                .payload(json!({ "order": order, "amount": amount, "currency": "EUR" })),
        );
        println!(
            "[seq {:>2}] flowpay  -> {} {} ({amount} EUR)",
            event.sequence, event.event_type, order
        );
    }

    minter.await??;
    // The minter's clone of the bus is gone; dropping ours closes the bus, so the notifier's stream
    // ends after the last confirmation.
    drop(bus);
    let told = notifier.await??;
    println!("done: {PAYMENTS} payments, {told} customers notified");
    Ok(())
}

/// Mints for every payment, then stops.
fn spawn_minter(
    bus: Bus,
    mut payments: nexus_core::Subscription,
) -> JoinHandle<Result<(), RecvError>> {
    tokio::spawn(async move {
        for _ in 0..PAYMENTS {
            let payment = payments.recv().await?;
            let minted = bus.emit(
                NewEvent::new(WellKnown::MintConfirmed, "factory")
                    .payload(json!({ "order": payment.payload["order"], "token": format!("tok-{}", payment.sequence) }))
                    .correlation_id(CorrelationId::from(&payment.id)),
            );
            println!(
                "[seq {:>2}] factory  -> {} for payment seq {}",
                minted.sequence, minted.event_type, payment.sequence
            );
        }
        Ok(())
    })
}

/// Tells the customer about every confirmation until the bus closes; returns how many.
fn spawn_notifier(confirmations: nexus_core::Subscription) -> JoinHandle<Result<u64, RecvError>> {
    tokio::spawn(async move {
        let mut stream = confirmations.into_stream();
        let mut told = 0;
        while let Some(event) = next(&mut stream).await {
            let event = event?;
            told += 1;
            println!(
                "[seq {:>2}] notifier: order {} is minted (correlation {})",
                event.sequence,
                event.payload["order"],
                event.correlation_id.as_ref().map_or("-", |c| c.as_str())
            );
        }
        Ok(told)
    })
}

/// `StreamExt::next` without pulling in a futures utility crate.
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
