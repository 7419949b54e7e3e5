//! The commands, one module each, and what they share: walking the pages of a list and
//! printing it.

mod breakers;
mod dlq;
mod events;
mod health;
mod instances;
mod publish;
mod replay;
mod subs;
mod tail;
mod types;

use std::time::Duration;

use nexus_client::{Admin, Error, PageRequest};
use serde_json::json;

use crate::cli::{Cli, Command, ListArgs};
use crate::exit::usage;
use crate::output::{Out, Progress, table};

/// Runs the command line's command.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.timeout == 0 {
        return Err(usage("--timeout must be at least 1 second"));
    }
    let timeout = Duration::from_secs(cli.timeout);
    let mut out = Out::new(cli.json);
    let admin = || -> anyhow::Result<Admin> {
        let token = cli
            .token
            .as_deref()
            .ok_or_else(|| usage("no admin token: give --token or set NEXUS_ADMIN_TOKEN"))?;
        Ok(Admin::with_timeout(&cli.server, token, timeout)?)
    };
    match cli.command {
        Command::Publish(args) => publish::publish(&cli.server, timeout, args, &mut out),
        Command::Tail(args) => {
            let token = cli.token.as_deref().ok_or_else(|| {
                usage("no token: give --token or set NEXUS_ADMIN_TOKEN (admin or subscriber token)")
            })?;
            tail::tail(&cli.server, token, args, &mut out)
        }
        Command::Events(c) => events::events(&admin()?, c, &mut out),
        Command::Dlq(c) => dlq::dlq(&admin()?, c, &mut out),
        Command::Breakers(c) => breakers::breakers(&admin()?, c, &mut out),
        Command::Instances(list) => instances::instances(&admin()?, list, &mut out),
        Command::Subs(c) => subs::subs(&admin()?, c, &mut out),
        Command::Types(c) => types::types(&admin()?, c, &mut out),
        Command::Replay(args) => replay::replay(&admin()?, args, &mut out),
        Command::Health => health::health(&cli.server, cli.token.as_deref(), timeout, &mut out),
    }
}

/// Walks the pages of a list (one unless `--all`), showing progress on long walks.
pub(crate) fn pages<T>(
    list: &ListArgs,
    mut fetch: impl FnMut(&PageRequest) -> Result<nexus_client::Page<T>, Error>,
) -> anyhow::Result<(Vec<T>, Option<String>)> {
    let mut request = PageRequest {
        limit: Some(list.limit),
        cursor: list.cursor.clone(),
    };
    let mut items = Vec::new();
    let mut progress = Progress::new("read");
    loop {
        let page = fetch(&request)?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) if list.all => {
                progress.update(items.len() as u64, None);
                request.cursor = Some(next);
            }
            next => {
                progress.finish();
                return Ok((items, next));
            }
        }
    }
}

pub(crate) fn list_out<T: serde::Serialize>(
    out: &mut Out,
    items: &[T],
    next: Option<String>,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if out.json() {
        return out.json_value(&json!({ "data": items, "nextCursor": next }));
    }
    out.text(&table(headers, items.iter().map(row).collect()))?;
    if let Some(next) = next {
        out.note(&format!("more: --cursor {next} (or --all)"))?;
    }
    Ok(())
}
