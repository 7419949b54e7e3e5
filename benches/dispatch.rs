//! Dispatch throughput of `nexus-core`'s bus against a bare `tokio::sync::broadcast` loop of the
//! same shape, measured in the same run.
//!
//! Shape: one publisher puts a burst of 1024 pre-built `Arc<Event>`s on the bus (half
//! `PAYMENT_RECEIVED`, half `MINT_CONFIRMED`), then each of 1, 4 or 16 subscribers drains it with
//! `try_recv`. "Filtered" subscribers take `PAYMENT_*` only, so they get half the events; the
//! baseline's receivers apply the same filter by hand. Events/s counts events published,
//! deliveries/s counts events handed to subscribers that wanted them.
//!
//! After the dispatch table, the cost the event-type catalogue adds to a publish (a 1 KB payload
//! checked against a 10-property schema; see `support/catalog_cost.rs`).
//!
//! Run with `cargo bench --bench dispatch` (`-- catalogue` for the catalogue's part alone). Criterion prints its statistics for every case; the
//! table at the end interleaves bus and baseline rounds and reports medians and their ratio, which
//! is what to compare across machines.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use nexus_core::{Bus, RecvError, Subscription};
use nexus_event::{Event, NewEvent, TypeFilter, WellKnown};
use tokio::sync::broadcast;

#[path = "support/catalog_cost.rs"]
mod catalog_cost;

const BURST: usize = 1024;
const SUBSCRIBERS: [usize; 3] = [1, 4, 16];

fn events() -> Vec<Arc<Event>> {
    (0..BURST)
        .map(|i| {
            let t = if i % 2 == 0 {
                WellKnown::PaymentReceived
            } else {
                WellKnown::MintConfirmed
            };
            Arc::new(
                NewEvent::new(t, "bench")
                    .payload(serde_json::json!({"n": i}))
                    .into_event(i as u64 + 1),
            )
        })
        .collect()
}

fn filter(filtered: bool) -> TypeFilter {
    if filtered {
        TypeFilter::parse(["PAYMENT_*"]).expect("valid glob")
    } else {
        TypeFilter::all()
    }
}

struct BusCase {
    bus: Bus,
    subs: Vec<Subscription>,
}

impl BusCase {
    fn new(subscribers: usize, filtered: bool) -> Self {
        let bus = Bus::builder().capacity(BURST).build();
        let subs = (0..subscribers)
            .map(|_| bus.subscribe(filter(filtered)))
            .collect();
        BusCase { bus, subs }
    }

    /// One burst; returns the deliveries made.
    fn run(&mut self, events: &[Arc<Event>]) -> usize {
        for e in events {
            self.bus.publish(Arc::clone(e));
        }
        let mut delivered = 0;
        for sub in &mut self.subs {
            loop {
                match sub.try_recv() {
                    Ok(e) => {
                        black_box(&e);
                        delivered += 1;
                    }
                    Err(RecvError::Empty) => break,
                    Err(e) => panic!("bench subscriber failed: {e}"),
                }
            }
        }
        delivered
    }
}

struct BroadcastCase {
    tx: broadcast::Sender<Arc<Event>>,
    rxs: Vec<broadcast::Receiver<Arc<Event>>>,
    filter: Option<TypeFilter>,
}

impl BroadcastCase {
    fn new(subscribers: usize, filtered: bool) -> Self {
        let (tx, _) = broadcast::channel(BURST);
        let rxs = (0..subscribers).map(|_| tx.subscribe()).collect();
        BroadcastCase {
            tx,
            rxs,
            filter: filtered.then(|| filter(true)),
        }
    }

