//! Typed request bodies and queries whose refusals are envelope errors naming the failing field.
//!
//! A body or query is deserialized into a type of `nexus-api`; a value of the wrong type, an
//! unknown key (where the type refuses them) or a missing required key answers
//! `400 VALIDATION_ERROR` with the field in `details.field`, found by `serde_path_to_error`
//! rather than by reading error messages. A body that is not JSON at all is `400 BAD_REQUEST`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::ApiError;

/// The top-level key a deserialization error is about, when the path names one.
fn field_of(path: &serde_path_to_error::Path) -> Option<String> {
    path.iter().find_map(|segment| match segment {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        _ => None,
    })
}

fn refusal<E: std::fmt::Display>(error: serde_path_to_error::Error<E>, whole: &str) -> ApiError {
    let field = field_of(error.path());
    let message = match &field {
        Some(field) => format!("invalid {field}: {}", error.inner()),
        None => format!("invalid {whole}: {}", error.inner()),
    };
    ApiError::validation(field.as_deref().unwrap_or(whole), message)
}

/// Reads a JSON value as `T`. `value` must be an object; a key of `required` that it lacks is
/// named before anything else is read.
pub(crate) fn typed<T: DeserializeOwned>(
    value: Value,
    required: &[&str],
    what: &str,
) -> Result<T, ApiError> {
    let Value::Object(map) = &value else {
        return Err(ApiError::validation(
            "body",
            format!("{what} must be a JSON object"),
        ));
    };
    if let Some(missing) = required.iter().find(|k| !map.contains_key(**k)) {
        return Err(ApiError::validation(
            missing,
            format!("{missing} is required"),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| refusal(e, "body"))
}

/// Reads a request body as `T` (see [`typed`]); an empty body is refused as a missing object.
pub(crate) fn json_body<T: DeserializeOwned>(
    bytes: &[u8],
    required: &[&str],
) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::validation(
            "body",
            "a JSON object body is required",
        ));
    }
    // Duplicate keys and integers beyond 64 bits are refused here too (crate::json).
    let value = crate::json::parse(bytes)?;
    typed(value, required, "the body")
}

/// The query string as `T`, through axum's [`axum::extract::Query`]; its rejection becomes a
/// `400 VALIDATION_ERROR` naming the parameter (axum's own rejection does not name it).
pub(crate) struct Query<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(name_the_parameter::<T>(
                parts.uri.query().unwrap_or(""),
                &rejection.body_text(),
            )),
        }
    }
}

/// The path parameters as `T`, through axum's [`axum::extract::Path`]; every rejection (a
/// segment that is not UTF-8 once percent-decoded, a value of the wrong type) becomes the error
/// envelope, never axum's plain-text body. Handlers take this one, not axum's.
pub(crate) struct Path<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_refusal(rejection)),
        }
    }
}

/// A path rejection as an envelope error: the caller's mistake is `400`, naming the parameter
/// when axum says which one; a route whose handler wants parameters the route does not have is
/// the server's (`500`, logged).
fn path_refusal(rejection: axum::extract::rejection::PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    use axum::extract::rejection::PathRejection;
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        tracing::error!(error = %rejection.body_text(), "path parameters missing from the route");
        return ApiError::internal();
    };
    if failed.status().is_server_error() {
        tracing::error!(error = %failed.body_text(), "path parameters do not fit the handler");
        return ApiError::internal();
    }
    let message = failed.body_text();
    match failed.into_kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::bad_request(format!(
            "the path parameter {key} is not valid UTF-8 once percent-decoded"
        ))
        .with_details(serde_json::json!({ "field": key })),
        ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
            ApiError::validation(&key, message)
        }
        _ => ApiError::bad_request(message),
    }
}

/// Reads the query again, keeping the path of the failure, to name the parameter at fault.
fn name_the_parameter<T: DeserializeOwned>(query: &str, fallback: &str) -> ApiError {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    match serde_path_to_error::deserialize::<_, T>(deserializer) {
        Err(e) => refusal(e, "query"),
        // Not expected (both read the same string the same way); still a refusal.
        Ok(_) => ApiError::validation("query", fallback.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_api::envelope::ListQuery;
    use nexus_api::subscriptions::NewSubscription;
    use serde_json::json;

    fn field(e: &ApiError) -> Option<&str> {
        e.details.as_ref()?.get("field")?.as_str()
    }

    #[test]
    fn bodies_name_the_failing_field() {
        let req = NewSubscription::REQUIRED;
        let cases = [
            (json!({"events": ["*"]}), "url"),
            (json!({"url": "http://x/"}), "events"),
            (json!({"url": "http://x/", "events": [1]}), "events"),
            (
                json!({"url": "http://x/", "events": ["*"], "colour": "red"}),
                "colour",
            ),
            (
                json!({"url": "http://x/", "events": ["*"], "ordered": "yes"}),
                "ordered",
            ),
            (json!([1]), "body"),
            (
                json!({"url": "http://x/", "events": ["*"], "filter": [1]}),
                "filter",
            ),
            (
                json!({"url": "http://x/", "events": ["*"], "filter": {"/a": {"gt": {}}}}),
                "filter",
            ),
        ];
        for (body, expected) in cases {
            let e = typed::<NewSubscription>(body.clone(), req, "the body").expect_err("refused");
            assert_eq!(field(&e), Some(expected), "{body}: {}", e.message);
        }
        let e = typed::<nexus_api::subscriptions::SubscriptionPatch>(
            json!({"filter": {"amount": {"eq": 1}}}),
            &[],
            "the body",
        )
        .expect_err("not a pointer");
        assert_eq!(field(&e), Some("filter"), "{}", e.message);
        assert!(e.message.contains("JSON pointer"), "{}", e.message);
        let e = json_body::<NewSubscription>(b"{not json", req).expect_err("not JSON");
        assert_eq!(e.code, nexus_api::envelope::ErrorCode::BadRequest);
        let e = json_body::<NewSubscription>(b"", req).expect_err("empty");
        assert_eq!(field(&e), Some("body"));
    }

    #[test]
    fn queries_name_the_failing_parameter() {
        for (query, expected) in [
            ("limit=x", "limit"),
            ("bogus=1", "bogus"),
            ("limit=%2A", "limit"),
        ] {
            let e = name_the_parameter::<ListQuery>(query, "fallback");
            assert_eq!(field(&e), Some(expected), "{query}: {}", e.message);
        }
        // A repeated parameter is refused by the whole query's reader, before any one value.
        let e = name_the_parameter::<ListQuery>("limit=1&limit=2", "fallback");
        assert_eq!(field(&e), Some("query"), "{}", e.message);
    }
}
