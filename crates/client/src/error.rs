//! The one error type of the crate.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One way a payload fails its type's schema: the JSON pointer of the failing value (`""` for
/// the root) and what is wrong, as the server writes them in `details.errors` of a `400
/// VALIDATION_ERROR` (API.md section 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaViolation {
    /// Where, as a JSON pointer into the payload.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

/// An error answer of the server: its HTTP status and the envelope's `error` (API.md section 3).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status (400, 401, 429, 503, ...).
    pub status: u16,
    /// The envelope's `error.code` (`VALIDATION_ERROR`, `UNAUTHORIZED`, ...); `HTTP_<status>`
    /// when the body was not an envelope (a proxy's error page, for instance).
    pub code: String,
    /// The envelope's `error.message`, or the start of the body.
    pub message: String,
    /// The envelope's `error.details` (`{"field": ...}`, `{"index": ...}`), when given.
    pub details: Option<Value>,
    /// The request id (`requestId` of the body, else the `x-request-id` header).
    pub request_id: Option<String>,
    /// The `Retry-After` of a 429 or 503, read as a delay from the time of the answer.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Whether a later attempt of the same request may succeed: 429 and every 5xx.
    pub fn is_retryable(&self) -> bool {
        self.status == 429 || (500..600).contains(&self.status)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(details) = &self.details {
            write!(f, " ({details})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

/// What can go wrong talking to Nexus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given to a builder or a call is not acceptable; names what and why.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was given (`url`, `node`, `secret`, `event type`, ...).
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The server could not be reached or the connection broke (refused, reset, DNS, TLS).
    #[error("cannot reach {url}: {reason}")]
    Network {
        /// The URL called.
        url: String,
        /// What the network layer said.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The URL called.
        url: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The server answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The server answered with a success status but a body this client does not understand.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol {
        /// The URL called.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Every attempt of a retryable request failed; `last` is the last failure.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The failure of the last one.
        #[source]
        last: Box<Error>,
    },
    /// A draft's payload fails its type's schema, found before sending (see
    /// `Draft::check`, feature `schema`): the first failing pointer and at most 10
    /// violations, as the server's `details.pointer` and `details.errors`.
    #[error("the payload of {event_type} does not match its schema at {pointer:?}: {}", first_message(.errors))]
    Schema {
        /// The draft's type.
        event_type: String,
        /// The JSON pointer of the first failing value (`""` for the root).
        pointer: String,
        /// The violations, at most 10.
        errors: Vec<SchemaViolation>,
    },
    /// The subscriber's outgoing queue is full (it holds frames while offline).
    #[error("the outgoing queue is full ({capacity} frames waiting for a connection)")]
    QueueFull {
        /// Its capacity.
        capacity: usize,
    },
    /// The subscriber was closed.
    #[error("the subscriber is closed")]
    Closed,
    /// The subscriber was built outside a tokio runtime.
    #[error("a subscriber needs a tokio runtime: build it inside one")]
    NoRuntime,
}

impl Error {
    /// Whether the same request may succeed later: network failures, timeouts, 429 and 5xx
    /// (for [`Error::GaveUp`], whether its last failure was one of those).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Network { .. } | Error::Timeout { .. } => true,
            Error::Api(api) => api.is_retryable(),
            Error::GaveUp { last, .. } => last.is_retryable(),
            _ => false,
        }
    }

    /// The failure behind a [`Error::GaveUp`], or this error itself.
    pub fn last(&self) -> &Error {
        match self {
            Error::GaveUp { last, .. } => last.last(),
            other => other,
        }
    }

    /// The server's error answer, if this is one (also behind [`Error::GaveUp`]).
    pub fn api(&self) -> Option<&ApiError> {
        match self.last() {
            Error::Api(api) => Some(api.as_ref()),
            _ => None,
        }
    }

    /// A payload's schema violations: the first failing pointer and the errors, whether found
    /// before sending ([`Error::Schema`]) or by the server (a `400 VALIDATION_ERROR` whose
    /// `details.field` is `payload`), so both are handled alike.
    pub fn schema_violations(&self) -> Option<(String, Vec<SchemaViolation>)> {
        match self.last() {
            Error::Schema {
                pointer, errors, ..
            } => Some((pointer.clone(), errors.clone())),
            Error::Api(api) if api.status == 400 => {
                let details = api.details.as_ref()?;
                if details.get("field")?.as_str()? != "payload" {
                    return None;
                }
                let pointer = details.get("pointer")?.as_str()?.to_owned();
                let errors = serde_json::from_value(details.get("errors")?.clone()).ok()?;
                Some((pointer, errors))
            }
            _ => None,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

fn first_message(errors: &[SchemaViolation]) -> &str {
    errors.first().map_or("", |e| e.message.as_str())
}