    fn run(&mut self, events: &[Arc<Event>]) -> usize {
        for e in events {
            let _ = self.tx.send(Arc::clone(e));
        }
        let mut delivered = 0;
        for rx in &mut self.rxs {
            loop {
                match rx.try_recv() {
                    Ok(e) => {
                        if self
                            .filter
                            .as_ref()
                            .is_none_or(|f| f.matches(&e.event_type))
                        {
                            black_box(&e);
                            delivered += 1;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(e) => panic!("baseline receiver failed: {e}"),
                }
            }
        }
        delivered
    }
}

fn label(subscribers: usize, filtered: bool) -> String {
    let f = if filtered { "filtered" } else { "unfiltered" };
    format!("subs={subscribers}/{f}")
}

fn criterion_cases(c: &mut Criterion, events: &[Arc<Event>]) {
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(BURST as u64));
    for subscribers in SUBSCRIBERS {
        for filtered in [false, true] {
            let name = label(subscribers, filtered);
            let mut bus = BusCase::new(subscribers, filtered);
            group.bench_function(format!("bus/{name}"), |b| b.iter(|| bus.run(events)));
            let mut base = BroadcastCase::new(subscribers, filtered);
            group.bench_function(format!("broadcast/{name}"), |b| b.iter(|| base.run(events)));
        }
    }
    group.finish();
}

/// Median seconds per burst of `run`, measured in `rounds` samples of `bursts` bursts each,
/// interleaved with the other side so both see the same machine noise.
fn interleaved(
    rounds: usize,
    bursts: usize,
    mut bus: impl FnMut() -> usize,
    mut base: impl FnMut() -> usize,
) -> (f64, f64) {
    let time = |f: &mut dyn FnMut() -> usize| {
        let start = Instant::now();
        for _ in 0..bursts {
            black_box(f());
        }
        start.elapsed().as_secs_f64() / bursts as f64
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate who goes first, so neither always runs on a warmer cache.
        if round % 2 == 0 {
            a.push(time(&mut bus));
            b.push(time(&mut base));
        } else {
            b.push(time(&mut base));
            a.push(time(&mut bus));
        }
    }
    (median(a), median(b))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[allow(clippy::print_stdout)]
fn summary(events: &[Arc<Event>], quick: bool) {
    let (rounds, bursts) = if quick { (3, 10) } else { (41, 400) };
    println!();
    println!(
        "dispatch summary: medians of {rounds} interleaved rounds of {bursts} bursts of {BURST} events"
    );
    if quick {
        println!(
            "smoke run: figures are not measurements and targets are not judged; use `cargo bench`"
        );
    }
    println!(
        "{:<18} {:>14} {:>16} {:>16} {:>18} {:>7}  targets",
        "case", "bus events/s", "bus deliveries/s", "bcast events/s", "bcast deliveries/s", "ratio"
    );
    let mut misses = Vec::new();
    for subscribers in SUBSCRIBERS {
        for filtered in [false, true] {
            let mut bus = BusCase::new(subscribers, filtered);
            let mut base = BroadcastCase::new(subscribers, filtered);
            let per_burst = bus.run(events);
            assert_eq!(per_burst, base.run(events), "both sides deliver the same");
            let (t_bus, t_base) =
                interleaved(rounds, bursts, || bus.run(events), || base.run(events));
            let events_s = BURST as f64 / t_bus;
            let deliveries_s = per_burst as f64 / t_bus;
            let ratio = t_base / t_bus;
            let mut checks = vec![("ratio >= 0.9", ratio >= 0.9)];
            if subscribers == 1 && !filtered {
                checks.push(("events/s >= 10M", events_s >= 10e6));
            }
            if subscribers == 16 && !filtered {
                checks.push(("deliveries/s >= 25M", deliveries_s >= 25e6));
            }
            if quick {
                checks.clear();
            }
            let verdicts: Vec<String> = checks
                .iter()
                .map(|(what, ok)| format!("{what}: {}", if *ok { "ok" } else { "MISSED" }))
                .collect();
            let name = label(subscribers, filtered);
            for (what, ok) in &checks {
                if !ok {
                    misses.push(format!("{name} {what}"));
                }
            }
            println!(
                "{:<18} {:>14} {:>16} {:>16} {:>18} {:>7.3}  {}",
                name,
                si(events_s),
                si(deliveries_s),
                si(BURST as f64 / t_base),
                si(per_burst as f64 / t_base),
                ratio,
                verdicts.join(", ")
            );
        }
    }
    if quick {
        println!("smoke run complete");
    } else if misses.is_empty() {
        println!("all dispatch targets met");
    } else {
        println!("targets missed: {}", misses.join("; "));
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{:.1}k", v / 1e3)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; without it (`cargo test --bench dispatch`, or `-- --test`)
    // every case runs once and the summary is a smoke run.
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test");
    let listing = args.iter().any(|a| a == "--list");
    if args.iter().any(|a| a == "catalogue") {
        catalog_cost::run(quick);
        return;
    }
    let events = events();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    criterion_cases(&mut c, &events);
    c.final_summary();
    if !listing {
        summary(&events, quick);
        catalog_cost::run(quick);
    }
}
