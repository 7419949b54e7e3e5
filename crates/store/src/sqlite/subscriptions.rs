//! Webhook subscriptions, and the routes the writer keeps of them.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use nexus_event::Pattern;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::columns::{ConsumerKind, conv, db_err, execute, prepare, ts};
use super::writer::SubRoute;
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
pub(super) fn load_subscription_routes(conn: &Connection) -> Result<Vec<SubRoute>> {
    let mut stmt = conn
        .prepare("SELECT id, target, events, enabled, filter FROM subscriptions ORDER BY id")
        .map_err(db_err("load subscriptions"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(db_err("load subscriptions"))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, target, events, enabled, filter) = row.map_err(db_err("load subscriptions"))?;
        out.push(SubRoute {
            patterns: parse_patterns(&events)?,
            filter: parse_filter(filter.as_deref())?,
            id,
            target,
            enabled,
        });
    }
    Ok(out)
}

fn parse_patterns(json: &str) -> Result<Vec<Pattern>> {
    serde_json::from_str(json).map_err(|e| StoreError::Database {
        op: "read subscription patterns",
        source: Box::new(e),
    })
}

fn subscription_from_row(r: &Row<'_>) -> rusqlite::Result<Subscription> {
    let events: String = r.get(3)?;
    let filter: Option<String> = r.get(8)?;
    Ok(Subscription {
        id: r.get(0)?,
        url: r.get(1)?,
        target: r.get(2)?,
        events: serde_json::from_str(&events).map_err(conv(3))?,
        secret: r.get(4)?,
        ordered: r.get(5)?,
        enabled: r.get(6)?,
        created_at: ts(r.get(7)?)?,
        filter: parse_filter(filter.as_deref()).map_err(conv(8))?,
    })
}

/// One subscription, read on `conn`.
pub(super) fn subscription_in(conn: &Connection, id: &str) -> Result<Option<Subscription>> {
    prepare(
        conn,
        concat!(
            "SELECT ",
            subscription_columns!(),
            " FROM subscriptions WHERE id = ?1"
        ),
    )
    .and_then(|mut s| s.query_row([id], subscription_from_row).optional())
    .map_err(db_err("read subscription"))
}

#[async_trait]
impl Subscriptions for SqliteStore {
    async fn create_subscription(&self, new: NewSubscription) -> Result<Subscription> {
        let sub = subscription_row(new)?;
        let events = patterns_json(&sub.events)?;
        let filter = filter_json(sub.filter.as_ref());
        self.call(move |ctx| {
            ctx.conn
                .execute(
                    concat!(
                        "INSERT INTO subscriptions (",
                        subscription_columns!(),
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ),
                    params![
                        sub.id,
                        sub.url,
                        sub.target,
                        events,
                        sub.secret,
                        sub.ordered,
                        sub.enabled,
                        sub.created_at.as_unix_millis(),
                        filter
                    ],
                )
                .map_err(db_err("create subscription"))?;
            ctx.subscriptions_changed = true;
            ctx.state.subscriptions = load_subscription_routes(ctx.conn)?;
            Ok(sub)
        })
        .await
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let version = self.inner.subscriptions_version.load(Ordering::Acquire);
        if let Some(found) = self
            .inner
            .subscription_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(version, id)
        {
            return Ok(Some(found));
        }
        let owned = id.to_owned();
        let found = self.read(move |conn| subscription_in(conn, &owned)).await?;
        if let Some(sub) = &found {
            self.inner
                .subscription_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(version, sub);
        }
        Ok(found)
    }

    async fn subscriptions(
        &self,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>> {
        let limit = check_limit(limit)?;
        let after = cursor.unwrap_or("").to_owned();
        self.read(move |conn| {
            let mut items = prepare(
                conn,
                concat!(
                    "SELECT ",
                    subscription_columns!(),
                    " FROM subscriptions WHERE id > ?1 ORDER BY id LIMIT ?2"
                ),
            )
            .and_then(|mut s| {
                s.query_map(params![after, limit as i64 + 1], subscription_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(db_err("list subscriptions"))?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|s| s.id.clone())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn update_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
    ) -> Result<Subscription> {
        let target = patch.url.as_deref().map(target_origin).transpose()?;
        let id = id.to_owned();
        self.call(move |ctx| {
            let mut sub = subscription_in(ctx.conn, &id)?.ok_or_else(|| StoreError::NotFound {
                what: "subscription",
                id: id.clone(),
            })?;
            let was_enabled = sub.enabled;
            apply_patch(&mut sub, patch, target)?;
            let err = db_err("update subscription");
            ctx.conn
                .execute(
                    "UPDATE subscriptions SET url = ?2, target = ?3, events = ?4, secret = ?5, ordered = ?6, enabled = ?7, filter = ?8 WHERE id = ?1",
                    params![sub.id, sub.url, sub.target, patterns_json(&sub.events)?, sub.secret, sub.ordered, sub.enabled, filter_json(sub.filter.as_ref())],
                )
                .map_err(&err)?;
            // Waiting deliveries follow the subscription's target and its enabled state.
            ctx.conn
                .execute(
                    "UPDATE deliveries SET target = ?2 WHERE consumer_kind = ?3 AND consumer = ?1",
                    params![sub.id, sub.target, ConsumerKind::Subscription],
                )
                .map_err(&err)?;
            if was_enabled != sub.enabled {
                // Disabling holds waiting and parked deliveries; enabling lets them go.
                let sql = if sub.enabled {
                    "UPDATE deliveries SET state = :waiting \
                     WHERE consumer_kind = :webhook AND consumer = :id AND state = :held"
                } else {
                    "UPDATE deliveries SET state = :held \
                     WHERE consumer_kind = :webhook AND consumer = :id AND state IN (:waiting, :parked)"
                };
                execute(ctx.conn, sql, &[(":id", &sub.id)]).map_err(&err)?;
                ctx.work |= sub.enabled;
            }
            ctx.subscriptions_changed = true;
            ctx.state.subscriptions = load_subscription_routes(ctx.conn)?;
            Ok(sub)
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |ctx| {
            let err = db_err("delete subscription");
            let deleted = ctx
                .conn
                .execute("DELETE FROM subscriptions WHERE id = ?1", [&id])
                .map_err(&err)?;
            // Its queued deliveries go, and their attempts with them (finished ones stay in the
            // history until the retention prunes them).
            ctx.conn
                .execute(
                    "DELETE FROM delivery_attempts WHERE delivery IN \
                     (SELECT id FROM deliveries WHERE consumer_kind = ?2 AND consumer = ?1)",
                    params![id, ConsumerKind::Subscription],
                )
                .map_err(&err)?;
            ctx.conn
                .execute(
                    "DELETE FROM deliveries WHERE consumer_kind = ?2 AND consumer = ?1",
                    params![id, ConsumerKind::Subscription],
                )
                .map_err(&err)?;
            ctx.subscriptions_changed = true;
            ctx.state.subscriptions = load_subscription_routes(ctx.conn)?;
            Ok(deleted > 0)
        })
        .await
    }
}
