//! The response envelope of API.md section 3, and the one place where errors become HTTP
//! answers.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nexus_api::envelope::{ErrorBody, ErrorCode, Failure, ListMeta, Success};
use nexus_event::Timestamp;
use nexus_store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};

use crate::request_id::RequestId;

/// An error answer: status, envelope code, message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The envelope code (`UPPER_SNAKE`).
    pub code: ErrorCode,
    /// What went wrong, for people. Never a stack trace, a secret or SQL.
    pub message: String,
    /// Machine-readable context (`field`, `index`, ...).
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// `400 BAD_REQUEST`: the body is not what it must be (not JSON, say).
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// `400 VALIDATION_ERROR` naming the failing field.
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationError, message)
            .with_details(json!({ "field": field }))
    }

    /// `401 UNAUTHORIZED`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// `403 FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// `404 NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// `409 CONFLICT`.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// `413 PAYLOAD_TOO_LARGE`.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            message,
        )
    }

    /// `415 UNSUPPORTED_MEDIA_TYPE`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            message,
        )
    }

    /// `429 RATE_LIMITED` with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many requests from this address; retry later",
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// `503 UNAVAILABLE` with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        );
        e.retry_after = Some(Duration::from_secs(1));
        e
    }

    /// `431` with code `BAD_REQUEST`: the request line and headers are over the limit.
    pub fn headers_too_large(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::BadRequest,
            message,
        )
    }

    /// An error of `status` with the envelope code that status stands for (API.md section 3):
    /// for a refusal made outside the handlers, which has a status and a text but no code.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Unavailable,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        };
        let mut e = ApiError::new(status, code, message);
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            e.retry_after = Some(Duration::from_secs(1));
        }
        e
    }

    /// `500 INTERNAL`; the detail goes to the log, not to the caller.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; see the server log for this request id",
        )
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds `index` (a position in a batch) to the details.
    pub fn at_index(mut self, index: usize) -> Self {
        let mut details = match self.details.take() {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        details.insert("index".into(), json!(index));
        self.details = Some(Value::Object(details));
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict { id, .. } => ApiError::conflict(format!(
                "event id {id:?} was already published by another node"
            )),
            StoreError::DuplicateInBatch { id, .. } => {
                ApiError::validation("id", format!("event id {id:?} appears twice in the batch"))
            }
            StoreError::NotFound { what, id } => {
                ApiError::not_found(format!("{what} {id} not found"))
            }
            StoreError::Invalid { field, message } => ApiError::validation(field, message.clone()),
            StoreError::Declared { .. } => ApiError::conflict(e.to_string()),
            StoreError::Busy { capacity } => {
                // Load, not a fault: the caller retries after `Retry-After`. A flood would log a
                // line per refused request, so say it at most once a second, with the count.
                if let Some(refused) = BUSY_LOG.tick() {
                    tracing::warn!(capacity, refused, "store writer queue full; writes refused");
                }
                ApiError::unavailable("the store is busy; retry later")
            }
            _ if e.is_transient() => {
                tracing::error!(error = %e, "store unavailable");
                ApiError::unavailable("the store is unavailable; retry later")
            }
            _ => {
                tracing::error!(error = %e, "store error");
                ApiError::internal()
            }
        }
    }
}

impl From<nexus_catalog::CatalogError> for ApiError {
    fn from(e: nexus_catalog::CatalogError) -> Self {
        match e {
            nexus_catalog::CatalogError::Invalid { field, message } => {
                ApiError::validation(&field, message)
            }
            nexus_catalog::CatalogError::Store(e) => ApiError::from(e),
            other => {
                tracing::error!(error = %other, "catalogue error");
                ApiError::internal()
            }
        }
    }
}

/// A publish the catalogue refused (API.md section 11): `400 VALIDATION_ERROR` with
/// `details.field` `type` (undeclared) or `payload` (with `pointer` and up to 10 `errors`).
impl From<nexus_catalog::Refusal> for ApiError {
    fn from(refusal: nexus_catalog::Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            nexus_catalog::Refusal::Undeclared { .. } => ApiError::validation("type", message),
            nexus_catalog::Refusal::Schema { violations, .. } => {
                let errors: Vec<Value> = violations
                    .errors()
                    .iter()
                    .map(|v| json!({"pointer": v.pointer, "message": v.message}))
                    .collect();
                ApiError::validation("payload", message).with_details(json!({
                    "field": "payload",
                    "pointer": violations.pointer(),
                    "errors": errors,
                }))
            }
        }
    }
}

impl From<nexus_event::Error> for ApiError {
    fn from(e: nexus_event::Error) -> Self {
        ApiError::validation(e.field(), e.to_string())
    }
}

/// Writes the error envelope. The request id is filled in by the request-id layer, which sees
/// every response; here it is taken from the task-local the layer sets.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Failure {
            success: false,
            error: ErrorBody {
                code: self.code,
                message: self.message,
                details: self.details,
            },
            timestamp: Timestamp::now(),
            request_id: RequestId::current_or_empty(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(after) = self.retry_after {
            // Rounded up: a client that waits exactly this long finds the budget back.
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// A success answer: `{"success": true, "data", "meta"?, "timestamp", "requestId"}`.
pub struct Ok<T: Serialize> {
    status: StatusCode,
    data: T,
    meta: Option<ListMeta>,
}

/// `200` with `data`.
pub fn ok<T: Serialize>(data: T) -> Ok<T> {
    Ok {
        status: StatusCode::OK,
        data,
        meta: None,
    }
}

impl<T: Serialize> Ok<T> {
    /// Another status (`201`, `202`).
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds `meta`.
    pub fn meta(mut self, meta: ListMeta) -> Self {
        self.meta = Some(meta);
        self
    }
}

impl<T: Serialize> IntoResponse for Ok<T> {
    fn into_response(self) -> Response {
        let body = Success {
            success: true,
            data: &self.data,
            meta: self.meta.as_ref(),
            timestamp: Timestamp::now(),
            request_id: RequestId::current_or_empty(),
        };
        (self.status, Json(body)).into_response()
    }
}

/// Refusals counted between two log lines about them.
static BUSY_LOG: Throttle = Throttle::new();

/// Lets a repeated warning through at most once a second, with how many happened since the last
/// one that went out.
struct Throttle {
    last_second: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

impl Throttle {
    const fn new() -> Self {
        Throttle {
            last_second: std::sync::atomic::AtomicU64::new(0),
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(count)` when this occurrence should be logged.
    fn tick(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.count.fetch_add(1, Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.load(Relaxed);
        if now > last
            && self
                .last_second
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.count.swap(0, Relaxed))
        } else {
            None
        }
    }
}

/// The answer of a list: `data` and `meta.nextCursor`.
pub fn page<T: Serialize>(items: Vec<T>, next_cursor: Option<String>) -> Ok<Vec<T>> {
    ok(items).meta(ListMeta { next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_store_is_503_unavailable_with_retry_after() {
        let error = ApiError::from(StoreError::Busy { capacity: 8 });
        assert_eq!(error.code, nexus_api::envelope::ErrorCode::Unavailable);
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
