//! `GET /api/events?type=&after=&until=&order=&limit=&cursor=` and `GET /api/events/{id}`: the
//! log, read as an audit trail in ascending sequence order, or newest first with `order=desc`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::log::{EventOrder, EventsQuery};
use nexus_event::{EventId, Pattern, TypeFilter};
use nexus_store::ReadOrder;

use super::limit;
use crate::app::AppState;
use crate::envelope::{ApiError, ok, page};
use crate::extract::{Path, Query};

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
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::validation("cursor", format!("{c:?} is not a cursor this list gave"))
            })
        })
        .transpose()?;
    let mut after = q.after.unwrap_or(0);
    let mut until = q.until.unwrap_or(u64::MAX);
    let order = match q.order.unwrap_or_default() {
        EventOrder::Asc => {
            if let Some(c) = cursor {
                after = c;
            }
            ReadOrder::Ascending
        }
        EventOrder::Desc => {
            if let Some(c) = cursor {
                // Sequences start at 1: a cursor of 0 or 1 leaves nothing below it.
                until = until.min(c.saturating_sub(1));
            }
            ReadOrder::Descending
        }
    };
    let mut events = state
        .store
        .read_range(after, until, order, limit + 1, &filter)
        .await?;
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
