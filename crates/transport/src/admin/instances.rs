//! `GET /api/instances` (API.md section 13): the live server instances on the store, earliest
//! started first, paged with the last one's start and id as the cursor.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use nexus_api::envelope::ListQuery;
use nexus_api::instances::Instance;
use nexus_store::InstanceRecord;

use super::limit;
use crate::app::AppState;
use crate::envelope::{ApiError, page};
use crate::extract::Query;

fn wire(i: InstanceRecord) -> Instance {
    Instance {
        id: i.id,
        host: i.host,
        started_at: i.started_at,
        last_seen_at: i.last_seen_at,
        version: i.version,
    }
}

/// The cursor of the page after `i`: its start (Unix ms) and id, the order the store lists in.
fn cursor_of(i: &InstanceRecord) -> String {
    format!("{}.{}", i.started_at.as_unix_millis(), i.id)
}

/// The position a cursor this list gave stands for; an instance that left meanwhile does not
/// move it.
fn parse_cursor(cursor: &str) -> Result<(i64, &str), ApiError> {
    cursor
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id)))
        .ok_or_else(|| {
            ApiError::validation(
                "cursor",
                format!("{cursor:?} is not a cursor this list gave"),
            )
        })
}

/// Earliest started first, as the store lists them; `cursor` is the last one of the page before.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let all = state.store.instances().await?;
    let mut rest: Vec<InstanceRecord> = all
        .into_iter()
        .filter(|i| {
            after.is_none_or(|(ms, id)| (i.started_at.as_unix_millis(), i.id.as_str()) > (ms, id))
        })
        .collect();
    let next = (rest.len() > limit).then(|| cursor_of(&rest[limit - 1]));
    rest.truncate(limit);
    Ok(page(rest.into_iter().map(wire).collect(), next).into_response())
}
