//! `dlq list`, `dlq redrive` and `dlq purge`: many ids go in chunks, with progress.

use nexus_client::{Admin, Error, Selection};
use serde_json::json;

use super::{list_out, pages};
use crate::cli::{DlqCommand, Which};
use crate::exit::usage;
use crate::output::{Out, Progress};

/// Ids are sent in chunks of this many, so a long redrive or purge shows progress.
pub(crate) const CHUNK: usize = 100;

pub(crate) fn selection_op(
    which: Which,
    verb: &'static str,
    out: &mut Out,
    op: impl Fn(&Selection) -> Result<u64, Error>,
) -> anyhow::Result<()> {
    let total = if which.all {
        op(&Selection::All)?
    } else {
        if which.ids.is_empty() {
            return Err(usage("give dead letter ids, or --all"));
        }
        let mut progress = Progress::new(verb);
        let mut total = 0;
        let mut done = 0;
        for chunk in which.ids.chunks(CHUNK) {
            total += op(&Selection::Ids(chunk.to_vec()))?;
            done += chunk.len() as u64;
            progress.update(done, Some(which.ids.len() as u64));
        }
        progress.finish();
        total
    };
    if out.json() {
        out.json_value(&json!({ verb: total }))
    } else {
        out.line(&format!("{verb} {total} dead letter(s)"))
    }
}

pub(crate) fn dlq(admin: &Admin, c: DlqCommand, out: &mut Out) -> anyhow::Result<()> {
    match c {
        DlqCommand::List(list) => {
            let (items, next) = pages(&list, |p| admin.dead_letters(p))?;
            list_out(
                out,
                &items,
                next,
                &[
                    "ID",
                    "EVENT TYPE",
                    "EVENT ID",
                    "TARGET",
                    "ATTEMPTS",
                    "STATUS",
                    "FAILED AT",
                    "ERROR",
                ],
                |d| {
                    vec![
                        d.id.to_string(),
                        d.event_type.clone(),
                        d.event_id.clone(),
                        d.target.clone(),
                        d.attempts.to_string(),
                        d.last_status.map_or("-".into(), |s| s.to_string()),
                        d.failed_at.to_string(),
                        d.last_error.clone(),
                    ]
                },
            )
        }
        DlqCommand::Redrive(which) => selection_op(which, "redriven", out, |s| admin.redrive(s)),
        DlqCommand::Purge(which) => selection_op(which, "deleted", out, |s| admin.purge(s)),
    }
}
