//! The blocking HTTP layer shared by the publisher and the admin client: one `ureq` agent, a
//! checked base URL, and the classification of answers into data or typed errors.

use std::time::{Duration, SystemTime};

use nexus_api::envelope::{Failure, ListMeta, Success};
use serde_json::Value;

use crate::backoff::parse_retry_after;
use crate::{ApiError, Error};

/// A checked base URL: `http://` or `https://`, no trailing slash, no query.
pub(crate) fn base_url(written: &str) -> Result<String, Error> {
    let trimmed = written.trim().trim_end_matches('/');
    let rest = if let Some(rest) = trimmed.strip_prefix("http://") {
        rest
    } else if let Some(rest) = trimmed.strip_prefix("https://") {
        if !cfg!(feature = "tls") {
            return Err(Error::invalid(
                "url",
                format!("{written:?}: https needs nexus-client's \"tls\" feature"),
            ));
        }
        rest
    } else {
        return Err(Error::invalid(
            "url",
            format!("{written:?}: expected http://host[:port] or https://host[:port]"),
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::invalid("url", format!("{written:?} names no host")));
    }
    if rest.contains(['?', '#', ' ']) {
        return Err(Error::invalid(
            "url",
            format!("{written:?}: a base URL takes no query, fragment or space"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// What came back: status, the headers the client reads, the body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) url: String,
    pub(crate) status: u16,
    pub(crate) request_id: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: String,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// A 2xx answer's body as JSON; anything else as the typed error.
    pub(crate) fn value(self) -> Result<Value, Error> {
        if !(200..300).contains(&self.status) {
            return Err(Error::Api(Box::new(self.api_error())));
        }
        self.json().ok_or_else(|| Error::Protocol {
            url: self.url.clone(),
            reason: format!("the {} answer is not JSON", self.status),
        })
    }

    /// A 2xx envelope's `data` (and `meta`), read as nexus-api's [`Success`].
    pub(crate) fn data(self) -> Result<(Value, Option<ListMeta>), Error> {
        let url = self.url.clone();
        let body = self.value()?;
        match serde_json::from_value::<Success<Value>>(body) {
            Ok(envelope) if envelope.success => Ok((envelope.data, envelope.meta)),
            Ok(_) => Err(Error::Protocol {
                url,
                reason: "the answer is not a success envelope".into(),
            }),
            Err(e) => Err(Error::Protocol {
                url,
                reason: format!("the answer is not a success envelope: {e}"),
            }),
        }
    }

    pub(crate) fn api_error(&self) -> ApiError {
        // An error envelope (nexus-api's `Failure`); anything else (a proxy's error page, say)
        // is kept as the start of its body under `HTTP_<status>`.
        if let Ok(failure) = serde_json::from_str::<Failure>(&self.body) {
            return ApiError {
                status: self.status,
                code: failure.error.code.as_str().to_owned(),
                message: failure.error.message,
                details: failure.error.details,
                request_id: Some(failure.request_id).or_else(|| self.request_id.clone()),
                retry_after: self.retry_after,
            };
        }
        let start: String = self.body.chars().take(200).collect();
        ApiError {
            status: self.status,
            code: format!("HTTP_{}", self.status),
            message: if start.trim().is_empty() {
                "(empty body)".to_owned()
            } else {
                start
            },
            details: None,
            request_id: self.request_id.clone(),
            retry_after: self.retry_after,
        }
    }
}

/// A blocking client of one server.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
    base: String,
    timeout: Duration,
}

impl Http {
    pub(crate) fn new(base: String, timeout: Duration) -> Http {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("nexus-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http {
            agent,
            base,
            timeout,
        }
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; `path` starts with `/`.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Answer, Error> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.unwrap_or_default().to_vec())
            .map_err(|e| Error::invalid("request", format!("{method} {url}: {e}")))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| self.classify(&url, e))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("x-request-id");
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.classify(&url, e))?;
        Ok(Answer {
            url,
            status,
            request_id,
            retry_after,
            body,
        })
    }

    fn classify(&self, url: &str, e: ureq::Error) -> Error {
        match e {
            ureq::Error::Timeout(_) => Error::Timeout {
                url: url.to_owned(),
                timeout: self.timeout,
            },
            ureq::Error::BadUri(reason) => Error::invalid("url", format!("{url}: {reason}")),
            ureq::Error::Http(e) => Error::invalid("request", format!("{url}: {e}")),
            ureq::Error::HostNotFound => Error::Network {
                url: url.to_owned(),
                reason: "host not found".into(),
            },
            ureq::Error::ConnectionFailed => Error::Network {
                url: url.to_owned(),
                reason: "connection failed".into(),
            },
            other => Error::Network {
                url: url.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            base_url("http://127.0.0.1:3000/").expect("ok"),
            "http://127.0.0.1:3000"
        );
        for bad in [
            "127.0.0.1:3000",
            "ftp://x",
            "http://",
            "http:///x",
            "http://h?x=1",
        ] {
            let e = base_url(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid url"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_error_envelope_becomes_a_typed_error_with_code_message_and_request_id() {
        let answer = Answer {
            url: "http://h/events".into(),
            status: 400,
            request_id: Some("from-header".into()),
            retry_after: None,
            body: r#"{"success":false,"error":{"code":"VALIDATION_ERROR","message":"type is invalid","details":{"field":"type"}},"timestamp":"2026-02-09T20:30:00.123Z","requestId":"req-7"}"#.into(),
        };
        let e = answer.api_error();
        assert_eq!(e.code, "VALIDATION_ERROR");
        assert_eq!(e.message, "type is invalid");
        assert_eq!(e.details, Some(serde_json::json!({"field": "type"})));
        assert_eq!(e.request_id.as_deref(), Some("req-7"));
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            r#"400 VALIDATION_ERROR: type is invalid ({"field":"type"}) [request req-7]"#
        );
    }

    #[test]
    fn a_body_that_is_not_an_envelope_still_gives_status_and_text() {
        let answer = Answer {
            url: "http://h/events".into(),
            status: 502,
            request_id: Some("rid".into()),
            retry_after: None,
            body: "Bad Gateway".into(),
        };
        let e = answer.api_error();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("HTTP_502", "Bad Gateway")
        );
        assert_eq!(e.request_id.as_deref(), Some("rid"));
        assert!(e.is_retryable());
    }
}
