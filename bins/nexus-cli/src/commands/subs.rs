//! `subs`: list, get, create, update, delete and test webhook subscriptions.

use nexus_client::{Admin, NewSubscription, SubscriptionUpdate};
use serde_json::json;

use super::{list_out, pages};
use crate::cli::SubsCommand;
use crate::exit::usage;
use crate::output::{Out, table};

pub(crate) fn sub_rows(s: &nexus_client::Subscription) -> Vec<String> {
    vec![
        s.id.clone(),
        s.url.clone(),
        s.events.join(","),
        s.ordered.to_string(),
        s.enabled.to_string(),
        s.filter
            .as_ref()
            .map_or_else(|| "-".to_owned(), |f| f.to_value().to_string()),
        s.created_at.to_string(),
    ]
}

pub(crate) const SUB_HEADERS: [&str; 7] = [
    "ID",
    "URL",
    "EVENTS",
    "ORDERED",
    "ENABLED",
    "FILTER",
    "CREATED AT",
];

pub(crate) fn one_sub(out: &mut Out, s: &nexus_client::Subscription) -> anyhow::Result<()> {
    if out.json() {
        return out.json_value(&serde_json::to_value(s)?);
    }
    out.text(&table(&SUB_HEADERS, vec![sub_rows(s)]))?;
    let st = &s.stats;
    out.line(&format!(
        "last 24 h: {} delivered, {} failed attempts, {} pending, {} dead",
        st.delivered, st.failed, st.pending, st.dead
    ))?;
    if let Some(secret) = &s.secret {
        out.line(&format!("secret (shown once): {secret}"))?;
    }
    Ok(())
}

pub(crate) fn subs(admin: &Admin, c: SubsCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        SubsCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.subscriptions(p))?;
            list_out(out, &items, next, &SUB_HEADERS, sub_rows)
        }
        SubsCommand::Get { id } => one_sub(out, &admin.subscription(&id)?),
        SubsCommand::Create {
            url,
            events,
            secret,
            ordered,
            filter,
        } => {
            let created = admin.create_subscription(&NewSubscription {
                url,
                events,
                secret,
                ordered,
                filter,
            })?;
            one_sub(out, &created)
        }
        SubsCommand::Update {
            id,
            url,
            events,
            secret,
            ordered,
            enabled,
            filter,
            clear_filter,
        } => {
            let update = SubscriptionUpdate {
                url,
                events,
                secret,
                ordered,
                enabled,
                filter: if clear_filter {
                    Some(None)
                } else {
                    filter.map(Some)
                },
            };
            if update == SubscriptionUpdate::default() {
                return Err(usage(
                    "nothing to change: give --url, --events, --secret, --ordered, --enabled, \
                     --filter or --clear-filter",
                ));
            }
            one_sub(out, &admin.update_subscription(&id, &update)?)
        }
        SubsCommand::Delete { id } => {
            let n = admin.delete_subscription(&id)?;
            if out.json() {
                out.json_value(&json!({ "deleted": n }))
            } else {
                out.line(&format!("deleted subscription {id}"))
            }
        }
        SubsCommand::Test { id } => {
            let sent = admin.test_subscription(&id)?;
            if out.json() {
                return out.json_value(&serde_json::to_value(&sent)?);
            }
            let status = sent
                .status
                .map_or("no answer".into(), |s| format!("HTTP {s}"));
            match &sent.error {
                None => out.line(&format!(
                    "test send to {id}: {status} in {} ms",
                    sent.duration_ms
                )),
                Some(error) => out.line(&format!(
                    "test send to {id} failed: {error} ({status}, {} ms)",
                    sent.duration_ms
                )),
            }
        }
    }
}
