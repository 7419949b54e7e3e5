//! The admin API (API.md section 6), behind `Authorization: Bearer <NEXUS_ADMIN_TOKEN>`: one
//! module per resource, with the typed bodies of `nexus-api`.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nexus_api::envelope::DEFAULT_LIMIT;
use nexus_event::Pattern;
use nexus_store::MAX_PAGE;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::auth;
use crate::envelope::{ApiError, page};
use crate::extract::json_body;
use crate::ingress::read_body;

mod breakers;
mod dead_letters;
mod deliveries;
mod event_types;
mod events;
mod instances;
mod nodes;
mod reactors;
mod replay;
mod retry;
mod subscriptions;

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/api/retry/stats", get(retry::stats))
        .route(
            "/api/retry/dead-letters",
            get(dead_letters::list).delete(dead_letters::delete),
        )
        .route(
            "/api/retry/dead-letters/redrive",
            post(dead_letters::redrive),
        )
        .route("/api/breakers", get(breakers::list))
        .route("/api/breakers/{target}/reset", post(breakers::reset))
        .route(
            "/api/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/api/subscriptions/{id}",
            get(subscriptions::get)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/api/event-types", get(event_types::list))
        .route(
            "/api/event-types/{name}",
            get(event_types::get)
                .put(event_types::put)
                .delete(event_types::delete),
        )
        .route(
            "/api/subscriptions/{id}/deliveries",
            get(deliveries::of_subscription),
        )
        .route("/api/subscriptions/{id}/test", post(deliveries::test_send))
        .route("/api/events", get(events::list))
        .route("/api/events/{id}", get(events::get))
        .route("/api/events/{id}/deliveries", get(deliveries::of_event))
        .route("/api/replay", post(replay::replay))
        .route("/api/nodes", get(nodes::list))
        .route("/api/reactors", get(reactors::list))
        .route("/api/instances", get(instances::list))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
}

async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if auth::bearer(request.headers(), &[&state.config.admin_token]).is_none() {
        return ApiError::unauthorized("the admin API needs Authorization: Bearer <admin token>")
            .into_response();
    }
    next.run(request).await
}

/// The page length a list asked for: 1 to [`MAX_PAGE`], [`DEFAULT_LIMIT`] when not given.
fn limit(asked: Option<usize>) -> Result<usize, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::validation(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}, got {n}"),
        )),
    }
}

/// A typed admin body (admin calls take small bodies, up to the ingress limit).
async fn body<T: DeserializeOwned>(
    state: &AppState,
    body: Body,
    required: &[&str],
) -> Result<T, ApiError> {
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    json_body(&bytes, required)
}

/// One page of a store list as the answer, each item written with `wire`.
fn store_page<T, U: Serialize>(p: nexus_store::Page<T>, wire: impl FnMut(T) -> U) -> Response {
    page(p.items.into_iter().map(wire).collect(), p.next_cursor).into_response()
}

/// The most type globs one list of the admin API may hold (a subscription's `events`, a
/// replay's `types`): what a request makes the server match stays bounded.
pub(crate) const MAX_TYPE_GLOBS: usize = 256;

/// Type globs, 1 to [`MAX_TYPE_GLOBS`], each valid; a refusal names `field`.
fn patterns(field: &str, globs: &[String]) -> Result<Vec<Pattern>, ApiError> {
    if globs.is_empty() {
        return Err(ApiError::validation(
            field,
            format!("{field} needs at least one type glob"),
        ));
    }
    if globs.len() > MAX_TYPE_GLOBS {
        return Err(ApiError::validation(
            field,
            format!(
                "{field} may hold at most {MAX_TYPE_GLOBS} type globs, got {}",
                globs.len()
            ),
        ));
    }
    globs
        .iter()
        .map(|g| Pattern::new(g).map_err(|e| ApiError::validation(field, e.to_string())))
        .collect()
}

/// The items after `cursor` (exclusive, by `key`) of a list sorted by `key`, one page of them,
/// and the cursor of the next page.
fn page_of<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> &str,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let after = cursor.unwrap_or("");
    let mut page: Vec<T> = items.into_iter().filter(|i| key(i) > after).collect();
    let next = (page.len() > limit).then(|| key(&page[limit - 1]).to_owned());
    page.truncate(limit);
    (page, next)
}
