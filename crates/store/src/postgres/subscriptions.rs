//! Webhook subscriptions, and the routes the writer keeps of them.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::columns::{ConsumerKind, DeliveryState, corrupt, db_err, ts};
use super::writer::{BoxFuture, Ctx, JobKind, SubRoute};
use super::{Admission, PgStore, get};
use crate::backend::{apply_patch, filter_json, parse_filter, patterns_json, subscription_row};
use crate::error::{Result, StoreError};
use crate::model::{
    NewSubscription, Page, Subscription, SubscriptionPatch, check_limit, target_origin,
};
use crate::traits::Subscriptions;

/// The columns of a subscription, in the order [`subscription_from_row`] reads them.
macro_rules! subscription_columns {
    () => {
        "id, url, target, events, secret, ordered, enabled, created_ms, filter"
    };
}

/// Every subscription as the writer routes by it.
pub(super) async fn load_subscription_routes(
    client: &tokio_postgres::Client,
) -> Result<Vec<SubRoute>> {
    let op = "load subscriptions";
    let rows = client
        .query(
            "SELECT id, target, events, enabled, filter FROM subscriptions ORDER BY id",
            &[],
        )
        .await
        .map_err(db_err(op))?;
    rows.iter()
        .map(|r| {
            let events: String = get(r, 2, op)?;
            let filter: Option<String> = get(r, 4, op)?;
            Ok(SubRoute {
                id: get(r, 0, op)?,
                target: get(r, 1, op)?,
                patterns: serde_json::from_str(&events).map_err(corrupt(op))?,
                enabled: get(r, 3, op)?,
                filter: parse_filter(filter.as_deref())?,
            })
        })
        .collect()
}

fn subscription_from_row(r: &Row) -> Result<Subscription> {
    let op = "read subscription";
    let events: String = get(r, 3, op)?;
    let filter: Option<String> = get(r, 8, op)?;
    Ok(Subscription {
        id: get(r, 0, op)?,
        url: get(r, 1, op)?,
        target: get(r, 2, op)?,
        events: serde_json::from_str(&events).map_err(corrupt(op))?,
        secret: get(r, 4, op)?,
        ordered: get(r, 5, op)?,
        enabled: get(r, 6, op)?,
        created_at: ts(get(r, 7, op)?)?,
        filter: parse_filter(filter.as_deref())?,
    })
}

