//! [`WebhookTarget`], the [`Target`] of webhook subscriptions (API.md section 4): a `POST` of the
//! event JSON with Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), `X-Nexus-Event` and `X-Nexus-Sequence` ([`delivery_headers`]). Any 2xx
//! is success; a timeout, a refused connection or any other status is a failure; `410` is
//! reported as gone; `429`/`503` carry their `Retry-After` ([`classify`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hyper::Method;
use hyper::body::Bytes;
use nexus_api::signature::Secret;
use nexus_event::{Event, Timestamp};
use nexus_resilience::{AttemptError, Outcome, Reason, Target};
use nexus_store::{Consumer, Lease, Store};

use crate::client::{Answer, Call, HttpClient};

/// The headers of a signed delivery of `event` whose body is `body` (API.md section 4):
/// Standard Webhooks `webhook-id`, `webhook-timestamp` and `webhook-signature`, plus
/// `x-nexus-event` and `x-nexus-sequence`.
pub fn delivery_headers(
    secret: &Secret,
    event: &Event,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ts = Timestamp::now().as_unix_secs();
    let event_id = event.id.to_string();
    vec![
        (
            "webhook-signature",
            secret.sign_standard(&event_id, ts, body),
        ),
        ("webhook-id", event_id),
        ("webhook-timestamp", ts.to_string()),
        ("x-nexus-event", event.event_type.to_string()),
        ("x-nexus-sequence", event.sequence.to_string()),
    ]
}

/// Delivers to webhook subscriptions.
pub struct WebhookTarget {
    http: Arc<HttpClient>,
    store: Arc<dyn Store>,
    secrets: Secrets,
    bodies: Bodies,
}

impl WebhookTarget {
    /// A target reading subscriptions (URL, secret) from `store`, calling through `http`.
    pub fn new(store: Arc<dyn Store>, http: Arc<HttpClient>) -> Self {
        WebhookTarget {
            http,
            store,
            secrets: Secrets::default(),
            bodies: Bodies::default(),
        }
    }
}

/// Most subscriptions whose parsed secret [`Secrets`] keeps; past it, it starts again empty.
const SECRETS_KEPT: usize = 4096;

/// Each subscription's secret, parsed once: decoding a `whsec_` secret and preparing its HMAC
/// key (two SHA-256 blocks) cost about 3 % of a delivery's instructions when done per delivery.
/// An entry holds the text it was parsed from and is used only while the subscription's secret
/// is still that text, so a changed secret signs the next delivery.
#[derive(Default)]
struct Secrets(Mutex<HashMap<String, (String, Arc<Secret>)>>);

impl Secrets {
    fn get(&self, subscription: &str, written: &str) -> Result<Arc<Secret>, String> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((text, secret)) = kept.get(subscription)
            && text == written
        {
            return Ok(Arc::clone(secret));
        }
        let secret = Arc::new(Secret::parse(written).map_err(|e| e.to_string())?);
        if kept.len() >= SECRETS_KEPT {
            kept.clear();
        }
        kept.insert(
            subscription.to_owned(),
            (written.to_owned(), Arc::clone(&secret)),
        );
        Ok(secret)
    }
}

/// How many events' bodies [`Bodies`] keeps.
const BODIES_KEPT: usize = 16;

/// The JSON bodies of the events delivered last, so an event going to several subscriptions is
/// serialised once: the store hands the leases of one event the same `Arc<Event>` (one per
/// subscription, leased together), and an entry is found by that pointer. Holding the `Arc`
/// keeps its address from being reused by another event while the entry lives.
#[derive(Default)]
struct Bodies(Mutex<Vec<(Arc<Event>, Bytes)>>);

impl Bodies {
    fn get(&self, event: &Arc<Event>) -> Result<Bytes, serde_json::Error> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, body)) = kept.iter().find(|(e, _)| Arc::ptr_eq(e, event)) {
            return Ok(body.clone());
        }
        let body = Bytes::from(serde_json::to_vec(&**event)?);
        if kept.len() >= BODIES_KEPT {
            kept.remove(0);
        }
        kept.push((Arc::clone(event), body.clone()));
        Ok(body)
    }
}

/// Classifies an answer: 2xx delivered, 410 gone, anything else failed (with `Retry-After`
/// for 429 and 503).
pub fn classify(answer: &Answer) -> Outcome {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Outcome::Delivered(Some(status));
    }
    let excerpt: String = String::from_utf8_lossy(&answer.body)
        .chars()
        .take(200)
        .collect();
    let message = if excerpt.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", excerpt.trim())
    };
    let error = AttemptError {
        reason: if status == 410 {
            Reason::Gone
        } else {
            Reason::Status
        },
        message,
        status: Some(status),
        retry_after: if status == 429 || status == 503 {
            answer.retry_after
        } else {
            None
        },
    };
    if status == 410 {
        Outcome::Gone(error)
    } else {
        Outcome::Failed(error)
    }
}

