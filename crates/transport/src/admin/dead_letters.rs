//! `GET /api/retry/dead-letters`, `POST /api/retry/dead-letters/redrive` and
//! `DELETE /api/retry/dead-letters`.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::{self as api, DeadLetterRef, Deleted, IdsSelection, Redriven};
use nexus_api::envelope::ListQuery;
use nexus_event::Timestamp;
use nexus_store::{Consumer, DeadLetter, Selection};

use super::{body, limit, store_page};
use crate::app::AppState;
use crate::envelope::{ApiError, ok};
use crate::extract::Query;

fn wire(d: DeadLetter) -> api::DeadLetter {
    let (subscription_id, reactor) = match d.consumer {
        Consumer::Subscription(id) => (Some(id), None),
        Consumer::Reactor(name) => (None, Some(name)),
    };
    api::DeadLetter {
        id: d.id,
        event_id: d.event_id.to_string(),
        event_type: d.event_type.to_string(),
        event_sequence: d.event_sequence,
        target: d.target,
        subscription_id,
        reactor,
        attempts: d.attempts,
        last_error: d.last_error,
        last_status: d.last_status,
        created_at: d.created_at,
        first_attempt_at: d.first_attempt_at,
        failed_at: d.failed_at,
        payload: d.payload,
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let p = state.store.dead_letters(limit, q.cursor.as_deref()).await?;
    Ok(store_page(p, wire))
}

/// `{"ids": [...]}` or `{}` for all. An id that names no dead letter (one that does not
/// exist, or is not even a number) is left out: it is counted as not found, not refused.
fn selection(body: IdsSelection) -> Selection {
    match body.ids {
        None => Selection::All,
        Some(ids) => Selection::Ids(ids.iter().filter_map(DeadLetterRef::id).collect()),
    }
}

pub(super) async fn redrive(
    State(state): State<AppState>,
    raw: Body,
) -> Result<Response, ApiError> {
    let which = selection(body(&state, raw, IdsSelection::REQUIRED).await?);
    let redriven = state.store.redrive(which, Timestamp::now()).await?;
    Ok(ok(Redriven { redriven }).into_response())
}

pub(super) async fn delete(State(state): State<AppState>, raw: Body) -> Result<Response, ApiError> {
    let which = selection(body(&state, raw, IdsSelection::REQUIRED).await?);
    let deleted = state.store.purge(which).await?;
    Ok(ok(Deleted { deleted }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_name_nothing_are_dropped_not_refused() {
        let body: IdsSelection =
            serde_json::from_value(serde_json::json!({"ids": [3, "4", "x", -1]})).expect("ids");
        assert_eq!(selection(body), Selection::Ids(vec![3, 4, -1]));
        assert_eq!(selection(IdsSelection::all()), Selection::All);
    }
}
