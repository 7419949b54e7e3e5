//! The one error type of the crate.

use std::time::Duration;

use serde_json::Value;

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

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}