#[async_trait]
impl Target for WebhookTarget {
    async fn attempt(&self, lease: &Lease) -> Outcome {
        let Consumer::Subscription(id) = &lease.consumer else {
            return Outcome::Failed(AttemptError::new(
                Reason::NoRunner,
                format!("{} has no runner in this server", lease.consumer),
            ));
        };
        let sub = match self.store.subscription(id).await {
            Ok(Some(sub)) => sub,
            Ok(None) => {
                // Deleted while this delivery was in flight: nothing is left to deliver to.
                tracing::info!(subscription = %id, "subscription deleted; delivery dropped");
                return Outcome::Delivered(None);
            }
            Err(e) => return Outcome::Failed(AttemptError::new(Reason::Store, e.to_string())),
        };
        let secret = match self.secrets.get(id, &sub.secret) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(AttemptError::new(Reason::Secret, e)),
        };
        let body = match self.bodies.get(&lease.event) {
            Ok(b) => b,
            Err(e) => return Outcome::Failed(AttemptError::new(Reason::Encode, e.to_string())),
        };
        let call = Call {
            method: Method::POST,
            url: &sub.url,
            target: &sub.target,
            headers: delivery_headers(&secret, &lease.event, &body),
            body,
            timeout: None,
        };
        match self.http.send(call).await {
            Ok(answer) => classify(&answer),
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use nexus_event::{NewEvent, WellKnown};

    fn event(sequence: u64) -> Arc<Event> {
        let draft = NewEvent::new(WellKnown::PaymentReceived, "flowpay")
            .payload(serde_json::json!({"amount": 25}));
        Arc::new(draft.into_event(sequence))
    }

    #[test]
    fn a_secret_is_parsed_once_until_its_text_changes() {
        let secrets = Secrets::default();
        let first = secrets
            .get("sub-1", "whsec_c2VjcmV0LW9uZS1zZWNyZXQtb25l")
            .expect("parses");
        let again = secrets
            .get("sub-1", "whsec_c2VjcmV0LW9uZS1zZWNyZXQtb25l")
            .expect("parses");
        assert!(Arc::ptr_eq(&first, &again), "the same text is parsed once");
        let changed = secrets
            .get("sub-1", "another-secret-of-sub-1")
            .expect("parses");
        assert!(!Arc::ptr_eq(&first, &changed));
        assert_eq!(changed.bytes(), b"another-secret-of-sub-1");
        assert_ne!(
            first.sign_nexus(1, b"{}"),
            changed.sign_nexus(1, b"{}"),
            "a changed secret signs the next delivery"
        );
        let other = secrets
            .get("sub-2", "whsec_c2VjcmV0LW9uZS1zZWNyZXQtb25l")
            .expect("parses");
        assert!(!Arc::ptr_eq(&first, &other), "kept per subscription");
        assert!(secrets.get("sub-3", "whsec_not base64!").is_err());
        assert!(
            secrets.get("sub-3", "").is_err(),
            "a bad secret is refused every time"
        );
    }

    #[test]
    fn an_event_is_serialised_once_for_all_its_deliveries() {
        let bodies = Bodies::default();
        let one = event(1);
        let body = bodies.get(&one).expect("serialises");
        assert_eq!(body, serde_json::to_vec(&*one).expect("serialises"));
        let again = bodies.get(&Arc::clone(&one)).expect("serialises");
        assert_eq!(
            again.as_ptr(),
            body.as_ptr(),
            "the same Arc reuses the bytes"
        );
        // Another event (even an equal one) is another allocation and serialised for itself.
        let copy = Arc::new((*one).clone());
        assert_ne!(
            bodies.get(&copy).expect("serialises").as_ptr(),
            body.as_ptr()
        );
        for sequence in 2..=BODIES_KEPT as u64 + 1 {
            bodies.get(&event(sequence)).expect("serialises");
        }
        assert_eq!(bodies.0.lock().expect("lock").len(), BODIES_KEPT, "bounded");
        assert!(
            !bodies
                .0
                .lock()
                .expect("lock")
                .iter()
                .any(|(e, _)| Arc::ptr_eq(e, &one)),
            "the oldest entry goes first"
        );
    }

    #[test]
    fn answers_are_classified() {
        let answer = |status, retry_after| Answer {
            status,
            retry_after,
            body: Bytes::from_static(b"nope"),
            complete: true,
        };
        assert_eq!(classify(&answer(204, None)), Outcome::Delivered(Some(204)));
        assert!(matches!(
            classify(&answer(410, None)),
            Outcome::Gone(AttemptError {
                reason: Reason::Gone,
                ..
            })
        ));
        let Outcome::Failed(e) = classify(&answer(503, Some(Duration::from_secs(7)))) else {
            panic!("a failure");
        };
        assert_eq!(
            (e.reason, e.status, e.retry_after, e.message.as_str()),
            (
                Reason::Status,
                Some(503),
                Some(Duration::from_secs(7)),
                "HTTP 503: nope"
            )
        );
        let Outcome::Failed(e) = classify(&answer(500, Some(Duration::from_secs(7)))) else {
            panic!("a failure");
        };
        assert_eq!(
            e.retry_after, None,
            "Retry-After counts for 429 and 503 only"
        );
    }
}
