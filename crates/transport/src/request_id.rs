//! `x-request-id`: the caller's (at most 128 visible ASCII characters) or a new UUID, on every
//! response and in every log line of the request.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use nexus_event::EventId;
use tracing::Instrument;

/// The header.
pub const HEADER: &str = "x-request-id";

/// The id of the request being handled.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

tokio::task_local! {
    static CURRENT: String;
}

impl RequestId {
    /// The id of the request this task is handling, or an empty string outside one.
    pub fn current_or_empty() -> String {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }

    fn accept(value: Option<&HeaderValue>) -> Option<String> {
        let v = value?.to_str().ok()?;
        let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
        ok.then(|| v.to_owned())
    }
}

/// Middleware: takes or makes the id, runs the request inside a span that carries it, and
/// returns it on the response.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = RequestId::accept(request.headers().get(HEADER))
        .unwrap_or_else(|| EventId::new_v7().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let started = std::time::Instant::now();
    let mut response = CURRENT
        .scope(id.clone(), async move {
            let response = next.run(request).instrument(span.clone()).await;
            let status = response.status().as_u16();
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let _entered = span.enter();
            // An access line per request: quiet for successes, louder for failures.
            match status {
                500.. => tracing::warn!(status, latency_ms, "request failed"),
                400.. => tracing::info!(status, latency_ms, "request refused"),
                _ => tracing::debug!(status, latency_ms, "request served"),
            }
            response
        })
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    response
}
