//! In-process reactors straight on a [`Bus`], for a Rust service that embeds `nexus-core` without a
//! store: no queue, no retries. A failure is logged, counted and, when the rule has one, answered
//! with its `emit_on_failure` event at once. For durable retries, route the same rules through
//! the store and the retry worker ([`crate::DeliveryTarget`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nexus_core::{Bus, RecvError};
use nexus_event::{Event, EventId, TypeFilter};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::engine::{Execution, Reactors, emitted, failure_payload, record_execution};
use crate::error::ReactorError;
use crate::rule::{Action, Reactor, Rule};

/// How many emitted events' chain depths are remembered for cycle detection.
const REMEMBERED: usize = 16_384;

/// Depths of the events the runner emitted, oldest forgotten first.
#[derive(Default)]
struct Depths {
    by_id: HashMap<EventId, usize>,
    order: VecDeque<EventId>,
}

impl Depths {
    fn of(&self, event: &Event) -> usize {
        self.by_id.get(&event.id).copied().unwrap_or(0)
    }

    fn remember(&mut self, id: EventId, depth: usize) {
        if self.order.len() == REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.by_id.remove(&old);
        }
        self.order.push_back(id.clone());
        self.by_id.insert(id, depth);
    }
}

/// In-process reactors running on a bus; dropping it (or [`BusReactors::stop`]) stops them.
pub struct BusReactors {
    tasks: Vec<JoinHandle<()>>,
}