/// One subscription, read on `client`.
pub(super) async fn subscription_in(
    client: &tokio_postgres::Client,
    id: &str,
) -> Result<Option<Subscription>> {
    client
        .query_opt(
            concat!(
                "SELECT ",
                subscription_columns!(),
                " FROM subscriptions WHERE id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(db_err("read subscription"))?
        .map(|r| subscription_from_row(&r))
        .transpose()
}

/// After a change of subscriptions in the writer's transaction: moves `routes_version` (other
/// instances read the routes again at their next append) and reads the routes this writer
/// appends by.
async fn routes_changed(ctx: &mut Ctx) -> Result<()> {
    let err = db_err("subscription routes");
    let row = ctx
        .client
        .query_one(
            "UPDATE routes_version SET version = version + 1 RETURNING version",
            &[],
        )
        .await
        .map_err(&err)?;
    ctx.subscriptions_changed = true;
    ctx.state.subscriptions = load_subscription_routes(&ctx.client).await?;
    ctx.state.routes_version = get(&row, 0, "subscription routes")?;
    Ok(())
}

impl PgStore {
    /// Runs a change of subscriptions in the writer's next group, under the append lock.
    async fn change_routes<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Ctx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.submit(f, Admission::Wait, JobKind::Routes).await
    }
}

#[async_trait]
impl Subscriptions for PgStore {
    async fn create_subscription(&self, new: NewSubscription) -> Result<Subscription> {
        let sub = subscription_row(new)?;
        let events = patterns_json(&sub.events)?;
        let filter = filter_json(sub.filter.as_ref());
        self.change_routes(move |ctx| {
            Box::pin(async move {
                ctx.client
                    .execute(
                        concat!(
                            "INSERT INTO subscriptions (",
                            subscription_columns!(),
                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                        ),
                        &[
                            &sub.id,
                            &sub.url,
                            &sub.target,
                            &events,
                            &sub.secret,
                            &sub.ordered,
                            &sub.enabled,
                            &sub.created_at.as_unix_millis(),
                            &filter,
                        ],
                    )
                    .await
                    .map_err(db_err("create subscription"))?;
                routes_changed(ctx).await?;
                Ok(sub)
            })
        })
        .await
    }

    /// From the cache while no change was committed or notified since it was read (every
    /// webhook delivery reads its subscription: without the cache, one query each).
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let version = self.inner.fanout.subscriptions_version();
        if let Some(found) = self
            .inner
            .subscription_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(version, id)
        {
            return Ok(Some(found));
        }
        let client = self.conn("read subscription").await?;
        let found = subscription_in(&client, id).await?;
        if let Some(found) = &found {
            self.inner
                .subscription_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .put(version, found);
        }
        Ok(found)
    }

    async fn subscriptions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>> {
        let limit = check_limit(limit)?;
        let after = cursor.unwrap_or("");
        let client = self.conn("list subscriptions").await?;
        let rows = client
            .query(
                concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM subscriptions WHERE id > $1 ORDER BY id LIMIT $2"
                ),
                &[&after, &i64::try_from(limit + 1).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(db_err("list subscriptions"))?;
        let mut items = rows
            .iter()
            .map(subscription_from_row)
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|s| s.id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn update_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
    ) -> Result<Subscription> {
        let target = patch.url.as_deref().map(target_origin).transpose()?;
        let id = id.to_owned();
        self.change_routes(move |ctx| {
            Box::pin(async move {
                let mut sub = subscription_in(&ctx.client, &id).await?.ok_or_else(|| {
                    StoreError::NotFound {
                        what: "subscription",
                        id: id.clone(),
                    }
                })?;
                let was_enabled = sub.enabled;
                apply_patch(&mut sub, patch, target)?;
                let events = patterns_json(&sub.events)?;
                let filter = filter_json(sub.filter.as_ref());
                let err = db_err("update subscription");
                ctx.client
                    .execute(
                        "UPDATE subscriptions SET url = $2, target = $3, events = $4, \
                         secret = $5, ordered = $6, enabled = $7, filter = $8 WHERE id = $1",
                        &[
                            &sub.id,
                            &sub.url,
                            &sub.target,
                            &events,
                            &sub.secret,
                            &sub.ordered,
                            &sub.enabled,
                            &filter,
                        ],
                    )
                    .await
                    .map_err(&err)?;
                let webhook = ConsumerKind::Subscription.code();
                // Waiting deliveries follow the subscription's target and its enabled state.
                ctx.client
                    .execute(
                        "UPDATE deliveries SET target = $2 WHERE consumer_kind = $3 \
                         AND consumer = $1",
                        &[&sub.id, &sub.target, &webhook],
                    )
                    .await
                    .map_err(&err)?;
                if was_enabled != sub.enabled {
                    // Disabling holds waiting and parked deliveries; enabling lets them go.
                    let (to, from): (i16, &[i16]) = if sub.enabled {
                        (DeliveryState::Waiting.code(), &[DeliveryState::Held.code()])
                    } else {
                        (
                            DeliveryState::Held.code(),
                            &[DeliveryState::Waiting.code(), DeliveryState::Parked.code()],
                        )
                    };
                    ctx.client
                        .execute(
                            "UPDATE deliveries SET state = $1 WHERE consumer_kind = $2 \
                             AND consumer = $3 AND state = ANY($4)",
                            &[&to, &webhook, &sub.id, &from],
                        )
                        .await
                        .map_err(&err)?;
                    ctx.work |= sub.enabled;
                }
                routes_changed(ctx).await?;
                Ok(sub)
            })
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.change_routes(move |ctx| {
            Box::pin(async move {
                let err = db_err("delete subscription");
                let deleted = ctx
                    .client
                    .execute("DELETE FROM subscriptions WHERE id = $1", &[&id])
                    .await
                    .map_err(&err)?;
                // Its queued deliveries go, and their attempts with them (finished ones stay in
                // the history until the retention prunes them).
                ctx.client
                    .execute(
                        "WITH d AS (DELETE FROM deliveries WHERE consumer_kind = $2 \
                         AND consumer = $1 RETURNING id) \
                         DELETE FROM delivery_attempts WHERE delivery IN (SELECT id FROM d)",
                        &[&id, &ConsumerKind::Subscription.code()],
                    )
                    .await
                    .map_err(&err)?;
                routes_changed(ctx).await?;
                Ok(deleted > 0)
            })
        })
        .await
    }
}
