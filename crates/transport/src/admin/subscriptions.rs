//! `GET, POST /api/subscriptions` and `GET, PATCH, DELETE /api/subscriptions/{id}`. Each
//! subscription shows its `stats` over the last 24 h; a new one shows zeros.
//!
//! A `filter` (API.md section 12) is checked while the body is read: the body's type holds a
//! [`nexus_event::When`], so a bad one is `400 VALIDATION_ERROR` with `details.field = "filter"`
//! and a message naming the key inside it.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nexus_api::dead_letters::Deleted;
use nexus_api::envelope::ListQuery;
use nexus_api::subscriptions::{self as api, NewSubscription, SubscriptionPatch};
use std::time::Duration;

use nexus_event::{Pattern, Timestamp};
use nexus_store::{Subscription, SubscriptionStats};

use super::{body, limit, patterns, store_page};
use crate::app::AppState;
use crate::auth::Secret;
use crate::envelope::{ApiError, ok};
use crate::extract::{Path, Query};
use nexus_outbound::refuse_private;

fn wire(s: Subscription, secret: Option<String>, stats: SubscriptionStats) -> api::Subscription {
    api::Subscription {
        id: s.id,
        url: s.url,
        events: s.events.iter().map(|p| p.as_str().to_owned()).collect(),
        ordered: s.ordered,
        enabled: s.enabled,
        filter: s.filter,
        created_at: s.created_at,
        secret,
        stats: api::SubscriptionStats {
            delivered: stats.delivered,
            failed: stats.failed,
            pending: stats.pending,
            dead: stats.dead,
        },
    }
}

/// The window of a subscription's `stats` (API.md section 12).
const STATS_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The stats of each subscription in `subs`, in order, over the last [`STATS_WINDOW`].
async fn stats_of(
    state: &AppState,
    subs: &[Subscription],
) -> Result<Vec<SubscriptionStats>, ApiError> {
    let since = Timestamp::from_unix_millis(
        Timestamp::now()
            .as_unix_millis()
            .saturating_sub(STATS_WINDOW.as_millis() as i64),
    )
    .map_err(|_| ApiError::internal())?;
    let ids: Vec<String> = subs.iter().map(|s| s.id.clone()).collect();
    Ok(state.store.subscription_stats(&ids, since).await?)
}

/// One subscription as the API shows it, with its stats.
async fn shown(state: &AppState, sub: Subscription) -> Result<api::Subscription, ApiError> {
    let stats = stats_of(state, std::slice::from_ref(&sub))
        .await?
        .pop()
        .unwrap_or_default();
    Ok(wire(sub, None, stats))
}

/// A subscription's secret: `whsec_<base64>` or text, of at least
/// [`MIN_SUBSCRIPTION_SECRET_BYTES`](nexus_api::signature::MIN_SUBSCRIPTION_SECRET_BYTES) key
/// bytes in every environment (`whsec_` alone is empty, not a key).
fn check_secret(written: &str) -> Result<(), ApiError> {
    if written.is_empty() {
        return Err(ApiError::validation("secret", "secret must not be empty"));
    }
    Secret::parse_at_least(written, nexus_api::signature::MIN_SUBSCRIPTION_SECRET_BYTES)
        .map(|_| ())
        .map_err(|e| ApiError::validation("secret", e.to_string()))
}

/// Refuses, in production, a URL whose host resolves to a private address (unless allowed).
async fn check_target(state: &AppState, url: &str) -> Result<(), ApiError> {
    if !state.config.production || state.config.allow_private_targets {
        nexus_store::target_origin(url)?;
        return Ok(());
    }
    refuse_private(url)
        .await
        .map_err(|e| ApiError::validation("url", e.to_string()))
}

pub(super) async fn create(State(state): State<AppState>, raw: Body) -> Result<Response, ApiError> {
    let new: NewSubscription = body(&state, raw, NewSubscription::REQUIRED).await?;
    check_target(&state, &new.url).await?;
    let events = patterns("events", &new.events)?;
    let secret = match new.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => {
            Secret::generate()
                .map_err(|_| {
                    tracing::error!("the system random generator failed; no secret generated");
                    ApiError::internal()
                })?
                .1
        }
    };
    let sub = state
        .store
        .create_subscription(nexus_store::NewSubscription {
            url: new.url,
            events,
            secret: secret.clone(),
            ordered: new.ordered,
            filter: new.filter,
        })
        .await?;
    Ok(ok(wire(sub, Some(secret), SubscriptionStats::default()))
        .status(StatusCode::CREATED)
        .into_response())
}

pub(super) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let limit = limit(q.limit)?;
    let p = state
        .store
        .subscriptions(limit, q.cursor.as_deref())
        .await?;
    let stats = stats_of(&state, &p.items).await?;
    let page = nexus_store::Page {
        items: p.items.into_iter().zip(stats).collect::<Vec<_>>(),
        next_cursor: p.next_cursor,
    };
    Ok(store_page(page, |(s, stats)| wire(s, None, stats)))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let sub = stored(&state, &id).await?;
    Ok(ok(shown(&state, sub).await?).into_response())
}

/// The stored subscription `id`, or `404` naming it.
pub(super) async fn stored(state: &AppState, id: &str) -> Result<Subscription, ApiError> {
    state
        .store
        .subscription(id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The `404` of an unknown subscription.
fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("subscription {id} not found"))
}

pub(super) async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    raw: Body,
) -> Result<Response, ApiError> {
    let patch: SubscriptionPatch = body(&state, raw, SubscriptionPatch::REQUIRED).await?;
    if patch.is_empty() {
        return Err(ApiError::validation("body", "nothing to change"));
    }
    if let Some(url) = &patch.url {
        check_target(&state, url).await?;
    }
    if let Some(s) = &patch.secret {
        check_secret(s)?;
    }
    let events: Option<Vec<Pattern>> = patch
        .events
        .as_deref()
        .map(|globs| patterns("events", globs))
        .transpose()?;
    let sub = state
        .store
        .update_subscription(
            &id,
            nexus_store::SubscriptionPatch {
                url: patch.url,
                events,
                secret: patch.secret,
                ordered: patch.ordered,
                enabled: patch.enabled,
                filter: patch.filter,
            },
        )
        .await?;
    Ok(ok(shown(&state, sub).await?).into_response())
}

pub(super) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.store.delete_subscription(&id).await? {
        return Err(not_found(&id));
    }
    Ok(ok(Deleted { deleted: 1 }).into_response())
}