impl BusReactors {
    /// Starts one task per rule on the current tokio runtime. Every rule must be
    /// [`Action::InProcess`]: HTTP reactors need the durable queue.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nexus_core::Bus;
    /// use nexus_event::{Event, EventType, NewEvent, Pattern, TypeFilter};
    /// use nexus_reactors::{Action, BusReactors, ReactFailure, Reactor, Reactors, Rule};
    ///
    /// struct Mint;
    /// #[async_trait::async_trait]
    /// impl Reactor for Mint {
    ///     async fn react(&self, e: &Event) -> Result<Option<serde_json::Value>, ReactFailure> {
    ///         Ok(Some(serde_json::json!({ "for": e.id.as_str() })))
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let bus = Bus::new();
    /// let rule = Rule::new("mint", Pattern::new("PAYMENT_RECEIVED")?, Action::InProcess(Arc::new(Mint)))?
    ///     .emit_on_success(EventType::new("MINT_REQUESTED")?);
    /// let _running = BusReactors::spawn(&bus, Reactors::new(vec![rule])?)?;
    /// let mut mints = bus.subscribe(TypeFilter::parse(["MINT_*"])?);
    /// let payment = bus.emit(NewEvent::new(EventType::new("PAYMENT_RECEIVED")?, "flowpay"));
    /// let mint = mints.recv().await?;
    /// assert_eq!(mint.correlation_id.as_ref().map(|c| c.as_str()), Some(payment.id.as_str()));
    /// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spawn(bus: &Bus, reactors: Reactors) -> Result<BusReactors, ReactorError> {
        let mut runs = Vec::new();
        for rule in reactors.rules() {
            let Action::InProcess(reactor) = &rule.action else {
                return Err(ReactorError::Invalid {
                    field: format!("reactor {:?}", rule.name),
                    message: "an HTTP reactor needs the durable queue (a store and the retry worker), not the bare bus".into(),
                });
            };
            runs.push((rule.clone(), Arc::clone(reactor)));
        }
        let depths = Arc::new(Mutex::new(Depths::default()));
        let max_depth = reactors.depth_limit();
        let tasks = runs
            .into_iter()
            .map(|(rule, reactor)| {
                let sub = bus.subscribe(TypeFilter::new([rule.on.clone()]));
                tokio::spawn(run(
                    bus.clone(),
                    sub,
                    rule,
                    reactor,
                    Arc::clone(&depths),
                    max_depth,
                ))
            })
            .collect();
        Ok(BusReactors { tasks })
    }

    /// Stops every reactor task.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for BusReactors {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn run(
    bus: Bus,
    mut sub: nexus_core::Subscription,
    rule: Rule,
    reactor: Arc<dyn Reactor>,
    depths: Arc<Mutex<Depths>>,
    max_depth: usize,
) {
    let name = rule.name.clone();
    loop {
        let event = match sub.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged { missed }) => {
                tracing::warn!(reactor = %name, missed, "reactor fell behind the bus; events missed");
                continue;
            }
            Err(_) => return,
        };
        if !rule.when.holds(&event.payload) {
            continue;
        }
        let depth = depths.lock().map_or(0, |d| d.of(&event));
        if depth >= max_depth {
            record_execution(&name, Execution::Cycle, None);
            tracing::error!(reactor = %name, event_id = %event.id, depth, "reactor cycle refused: its correlation chain is too deep");
            continue;
        }
        let started = Instant::now();
        let result = reactor.react(&event).await;
        let status = if result.is_ok() {
            Execution::Success
        } else {
            Execution::Failure
        };
        record_execution(&name, status, Some(started.elapsed()));
        let out = match result {
            Ok(payload) => rule.emit_on_success.as_ref().map(|t| {
                emitted(
                    &name,
                    "success",
                    t,
                    &event,
                    payload.unwrap_or_else(|| json!({})),
                )
            }),
            Err(failure) => {
                tracing::warn!(reactor = %name, event_id = %event.id, error = %failure, "in-process reactor failed");
                rule.emit_on_failure.as_ref().map(|t| {
                    let payload = failure_payload(&name, &failure.message, None, 1, &event);
                    emitted(&name, "failure", t, &event, payload)
                })
            }
        };
        if let Some(draft) = out {
            // Remembered before it is on the bus, where another rule's task may take it at once.
            if let Ok(mut d) = depths.lock() {
                d.remember(draft.id.clone(), depth + 1);
            }
            bus.emit(draft);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rule::ReactFailure;
    use nexus_event::{EventType, NewEvent, Pattern};
    use std::time::Duration;

    /// Answers with the trigger's payload.
    pub(crate) struct Echo;

    #[async_trait::async_trait]
    impl Reactor for Echo {
        async fn react(&self, e: &Event) -> Result<Option<serde_json::Value>, ReactFailure> {
            if e.payload.get("fail").is_some() {
                return Err(ReactFailure::retry("asked to fail"));
            }
            Ok(Some(e.payload.clone()))
        }
    }

    fn t(s: &str) -> EventType {
        EventType::new(s).expect("type")
    }

    // Paused time: the runtime moves the clock only when every task is idle, so a timeout
    // below fires exactly when the reactor has nothing left to do, not after a guessed wait.
    #[tokio::test(start_paused = true)]
    async fn a_reactor_that_matches_its_own_output_stops_at_the_depth_limit() {
        let bus = Bus::new();
        let rule = Rule::new(
            "loop",
            Pattern::new("PING").expect("glob"),
            Action::InProcess(Arc::new(Echo)),
        )
        .expect("rule")
        .emit_on_success(t("PING"));
        let reactors = Reactors::new(vec![rule]).expect("set").max_depth(3);
        let _running = BusReactors::spawn(&bus, reactors).expect("spawn");
        let mut all = bus.subscribe(TypeFilter::all());
        bus.emit(NewEvent::new(t("PING"), "test"));
        let mut seen = 0;
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(60), all.recv()).await {
            seen += 1;
        }
        // The first PING and three rounds of the reactor, then the chain is 3 deep and refused.
        assert_eq!(seen, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_emit_the_failure_event_and_when_filters() {
        let bus = Bus::new();
        let rule = Rule::new(
            "r",
            Pattern::new("IN").expect("glob"),
            Action::InProcess(Arc::new(Echo)),
        )
        .expect("rule")
        .when(
            crate::When::parse(
                serde_json::json!({"/n": {"gte": 1}})
                    .as_object()
                    .expect("map"),
            )
            .expect("when"),
        )
        .emit_on_success(t("OK"))
        .emit_on_failure(t("FAILED"));
        let _running =
            BusReactors::spawn(&bus, Reactors::new(vec![rule]).expect("set")).expect("spawn");
        let mut out = bus.subscribe(TypeFilter::parse(["OK", "FAILED"]).expect("filter"));
        bus.emit(NewEvent::new(t("IN"), "test").payload(serde_json::json!({"n": 0})));
        bus.emit(NewEvent::new(t("IN"), "test").payload(serde_json::json!({"n": 2})));
        let trigger = bus.emit(
            NewEvent::new(t("IN"), "test").payload(serde_json::json!({"n": 3, "fail": true})),
        );
        // One task runs the rule over the events in order: the first output being n = 2's
        // proves n = 0 emitted nothing before it.
        let ok = out.recv().await.expect("ok");
        assert_eq!(
            (ok.event_type.as_str(), &ok.payload),
            ("OK", &serde_json::json!({"n": 2}))
        );
        let failed = out.recv().await.expect("failed");
        assert_eq!(failed.event_type.as_str(), "FAILED");
        assert_eq!(failed.payload["error"], "asked to fail");
        assert_eq!(
            failed.correlation_id.as_ref().map(|c| c.as_str()),
            Some(trigger.id.as_str())
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(60), out.recv())
                .await
                .is_err(),
            "nothing more once the reactor is idle: n = 0 does not pass `when`"
        );
    }

    #[test]
    fn http_rules_are_refused_on_the_bare_bus() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        let _guard = rt.enter();
        let http = crate::rule::HttpAction::post(
            "http://127.0.0.1:9/x",
            nexus_api::signature::Secret::token("s"),
        )
        .expect("action");
        let rule =
            Rule::new("h", Pattern::new("*").expect("glob"), Action::Http(http)).expect("rule");
        let err = BusReactors::spawn(&Bus::new(), Reactors::new(vec![rule]).expect("set")).err();
        assert!(err.is_some_and(|e| e.to_string().contains("durable queue")));
    }
}
