//! `GET /api/events?type=&after=&limit=&cursor=` and `GET /api/events/{id}`: the log, read as
//! an audit trail in ascending sequence order.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use nexus_api::log::EventsQuery;
use nexus_event::{EventId, Pattern, TypeFilter};

use super::limit;
use crate::app::AppState;
use crate::envelope::{ApiError, ok, page};
use crate::extract::Query;

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let filter = match q.event_type.as_deref() {
        None | Some("") => TypeFilter::all(),
        Some(t) => TypeFilter::from(
            Pattern::new(t).map_err(|e| ApiError::validation("type", e.to_string()))?,
        ),
    };
    // The cursor is the last sequence of the previous page.
    let after = match q.cursor.as_deref() {
        Some(c) => c.parse::<u64>().map_err(|_| {
            ApiError::validation("cursor", format!("{c:?} is not a cursor this list gave"))
        })?,
        None => q.after.unwrap_or(0),
    };
    let mut events = state.store.read(after, limit + 1, &filter).await?;
    let next = (events.len() > limit).then(|| events[limit - 1].sequence.to_string());
    events.truncate(limit);
    Ok(page(events, next).into_response())
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id =
        EventId::new(&id).map_err(|_| ApiError::not_found(format!("event {id:?} not found")))?;
    let event = state
        .store
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {id} not found")))?;
    Ok(ok(event).into_response())
}
