//! `subs`: list, get, create, update and delete webhook subscriptions.

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
    }
}
