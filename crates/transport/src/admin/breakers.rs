//! `GET /api/breakers` and `POST /api/breakers/{target}/reset`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::Reset;
use nexus_api::envelope::ListQuery;

use super::{limit, page_of};
use crate::app::AppState;
use crate::envelope::{ApiError, ok, page};
use crate::extract::Query;

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

/// `{target}` arrives percent-decoded by the router.
pub(super) async fn reset(
    State(state): State<AppState>,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    if !state.breakers.reset(&target) {
        return Err(ApiError::not_found(format!(
            "no circuit breaker for target {target:?}"
        )));
    }
    if let Some(record) = state.breakers.record_of(&target) {
        state.store.save_breaker(record).await?;
    }
    Ok(ok(Reset { reset: 1 }).into_response())
}
