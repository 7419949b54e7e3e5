//! [`WebhookTarget`], the [`Target`] of webhook subscriptions (API.md section 4): a `POST` of the
//! event JSON with Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), `X-Nexus-Event` and `X-Nexus-Sequence` ([`delivery_headers`]). Any 2xx
//! is success; a timeout, a refused connection or any other status is a failure; `410` is
//! reported as gone; `429`/`503` carry their `Retry-After` ([`classify`]).

use std::sync::Arc;

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
}

impl WebhookTarget {
    /// A target reading subscriptions (URL, secret) from `store`, calling through `http`.
    pub fn new(store: Arc<dyn Store>, http: Arc<HttpClient>) -> Self {
        WebhookTarget { http, store }
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
        let secret = match Secret::parse(&sub.secret) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(AttemptError::new(Reason::Secret, e.to_string())),
        };
        let body = match serde_json::to_vec(&*lease.event) {
            Ok(b) => Bytes::from(b),
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
