//! `GET /api/reactors`: the configured reactors, read only (the binary gives them to
//! [`AppConfig::reactors`](crate::AppConfig::reactors); this crate does not know the rules).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::envelope::ListQuery;

use super::{limit, page_of};
use crate::app::AppState;
use crate::envelope::{ApiError, page};
use crate::extract::Query;

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let mut reactors = state.config.reactors.clone();
    reactors.sort_by(|a, b| a.name.cmp(&b.name));
    let (list, next) = page_of(
        reactors,
        |r| r.name.as_str(),
        q.cursor.as_deref(),
        limit(q.limit)?,
    );
    Ok(page(list, next).into_response())
}
