//! `events list`, `events get` and `events deliveries`.

use nexus_client::{Admin, Delivery, EventQuery};

use super::{list_out, pages};
use crate::cli::EventsCommand;
use crate::output::{Out, table};

pub(crate) fn events(admin: &Admin, c: EventsCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        EventsCommand::List {
            event_type,
            after,
            list,
        } => {
            let (items, next) = pages(&list, |page| {
                admin.events(&EventQuery {
                    event_type: event_type.clone(),
                    after,
                    page: page.clone(),
                    ..EventQuery::default()
                })
            })?;
            list_out(
                out,
                &items,
                next,
                &["SEQ", "TYPE", "ID", "SOURCE", "TIME"],
                |e| {
                    vec![
                        e.sequence.to_string(),
                        e.event_type.to_string(),
                        e.id.to_string(),
                        e.source.clone(),
                        e.time.to_string(),
                    ]
                },
            )
        }
        EventsCommand::Get { id } => {
            let e = admin.event(&id)?;
            if out.json() {
                return out.json_value(&serde_json::to_value(&e)?);
            }
            let rows = vec![
                vec!["id".into(), e.id.to_string()],
                vec!["type".into(), e.event_type.to_string()],
                vec!["source".into(), e.source.clone()],
                vec!["sequence".into(), e.sequence.to_string()],
                vec!["time".into(), e.time.to_string()],
                vec![
                    "correlation_id".into(),
                    e.correlation_id.map_or("-".into(), |c| c.to_string()),
                ],
                vec!["payload".into(), e.payload.to_string()],
            ];
            out.text(&table(&[], rows))
        }
        EventsCommand::Deliveries { id } => {
            let deliveries = admin.event_deliveries(&id)?;
            if out.json() {
                return out.json_value(&serde_json::to_value(&deliveries)?);
            }
            out.text(&table(
                &[
                    "DELIVERY", "FOR", "STATE", "NEXT", "#", "AT", "MS", "STATUS", "ERROR",
                ],
                delivery_rows(&deliveries),
            ))?;
            if deliveries.is_empty() {
                out.note(&format!("event {id} has no deliveries"))?;
            }
            Ok(())
        }
    }
}

/// One row per attempt (a delivery not attempted yet gets one row of its own).
fn delivery_rows(deliveries: &[Delivery]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for d in deliveries {
        let consumer = match (&d.subscription_id, &d.reactor) {
            (Some(id), _) => format!("subscription {id}"),
            (None, Some(name)) => format!("reactor {name}"),
            (None, None) => "-".to_owned(),
        };
        let head = [
            d.id.to_string(),
            consumer,
            d.state.as_str().to_owned(),
            d.next_attempt_at.map_or("-".into(), |t| t.to_string()),
        ];
        if d.attempts.is_empty() {
            let mut row = head.to_vec();
            row.extend(["-", "-", "-", "-", "-"].map(String::from));
            rows.push(row);
        }
        for (i, a) in d.attempts.iter().enumerate() {
            let mut row = head.to_vec();
            row.extend([
                (i + 1).to_string(),
                a.at.to_string(),
                a.duration_ms.to_string(),
                a.status.map_or("-".into(), |s| s.to_string()),
                a.error.clone().unwrap_or_else(|| "-".into()),
            ]);
            rows.push(row);
        }
    }
    rows
}
