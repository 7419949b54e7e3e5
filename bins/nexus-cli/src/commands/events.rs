//! `events list` and `events get`.

use nexus_client::{Admin, EventQuery};

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
    }
}
