//! Reactors on the durable queue: the store routes matching events to them, and the retry worker
//! runs them through [`DeliveryTarget`], with the same retries, dead letters and breakers as
//! webhook deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nexus_event::{CorrelationId, Event, EventId, EventType, NEXUS_SOURCE, NewEvent};
use nexus_outbound::{Bytes, Call, HttpClient, WebhookTarget, classify, delivery_headers};
use nexus_resilience::{AttemptError, Outcome, Reason, Target};
use nexus_store::{Consumer, Lease, Router, Store};
use serde_json::{Value, json};

use crate::error::ReactorError;
use crate::metric_names;
use crate::rule::{Action, Rule};

/// How deep a correlation chain may grow before a reactor refuses to fire: a reactor that emits
/// an event it also matches stops after this many rounds.
pub const DEFAULT_MAX_DEPTH: usize = 8;

/// The configured reactors. As a [`Router`] (set it on the store) it gives every event one
/// delivery per reactor whose type glob and `when` conditions it passes.
#[derive(Debug)]
pub struct Reactors {
    rules: Vec<Rule>,
    max_depth: usize,
}

impl Reactors {
    /// A set of rules with unique names, and the default cycle limit ([`DEFAULT_MAX_DEPTH`]).
    pub fn new(rules: Vec<Rule>) -> Result<Self, ReactorError> {
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|earlier| earlier.name == r.name) {
                return Err(ReactorError::DuplicateName(r.name.clone()));
            }
        }
        Ok(Reactors {
            rules,
            max_depth: DEFAULT_MAX_DEPTH,
        })
    }

    /// Sets the longest correlation chain a reactor fires on (at least 1).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.max(1);
        self
    }

    /// The longest correlation chain a reactor fires on.
    pub fn depth_limit(&self) -> usize {
        self.max_depth
    }

    /// The rule with this name.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// Every rule.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Router for Reactors {
    fn route(&self, event: &Event, out: &mut Vec<(Consumer, String)>) {
        for rule in &self.rules {
            if rule.fires_on(event) {
                out.push((Consumer::Reactor(rule.name.clone()), rule.target()));
            }
        }
    }
}

/// The id of an event a reactor emits for a trigger: the same on every retry, so an emit that is
/// repeated (a crash between the emit and the ack) is a duplicate the log ignores.
pub fn emitted_id(reactor: &str, trigger: &EventId, outcome: &str) -> EventId {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{reactor}\0{trigger}\0{outcome}").as_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // UUID version 8 (custom)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let text = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    EventId::new(&text).expect("a formatted UUID is a valid event id")
}

/// The event a reactor emits: from `nexus`, correlated to its trigger.
pub fn emitted(
    reactor: &str,
    outcome: &str,
    event_type: &EventType,
    trigger: &Event,
    payload: Value,
) -> NewEvent {
    NewEvent::new(event_type.clone(), NEXUS_SOURCE)
        .id(emitted_id(reactor, &trigger.id, outcome))
        .correlation_id(
            CorrelationId::new(trigger.id.as_str()).expect("an event id is a valid correlation id"),
        )
        .payload(payload)
}

/// The payload of a reactor's `emit_on_failure` event: `{reactor, error, status, attempts, event}`
/// (`event`: the trigger).
pub(crate) fn failure_payload(
    reactor: &str,
    error: &str,
    status: Option<u16>,
    attempts: u32,
    trigger: &Event,
) -> Value {
    json!({
        "reactor": reactor,
        "error": error,
        "status": status,
        "attempts": attempts,
        "event": trigger,
    })
}

/// How one execution of a reactor ended: the `status` of `nexus_reactor_executions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Execution {
    /// The action succeeded (and its emit, if any, was stored).
    Success,
    /// The action or its emit failed.
    Failure,
    /// Refused: the correlation chain is too deep.
    Cycle,
}

impl Execution {
    /// The metric label.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Execution::Success => "success",
            Execution::Failure => "failure",
            Execution::Cycle => "cycle",
        }
    }
}

/// Counts one execution of `reactor` and, when it ran, how long it took.
pub(crate) fn record_execution(reactor: &str, status: Execution, took: Option<Duration>) {
    if let Some(took) = took {
        metrics::histogram!(metric_names::REACTOR_DURATION_SECONDS, "reactor" => reactor.to_owned())
            .record(took.as_secs_f64());
    }
    metrics::counter!(metric_names::REACTOR_EXECUTIONS_TOTAL, "reactor" => reactor.to_owned(), "status" => status.as_str())
        .increment(1);
}

