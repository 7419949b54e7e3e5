//! `instances`: the live server instances on the store.

use nexus_client::Admin;

use super::{list_out, pages};
use crate::cli::ListArgs;
use crate::output::Out;

pub(crate) fn instances(admin: &Admin, list: ListArgs, out: &mut Out) -> anyhow::Result<()> {
    let (items, next) = pages(&list, |p| admin.instances(p))?;
    list_out(
        out,
        &items,
        next,
        &["ID", "HOST", "STARTED AT", "LAST SEEN AT", "VERSION"],
        |i| {
            vec![
                i.id.clone(),
                i.host.clone(),
                i.started_at.to_string(),
                i.last_seen_at.to_string(),
                i.version.clone(),
            ]
        },
    )
}
