//! Reactors on the durable queue: routing with `when`, emits that are never repeated, permanent
//! failures, the cycle limit and replay, through the real store and retry worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nexus_event::{Event, EventType, NewEvent, Pattern, Timestamp, TypeFilter};
use nexus_outbound::{HttpClient, OutboundConfig};
use nexus_reactors::{Action, DeliveryTarget, ReactFailure, Reactor, Reactors, Rule, When};
use nexus_resilience::{RetryWorker, Schedule, SystemClock, WorkerConfig, WorkerHandle};
use nexus_store::{DeliveryQueue, EventLog, ReplayTo, SqliteStore};
use serde_json::{Value, json};

/// Fails its first `fail_first` calls (retryable), or every call permanently, else answers the
/// trigger's payload.
struct Scripted {
    calls: AtomicU32,
    fail_first: u32,
    permanent: bool,
}

impl Scripted {
    fn new(fail_first: u32, permanent: bool) -> Arc<Self> {
        Arc::new(Scripted {
            calls: AtomicU32::new(0),
            fail_first,
            permanent,
        })
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Reactor for Scripted {
    async fn react(&self, event: &Event) -> Result<Option<Value>, ReactFailure> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.permanent {
            return Err(ReactFailure::permanent("this payment can never be minted"));
        }
        if n <= self.fail_first {
            return Err(ReactFailure::retry(format!("call {n} failed")));
        }
        Ok(Some(json!({"echo": event.payload})))
    }
}

fn t(s: &str) -> EventType {
    EventType::new(s).expect("type")
}

fn rule(name: &str, on: &str, reactor: Arc<Scripted>) -> Rule {
    Rule::new(
        name,
        Pattern::new(on).expect("glob"),
        Action::InProcess(reactor),
    )
    .expect("rule")
}

struct Rig {
    store: Arc<SqliteStore>,
    worker: Option<WorkerHandle>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(reactors: Reactors) -> Rig {
        let dir = tempfile::tempdir().expect("dir");
        let reactors = Arc::new(reactors);
        let store = Arc::new(
            SqliteStore::builder(dir.path())
                .router(Arc::clone(&reactors) as _)
                .open()
                .expect("store"),
        );
        let target = DeliveryTarget::new(
            Arc::clone(&store) as _,
            Arc::new(HttpClient::new(OutboundConfig::default())),
            reactors,
        );
        let schedule = Schedule::new(vec![Duration::from_millis(30); 2], 0.0).expect("schedule");
        let worker = RetryWorker::new(
            Arc::clone(&store) as _,
            Arc::new(target),
            Arc::new(SystemClock),
            WorkerConfig {
                schedule,
                ..WorkerConfig::default()
            },
        )
        .expect("worker")
        .spawn();
        Rig {
            store,
            worker: Some(worker),
            _dir: dir,
        }
    }

    async fn publish(&self, event_type: &str, payload: Value) -> Event {
        let appended = self
            .store
            .append(vec![NewEvent::new(t(event_type), "test").payload(payload)])
            .await
            .expect("append");
        self.store
            .get(&appended[0].id)
            .await
            .expect("get")
            .expect("stored")
    }

    async fn dead_letters(&self) -> Vec<nexus_store::DeadLetter> {
        self.store
            .dead_letters(100, None)
            .await
            .expect("dead letters")
            .items
    }

    async fn log(&self) -> Vec<Event> {
        self.store
            .read(0, 1000, &TypeFilter::all())
            .await
            .expect("read")
    }