/// The [`Target`] of a server's retry worker: webhook subscriptions go to the
/// [`WebhookTarget`], reactors to their action; emitted events are appended to the store, once
/// the event-type catalogue (when given) accepts them.
pub struct DeliveryTarget {
    reactors: Arc<Reactors>,
    http: Arc<HttpClient>,
    webhooks: WebhookTarget,
    store: Arc<dyn Store>,
    catalog: Option<Arc<nexus_catalog::Catalog>>,
}

impl DeliveryTarget {
    /// A target over `store`, calling through `http`, running `reactors`.
    pub fn new(store: Arc<dyn Store>, http: Arc<HttpClient>, reactors: Arc<Reactors>) -> Self {
        DeliveryTarget {
            webhooks: WebhookTarget::new(Arc::clone(&store), Arc::clone(&http)),
            reactors,
            http,
            store,
            catalog: None,
        }
    }

    /// Checks every event a reactor emits against this catalogue (API.md section 11): one whose
    /// payload fails its type's schema (or whose type is undeclared when declared types are
    /// required) is not stored, and the reactor's delivery is dead-lettered with the reason.
    pub fn catalog(mut self, catalog: Arc<nexus_catalog::Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// How many distinct events up the correlation chain of `event` are in the log, counting up
    /// to the limit. Publishers choose correlation ids freely: an event naming itself (a common
    /// way to mark a root) or two naming each other end the walk where an id comes again, so
    /// only chains of distinct events, which reactors make, count.
    async fn depth(&self, event: &Event) -> Result<usize, AttemptError> {
        let mut depth = 0;
        let mut seen = std::collections::HashSet::from([event.id.clone()]);
        let mut next = event.correlation_id.clone();
        while let Some(cause) = next {
            if depth >= self.reactors.max_depth {
                break;
            }
            let Ok(id) = EventId::new(cause.as_str()) else {
                break;
            };
            if !seen.insert(id.clone()) {
                break;
            }
            match self.store.get(&id).await {
                Ok(Some(parent)) => {
                    depth += 1;
                    next = parent.correlation_id;
                }
                Ok(None) => break,
                Err(e) => return Err(AttemptError::new(Reason::Store, e.to_string())),
            }
        }
        Ok(depth)
    }

    /// Stores an emitted event, once the catalogue accepts it. A refusal is permanent (the same
    /// answer would be refused again): `Refused` dead-letters the delivery at once.
    async fn emit(&self, event: NewEvent) -> Result<(), EmitError> {
        if let Some(catalog) = &self.catalog
            && let Err(refusal) = catalog.check(&event.event_type, &event.payload)
        {
            tracing::warn!(event_type = %event.event_type, error = %refusal, "a reactor's event was refused by the catalogue; not stored");
            return Err(EmitError {
                permanent: true,
                error: AttemptError::new(
                    Reason::Emit,
                    format!("cannot emit {}: {refusal}", event.event_type),
                ),
            });
        }
        self.store
            .append(vec![event])
            .await
            .map(|_| ())
            .map_err(|e| EmitError {
                permanent: false,
                error: AttemptError::new(Reason::Emit, format!("cannot emit: {e}")),
            })
    }

    async fn react(&self, name: &str, lease: &Lease) -> Outcome {
        let Some(rule) = self.reactors.get(name) else {
            return Outcome::Refused(AttemptError::new(
                Reason::UnknownReactor,
                format!("reactor {name:?} is not configured on this server"),
            ));
        };
        let trigger = &lease.event;
        let depth = match self.depth(trigger).await {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(e),
        };
        if depth >= self.reactors.max_depth {
            record_execution(name, Execution::Cycle, None);
            tracing::error!(reactor = name, event_id = %trigger.id, depth, "reactor cycle refused");
            return Outcome::Refused(AttemptError::new(
                Reason::Cycle,
                format!(
                    "reactor {name:?} refused event {} of type {}: its correlation chain is {depth} events deep (limit {}); a reactor probably emits an event it also matches",
                    trigger.id, trigger.event_type, self.reactors.max_depth
                ),
            ));
        }
        let started = Instant::now();
        let result = match &rule.action {
            Action::Http(h) => {
                let body = match serde_json::to_vec(&**trigger) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        return Outcome::Failed(AttemptError::new(Reason::Encode, e.to_string()));
                    }
                };
                let call = Call {
                    method: h.method.clone(),
                    url: &h.url,
                    target: &h.target,
                    headers: delivery_headers(&h.secret, trigger, &body),
                    body,
                    timeout: h.timeout,
                };
                match self.http.send(call).await {
                    Ok(answer) => match classify(&answer) {
                        Outcome::Delivered(_)
                            if !answer.complete && rule.emit_on_success.is_some() =>
                        {
                            Err(Outcome::Failed(AttemptError {
                                status: Some(answer.status),
                                ..AttemptError::new(
                                    Reason::Answer,
                                    format!(
                                        "HTTP {}, but the answer was larger than {} bytes or cut off, so it cannot be emitted",
                                        answer.status,
                                        self.http.config().max_response_bytes
                                    ),
                                )
                            }))
                        }
                        Outcome::Delivered(status) => Ok((status, answer_payload(&answer.body))),
                        other => Err(other),
                    },
                    Err(e) => Err(Outcome::Failed(e)),
                }
            }
            Action::InProcess(reactor) => match reactor.react(trigger).await {
                Ok(payload) => Ok((None, payload.unwrap_or_else(|| json!({})))),
                Err(f) => {
                    let err = AttemptError::new(Reason::Reactor, f.message);
                    Err(if f.permanent {
                        Outcome::Refused(err)
                    } else {
                        Outcome::Failed(err)
                    })
                }
            },
        };
        let outcome = match result {
            Ok((status, payload)) => match &rule.emit_on_success {
                // If the emit fails, the call is made again on the retry; the emitted id stays
                // the same, so the event is still emitted once.
                Some(t) => match self
                    .emit(emitted(name, "success", t, trigger, payload))
                    .await
                {
                    Ok(()) => Outcome::Delivered(status),
                    Err(e) if e.permanent => Outcome::Refused(e.error),
                    Err(e) => Outcome::Failed(e.error),
                },
                None => Outcome::Delivered(status),
            },
            Err(outcome) => outcome,
        };
        let status = if matches!(outcome, Outcome::Delivered(_)) {
            Execution::Success
        } else {
            Execution::Failure
        };
        record_execution(name, status, Some(started.elapsed()));
        outcome
    }
}

