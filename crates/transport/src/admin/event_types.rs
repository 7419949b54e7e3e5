//! `GET /api/event-types` and `GET, PUT, DELETE /api/event-types/{name}` (API.md section 11):
//! the catalogue of declared types, through [`nexus_catalog::Catalog`] so a change applies to
//! this instance's next publish before it is answered.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::Deleted;
use nexus_api::envelope::ListQuery;
use nexus_api::event_types::EventTypePut;
use nexus_event::EventType;
use nexus_store::TypeOrigin;

use super::{body, limit, store_page};
use crate::app::AppState;
use crate::envelope::{ApiError, ok};
use crate::extract::{Path, Query};

/// The `{name}` of a path: a valid type name, else `400` naming `name`.
fn type_name(name: &str) -> Result<EventType, ApiError> {
    EventType::new(name).map_err(|e| ApiError::validation("name", e.to_string()))
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("event type {name} is not declared"))
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let page = state.catalog.list(limit, q.cursor.as_deref()).await?;
    Ok(store_page(page, |t| t))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = type_name(&name)?;
    let found = state
        .catalog
        .get(name.as_str())
        .await?
        .ok_or_else(|| unknown(name.as_str()))?;
    Ok(ok(found).into_response())
}

/// Creates (`201`) or replaces (`200`) the whole type; `409` for one the config file declares.
pub(super) async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    raw: Body,
) -> Result<Response, ApiError> {
    let name = type_name(&name)?;
    let put: EventTypePut = body(&state, raw, EventTypePut::REQUIRED).await?;
    let (stored, created) = state.catalog.put(name, put, TypeOrigin::Api).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(ok(stored).status(status).into_response())
}

/// `{"deleted": 1}`; `404` for an unknown type, `409` for one the config file declares.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = type_name(&name)?;
    if !state.catalog.delete(name.as_str()).await? {
        return Err(unknown(name.as_str()));
    }
    Ok(ok(Deleted { deleted: 1 }).into_response())
}
