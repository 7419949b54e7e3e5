//! `GET /api/breakers` and `POST /api/breakers/{target}/reset`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::Reset;
use nexus_api::envelope::ListQuery;
use nexus_event::Timestamp;

use super::{limit, page_of};
use crate::app::AppState;
use crate::envelope::{ApiError, ok, page};
use crate::extract::{Path, Query};

/// Every target's breaker, by target, paged with the last target as the cursor.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    // The snapshot comes sorted by target.
    let all = state.breakers.snapshot();
    let (items, next) = page_of(
        all,
        |b| b.target.as_str(),
        q.cursor.as_deref(),
        limit(q.limit)?,
    );
    Ok(page(items, next).into_response())
}

/// Closes one breaker on every instance sharing the store: the reset is saved with a new
/// generation, which the others adopt at their next sync (API.md section 13), and the deliveries
/// parked behind it go again at once, wherever they were parked (the queue is shared), instead
/// of at the trial time they were parked until. `{target}` arrives percent-decoded by the router.
pub(super) async fn reset(
    State(state): State<AppState>,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    if !state.breakers.reset(&target) {
        // Another instance may have tripped it since this one last looked.
        state.breakers.sync(state.store.as_ref()).await?;
        if !state.breakers.reset(&target) {
            return Err(ApiError::not_found(format!(
                "no circuit breaker for target {target:?}"
            )));
        }
    }
    state
        .breakers
        .persist(&target, state.store.as_ref())
        .await?;
    let released = state.store.unpark(&target, Timestamp::now()).await?;
    if released > 0 {
        tracing::info!(
            target,
            released,
            "breaker reset; parked deliveries released"
        );
    }
    Ok(ok(Reset { reset: 1 }).into_response())
}