/// Why an emitted event was not stored.
struct EmitError {
    /// The catalogue refused it: trying again would be refused again.
    permanent: bool,
    error: AttemptError,
}

/// The payload a call's answer becomes: its JSON, `{}` when empty, or the text as a JSON string
/// when it is not JSON.
fn answer_payload(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return json!({});
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

#[async_trait]
impl Target for DeliveryTarget {
    async fn attempt(&self, lease: &Lease) -> Outcome {
        match &lease.consumer {
            Consumer::Subscription(_) => self.webhooks.attempt(lease).await,
            Consumer::Reactor(name) => self.react(name, lease).await,
        }
    }

    async fn dead_lettering(
        &self,
        lease: &Lease,
        error: &AttemptError,
    ) -> Result<(), AttemptError> {
        let Consumer::Reactor(name) = &lease.consumer else {
            return Ok(());
        };
        // A refused cycle emits nothing: the failure event would only lengthen the chain.
        if matches!(error.reason, Reason::Cycle | Reason::UnknownReactor) {
            return Ok(());
        }
        let Some(t) = self
            .reactors
            .get(name)
            .and_then(|r| r.emit_on_failure.as_ref())
        else {
            return Ok(());
        };
        let trigger = &lease.event;
        let payload = failure_payload(name, &error.message, error.status, lease.attempt, trigger);
        self.emit(emitted(name, "failure", t, trigger, payload))
            .await
            .map_err(|e| e.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_ids_are_stable_uuids() {
        let trigger = EventId::new("pay-1").expect("id");
        let a = emitted_id("mint", &trigger, "success");
        assert_eq!(a, emitted_id("mint", &trigger, "success"));
        assert_ne!(a, emitted_id("mint", &trigger, "failure"));
        assert_ne!(a, emitted_id("other", &trigger, "success"));
        let text = a.as_str();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "8", "version 8: {text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
    }

    #[test]
    fn answers_become_payloads() {
        assert_eq!(answer_payload(b""), json!({}));
        assert_eq!(answer_payload(b" \n"), json!({}));
        assert_eq!(
            answer_payload(br#"{"mint_id":"m-1"}"#),
            json!({"mint_id": "m-1"})
        );
        assert_eq!(answer_payload(b"ok"), json!("ok"));
    }

    #[test]
    fn names_are_unique() {
        let rule = |n| {
            Rule::new(
                n,
                nexus_event::Pattern::new("*").expect("glob"),
                Action::InProcess(Arc::new(crate::bus::tests::Echo)),
            )
            .expect("rule")
        };
        assert!(Reactors::new(vec![rule("a"), rule("b")]).is_ok());
        assert_eq!(
            Reactors::new(vec![rule("a"), rule("a")]).err(),
            Some(ReactorError::DuplicateName("a".into()))
        );
    }
}