    /// Waits until the queue has nothing pending or in flight.
    async fn settled(&self) {
        for _ in 0..500 {
            let s = self.store.stats().await.expect("stats");
            if s.pending == 0 && s.in_flight == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the queue did not settle: {:?}", self.store.stats().await);
    }

    async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.stop(Duration::from_secs(1)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_routes_retries_emit_once_and_replay_does_not_repeat_the_emit() {
    let reactor = Scripted::new(2, false);
    let when =
        When::parse(json!({"/amount": {"gte": 10}}).as_object().expect("map")).expect("when");
    let r = rule("mint", "PAYMENT_*", Arc::clone(&reactor))
        .when(when)
        .emit_on_success(t("MINT_REQUESTED"));
    let rig = Rig::start(Reactors::new(vec![r]).expect("set"));
    rig.publish("PAYMENT_RECEIVED", json!({"amount": 5})).await;
    let trigger = rig.publish("PAYMENT_RECEIVED", json!({"amount": 20})).await;
    rig.settled().await;
    assert_eq!(
        reactor.calls(),
        3,
        "amount 5 is filtered; amount 20 fails twice then succeeds"
    );
    let minted: Vec<Event> = rig
        .log()
        .await
        .into_iter()
        .filter(|e| e.event_type == t("MINT_REQUESTED"))
        .collect();
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].source, nexus_event::NEXUS_SOURCE);
    assert_eq!(minted[0].payload, json!({"echo": {"amount": 20}}));
    assert_eq!(
        minted[0].correlation_id.as_ref().map(|c| c.as_str()),
        Some(trigger.id.as_str())
    );

    // A replay runs the reactor again, but its emit has the same id: the log keeps one.
    let enqueued = rig
        .store
        .replay(
            0,
            None,
            &TypeFilter::all(),
            ReplayTo::Reactors,
            Timestamp::now(),
        )
        .await
        .expect("replay");
    assert_eq!(enqueued, 1, "only the event that passes `when`");
    rig.settled().await;
    assert_eq!(reactor.calls(), 4);
    let log = rig.log().await;
    assert_eq!(
        log.iter()
            .filter(|e| e.event_type == t("MINT_REQUESTED"))
            .count(),
        1
    );
    assert_eq!(log.len(), 3);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_dead_letter_and_emit_the_failure_event() {
    let retried = Scripted::new(u32::MAX, false);
    let permanent = Scripted::new(0, true);
    let rig = Rig::start(
        Reactors::new(vec![
            rule("retried", "A", Arc::clone(&retried)).emit_on_failure(t("A_FAILED")),
            rule("permanent", "B", Arc::clone(&permanent)).emit_on_failure(t("B_FAILED")),
        ])
        .expect("set"),
    );
    let a = rig.publish("A", json!({"n": 1})).await;
    let b = rig.publish("B", json!({"n": 2})).await;
    rig.settled().await;
    assert_eq!(retried.calls(), 3, "1 + the 2 steps of the schedule");
    assert_eq!(permanent.calls(), 1, "a permanent failure is not retried");
    let letters = rig.dead_letters().await;
    assert_eq!(letters.len(), 2);
    for (trigger, kind, attempts) in [(&a, "A_FAILED", 3), (&b, "B_FAILED", 1)] {
        let dl = letters
            .iter()
            .find(|d| d.event_id == trigger.id)
            .expect("its dead letter");
        assert_eq!(dl.attempts, attempts);
        let failed: Vec<Event> = rig
            .log()
            .await
            .into_iter()
            .filter(|e| e.event_type == t(kind))
            .collect();
        assert_eq!(failed.len(), 1, "{kind}");
        assert_eq!(failed[0].payload["attempts"], attempts);
        assert_eq!(failed[0].payload["error"], dl.last_error.as_str());
        assert_eq!(failed[0].payload["event"]["id"], trigger.id.as_str());
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactor_that_matches_what_it_emits_stops_at_the_depth_limit() {
    let reactor = Scripted::new(0, false);
    let r = rule("echo", "PING", Arc::clone(&reactor))
        .emit_on_success(t("PING"))
        .emit_on_failure(t("PING"));
    let rig = Rig::start(Reactors::new(vec![r]).expect("set").max_depth(3));
    rig.publish("PING", json!({})).await;
    rig.settled().await;
    let pings = rig.log().await;
    // The first PING and three rounds; the fourth emitted PING's chain is 3 deep: refused.
    assert_eq!(pings.len(), 4, "{pings:?}");
    assert_eq!(reactor.calls(), 3);
    let letters = rig.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let dl = &letters[0];
    assert_eq!(dl.event_id, pings[3].id);
    assert_eq!(dl.attempts, 1);
    assert!(
        dl.last_error
            .contains("correlation chain is 3 events deep (limit 3)"),
        "{}",
        dl.last_error
    );
    // No failure event for a refused cycle: it would only lengthen the chain. The worker runs
    // the target's dead-lettering (where the failure event is emitted) before it stores the
    // dead letter, so with the dead letter seen above, any such event would already be here.
    assert_eq!(rig.log().await.len(), 4);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_event_that_names_itself_is_no_cycle() {
    let reactor = Scripted::new(0, false);
    let r =
        rule("mint", "PAYMENT_RECEIVED", Arc::clone(&reactor)).emit_on_success(t("MINT_REQUESTED"));
    let rig = Rig::start(Reactors::new(vec![r]).expect("set"));
    // A common convention: a root event's correlation id is its own id.
    let root = NewEvent::new(t("PAYMENT_RECEIVED"), "flowpay")
        .id(nexus_event::EventId::new("pay-7").expect("id"))
        .correlation_id(nexus_event::CorrelationId::new("pay-7").expect("id"));
    rig.store.append(vec![root]).await.expect("append");
    rig.settled().await;
    assert_eq!(reactor.calls(), 1);
    assert!(rig.dead_letters().await.is_empty());
    assert_eq!(rig.log().await.len(), 2);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_event_that_cannot_be_emitted_still_ends_in_one_dead_letter() {
    let reactor = Scripted::new(0, true);
    let r = rule("r", "A", Arc::clone(&reactor)).emit_on_failure(t("A_FAILED"));
    let rig = Rig::start(Reactors::new(vec![r]).expect("set"));
    // Someone else already holds the id the failure event would get: its emit conflicts.
    let trigger_id = nexus_event::EventId::new("a-1").expect("id");
    let squatter = NewEvent::new(t("OTHER"), "mallory").id(nexus_reactors::emitted_id(
        "r",
        &trigger_id,
        "failure",
    ));
    rig.store.append(vec![squatter]).await.expect("append");
    rig.store
        .append(vec![NewEvent::new(t("A"), "test").id(trigger_id.clone())])
        .await
        .expect("append");
    rig.settled().await;
    // Settled with the delivery dead-lettered: nothing is left that could call the target again.
    let letters = rig.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        reactor.calls(),
        1,
        "the target is not called again and again"
    );
    assert!(
        letters[0]
            .last_error
            .contains("this payment can never be minted")
            && letters[0]
                .last_error
                .contains("at dead-lettering: cannot emit"),
        "{}",
        letters[0].last_error
    );
    rig.stop().await;
}
