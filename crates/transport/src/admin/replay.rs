//! `POST /api/replay`: enqueue stored events again for one subscription or for the reactors.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::Enqueued;
use nexus_api::log::{REPLAY_TO_REACTORS, Replay};
use nexus_event::{Timestamp, TypeFilter};
use nexus_store::ReplayTo;

use super::{body, patterns};
use crate::app::AppState;
use crate::envelope::{ApiError, ok};

pub(super) async fn replay(State(state): State<AppState>, raw: Body) -> Result<Response, ApiError> {
    let r: Replay = body(&state, raw, Replay::REQUIRED).await?;
    if r.until.is_some_and(|u| u <= r.after) {
        return Err(ApiError::validation("until", "until must be above after"));
    }
    let filter = match &r.types {
        None => TypeFilter::all(),
        Some(globs) => TypeFilter::new(patterns("types", globs)?),
    };
    let to = match r.target.as_str() {
        REPLAY_TO_REACTORS => ReplayTo::Reactors,
        id => ReplayTo::Subscription(id.to_owned()),
    };
    let enqueued = state
        .store
        .replay(r.after, r.until, &filter, to, Timestamp::now())
        .await?;
    Ok(ok(Enqueued { enqueued })
        .status(StatusCode::ACCEPTED)
        .into_response())
}
