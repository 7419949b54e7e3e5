//! The bus as an embedding service uses it: allocation behaviour of the dispatch path and
//! filtered fan-out across tasks.

use std::sync::Arc;

use nexus_core::{Bus, RecvError};
use nexus_event::{Event, NewEvent, TypeFilter, WellKnown};

use crate::support::alloc::{allocations, counting};

const N: usize = 1000;

fn events() -> Vec<Arc<Event>> {
    (0..N)
        .map(|i| {
            let t = if i % 2 == 0 {
                WellKnown::PaymentReceived
            } else {
                WellKnown::MintConfirmed
            };
            Arc::new(NewEvent::new(t, "test").into_event(i as u64 + 1))
        })
        .collect()
}

fn filter(globs: &[&str]) -> TypeFilter {
    TypeFilter::parse(globs).expect("test globs are valid")
}

#[test]
fn publish_and_try_recv_do_not_allocate() {
    let bus = Bus::builder().capacity(N).build();
    let mut subs = vec![
        bus.subscribe(TypeFilter::all()),
        bus.subscribe(TypeFilter::all()),
        bus.subscribe(filter(&["PAYMENT_*"])),
        bus.subscribe(filter(&["*_CONFIRMED", "NOTHING"])),
    ];
    let events = events();
    let (delivered, allocs) = counting(|| {
        for e in &events {
            bus.publish(Arc::clone(e));
        }
        let mut delivered = 0;
        for sub in &mut subs {
            while sub.try_recv().is_ok() {
                delivered += 1;
            }
        }
        delivered
    });
    assert_eq!(delivered, 2 * N + N / 2 + N / 2);
    assert_eq!(
        allocs, 0,
        "publishing {N} shared events to 4 subscribers allocated"
    );
}

#[test]
fn emit_allocates_only_the_event_itself() {
    let bus = Bus::builder().capacity(N).build();
    let mut sub = bus.subscribe(TypeFilter::all());
    let drafts: Vec<NewEvent> = (0..N)
        .map(|_| NewEvent::new(WellKnown::NotificationSent, "notifier"))
        .collect();
    let (_, allocs) = counting(|| {
        for d in drafts {
            bus.emit(d);
        }
    });
    assert_eq!(allocs, N as u64, "one Arc<Event> per event, nothing else");
    assert_eq!(sub.try_recv().map(|e| e.sequence), Ok(1));
}

#[test]
fn async_recv_and_stream_do_not_allocate_per_event() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = Bus::builder().capacity(N).build();
        let mut sub = bus.subscribe(filter(&["PAYMENT_*"]));
        let mut stream = bus.subscribe(TypeFilter::all()).into_stream();
        let events = events();
        // The first round warms up what is allocated once: the stream's reusable future and the
        // runtime's list of tasks that yielded when their cooperative budget ran out.
        for round in 0..2 {
            let before = allocations();
            for e in &events {
                bus.publish(Arc::clone(e));
            }
            let published = allocations();
            for _ in 0..N / 2 {
                assert!(sub.recv().await.is_ok());
            }
            let received = allocations();
            for _ in 0..N {
                assert!(matches!(next(&mut stream).await, Some(Ok(_))));
            }
            let streamed = allocations();
            if round == 1 {
                assert_eq!(
                    (
                        published - before,
                        received - published,
                        streamed - received
                    ),
                    (0, 0, 0),
                    "allocations by (publish, recv, stream) of {N} events"
                );
            }
        }
    });
}

async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_across_tasks_and_nothing_else_is_lost() {
    let bus = Bus::builder().capacity(64).build();
    let mut slow = bus.subscribe(TypeFilter::all());
    let mut fast = bus.subscribe(TypeFilter::all());
    let fast_task = tokio::spawn(async move {
        let mut last = 0;
        loop {
            match fast.recv().await {
                Ok(e) => {
                    assert_eq!(e.sequence, last + 1, "the fast subscriber kept up");
                    last = e.sequence;
                }
                Err(RecvError::Closed) => return last,
                Err(RecvError::Lagged { missed }) => {
                    // Allowed only if the scheduler starved it; then the count must be exact.
                    assert!(missed > 0);
                    last += missed;
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    let publisher = bus.clone();
    std::thread::spawn(move || {
        for _ in 0..10_000 {
            publisher.emit(NewEvent::new(WellKnown::PaymentReceived, "p"));
        }
    })
    .join()
    .expect("publisher thread");
    drop(bus);
    // Whatever the slow one received plus what it was told it missed adds up to every event.
    let (mut received, mut missed, mut expected_next) = (0u64, 0u64, 1u64);
    loop {
        match slow.recv().await {
            Ok(e) => {
                assert_eq!(e.sequence, expected_next);
                received += 1;
                expected_next += 1;
            }
            Err(RecvError::Lagged { missed: m }) => {
                missed += m;
                expected_next += m;
            }
            Err(RecvError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(received + missed, 10_000);
    assert!(missed > 0, "the slow subscriber must have lagged");
    let last = tokio::time::timeout(std::time::Duration::from_secs(30), fast_task)
        .await
        .expect("fast subscriber finished")
        .expect("fast subscriber did not panic");
    assert_eq!(last, 10_000);
}
