//! The response envelope of API.md section 3: `{"success": true, "data", "meta"?, "timestamp",
//! "requestId"}` or `{"success": false, "error": {"code", "message", "details"?}, ...}`.

use std::fmt;

use nexus_event::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The `error.code` of an error envelope (`UPPER_SNAKE`).
///
/// The contract says the codes *include* these; a code this version does not know is kept as
/// [`ErrorCode::Other`], so a client survives a newer server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `400`: the body is not what it must be (not JSON, say).
    BadRequest,
    /// `400`: a field failed validation; `details.field` names it.
    ValidationError,
    /// `401`.
    Unauthorized,
    /// `403`.
    Forbidden,
    /// `404`.
    NotFound,
    /// `405`: a route called with a method it does not take.
    MethodNotAllowed,
    /// `409`.
    Conflict,
    /// `413`.
    PayloadTooLarge,
    /// `415`.
    UnsupportedMediaType,
    /// `429`, with `Retry-After`.
    RateLimited,
    /// `503`, with `Retry-After`.
    Unavailable,
    /// `500`.
    Internal,
    /// A code this version does not know.
    Other(String),
}

impl ErrorCode {
    /// The wire form.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Other(code) => code,
        }
    }

    /// Reads the wire form; an unknown code becomes [`ErrorCode::Other`].
    pub fn parse(code: &str) -> ErrorCode {
        match code {
            "BAD_REQUEST" => ErrorCode::BadRequest,
            "VALIDATION_ERROR" => ErrorCode::ValidationError,
            "UNAUTHORIZED" => ErrorCode::Unauthorized,
            "FORBIDDEN" => ErrorCode::Forbidden,
            "NOT_FOUND" => ErrorCode::NotFound,
            "METHOD_NOT_ALLOWED" => ErrorCode::MethodNotAllowed,
            "CONFLICT" => ErrorCode::Conflict,
            "PAYLOAD_TOO_LARGE" => ErrorCode::PayloadTooLarge,
            "UNSUPPORTED_MEDIA_TYPE" => ErrorCode::UnsupportedMediaType,
            "RATE_LIMITED" => ErrorCode::RateLimited,
            "UNAVAILABLE" => ErrorCode::Unavailable,
            "INTERNAL" => ErrorCode::Internal,
            other => ErrorCode::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&code))
    }
}

/// The `error` of an error envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of error.
    pub code: ErrorCode,
    /// What went wrong, for people. Never a stack trace, a secret or SQL.
    pub message: String,
    /// Machine-readable context: `field` of a `VALIDATION_ERROR`, `index` in a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// A success answer. `M` is the `meta` ([`ListMeta`] for lists); it is left out when `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Success<T, M = ListMeta> {
    /// Always `true`.
    pub success: bool,
    /// The answer.
    pub data: T,
    /// Paging of a list.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub meta: Option<M>,
    /// When the server answered.
    pub timestamp: Timestamp,
    /// The request id (`x-request-id`).
    #[serde(rename = "requestId")]
    pub request_id: String,
}

fn none<M>() -> Option<M> {
    None
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorBody,
    /// When the server answered.
    pub timestamp: Timestamp,
    /// The request id (`x-request-id`).
    #[serde(rename = "requestId")]
    pub request_id: String,
}

/// The `meta` of a list (API.md section 6): the cursor of the next page, `null` on the last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    /// Pass it back as `cursor`; `None` (written `null`) on the last page.
    #[serde(rename = "nextCursor")]
    pub next_cursor: Option<String>,
}

/// The query of every list: `?limit=&cursor=`. Unknown parameters are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The cursor a previous page gave; empty (`?cursor=`) is the first page, as if left out.
    #[serde(
        default,
        deserialize_with = "empty_cursor_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub cursor: Option<String>,
}

/// A `cursor` query value: an empty one (`?cursor=`, what a client sends for "no cursor yet")
/// is the first page, like a cursor left out.
pub fn empty_cursor_is_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let cursor = Option::<String>::deserialize(deserializer)?;
    Ok(cursor.filter(|c| !c.is_empty()))
}

/// Default items per page.
pub const DEFAULT_LIMIT: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_cursor_is_the_first_page() {
        let q: ListQuery = serde_json::from_value(json!({"cursor": ""})).expect("empty");
        assert_eq!(q.cursor, None);
        let q: ListQuery = serde_json::from_value(json!({"cursor": "7"})).expect("given");
        assert_eq!(q.cursor.as_deref(), Some("7"));
        let q: ListQuery = serde_json::from_value(json!({})).expect("absent");
        assert_eq!(q.cursor, None);
    }

    #[test]
    fn success_and_failure_round_trip() {
        let ok = json!({"success": true, "data": {"deleted": 2},
            "timestamp": "2026-02-09T20:30:00.123Z", "requestId": "req-1"});
        let parsed: Success<Value> = serde_json::from_value(ok.clone()).expect("success");
        assert_eq!(parsed.meta, None);
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), ok);

        let list = json!({"success": true, "data": [], "meta": {"nextCursor": null},
            "timestamp": "2026-02-09T20:30:00.123Z", "requestId": "r"});
        let parsed: Success<Vec<Value>> = serde_json::from_value(list.clone()).expect("list");
        assert_eq!(parsed.meta, Some(ListMeta::default()));
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), list);

        let err = json!({"success": false, "error": {"code": "VALIDATION_ERROR",
            "message": "limit must be 1 to 1000", "details": {"field": "limit"}},
            "timestamp": "2026-02-09T20:30:00.123Z", "requestId": "r"});
        let parsed: Failure = serde_json::from_value(err.clone()).expect("failure");
        assert_eq!(parsed.error.code, ErrorCode::ValidationError);
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), err);
    }

    #[test]
    fn every_code_reads_back_and_unknown_ones_are_kept() {
        for code in [
            "BAD_REQUEST",
            "VALIDATION_ERROR",
            "UNAUTHORIZED",
            "FORBIDDEN",
            "NOT_FOUND",
            "METHOD_NOT_ALLOWED",
            "CONFLICT",
            "PAYLOAD_TOO_LARGE",
            "UNSUPPORTED_MEDIA_TYPE",
            "RATE_LIMITED",
            "UNAVAILABLE",
            "INTERNAL",
        ] {
            let parsed = ErrorCode::parse(code);
            assert!(!matches!(parsed, ErrorCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
        let later: ErrorCode = serde_json::from_value(json!("TEAPOT")).expect("any string");
        assert_eq!(later, ErrorCode::Other("TEAPOT".into()));
        assert_eq!(serde_json::to_value(&later).expect("ser"), json!("TEAPOT"));
    }

    #[test]
    fn list_queries_refuse_unknown_parameters() {
        let q: ListQuery = serde_json::from_value(json!({"limit": 5})).expect("known");
        assert_eq!(q.limit, Some(5));
        assert!(serde_json::from_value::<ListQuery>(json!({"bogus": 1})).is_err());
    }
}
