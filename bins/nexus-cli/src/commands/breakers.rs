//! `breakers list` and `breakers reset`.

use nexus_client::Admin;
use serde_json::json;

use super::{list_out, pages};
use crate::cli::BreakersCommand;
use crate::output::Out;

pub(crate) fn breakers(admin: &Admin, c: BreakersCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        BreakersCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.breakers(p))?;
            list_out(
                out,
                &items,
                next,
                &[
                    "TARGET",
                    "STATE",
                    "FAILURES",
                    "TRIPS",
                    "OPENED AT",
                    "NEXT TRIAL",
                ],
                |b| {
                    vec![
                        b.target.clone(),
                        b.state.to_string(),
                        b.consecutive_failures.to_string(),
                        b.trips.to_string(),
                        b.opened_at.map_or_else(|| "-".into(), |t| t.to_string()),
                        b.next_trial_at
                            .map_or_else(|| "-".into(), |t| t.to_string()),
                    ]
                },
            )
        }
        BreakersCommand::Reset { target } => {
            let n = admin.reset_breaker(&target)?;
            if out.json() {
                out.json_value(&json!({ "reset": n }))
            } else {
                out.line(&format!("reset the breaker of {target}"))
            }
        }
    }
}
