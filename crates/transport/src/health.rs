//! Health endpoints and `/metrics` (API.md section 8). Plain JSON, no envelope, no token.

use crate::metric_names;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use nexus_api::health::{
    BreakersHealth, DatabaseHealth, Health, HealthDetailed, HealthStatus, MemoryHealth,
    RetryHealth, StoreHealth, WebSocketHealth,
};
use nexus_resilience::BreakerState;
use std::sync::atomic::Ordering;

use crate::app::AppState;
use crate::envelope::ApiError;

/// `GET /health`: answers at once, touches nothing.
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// `GET /health/live`: the process serves requests.
pub(crate) async fn live() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
    })
}

/// How long `/health/ready` waits for the store to answer before calling it unreachable.
const READY_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /health/ready`: 503 until the store is open and the workers run, while draining, and
/// while the store cannot be reached (a PostgreSQL that is away, API.md section 13): each call
/// reads the store's head, so a load balancer takes the instance out until it answers again. A
/// read that only takes longer than 2 s counts as away when the store's own check says so too.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let lc = &state.lifecycle;
    let status = if lc.is_draining() {
        HealthStatus::Draining
    } else if !lc.is_ready() {
        HealthStatus::Starting
    } else {
        match tokio::time::timeout(READY_PROBE, state.store.head()).await {
            Ok(Ok(_)) => {
                return Json(Health {
                    status: HealthStatus::Ready,
                })
                .into_response();
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "not ready: the store does not answer");
                HealthStatus::Degraded
            }
            // A pool busy with requests also makes the probe wait: that is load, not an
            // outage, unless the store's own check (the heartbeat) failed too. Taking every
            // instance out of the load balancer at its busiest would make things worse.
            Err(_) if state.store.reachable() => {
                return Json(Health {
                    status: HealthStatus::Ready,
                })
                .into_response();
            }
            Err(_) => {
                tracing::debug!("not ready: the store did not answer within 2 s");
                HealthStatus::Degraded
            }
        }
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status })).into_response()
}

/// Resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// `GET /health/detailed`.
pub(crate) async fn detailed(State(state): State<AppState>) -> Response {
    let stats = state.store.stats().await;
    let breakers = state.breakers.snapshot();
    let count = |s: BreakerState| breakers.iter().filter(|b| b.state == s).count();
    let (status, pending, dead_letters) = match &stats {
        Ok(s) => (
            HealthStatus::Ok,
            Some(s.pending + s.in_flight),
            Some(s.dead_letters),
        ),
        Err(_) => (HealthStatus::Degraded, None, None),
    };
    let status = if state.lifecycle.is_draining() {
        HealthStatus::Draining
    } else {
        status
    };
    let size_bytes = match &state.database_size {
        Some(probe) => probe().await,
        None => None,
    };
    let instances = match state.store.instances().await {
        Ok(live) => Some(live.len() as u64),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the instances");
            None
        }
    };
    Json(HealthDetailed {
        status,
        version: state.config.version.clone(),
        uptime_seconds: state.lifecycle.uptime_seconds(),
        database: DatabaseHealth { size_bytes },
        retry: RetryHealth {
            pending,
            dead_letters,
        },
        breakers: BreakersHealth {
            open: count(BreakerState::Open) as u64,
            half_open: count(BreakerState::HalfOpen) as u64,
        },
        websocket: WebSocketHealth {
            connections: state
                .lifecycle
                .websocket_connections
                .load(Ordering::Relaxed),
        },
        memory: MemoryHealth {
            rss_bytes: rss_bytes(),
        },
        store: state.store_kind.map(|kind| StoreHealth { kind }),
        instances,
    })
    .into_response()
}

/// `GET /metrics`: Prometheus text; gauges that are read rather than counted are refreshed first.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(render) = &state.metrics else {
        return Err(ApiError::not_found(
            "this service has no metrics recorder installed",
        ));
    };
    if let Ok(stats) = state.store.stats().await {
        nexus_resilience::record_queue_gauges(&stats);
    }
    if let Some(probe) = &state.database_size
        && let Some(size) = probe().await
    {
        metrics::gauge!(metric_names::DATABASE_SIZE_BYTES).set(size as f64);
    }
    if let Ok(live) = state.store.instances().await {
        metrics::gauge!(nexus_store::metric_names::INSTANCES).set(live.len() as f64);
    }
    metrics::gauge!(metric_names::WEBSOCKET_CONNECTIONS).set(
        state
            .lifecycle
            .websocket_connections
            .load(Ordering::Relaxed) as f64,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
        .into_response())
}

/// Any path that is not a route.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

/// A route called with a method it does not take.
pub(crate) async fn method_not_allowed(uri: Uri) -> ApiError {
    let mut e = ApiError::bad_request(format!("{} does not take this method", uri.path()));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.code = nexus_api::envelope::ErrorCode::MethodNotAllowed;
    e
}
