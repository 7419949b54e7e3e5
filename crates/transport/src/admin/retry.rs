//! `GET /api/retry/stats`: the retry queue's figures.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::RetryStats;

use crate::app::AppState;
use crate::envelope::{ApiError, ok};

pub(super) async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = state.store.stats().await?;
    Ok(ok(RetryStats {
        pending: s.pending,
        dead_letters: s.dead_letters,
        oldest_retry: s.oldest_retry,
        in_flight: s.in_flight,
    })
    .into_response())
}
