//! A subscription as a `Stream`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use nexus_event::{Event, TypeFilter};
use tokio::sync::broadcast;
use tokio_util::sync::ReusableBoxFuture;

use crate::bus::{RecvError, from_recv};

type Step = (
    Result<Arc<Event>, RecvError>,
    broadcast::Receiver<Arc<Event>>,
    TypeFilter,
);

/// A [`Subscription`](crate::Subscription) as a [`Stream`] of
/// `Result<Arc<Event>, RecvError>`.
///
/// It yields every event that passes the filter, [`RecvError::Lagged`] when it fell behind (and
/// then goes on), and ends once the bus is closed and drained. The future it polls is allocated
/// once and reused, so receiving does not allocate per event.
pub struct EventStream {
    next: ReusableBoxFuture<'static, Step>,
    done: bool,
}

async fn next_matching(mut rx: broadcast::Receiver<Arc<Event>>, filter: TypeFilter) -> Step {
    loop {
        match rx.recv().await {
            Ok(event) if filter.matches(&event.event_type) => return (Ok(event), rx, filter),
            Ok(_) => continue,
            Err(e) => return (Err(from_recv(e)), rx, filter),
        }
    }
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<Arc<Event>>, filter: TypeFilter) -> Self {
        EventStream {
            next: ReusableBoxFuture::new(next_matching(rx, filter)),
            done: false,
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Arc<Event>, RecvError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let (result, rx, filter) = std::task::ready!(self.next.poll(cx));
        if result == Err(RecvError::Closed) {
            self.done = true;
            return Poll::Ready(None);
        }
        self.next.set(next_matching(rx, filter));
        Poll::Ready(Some(result))
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("done", &self.done)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Bus, RecvError};
    use nexus_event::{NewEvent, TypeFilter, WellKnown};
    use std::future::poll_fn;
    use std::pin::Pin;

    use futures_core::Stream;

    async fn next(s: &mut super::EventStream) -> Option<Result<u64, RecvError>> {
        poll_fn(|cx| Pin::new(&mut *s).poll_next(cx))
            .await
            .map(|r| r.map(|e| e.sequence))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn streams_filtered_events_lag_and_end() {
        let bus = Bus::builder().capacity(2).build();
        let mut stream = bus
            .subscribe(TypeFilter::parse(["PAYMENT_*"]).expect("valid"))
            .into_stream();
        bus.emit(NewEvent::new(WellKnown::MintConfirmed, "f"));
        bus.emit(NewEvent::new(WellKnown::PaymentReceived, "p"));
        assert_eq!(next(&mut stream).await, Some(Ok(2)));
        for _ in 0..5 {
            bus.emit(NewEvent::new(WellKnown::PaymentReceived, "p"));
        }
        assert_eq!(
            next(&mut stream).await,
            Some(Err(RecvError::Lagged { missed: 3 }))
        );
        assert_eq!(next(&mut stream).await, Some(Ok(6)));
        assert_eq!(next(&mut stream).await, Some(Ok(7)));
        drop(bus);
        assert_eq!(next(&mut stream).await, None);
        assert_eq!(next(&mut stream).await, None, "stays ended");
    }
}
